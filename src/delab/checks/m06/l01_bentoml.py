"""Checks of lab 06.01 (BentoML serving and performance): a service that batches and loads its model from the
model store, batch scoring in chunks against the running server, latency percentiles and throughput, and the
configuration chosen against an SLO.

The service and scoring checks run the learner's code against the real model of the lab's BentoML store and the
real server; the measurement checks feed known latencies, so the verdict never depends on how busy the machine is.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from delab.grading import WrongAnswer, exercise, learner_code
from delab.mlops.load import LoadResult
from delab.servers import elsewhere, import_source

MODEL_TAG = "order_value:latest"


# ------------------------------------------------------------------------------------------- e1: the service


def _services(module) -> list[Any]:
    from _bentoml_sdk import Service

    return [value for value in vars(module).values() if isinstance(value, Service)]


@learner_code("your service")
def _instantiate(service):
    return service.inner()


@learner_code("your service's predict")
def _call_predict(instance, rows):
    return instance.predict(rows)


@exercise("m06.l01.e1")
def order_value_service(service_source: str, sample_rows: np.ndarray) -> None:
    """A BentoML service with a batchable ``predict`` that loads ``order_value`` from the model store and returns
    one value per row, equal to the stored model's predictions."""
    import bentoml

    if not isinstance(service_source, str) or "bentoml" not in service_source:
        raise WrongAnswer(
            "service_source should be the text of a Python module that defines a BentoML service.",
            hint="a string holding `import bentoml`, a class decorated with @bentoml.service and its API.",
        )
    with elsewhere("m06-l01-") as folder:
        module = learner_code("importing your service")(import_source)(service_source, folder, "learner_service")
        services = _services(module)
        if len(services) != 1:
            raise WrongAnswer(
                f"the module defines {len(services)} BentoML services; expected exactly one.",
                hint="decorate one class with @bentoml.service.",
            )
        service = services[0]
        api = service.apis.get("predict")
        if api is None:
            raise WrongAnswer(
                f"the service has no `predict` API (it has: {', '.join(service.apis) or 'none'}).",
                hint="decorate a method named predict with @bentoml.api(...).",
            )
        if not api.batchable:
            raise WrongAnswer(
                "predict is not batchable: every request runs the model on its own, however many arrive together.",
                hint="adaptive batching is switched on in the @bentoml.api decorator (batchable, max_batch_size, "
                "max_latency_ms).",
            )
        if not api.max_batch_size or api.max_batch_size < 2:
            raise WrongAnswer(
                f"predict batches at most {api.max_batch_size} row(s) at a time.",
                hint="let a batch hold dozens of rows (max_batch_size).",
            )
        try:
            instance = service.inner()
        except FileNotFoundError as error:
            raise WrongAnswer(
                f"the service reads its model from a file ({Path(error.filename or '?').name}) that a bento does not "
                "carry: from another folder it is not found.",
                hint="load the model saved in BentoML's model store by its tag (bentoml.sklearn.load_model or "
                "bentoml.models.BentoModel), so `bentoml build` packs it with the service.",
            ) from None
        except Exception as error:
            raise WrongAnswer(
                f"creating your service failed with {type(error).__name__}: {str(error).strip()[:200]}",
                hint="run service.inner() in a cell of its own to see the whole error.",
            ) from None
        rows = np.asarray(sample_rows, dtype=np.float32)
        got = np.asarray(_call_predict(instance, rows), dtype=float).ravel()
    expected = bentoml.sklearn.load_model(MODEL_TAG).predict(rows)
    if got.shape != expected.shape:
        raise WrongAnswer(
            f"predict returned {got.size} value(s) for {len(rows)} rows.",
            hint="one predicted order value per input row, in the same order (a batch is many requests' rows).",
        )
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-3):
        raise WrongAnswer(
            "predict's values differ from the stored model's predictions for the same rows.",
            hint=f"serve the model saved as {MODEL_TAG.split(':')[0]} (latest version) and return its predictions "
            "unchanged.",
        )


# ------------------------------------------------------------------------------------- e2: batch scoring


class _CountingClient:
    """Wraps a real BentoML client and records the rows of each predict call."""

    def __init__(self, client) -> None:
        self._client = client
        self.calls: list[int] = []

    def predict(self, rows=None, **kwargs):
        rows = rows if rows is not None else kwargs.get("rows")
        self.calls.append(len(rows))
        return self._client.predict(rows=rows)

    def __getattr__(self, name: str):
        return getattr(self._client, name)


