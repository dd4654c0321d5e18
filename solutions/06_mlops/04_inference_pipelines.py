# ---
# jupyter:
#   kernelspec: {name: delab-mlops, display_name: "Python 3 (delab-mlops · MLflow, KServe)", language: python}
# ---

# %% [markdown]
# # 06.04 · Inference pipelines: online features, a stream of orders, a lakehouse table — and when things fail
#
# **You will:**
# - compute a request's features **at request time** from Postgres, exactly as the batch features the model was
#   trained on, and refuse invalid requests;
# - post-process predictions (clip, round) and **fall back** to a simple estimate when the model fails;
# - score a **Kafka stream** of orders into a predictions topic, at-least-once, with an idempotent handler and a
#   dead-letter topic for poison messages — and prove it by crashing the consumer;
# - score a **lakehouse table** (Iceberg) in batch, idempotently, recording the snapshot it read.
#
# *Needs:* Kafka, Postgres and the S3 store (started for you). Kernel: `delab-mlops`. About 45 minutes.

# %%
import json
import math
from datetime import datetime

import numpy as np
import pyarrow as pa

from delab import check, clients, lakehouse, stack
from delab.mlops import inference, shop_models

stack.require("kafka", "postgres", "s3")
ns = stack.namespace("m06_l04")  # Postgres schema, Iceberg namespace and topic prefix: m06_l04
shop_models.load_shop(ns.schema, scale=0.5)
conn = clients.postgres()

# %% [markdown]
# ## The model, trained on batch features
# The order-value model of lab 06.01: its features are computed by one SQL query over the shop's tables (the
# *batch* path, `shop_models.features_sql`). A few seconds to train; nothing is downloaded.

# %%
features = shop_models.order_features(ns.schema)
model = shop_models.train_order_value(features, n_estimators=20)
baseline = inference.Baseline.fit(features)  # the fallback: mean value per unit × units
print(f"{len(features)} orders; fallback: {baseline.value_per_unit:.2f} per unit")
features.head(3)

# %% [markdown]
# ## Exercise 1 — online features, validated
# At checkout there is no feature table yet: the service gets a **request** and must compute the same features,
# now. The products' categories and the customer's segment are read from Postgres at request time. If the online
# computation differs from the batch one in any detail, the model sees inputs it was never trained on
# (*training/serving skew*) and nobody gets an error — only worse predictions.

# %%
request = inference.order_requests(ns.schema, limit=1)[0]
request

# %% [markdown]
# Write `online_features(conn, schema, request)` returning a dict with one float per name of
# `shop_models.FEATURES`, equal to what `shop_models.features_sql` computes for the same order. First validate the
# request and raise `ValueError` saying what is wrong when a field is missing, the channel is not one of
# `inference.CHANNELS`, there are no items, a quantity is not positive or a product is not in the catalogue. A
# customer who is not in the customers table yet is valid (neither business nor student).


# %%
### BEGIN SOLUTION
def online_features(conn, schema: str, request: dict) -> dict[str, float]:
    """The model's features for one order request, read from Postgres now; ValueError for an invalid request."""
    for field in ("order_id", "customer_id", "order_ts", "channel", "items"):
        if field not in request:
            raise ValueError(f"missing field {field}")
    if request["channel"] not in inference.CHANNELS:
        raise ValueError(f"unknown channel {request['channel']!r}")
    items = request["items"]
    if not items:
        raise ValueError("an order needs at least one item")
    if any(int(item["quantity"]) <= 0 for item in items):
        raise ValueError("quantities must be positive")
    product_ids = [int(item["product_id"]) for item in items]
    categories = dict(
        conn.execute(
            f"SELECT product_id, category FROM {schema}.products WHERE product_id = ANY(%s)", (product_ids,)
        ).fetchall()
    )
    unknown = set(product_ids) - set(categories)
    if unknown:
        raise ValueError(f"unknown products {sorted(unknown)}")
    found = conn.execute(
        f"SELECT segment FROM {schema}.customers WHERE customer_id = %s", (int(request["customer_id"]),)
    ).fetchone()
    segment = found[0] if found else ""
    placed = datetime.fromisoformat(request["order_ts"])
    row = dict.fromkeys(shop_models.FEATURES, 0.0)
    row["n_lines"] = float(len(items))
    for item in items:
        row["n_units"] += item["quantity"]
        row[f"units_{categories[int(item['product_id'])]}"] += item["quantity"]
    row["hour"] = float(placed.hour)
    row["weekend"] = float(placed.isoweekday() >= 6)
    row["channel_app"] = float(request["channel"] == "app")
    row["channel_marketplace"] = float(request["channel"] == "marketplace")
    row["segment_business"] = float(segment == "business")
    row["segment_student"] = float(segment == "student")
    return {name: float(value) for name, value in row.items()}


