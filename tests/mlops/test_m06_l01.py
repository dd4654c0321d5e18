"""Checks of lab 06.01 (BentoML serving and performance): the right answer passes, realistic wrong ones are
rejected with their own message, the placeholder is not solved."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from delab.checks.m06 import l01_bentoml as checks
from delab.grading import NotSolvedYet, WrongAnswer

# ------------------------------------------------------------------------------------------------ e3


def summary_right(result):
    ms = result.latencies_s * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_rps": len(ms) / result.wall_s,
    }


def summary_mean(result):
    return summary_right(result) | {"p50_ms": float(np.mean(result.latencies_s * 1000))}


def summary_seconds(result):
    s = result.latencies_s
    return summary_right(result) | {f"p{q}_ms": float(np.percentile(s, q)) for q in (50, 95, 99)}


def summary_sum_of_latencies(result):
    return summary_right(result) | {"throughput_rps": len(result.latencies_s) / result.latencies_s.sum()}


def summary_counts_errors(result):
    return summary_right(result) | {"throughput_rps": result.requests / result.wall_s}


def test_latency_summary_right():
    checks.latency_summary(summary_right)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (summary_mean, "mean latency"),
        (summary_seconds, "in seconds"),
        (summary_sum_of_latencies, "sum of the latencies"),
        (summary_counts_errors, "counts failed requests"),
        (lambda result: [1, 2, 3], "expected a dict"),
    ],
)
def test_latency_summary_wrong(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.latency_summary(answer)


def test_latency_summary_placeholder():
    def todo(result):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.latency_summary(todo)


# ------------------------------------------------------------------------------------------------ e4

MEASURED = pd.DataFrame(
    {
        "config": ["sklearn", "batched", "onnx", "cached"],
        "p50_ms": [20.0, 25.0, 4.0, 3.0],
        "p95_ms": [60.0, 45.0, 9.0, 30.0],
        "throughput_rps": [150.0, 400.0, 800.0, 900.0],
    }
)


def choose_right(table, slo):
    ok = table[table.p95_ms <= slo]
    return None if ok.empty else ok.sort_values("throughput_rps").iloc[-1]["config"]


def choose_fastest(table, slo):
    return table.sort_values("p95_ms").iloc[0]["config"]


def choose_max_throughput(table, slo):
    return table.sort_values("throughput_rps").iloc[-1]["config"]


def choose_strict(table, slo):
    ok = table[table.p95_ms < slo]
    return None if ok.empty else ok.sort_values("throughput_rps").iloc[-1]["config"]


def choose_on_p50(table, slo):
    ok = table[table.p50_ms <= slo]
    return None if ok.empty else ok.sort_values("throughput_rps").iloc[-1]["config"]


def choose_never_none(table, slo):
    ok = table[table.p95_ms <= slo]
    return (ok if not ok.empty else table).sort_values("throughput_rps").iloc[-1]["config"]


def test_config_for_slo_right():
    checks.config_for_slo(choose_right, MEASURED, 18.0)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (choose_fastest, "also does and serves more"),
        (choose_max_throughput, "over the SLO"),
        (choose_strict, "exactly the SLO"),
        (choose_on_p50, "its p50 meets it"),
        (choose_never_none, "no configuration meets"),
    ],
)
def test_config_for_slo_wrong(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.config_for_slo(answer, MEASURED, 18.0)


def test_config_for_slo_placeholder():
    def todo(table, slo):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.config_for_slo(todo, MEASURED, 18.0)


def test_cases_are_consistent():
    for result, expected in checks._cases():
        assert math.isclose(summary_right(result)["p95_ms"], expected["p95_ms"])


# ------------------------------------------------------------------------------------------ e1, e2 (real)

SERVICE = """
import bentoml
import numpy as np


@bentoml.service
class OrderValue:
    model_ref = bentoml.models.BentoModel("order_value:latest")

    def __init__(self):
        self.model = bentoml.sklearn.load_model(self.model_ref)

    @bentoml.api({batching})
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return {body}
"""
BATCHED = "batchable=True, max_batch_size=32, max_latency_ms=1000"


def _service(batching=BATCHED, body="self.model.predict(rows)"):
    return SERVICE.replace("{batching}", batching).replace("{body}", body)


FROM_FILE = """
import bentoml, joblib
import numpy as np