@exercise("m06.l01.e2")
def chunked_scoring(score_in_chunks, url: str, features: pd.DataFrame) -> None:
    """score_in_chunks(client, frame, chunk_size) scores every row through the server, chunk_size rows a call."""
    import bentoml

    from delab.mlops import shop_models

    frame = features.iloc[:103].reset_index(drop=True)  # 4 full chunks of 25 and a partial one
    chunk_size = 25
    with bentoml.SyncHTTPClient(url) as real:
        client = _CountingClient(real)
        got = learner_code("score_in_chunks")(score_in_chunks)(client, frame, chunk_size)
    calls = client.calls
    if not calls:
        raise WrongAnswer(
            "score_in_chunks never called client.predict: the rows were not scored by the server.",
            hint="send the rows to the service with the client you are given.",
        )
    if len(calls) == len(frame) and chunk_size > 1:
        raise WrongAnswer(
            f"{len(calls)} calls for {len(frame)} rows: one request per row.",
            hint="send chunk_size rows per request; a round trip per row wastes most of the time on the network.",
        )
    if max(calls) > chunk_size:
        raise WrongAnswer(
            f"a call carried {max(calls)} rows; chunk_size was {chunk_size}.",
            hint="a table can be far bigger than one request should be: slice it into chunks of chunk_size rows.",
        )
    try:
        values = np.asarray(got, dtype=float).ravel()
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"score_in_chunks should return one number per row (a list or array); it returned {type(got).__name__}.",
            hint="concatenate the chunks' predictions into one flat sequence.",
        ) from None
    if sum(calls) < len(frame) or values.size < len(frame):
        raise WrongAnswer(
            f"{values.size} predictions for {len(frame)} rows ({len(calls)} calls of {calls} rows).",
            hint="the last chunk is usually shorter than chunk_size: score it too.",
        )
    expected = bentoml.sklearn.load_model(MODEL_TAG).predict(shop_models.matrix(frame))
    if values.size != expected.size or not np.allclose(values, expected, rtol=1e-4, atol=1e-3):
        raise WrongAnswer(
            "the predictions are not those of the model for these rows, in the frame's order.",
            hint="send the FEATURES columns in order as float32 and keep the chunks' order when joining the results.",
        )
    if len(calls) != math.ceil(len(frame) / chunk_size):
        raise WrongAnswer(
            f"{len(calls)} calls for {len(frame)} rows in chunks of {chunk_size}.",
            hint="each row should be sent once, in ceil(rows / chunk_size) calls.",
        )


# ------------------------------------------------------------------------------ e3: percentiles, throughput


def _result(latencies_ms, wall_s: float, errors: int = 0, concurrency: int = 4) -> LoadResult:
    return LoadResult("check", np.asarray(latencies_ms, dtype=float) / 1000, wall_s, concurrency, errors)


def _cases() -> list[tuple[LoadResult, dict[str, float]]]:
    rng = np.random.default_rng(7)
    skewed = np.concatenate([rng.uniform(4, 6, 180), rng.uniform(40, 60, 15), [120, 150, 200, 250, 400]])
    flat = np.full(50, 10.0)
    cases = []
    for latencies, wall, errors in ((skewed, 1.6, 0), (flat, 0.2, 5)):
        ms = np.asarray(latencies, dtype=float)
        cases.append(
            (
                _result(ms, wall, errors),
                {
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p95_ms": float(np.percentile(ms, 95)),
                    "p99_ms": float(np.percentile(ms, 99)),
                    "throughput_rps": len(ms) / wall,
                },
            )
        )
    return cases