### END SOLUTION

# %%
check.m06.online_features(online_features, conn, ns.schema)

# %% [markdown]
# ## Exercise 2 — post-processing and a fallback
# A model answers numbers, not business values: an order value is never negative and is money (cents). And a model
# can fail — loudly (its file is corrupt, an exception) or quietly (NaN from a feature it never saw). The service
# must still answer: with a simple, robust estimate, labelled so that monitoring can count fallbacks.
#
# Write `predict_order_value(model, baseline, features)` for a features dict (keys in any order) returning
# `{"order_value": ..., "source": "model"}` — the model's prediction for the row in `shop_models.FEATURES` order,
# clipped at 0 and rounded to cents — or `{"order_value": baseline(features), "source": "fallback"}` when the model
# raises or answers something that is not a finite number.


# %%
### BEGIN SOLUTION
def predict_order_value(model, baseline, features: dict[str, float]) -> dict:
    """The post-processed prediction for one order, or the baseline's estimate when the model fails."""
    row = np.array([[features[name] for name in shop_models.FEATURES]], dtype=np.float32)
    try:
        value = float(model.predict(row)[0])
    except Exception:
        value = math.nan
    if not math.isfinite(value):
        return {"order_value": baseline(features), "source": "fallback"}
    return {"order_value": round(max(value, 0.0), 2), "source": "model"}


### END SOLUTION

# %%
check.m06.prediction_with_fallback(predict_order_value)
predict_order_value(model, baseline, online_features(conn, ns.schema, request))

# %% [markdown]
# ## Streaming inference
# Orders arrive on a Kafka topic; each gets a prediction on a predictions topic. `inference.consume` is the loop:
# it reads from the consumer group's committed offset, calls your **handler** with each message's bytes, publishes
# what it returns (a dict → predictions topic, keyed by `order_id`; an `inference.DeadLetter` → the dead-letter
# topic with the reason in a header; `None` → nothing), flushes and only then commits the offset.
#
# That is **at-least-once**: a consumer killed after publishing but before committing reads the same messages again
# when it restarts. Two consequences for the handler:
# - it must be **idempotent**: a repeat must not publish a second prediction. The ledger below (one row per order
#   predicted, `order_id` its primary key) remembers what was done; `INSERT … ON CONFLICT DO NOTHING RETURNING`
#   tells in one statement whether this order is new;
# - a **poison message** (unreadable, or invalid) must not crash it: a consumer that crashes on a message gets the
#   same message after every restart and the partition is stuck. It goes to a dead-letter topic instead.

# %%
ledger = inference.create_ledger(ns.schema)  # m06_l04.predicted_orders
orders_topic, predictions_topic, dead_topic = ns.topic("orders"), ns.topic("predictions"), ns.topic("dead_letters")
inference.fresh_topics(orders_topic, predictions_topic, dead_topic)
ledger

# %% [markdown]
# ## Exercise 3 — an idempotent handler with a dead-letter path
# Write `handle(value)` for a message's bytes: parse the JSON request and compute its features (your
# `online_features`); if either fails with `ValueError` (a JSON decoding error is one), return
# `inference.DeadLetter(reason)`. Otherwise predict with `predict_order_value`, record the order in the ledger
# (`order_id`, `order_value`, `source`) unless it is already there, and return
# `{"order_id": ..., "order_value": ..., "source": ...}` — or `None` when the order was already predicted.
#
# The check publishes orders with a poison message and an invalid order among them, kills the loop after eight
# messages (before it commits), restarts it, and reads both topics back.


# %%
### BEGIN SOLUTION
def handle(value: bytes):
    """One message of the orders topic: a prediction to publish, a DeadLetter, or None for a repeat."""
    try:
        request = json.loads(value)
        row = online_features(conn, ns.schema, request)
    except ValueError as error:
        return inference.DeadLetter(f"{type(error).__name__}: {error}")
    prediction = predict_order_value(model, baseline, row)
    claimed = conn.execute(
        f"INSERT INTO {ledger} (order_id, order_value, source) VALUES (%s, %s, %s) "
        "ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
        (int(request["order_id"]), prediction["order_value"], prediction["source"]),
    ).fetchone()
    if claimed is None:
        return None
    return {"order_id": int(request["order_id"]), **prediction}


### END SOLUTION

# %%
check.m06.streaming_inference(handle, ns, model)

# %% [markdown]
# Run it yourself on the lab's topics: a batch of orders with one duplicate delivery and one poison message, a
# consumer killed before its first commit, then restarted.

