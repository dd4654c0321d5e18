"""Checks of lab 06.04 (inference pipelines) against the real stack: the right answer passes, realistic wrong
answers are rejected with their own message, the placeholder is not solved."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from delab import clients, lakehouse, stack
from delab.checks.m06 import l04_inference as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.mlops import inference, shop_models

pytestmark = pytest.mark.stack
NS = stack.namespace("m06_l04_tests")


@pytest.fixture(scope="module")
def shop():
    stack.require("kafka", "postgres", "s3", quiet=True)
    shop_models.load_shop(NS.schema, scale=0.25)
    frame = shop_models.order_features(NS.schema)
    model = shop_models.train_order_value(frame, n_estimators=5, max_depth=5)
    with clients.postgres() as conn:
        yield conn, frame, model


# ------------------------------------------------------------------------------------------- e1


def features_right(conn, schema, request, *, segment_lookup=True, units_as_lines=False, validate=True):
    if validate:
        for field in ("order_id", "customer_id", "order_ts", "channel", "items"):
            if field not in request:
                raise ValueError(field)
        if request["channel"] not in inference.CHANNELS or not request["items"]:
            raise ValueError("channel or items")
        if any(item["quantity"] <= 0 for item in request["items"]):
            raise ValueError("quantity")
    ids = [item["product_id"] for item in request["items"]]
    categories = dict(
        conn.execute(f"SELECT product_id, category FROM {schema}.products WHERE product_id = ANY(%s)", (ids,))
    )
    if validate and set(ids) - set(categories):
        raise ValueError("unknown product")
    segment = ""
    if segment_lookup:
        found = conn.execute(
            f"SELECT segment FROM {schema}.customers WHERE customer_id = %s", (request["customer_id"],)
        ).fetchone()
        segment = found[0] if found else ""
    placed = datetime.fromisoformat(request["order_ts"])
    row = dict.fromkeys(shop_models.FEATURES, 0.0)
    row["n_lines"] = len(request["items"])
    for item in request["items"]:
        row["n_units"] += 1 if units_as_lines else item["quantity"]
        row[f"units_{categories.get(item['product_id'], 'books')}"] += item["quantity"]
    row["hour"], row["weekend"] = placed.hour, float(placed.isoweekday() >= 6)
    row["channel_app"] = float(request["channel"] == "app")
    row["channel_marketplace"] = float(request["channel"] == "marketplace")
    row["segment_business"], row["segment_student"] = float(segment == "business"), float(segment == "student")
    return row


def features_customer_required(conn, schema, request):
    found = conn.execute(f"SELECT 1 FROM {schema}.customers WHERE customer_id = %s", (request["customer_id"],))
    if found.fetchone() is None:
        raise ValueError("unknown customer")
    return features_right(conn, schema, request)


def test_online_features_right(shop):
    checks.online_features(features_right, shop[0], NS.schema)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda c, s, r: features_right(c, s, r, segment_lookup=False), "segment_business"),
        (lambda c, s, r: features_right(c, s, r, units_as_lines=True), "n_units is"),
        (lambda c, s, r: features_right(c, s, r, validate=False), "was accepted"),
        (features_customer_required, "online_features failed with ValueError"),
        (lambda c, s, r: list(features_right(c, s, r).values()), "expected a dict"),
    ],
)
def test_online_features_wrong(shop, answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.online_features(answer, shop[0], NS.schema)


def test_online_features_validation_error_type(shop):
    def keyerror(conn, schema, request):
        if "items" not in request:
            raise KeyError("items")
        return features_right(conn, schema, request)

    with pytest.raises(WrongAnswer, match="raised KeyError, not ValueError"):
        checks.online_features(keyerror, shop[0], NS.schema)


def test_online_features_placeholder(shop):
    def todo(conn, schema, request):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.online_features(todo, shop[0], NS.schema)


# ------------------------------------------------------------------------------------------- e2


def predict_right(model, baseline, features, *, clip=True, rounding=True, catch_nan=True, keys_order=False):
    names = list(features) if keys_order else shop_models.FEATURES
    row = np.array([[features[name] for name in names]], dtype=np.float64)
    failed = False
    try:
        value = float(model.predict(row)[0])
    except Exception:
        failed, value = True, math.nan
    if failed or (catch_nan and not math.isfinite(value)):
        return {"order_value": baseline(features), "source": "fallback"}
    value = max(value, 0.0) if clip else value
    return {"order_value": round(value, 2) if rounding else value, "source": "model"}


def predict_no_catch(model, baseline, features):
    row = np.array([[features[name] for name in shop_models.FEATURES]])
    return {"order_value": round(max(float(model.predict(row)[0]), 0.0), 2), "source": "model"}


def test_prediction_with_fallback_right():
    checks.prediction_with_fallback(predict_right)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda m, b, f: predict_right(m, b, f, clip=False), "less than nothing"),
        (lambda m, b, f: predict_right(m, b, f, rounding=False), "not rounded to cents"),
        (lambda m, b, f: predict_right(m, b, f, catch_nan=False), "answers NaN"),
        (lambda m, b, f: predict_right(m, b, f, keys_order=True), "another order"),
        (predict_no_catch, "raised RuntimeError"),
    ],
)
def test_prediction_with_fallback_wrong(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.prediction_with_fallback(answer)


def test_prediction_with_fallback_placeholder():
    def todo(model, baseline, features):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.prediction_with_fallback(todo)


# ------------------------------------------------------------------------------------------- e3


def make_handler(conn, model, *, dedup=True, poison="dead"):
    baseline = inference.Baseline(10.0)
    ledger = f"{NS.schema}.{inference.LEDGER}"

    def handle(value):
        try:
            request = json.loads(value)
            row = features_right(conn, NS.schema, request)
        except ValueError as error:
            if poison == "raise":
                raise
            return None if poison == "drop" else inference.DeadLetter(str(error))
        prediction = predict_right(model, baseline, row)
        if dedup:
            claimed = conn.execute(
                f"INSERT INTO {ledger} (order_id, order_value, source) VALUES (%s, %s, %s) "
                "ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
                (request["order_id"], prediction["order_value"], prediction["source"]),
            ).fetchone()
            if claimed is None:
                return None
        return {"order_id": request["order_id"], **prediction}

    return handle


def test_streaming_right(shop):
    conn, _, model = shop
    checks.streaming_inference(make_handler(conn, model), NS, model)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dedup": False}, "published more than once"),
        ({"poison": "raise"}, "partition is stuck"),
        ({"poison": "drop"}, "nothing reached the dead-letter topic"),
    ],
)
def test_streaming_wrong(shop, options, message):
    conn, _, model = shop
    with pytest.raises(WrongAnswer, match=message):
        checks.streaming_inference(make_handler(conn, model, **options), NS, model)


def test_streaming_placeholder(shop):
    def todo(value):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.streaming_inference(todo, NS, shop[2])


# ------------------------------------------------------------------------------------------- e4


def make_batch_score(*, mode="overwrite", snapshot="source", sort_values=False):
    def batch_score(catalog, source, target, model):
        table = catalog.load_table(source)
        snapshot_id = table.current_snapshot().snapshot_id
        rows = table.scan(snapshot_id=snapshot_id).to_pandas()
        values = np.clip(model.predict(shop_models.matrix(rows)), 0, None).round(2)
        if sort_values:
            values = np.sort(values)
        scores = pa.table(
            {
                "order_id": pa.array(rows.order_id, pa.int64()),
                "order_value": pa.array(values, pa.float64()),
                "source_snapshot_id": pa.array(np.full(len(rows), snapshot_id), pa.int64()),
            }
        )
        if catalog.table_exists(target):
            out = catalog.load_table(target)
            out.overwrite(scores) if mode == "overwrite" else out.append(scores)
        else:
            out = catalog.create_table(target, schema=scores.schema)
            out.append(scores)
        if snapshot == "target":  # the id of what was just written, not of what was read
            written = catalog.load_table(target)
            ids = np.full(len(rows), written.current_snapshot().snapshot_id)
            written.overwrite(scores.set_column(2, "source_snapshot_id", pa.array(ids, pa.int64())))

    return batch_score


@pytest.fixture(scope="module")
def lake(shop):
    catalog = lakehouse.catalog()
    lakehouse.fresh_namespace(catalog, NS.schema)
    return catalog


def test_batch_scoring_right(shop, lake):
    checks.lakehouse_batch_scoring(make_batch_score(), lake, NS.schema, shop[2], shop[1])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "append"}, "added its scores beside"),
        ({"snapshot": "target"}, "current snapshot is"),
        ({"sort_values": True}, "differ from the model's prediction"),
    ],
)
def test_batch_scoring_wrong(shop, lake, options, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.lakehouse_batch_scoring(make_batch_score(**options), lake, NS.schema, shop[2], shop[1])


def test_batch_scoring_placeholder(shop, lake):
    def todo(catalog, source, target, model):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.lakehouse_batch_scoring(todo, lake, NS.schema, shop[2], shop[1])