@exercise("m06.l01.e3")
def latency_summary(summarise) -> None:
    """summarise(result) -> {p50_ms, p95_ms, p99_ms, throughput_rps} of the successful requests of a run."""
    for result, expected in _cases():
        got = learner_code("latency_summary")(summarise)(result)
        if not isinstance(got, dict) or not set(expected) <= set(got):
            keys = sorted(got) if isinstance(got, dict) else type(got).__name__
            raise WrongAnswer(
                f"expected a dict with {', '.join(expected)}; got {keys}.",
                hint="return the four figures under those names.",
            )
        values = {key: float(got[key]) for key in expected}
        ms = result.latencies_s * 1000
        if math.isclose(values["p50_ms"], float(np.mean(ms)), rel_tol=1e-3) and not math.isclose(
            values["p50_ms"], expected["p50_ms"], rel_tol=1e-3
        ):
            raise WrongAnswer(
                "p50_ms is the mean latency, not the median.",
                hint="a few slow requests pull the mean up; p50 is the 50th percentile (np.percentile).",
            )
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            if math.isclose(values[key], expected[key] / 1000, rel_tol=1e-3):
                raise WrongAnswer(
                    f"{key} is in seconds; the name says milliseconds.",
                    hint="latencies_s holds seconds: multiply by 1000.",
                )
            if not math.isclose(values[key], expected[key], rel_tol=1e-3):
                raise WrongAnswer(
                    f"{key} = {values[key]:.2f} for latencies whose {key[:3]} is {expected[key]:.2f} ms.",
                    hint="percentiles of the successful requests' latencies, in milliseconds.",
                )
        rps = values["throughput_rps"]
        if math.isclose(rps, len(ms) / (ms.sum() / 1000), rel_tol=1e-3):
            raise WrongAnswer(
                "throughput_rps divides by the sum of the latencies: that is one client's rate, not the server's.",
                hint=f"{result.concurrency} clients send at the same time: divide by the run's wall-clock time.",
            )
        if math.isclose(rps, result.requests / result.wall_s, rel_tol=1e-3) and result.errors:
            raise WrongAnswer(
                "throughput_rps counts failed requests too.",
                hint="throughput is answers that succeeded per second.",
            )
        if not math.isclose(rps, expected["throughput_rps"], rel_tol=1e-3):
            raise WrongAnswer(
                f"throughput_rps = {rps:.1f}; {len(ms)} successful requests in {result.wall_s} s is "
                f"{expected['throughput_rps']:.1f}.",
                hint="successful requests divided by the run's wall-clock time.",
            )


# ---------------------------------------------------------------------------------------- e4: choose by SLO

_TABLES = [
    (
        pd.DataFrame(
            {
                "config": ["sklearn", "batched", "onnx", "cached"],
                "p50_ms": [9.0, 14.0, 3.0, 2.0],
                "p95_ms": [30.0, 24.0, 8.0, 19.0],
                "throughput_rps": [300.0, 900.0, 700.0, 600.0],
            }
        ),
        25.0,
        "batched",
    ),
    (
        pd.DataFrame(
            {
                "config": ["sklearn", "batched", "onnx", "cached"],
                "p50_ms": [9.0, 6.0, 3.0, 2.0],
                "p95_ms": [30.0, 40.0, 12.0, 12.0001],
                "throughput_rps": [300.0, 900.0, 500.0, 650.0],
            }
        ),
        12.0,
        "onnx",
    ),
    (
        pd.DataFrame(
            {"config": ["sklearn", "onnx"], "p50_ms": [9.0, 3.0], "p95_ms": [30.0, 12.0], "throughput_rps": [1.0, 2.0]}
        ),
        5.0,
        None,
    ),
]


@exercise("m06.l01.e4")
def config_for_slo(choose, measured: pd.DataFrame, slo_p95_ms: float) -> None:
    """choose(table, slo_p95_ms) -> the config with the highest throughput among those whose p95 meets the SLO
    (None when none does); also applied to the learner's own measurements."""
    cases = [*_TABLES, (measured, slo_p95_ms, None)]
    for table, slo, expected in cases:
        if expected is None and table is measured:
            ok = measured[measured.p95_ms <= slo]
            expected = None if ok.empty else ok.sort_values("throughput_rps").iloc[-1]["config"]
        got = learner_code("choose_config")(choose)(table.copy(), slo)
        if got == expected:
            continue
        row = table.set_index("config").loc[got] if got in set(table.config) else None
        if got is None:
            met = table.set_index("config").loc[expected]
            raise WrongAnswer(
                f"you found no configuration within p95 <= {slo} ms, but {expected!r} has p95 {met.p95_ms} ms"
                + (" — exactly the SLO, which meets it." if met.p95_ms == slo else "."),
                hint="an SLO of p95 <= X is met when p95 equals X too.",
            )
        if expected is None:
            raise WrongAnswer(
                f"no configuration meets p95 <= {slo} ms in one of the tables, yet you chose {got!r}.",
                hint="when nothing meets the SLO, say so (return None) rather than picking the least bad.",
            )
        if row is not None and row.p95_ms > slo:
            which = "p50" if row.p50_ms <= slo else "the SLO"
            raise WrongAnswer(
                f"{got!r} has p95 {row.p95_ms} ms, over the SLO of {slo} ms"
                + (" (its p50 meets it)." if which == "p50" else "."),
                hint="the SLO is about the 95th percentile: filter on p95_ms <= SLO first.",
            )
        if row is not None:
            raise WrongAnswer(
                f"{got!r} meets the SLO but {expected!r} also does and serves more requests per second.",
                hint="among the configurations within the SLO, take the one with the highest throughput.",
            )
        raise WrongAnswer(
            f"{got!r} is not one of the table's configurations.",
            hint="return a value of the config column (or None).",
        )