@bentoml.service
class OrderValue:
    def __init__(self):
        self.model = joblib.load("order_value.joblib")

    @bentoml.api(batchable=True, max_batch_size=32)
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.model.predict(rows)
"""


@pytest.fixture(scope="module")
def order_model(tmp_path_factory):
    """A model store with order_value trained on a slice of the shop (no Postgres needed for e1)."""
    from delab import datasets
    from delab.mlops import bento, shop_models

    bento.model_store("m06_l01_tests")
    import bentoml

    shop = datasets.cached()
    items = shop.order_items.merge(shop.products[["product_id", "category"]], on="product_id")
    items = items[items.quantity > 0]
    frame = pd.DataFrame({"order_id": items.order_id.unique()})
    grouped = items.groupby("order_id")
    frame["n_lines"] = grouped.size().reindex(frame.order_id).to_numpy()
    frame["n_units"] = grouped.quantity.sum().reindex(frame.order_id).to_numpy()
    for category in shop_models.CATEGORIES:
        units = items[items.category == category].groupby("order_id").quantity.sum()
        frame[f"units_{category}"] = units.reindex(frame.order_id).fillna(0).to_numpy()
    for column in ("hour", "weekend", "channel_app", "channel_marketplace", "segment_business", "segment_student"):
        frame[column] = 0.0
    value = (items.quantity * items.unit_price).groupby(items.order_id).sum()
    frame["order_value"] = value.reindex(frame.order_id).to_numpy()
    frame = frame.head(2000).astype({name: "float32" for name in shop_models.FEATURES})
    model = shop_models.train_order_value(frame, n_estimators=5, max_depth=4)
    bentoml.sklearn.save_model("order_value", model)
    return frame, shop_models.matrix(frame)


def test_service_right(order_model):
    checks.order_value_service(_service(), order_model[1][:10])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (_service(batching=""), "not batchable"),
        (_service(batching="batchable=True, max_batch_size=1"), "max_batch_size. must be > 1"),
        (FROM_FILE, "reads its model from a file"),
        (_service(body="self.model.predict(rows[:1])"), "1 value"),
        (_service(body="self.model.predict(rows) * 1.2"), "differ from the stored model"),
        ("print('hello')", "text of a Python module"),
    ],
)
def test_service_wrong(order_model, source, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.order_value_service(source, order_model[1][:10])


@pytest.fixture(scope="module")
def served(order_model, tmp_path_factory):
    from delab.mlops import bento

    folder = tmp_path_factory.mktemp("svc")
    (folder / "service.py").write_text(_service())
    server = bento.serve("service:OrderValue", name="m06-l01-test", workdir=folder)
    yield server.url
    server.stop()


def chunks_right(client, frame, chunk_size):
    from delab.mlops import shop_models

    rows = shop_models.matrix(frame)
    return np.concatenate([client.predict(rows=rows[i : i + chunk_size]) for i in range(0, len(rows), chunk_size)])


def chunks_per_row(client, frame, chunk_size):
    from delab.mlops import shop_models

    return [float(client.predict(rows=row[None, :])[0]) for row in shop_models.matrix(frame)]


def chunks_all_at_once(client, frame, chunk_size):
    from delab.mlops import shop_models

    return client.predict(rows=shop_models.matrix(frame))


def chunks_drop_last(client, frame, chunk_size):
    from delab.mlops import shop_models

    rows = shop_models.matrix(frame)
    full = len(rows) // chunk_size * chunk_size
    return np.concatenate([client.predict(rows=rows[i : i + chunk_size]) for i in range(0, full, chunk_size)])


def chunks_reversed(client, frame, chunk_size):
    return chunks_right(client, frame, chunk_size)[::-1]


def test_chunked_scoring_right(served, order_model):
    checks.chunked_scoring(chunks_right, served, order_model[0])


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (chunks_per_row, "one request per row"),
        (chunks_all_at_once, "chunk_size was 25"),
        (chunks_drop_last, "the last chunk"),
        (chunks_reversed, "in the frame's order"),
    ],
)
def test_chunked_scoring_wrong(served, order_model, answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.chunked_scoring(answer, served, order_model[0])