# %%
inference.create_ledger(ns.schema)
inference.fresh_topics(orders_topic, predictions_topic, dead_topic)
requests = inference.order_requests(ns.schema, limit=10, offset=500)
messages = [inference.encode(r) for r in requests] + [b"\x00\x01 not json", inference.encode(requests[0])]
inference.publish(orders_topic, messages)
first = inference.consume(handle, orders_topic, predictions_topic, dead_topic, ns.group("scorer"), crash_after=5)
second = inference.consume(handle, orders_topic, predictions_topic, dead_topic, ns.group("scorer"))
published = inference.topic_records(predictions_topic)
parked = inference.topic_records(dead_topic)
print(f"run 1: read {first.read}, crashed={first.crashed}, committed {first.committed_offset}")
print(f"run 2: read {second.read} (from the last commit), published {second.published}, skipped {second.skipped}")
print(f"{len(messages)} messages → {len(published)} predictions, {len(parked)} dead letter(s):", parked[0][2])

# %% [markdown]
# ## Batch scoring of a lakehouse table
# Nightly, every order of a table is re-scored: no server, no stream — read the table, predict in bulk, write the
# scores. The features live in an Iceberg table of the lakehouse (the catalog of module 04, in the stack's Postgres
# and S3). Every write to it is a **snapshot**: recording the snapshot id you scored makes each score traceable to
# the exact data it came from, and lets you score that same data again later.

# %%
catalog = lakehouse.catalog()
lakehouse.fresh_namespace(catalog, ns.schema)
columns = ["order_id", *shop_models.FEATURES]
source_rows = pa.Table.from_pandas(features[columns], preserve_index=False)
source_table = catalog.create_table(f"{ns.schema}.order_features", schema=source_rows.schema)
source_table.append(source_rows)
print(source_table.name(), "snapshot", source_table.current_snapshot().snapshot_id, f"{len(source_rows)} rows")

# %% [markdown]
# ## Exercise 4 — idempotent batch scoring with the snapshot id
# Write `batch_score(catalog, source, target, model)`: read the source table's **current snapshot**, predict every
# row (clipped at 0, rounded to cents), and write the target table with one row per order — `order_id`,
# `order_value`, `source_snapshot_id` — creating the table on the first run. Running it twice must leave one row
# per order (a retry, a backfill), not two.


# %%
### BEGIN SOLUTION
def batch_score(catalog, source: str, target: str, model) -> None:
    """Score the source table's current snapshot into target (replacing what an earlier run wrote)."""
    table = catalog.load_table(source)
    snapshot_id = table.current_snapshot().snapshot_id
    rows = table.scan(snapshot_id=snapshot_id).to_pandas()
    values = np.clip(model.predict(shop_models.matrix(rows)), 0, None).round(2)
    scores = pa.table(
        {
            "order_id": pa.array(rows.order_id, pa.int64()),
            "order_value": pa.array(values, pa.float64()),
            "source_snapshot_id": pa.array(np.full(len(rows), snapshot_id), pa.int64()),
        }
    )
    if catalog.table_exists(target):
        catalog.load_table(target).overwrite(scores)
    else:
        catalog.create_table(target, schema=scores.schema).append(scores)


### END SOLUTION

# %%
check.m06.lakehouse_batch_scoring(batch_score, catalog, ns.schema, model, features)

# %%
batch_score(catalog, f"{ns.schema}.order_features", f"{ns.schema}.order_scores", model)
scores = catalog.load_table(f"{ns.schema}.order_scores").scan().to_pandas()
print(f"{len(scores)} scores of snapshot {scores.source_snapshot_id.iloc[0]}")
scores.describe().loc[["count", "mean", "min", "max"], ["order_value"]]

# %%
conn.close()

# %% [markdown]
# ## Recap
# - Online features must be computed **exactly** like the batch features the model learned from; reading reference
#   data (catalogue, customer) at request time keeps them fresh. Validate the request first and say what is wrong.
# - Post-process to business values (clip, round) and keep a **fallback** that cannot fail; label its answers so
#   monitoring can count them (lab 06.05).
# - A stream consumer is at-least-once: duplicates will come, so the handler is **idempotent** (a ledger keyed by
#   the order); a message it cannot process is parked on a **dead-letter topic**, never allowed to block the
#   partition.
# - Batch scoring reads one **snapshot** of a lakehouse table, records its id, and overwrites its output, so a
#   re-run is harmless and every score is traceable.
#
# **Going further:** a feature store (Feast, Tecton, Databricks Feature Store) serves the online features from a
# low-latency store and the batch ones from the lakehouse from *one* definition, which removes the skew by
# construction. The ledger write and the Kafka publish here are two systems: Kafka transactions (lab 03.07) or an
# outbox table make them atomic. At scale, streaming inference runs inside Flink (a model in a `ProcessFunction`,
# or Flink ML) and batch scoring in Spark with `mapInPandas`; managed services (SageMaker Batch Transform, Vertex
# AI batch prediction) run the same job on a schedule.
