"""Checks of lab 06.04 (inference pipelines): online features read from Postgres with input validation, output
post-processing with a fallback, a streaming handler that survives redelivery and poison messages, and batch
scoring of a lakehouse table.

Expected values are recomputed independently: features with the batch SQL of ``shop_models`` over the same
Postgres tables, predictions with the learner's model on those features, the stream's outcome by reading the real
topics back after a run that crashes before committing.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pandas as pd

from delab.grading import WrongAnswer, exercise, learner_code
from delab.mlops import inference, shop_models

# -------------------------------------------------------------------------------- e1: online features


_FEATURE_HINTS = {
    "n_lines": "n_lines counts the order's lines (items), n_units adds up their quantities.",
    "n_units": "n_units adds up the quantities of the order's lines.",
    "units": "units per category: look each product's category up in the products table and add its quantity.",
    "hour": "the hour and the weekend flag come from the order's own timestamp (ISO weekday 6 and 7 are the weekend).",
    "weekend": "the weekend flag is 1.0 for Saturday and Sunday (ISO weekday 6 and 7), else 0.0.",
    "channel": "one flag per channel other than web: channel_app, channel_marketplace.",
    "segment": "the customer's segment is in the customers table: read it at request time, by customer_id.",
}


def _feature_hint(name: str) -> str:
    for prefix, hint in _FEATURE_HINTS.items():
        if name.startswith(prefix):
            return hint
    return "compare your value with the same order's row of shop_models.order_features."


@learner_code("online_features")
def _features(online_features, conn, schema: str, request: dict) -> Any:
    return online_features(conn, schema, request)


def _invalid_requests(valid: dict) -> dict[str, dict]:
    def changed(**fields: Any) -> dict:
        return {**json.loads(json.dumps(valid)), **fields}

    missing = json.loads(json.dumps(valid))
    del missing["items"]
    first = valid["items"][0]
    return {
        "a line with quantity 0": changed(items=[{**first, "quantity": 0}]),
        "a line with a negative quantity": changed(items=[{**first, "quantity": -2}]),
        "a product that does not exist": changed(items=[{"product_id": 99_999, "quantity": 1}]),
        "no items at all": changed(items=[]),
        "an unknown channel ('fax')": changed(channel="fax"),
        "no 'items' field": missing,
    }


@exercise("m06.l04.e1")
def online_features(online_features, conn, schema: str) -> None:
    """online_features(conn, schema, request) reads the catalogue and the customer from Postgres at request time,
    gives the batch features of the same order, and refuses invalid requests with ValueError."""
    requests = inference.order_requests(schema, limit=60)
    expected = inference.expected_features(schema, [r["order_id"] for r in requests])
    for request in requests:
        got = _features(online_features, conn, schema, request)
        if not isinstance(got, dict):
            raise WrongAnswer(
                f"online_features returned {type(got).__name__}; expected a dict of feature name → float.",
                hint="one entry per name of shop_models.FEATURES.",
            )
        missing = [name for name in shop_models.FEATURES if name not in got]
        if missing:
            raise WrongAnswer(
                f"the features of order {request['order_id']} lack {', '.join(missing[:4])}.",
                hint="return every name of shop_models.FEATURES (the model takes all of them, in that order).",
            )
        row = expected.loc[request["order_id"]]
        for name in shop_models.FEATURES:
            try:
                value = float(got[name])
            except (TypeError, ValueError):
                raise WrongAnswer(
                    f"feature {name} of order {request['order_id']} is {got[name]!r}, not a number.",
                    hint="every feature is a float.",
                ) from None
            if not math.isclose(value, float(row[name]), abs_tol=1e-6):
                raise WrongAnswer(
                    f"order {request['order_id']}: {name} is {value:g} at request time but {float(row[name]):g} in "
                    "the batch features the model was trained on (training/serving skew).",
                    hint=_feature_hint(name),
                )
    newcomer = {**requests[0], "customer_id": 10_000_000}  # signed up a minute ago: not in customers yet
    got = _features(online_features, conn, schema, newcomer)
    if any(float(got.get(f"segment_{s}", -1)) != 0.0 for s in ("business", "student")):
        raise WrongAnswer(
            "a customer not in the customers table yet got a segment flag set.",
            hint="the batch features treat a customer without a row as neither business nor student (LEFT JOIN).",
        )
    for what, request in _invalid_requests(requests[0]).items():
        try:
            online_features(conn, schema, request)
        except ValueError:
            continue
        except Exception as error:
            raise WrongAnswer(
                f"a request with {what} raised {type(error).__name__}, not ValueError.",
                hint="validate the request first and raise ValueError with what is wrong: the caller tells bad input "
                "(answer 400, dead-letter it) from a broken service (retry) by the exception's type.",
            ) from None
        raise WrongAnswer(
            f"a request with {what} was accepted: the model would get features it never saw in training.",
            hint="check every field before computing anything: present, known channel, at least one line, positive "
            "quantities, products that exist in the catalogue.",
        )


# ------------------------------------------------------------------------------ e2: post-processing, fallback


class _LinearModel:
    """Predicts row · weights, so the order of the columns matters."""

    def __init__(self, shift: float = 0.0) -> None:
        self.weights = np.arange(1, len(shop_models.FEATURES) + 1, dtype=float)
        self.shift = shift

    def predict(self, rows: Any) -> np.ndarray:
        rows = np.asarray(rows, dtype=float).reshape(-1, len(self.weights))
        return rows @ self.weights + self.shift


class _ConstantModel:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, rows: Any) -> np.ndarray:
        return np.full(len(np.asarray(rows).reshape(-1, len(shop_models.FEATURES))), self.value)


class _BrokenModel:
    def predict(self, rows: Any) -> np.ndarray:
        raise RuntimeError("model file could not be read (simulated)")


def _features_dict(seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    names = list(shop_models.FEATURES)
    values = {name: float(rng.randint(0, 5)) for name in names}
    values["n_units"] = float(rng.randint(1, 9))
    rng.shuffle(names)  # a dict's order is whatever built it: the model's column order is not
    return {name: values[name] for name in names}


def _as_answer(result: Any, case: str) -> tuple[float, str]:
    if not isinstance(result, dict) or "order_value" not in result or "source" not in result:
        raise WrongAnswer(
            f"{case}: expected a dict with order_value and source, got {str(result)[:80]}.",
            hint='return {"order_value": <float>, "source": "model" or "fallback"}.',
        )
    try:
        return float(result["order_value"]), str(result["source"])
    except (TypeError, ValueError):
        raise WrongAnswer(f"{case}: order_value is {result['order_value']!r}, not a number.") from None


@exercise("m06.l04.e2")
def prediction_with_fallback(predict_order_value) -> None:
    """predict_order_value(model, baseline, features) feeds the features in the model's order, rounds to cents,
    never answers a negative value, and falls back to the baseline when the model fails or answers nonsense."""
    baseline = inference.Baseline(value_per_unit=12.5)
    run = learner_code("predict_order_value")(predict_order_value)
    features = _features_dict(1)
    expected = float(_LinearModel().predict([[features[n] for n in shop_models.FEATURES]])[0]) + 0.004
    value, source = _as_answer(run(_LinearModel(shift=0.004), baseline, dict(features)), "a healthy model")
    if source != "model":
        raise WrongAnswer(
            f"a healthy model's answer is labelled {source!r}.",
            hint='label where the value came from: "model" when the model answered, "fallback" otherwise.',
        )
    if not math.isclose(value, round(expected, 2), abs_tol=1e-9):
        if math.isclose(value, expected, abs_tol=1e-9):
            raise WrongAnswer(
                f"the value {value} is not rounded to cents.",
                hint="an order value is money: round it to 2 decimals before answering.",
            )
        raise WrongAnswer(
            f"the model's answer for these features is {round(expected, 2)}, yours {value}: the columns reached the "
            "model in another order than it was trained with.",
            hint="build the row in the order of shop_models.FEATURES, not in the order of the dict's keys.",
        )
    value, source = _as_answer(run(_ConstantModel(-37.2), baseline, dict(features)), "a negative prediction")
    if value < 0:
        raise WrongAnswer(
            f"the model predicted -37.2 and you answered {value}: an order never costs less than nothing.",
            hint="post-process: clip the value to the range that makes sense (≥ 0).",
        )
    if source == "model" and value != 0.0:
        raise WrongAnswer(f"a negative prediction became {value}; clipped it would be 0.0.")
    for case, model in (("a model that raises", _BrokenModel()), ("a model that answers NaN", _ConstantModel(np.nan))):
        try:
            result = predict_order_value(model, baseline, dict(features))
        except Exception as error:
            raise WrongAnswer(
                f"with {case}, your function raised {type(error).__name__}: the request fails instead of falling back.",
                hint="catch the model's failure and answer with the baseline estimate, labelled as a fallback.",
            ) from None
        value, source = _as_answer(result, case)
        fell_back = source == "fallback" and math.isclose(value, baseline(features), abs_tol=0.01)
        if not math.isfinite(value) or not fell_back:
            raise WrongAnswer(
                f"with {case}, you answered {value} labelled {source!r}; expected the baseline's "
                f"{baseline(features)} labelled 'fallback'.",
                hint="a model can fail loudly (an exception) or quietly (NaN, inf): treat both as a failure.",
            )


# ------------------------------------------------------------------------------------- e3: the stream


POISON = b'{"order_id": 1, "items": [{"product_id": 10'  # cut off mid-message


def _expected_values(schema: str, model, order_ids: list[int]) -> dict[int, float]:
    frame = inference.expected_features(schema, order_ids)
    values = model.predict(shop_models.matrix(frame))
    return {int(oid): round(max(float(v), 0.0), 2) for oid, v in zip(frame.index, values, strict=True)}


@exercise("m06.l04.e3")
def streaming_inference(handle, ns, model) -> None:
    """handle(value) predicts each order once, however often it is delivered, and turns unreadable or invalid
    messages into dead letters, so the at-least-once loop neither duplicates, loses nor gets stuck."""
    schema = ns.schema
    source, predictions, dead = ns.topic("check_orders"), ns.topic("check_predictions"), ns.topic("check_dead")
    inference.create_ledger(schema)
    inference.fresh_topics(source, predictions, dead)
    requests = inference.order_requests(schema, limit=12, offset=200)
    invalid = {**requests[-1], "items": [{"product_id": 101, "quantity": 0}]}
    valid = requests[:-1]
    values = [inference.encode(r) for r in valid[:6]] + [POISON] + [inference.encode(r) for r in valid[6:]]
    values.append(inference.encode(invalid))
    inference.publish(source, values)
    group = ns.group("check_scorer")
    runs = []
    for crash_after in (8, None):  # the first run is killed after 8 messages, before committing the 8th
        try:
            runs.append(inference.consume(handle, source, predictions, dead, group, crash_after=crash_after))
        except inference.HandlerFailed as failed:
            raise WrongAnswer(
                f"your handler raised {type(failed.error).__name__} on the message at offset {failed.offset} "
                f"({failed.value[:40]!r}…): a consumer that crashes there reads it again after every restart, and "
                "the partition is stuck behind it.",
                hint="a message you cannot process is data, not an exception: return a DeadLetter for it so the loop "
                "parks it on the dead-letter topic and moves on.",
            ) from None
    published = inference.topic_records(predictions)
    parked = inference.topic_records(dead)
    keys = [json.loads(value).get("order_id") if value.startswith(b"{") else None for _, value, _ in published]
    counts = pd.Series(keys, dtype=object).value_counts()
    twice = counts[counts > 1]
    if len(twice):
        raise WrongAnswer(
            f"{len(twice)} orders were published more than once: the first run crashed before committing, the second "
            "read those messages again and your handler predicted them again.",
            hint="at-least-once delivery means duplicates: make the handler idempotent — remember which orders it "
            "already predicted (the ledger's primary key) and publish nothing for a repeat.",
        )
    if invalid["order_id"] in counts.index:
        raise WrongAnswer(
            "an order with a quantity of 0 was predicted and published.",
            hint="validate before predicting; an invalid order goes to the dead-letter topic.",
        )
    missing = sorted({r["order_id"] for r in valid} - set(counts.index))
    if missing:
        raise WrongAnswer(
            f"{len(missing)} valid orders never reached the predictions topic (e.g. {missing[0]}).",
            hint="publish one prediction per valid order (return a dict with its order_id); skip only repeats.",
        )
    parked_values = sorted(value for _, value, _ in parked)
    if sorted([POISON, inference.encode(invalid)]) != parked_values:
        if not parked_values:
            raise WrongAnswer(
                "nothing reached the dead-letter topic: the unreadable message and the invalid order vanished.",
                hint="skipping a bad message silently loses it; return a DeadLetter so someone can inspect and replay "
                "it.",
            )
        raise WrongAnswer(
            f"the dead-letter topic holds {len(parked_values)} messages; expected exactly the unreadable one and the "
            "invalid order, once each.",
            hint="one DeadLetter per bad message; valid ones (even repeats) never go there.",
        )
    expected = _expected_values(schema, model, [r["order_id"] for r in valid])
    for value in (json.loads(v) for _, v, _ in published):
        want = expected.get(int(value["order_id"]))
        try:
            got = float(value.get("order_value"))
        except (TypeError, ValueError):
            got = math.nan
        if want is None or not math.isclose(got, want, abs_tol=0.011):
            raise WrongAnswer(
                f"order {value['order_id']} was published with order_value {value.get('order_value')!r}; the model "
                f"gives {want} for it.",
                hint="publish the post-processed prediction of predict_order_value for the order's online features.",
            )


# ------------------------------------------------------------------------------ e4: lakehouse batch scoring


def _load_target(catalog, target: str) -> pd.DataFrame:
    try:
        table = catalog.load_table(target)
    except Exception as error:
        raise WrongAnswer(
            f"batch_score did not create {target} ({type(error).__name__}).",
            hint="write the scores to the target table, creating it on the first run.",
        ) from None
    return table.scan().to_pandas()


@exercise("m06.l04.e4")
def lakehouse_batch_scoring(batch_score, catalog, namespace: str, model, features: pd.DataFrame) -> None:
    """batch_score(catalog, source, target, model) scores the source table's current snapshot into the target,
    one row per order with the snapshot it read, and a re-run replaces rather than adds."""
    import pyarrow as pa

    source, target = f"{namespace}.check_features", f"{namespace}.check_scores"
    for name in (source, target):
        if catalog.table_exists(name):
            catalog.drop_table(name)
    columns = ["order_id", *shop_models.FEATURES]
    first, later = features.iloc[:300][columns], features.iloc[300:360][columns]
    table = catalog.create_table(source, schema=pa.Table.from_pandas(first, preserve_index=False).schema)
    table.append(pa.Table.from_pandas(first, preserve_index=False))
    run = learner_code("batch_score")(batch_score)
    for attempt, rows in ((1, first), (2, first), (3, pd.concat([first, later]))):
        if attempt == 3:
            table.append(pa.Table.from_pandas(later, preserve_index=False))
        run(catalog, source, target, model)
        snapshot = catalog.load_table(source).current_snapshot().snapshot_id
        scores = _load_target(catalog, target)
        needed = {"order_id", "order_value", "source_snapshot_id"} - set(scores.columns)
        if needed:
            raise WrongAnswer(
                f"the target table has no column {', '.join(sorted(needed))}.",
                hint="one row per order: order_id, order_value and source_snapshot_id.",
            )
        if len(scores) > len(rows):
            raise WrongAnswer(
                f"after run {attempt} the target holds {len(scores)} rows for {len(rows)} orders: a re-run added its "
                "scores beside the previous ones.",
                hint="make the job idempotent: each run replaces the target's content (overwrite), so running it "
                "twice (a retry, a backfill) leaves one row per order.",
            )
        if len(scores) < len(rows) or set(scores.order_id) != set(rows.order_id):
            raise WrongAnswer(
                f"after run {attempt} the target holds {len(scores)} rows for the source's {len(rows)} orders.",
                hint="score every row of the source's current snapshot.",
            )
        if set(scores.source_snapshot_id.dropna().astype("int64")) != {snapshot}:
            raise WrongAnswer(
                f"source_snapshot_id holds {sorted(set(scores.source_snapshot_id.dropna()))[:3]}; the source's "
                f"current snapshot is {snapshot}.",
                hint="record the id of the source snapshot you read (read that snapshot explicitly): it is what makes "
                "a score traceable and the run reproducible.",
            )
        expected = pd.Series(model.predict(shop_models.matrix(rows)), index=rows.order_id.to_numpy()).clip(lower=0)
        got = scores.set_index("order_id").order_value.astype(float)
        off = (got - expected.reindex(got.index)).abs() > 0.011
        if off.any():
            raise WrongAnswer(
                f"{int(off.sum())} of {len(got)} scores differ from the model's prediction for their order (e.g. order "
                f"{off[off].index[0]}).",
                hint="keep each prediction next to the order_id of the row it was computed from (no re-sorting of one "
                "without the other), clipped at 0 and rounded to cents.",
            )
