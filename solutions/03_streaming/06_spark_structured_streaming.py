# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 03.06 · Spark Structured Streaming: triggers, checkpoints, restarts
#
# **You will:**
# - read a Kafka topic with Spark — as a table (batch) and as an unbounded table (stream);
# - run micro-batches on a **processing-time** trigger and a whole backlog with **availableNow**;
# - run a **continuous** query (millisecond latency, map-like only) and see what it refuses;
# - stop a query and restart it from its **checkpoint**: no record lost, none written twice;
# - crash a query after it wrote a batch and make the sink **idempotent**, so the replay changes nothing.
#
# *Needs:* Kafka and Postgres (started for you); Spark runs inside this kernel (`local[2]`, ~1 GB). The Kafka
# source is not part of pyspark: `make setup` fetched it from Maven into the stack's build folder, and the session
# loads it from there (`spark.jars`) — nothing is downloaded now. About 35 minutes.

# %%
import json
import shutil
import time

import matplotlib.pyplot as plt
import pandas as pd
from pyspark.sql import functions as F

from delab import check, clients, config, stack
from delab.checks.m03.l06_spark import prepare_sink
from delab.streaming import kafka_basics as kb
from delab.streaming import spark as lab_spark

stack.require("kafka", "postgres")
ns = stack.namespace("m03_l06")
kb.drop_topics(f"{ns.prefix}.")  # an earlier run's topics: start clean
work = config.lab_dir("m03_l06") / "notebook"  # checkpoints and Parquet output of this lab
shutil.rmtree(work, ignore_errors=True)  # an earlier run's checkpoints point at offsets of deleted topics
spark = lab_spark.session("m03_l06")  # local[2], 127.0.0.1 only, no web UI, 2 shuffle partitions
orders_topic = kb.create_topic(ns.topic("orders"), partitions=3)
kb.produce_json(orders_topic, lab_spark.order_events(limit=400), key="order_id")
spark.version

# %% [markdown]
# ## Kafka as a table
# The Kafka source gives one row per record with Kafka's own columns; the payload is the binary `value`.

# %%
raw = spark.read.format("kafka").options(**lab_spark.kafka_options(orders_topic)).load()
raw.printSchema()
raw.selectExpr("partition", "offset", "CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value").show(3, 80)

# %% [markdown]
# ### Exercise 1 — parse the orders
# Write `parse_orders(raw)`: from a Kafka DataFrame, return one row per record with the columns `order_id`
# (bigint), `customer_id` (bigint), `channel` (string), `amount` (double) and `order_ts` (timestamp; the JSON
# holds ISO text such as `2026-03-01T14:14:17`). Use `F.from_json` with a DDL schema string, and only DataFrame
# transformations, so the same function works on a stream.


# %%
### BEGIN SOLUTION
def parse_orders(raw):
    """Kafka records -> typed order columns (works on batch and streaming DataFrames)."""
    schema = "order_id BIGINT, customer_id BIGINT, channel STRING, amount DOUBLE, order_ts STRING"
    order = F.from_json(F.col("value").cast("string"), schema).alias("order")
    return raw.select(order).select(
        "order.order_id",
        "order.customer_id",
        "order.channel",
        "order.amount",
        F.to_timestamp("order.order_ts").alias("order_ts"),
    )


### END SOLUTION


# %%
check.m03.parsed_orders(parse_orders)

# %% [markdown]
# ## Micro-batches on a processing-time trigger
# `spark.readStream` makes the same source unbounded. Spark runs the query as a series of small batch jobs:
# every `processingTime` interval it asks Kafka for the new offsets, processes that slice, and commits. Below,
# revenue per channel (an aggregation: its running totals are *state*, kept between batches) goes to an
# in-memory table while a producer adds orders in three bursts.

# %%
stream = parse_orders(spark.readStream.format("kafka").options(**lab_spark.kafka_options(orders_topic)).load())
revenue = stream.groupBy("channel").agg(F.count("*").alias("orders"), F.round(F.sum("amount"), 2).alias("revenue"))
live = (
    revenue.writeStream.format("memory")
    .queryName("revenue_by_channel")
    .outputMode("complete")
    .option("checkpointLocation", str(work / "checkpoints" / "revenue"))
    .trigger(processingTime="1 second")
    .start()
)
for burst in range(3):
    time.sleep(1)
    kb.produce_json(orders_topic, lab_spark.order_events(start=400 + burst * 50, limit=50), key="order_id")
lab_spark.wait_until(lambda: spark.table("revenue_by_channel").agg(F.sum("orders")).first()[0] == 550)
live.stop()
micro_batches = lab_spark.progress_table(live)
micro_batches

# %%
spark.table("revenue_by_channel").orderBy("channel").show()

# %% [markdown]
# The first batch took the 400 orders already there; later ones took each burst as it came (or nothing: an idle
# trigger still plans a batch). The latency of a record is up to one trigger interval plus the batch's duration —
# seconds, not milliseconds. A batch's rows/s shows the fixed cost of planning and committing each batch.

# %%
fig, ax = plt.subplots(figsize=(6, 2.5))
micro_batches.plot.bar(x="batch", y="input rows", ax=ax, legend=False)
ax.set_ylabel("records in the batch")
ax.set_title("micro-batches of a processingTime='1 second' query")
plt.show()

# %% [markdown]
# ## A backlog with availableNow
# `trigger(availableNow=True)` processes what is in the topic **when the query starts** — in as many micro-batches
# as the source's limits (`maxOffsetsPerTrigger`) require — then stops. It is the streaming engine used as an
# incremental batch job: run it every hour from a scheduler and each run picks up exactly where the checkpoint
# says the last one stopped. (`trigger(once=True)` did the same in one single batch, ignoring those limits; it is
# deprecated.)
#
# ### Exercise 2 — a backfill query
# Write `start_backfill(stream, path, checkpoint)`: start and **return** a query that writes `stream` as Parquet
# files to `path`, checkpoints to `checkpoint`, processes everything available in micro-batches and then stops.


# %%
### BEGIN SOLUTION
def start_backfill(stream, path: str, checkpoint: str):
    """Everything available now, in rate-limited micro-batches, into Parquet; then stop."""
    return (
        stream.writeStream.format("parquet")
        .option("path", path)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )


### END SOLUTION


# %%
check.m03.backfill_query(start_backfill)

# %% [markdown]
# ## Checkpoints: stop, restart, nothing lost, nothing twice
# A query's checkpoint folder holds its progress: `offsets/N` is written **before** batch N runs (the Kafka
# offsets it will read — a write-ahead log), `commits/N` after the sink has it, plus the state of aggregations.
# Restarted with the same checkpoint, a query continues after the last committed batch; a batch with an offsets
# file but no commit is run again with exactly the same offsets.
#
# The Parquet sink adds its own log (`_spark_metadata`) listing the files of each committed batch, and readers
# trust only those: a batch re-run after a crash cannot show up twice. Here the backfill runs on the orders
# topic, more orders arrive while no query runs, and the same query is started again from its checkpoint:

# %%
orders_path, orders_checkpoint = work / "orders_parquet", work / "checkpoints" / "orders_parquet"


def run_backfill() -> int:
    source = spark.readStream.format("kafka").options(**lab_spark.kafka_options(orders_topic, maxOffsetsPerTrigger=200))
    query = start_backfill(parse_orders(source.load()), str(orders_path), str(orders_checkpoint))
    query.awaitTermination()
    return sum(p["numInputRows"] for p in query.recentProgress)


first_run = run_backfill()
kb.produce_json(orders_topic, lab_spark.order_events(start=550, limit=50), key="order_id")  # while stopped
second_run = run_backfill()
written = spark.read.parquet(str(orders_path))
pd.DataFrame(
    {
        "records read by run 1": [first_run],
        "records read by run 2 (from the checkpoint)": [second_run],
        "records in the topic": [sum(kb.end_offsets(orders_topic).values())],
        "rows in Parquet": [written.count()],
        "distinct orders": [written.select("order_id").distinct().count()],
    }
)

# %%
[name for name in lab_spark.checkpoint_tree(orders_checkpoint) if not name.endswith(".crc")]

# %% [markdown]
# ## Exactly-once into a database: an idempotent sink
# `foreachBatch(fn)` hands each micro-batch to your function as an ordinary DataFrame, with its `batch_id`. After
# a crash between your write and Spark's commit, Spark calls you again with the **same batch id and the same
# records**. Spark guarantees exactly-once *processing*; the end result is exactly-once only if writing a batch
# twice changes nothing — an **idempotent** write.
#
# ### Exercise 3 — an idempotent Postgres sink
# Write `write_batch(batch_df, batch_id)` that stores the orders of a batch in `m03_l06.orders_sink`
# (`order_id` primary key, `channel`, `amount`, `batch_id`) so that a replayed batch changes nothing. Collect the
# batch to the driver (`batch_df.select(...).collect()` — batches here are small) and write with
# `clients.postgres()` (psycopg 3: `conn.cursor().executemany(sql, rows)`), in one transaction.
#
# The check streams 350 new orders through your function, 100 per batch, **crashes the query right after your
# function wrote batch 1**, restarts it from the checkpoint — with your function as a freshly started process
# would have it, so nothing kept in memory survives the crash — and then counts what the table holds.


# %%
### BEGIN SOLUTION
def write_batch(batch_df, batch_id: int) -> None:
    """Upsert a micro-batch: replaying the same batch (same ids, same values) leaves the table unchanged."""
    rows = [
        (r.order_id, r.channel, r.amount, batch_id) for r in batch_df.select("order_id", "channel", "amount").collect()
    ]
    with clients.postgres(autocommit=False) as conn:
        conn.cursor().executemany(
            "INSERT INTO m03_l06.orders_sink (order_id, channel, amount, batch_id) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (order_id) DO UPDATE SET channel = EXCLUDED.channel, amount = EXCLUDED.amount, "
            "batch_id = EXCLUDED.batch_id",
            rows,
        )
        conn.commit()


### END SOLUTION


# %%
prepare_sink()  # the empty sink table
check.m03.idempotent_sink(write_batch)

# %% [markdown]
# What happened, batch by batch: batch 1 reached your function twice — once before the crash, once after the
# restart — and the table still holds each order once.

# %%
with clients.postgres() as pg:
    per_batch = pg.execute(
        "SELECT batch_id, count(*) AS orders FROM m03_l06.orders_sink GROUP BY 1 ORDER BY 1"
    ).fetchall()
pd.DataFrame(per_batch, columns=["batch_id", "orders"])

# %% [markdown]
# ## Continuous processing
# For map-like queries (select, filter, cast — no aggregation, no join, no dedup) Spark has a second engine:
# `trigger(continuous="1 second")` starts **one long-running task per input partition** that reads and writes
# record by record; only the checkpoint happens every second (an *epoch*). Latency drops from seconds to
# milliseconds; the guarantee is at-least-once; sources are Kafka and `rate`, sinks Kafka, memory and console.
# Every task must run at the same time, so it needs a core per partition: on `local[2]` a 3-partition topic
# would just wait forever for a third core. Hence a 1-partition topic here: big orders, from Kafka to Kafka,
# timed end to end with the records' Kafka timestamps.

# %%
live_topic = kb.create_topic(ns.topic("orders_live"), partitions=1)
big_orders_topic = kb.create_topic(ns.topic("big_orders"), partitions=1)
live_source = spark.readStream.format("kafka").options(**lab_spark.kafka_options(live_topic)).load()
big_orders = (
    parse_orders(live_source)
    .where("amount >= 500")
    .select(F.col("order_id").cast("string").alias("key"), F.to_json(F.struct("*")).alias("value"))
)
continuous = (
    big_orders.writeStream.format("kafka")
    .option("kafka.bootstrap.servers", config.kafka().bootstrap_servers)
    .option("topic", big_orders_topic)
    .option("checkpointLocation", str(work / "checkpoints" / "big_orders"))
    .trigger(continuous="1 second")
    .start()
)
big = [e for e in lab_spark.order_events(start=1000, limit=400) if e["amount"] >= 500][:21]
kb.produce_json(live_topic, big[:1], key="order_id")  # the first one shows the tasks are up
lab_spark.wait_until(lambda: sum(kb.end_offsets(big_orders_topic).values()) >= 1, timeout=60)
producer = kb.producer()
for event in big[1:]:  # then one every 50 ms, as they would come
    producer.send(live_topic, key=str(event["order_id"]).encode(), value=json.dumps(event).encode())
    producer.flush()
    time.sleep(0.05)
producer.close()
lab_spark.wait_until(lambda: sum(kb.end_offsets(big_orders_topic).values()) >= len(big), timeout=30)
continuous.stop()
sent_at = kb.read_topic(live_topic).set_index("key")["timestamp"]
arrived = kb.read_topic(big_orders_topic).set_index("key")["timestamp"].iloc[1:]
latency_ms = (arrived - sent_at.reindex(arrived.index)).describe(percentiles=[0.5, 0.9])
latency_ms[["count", "50%", "90%", "max"]].rename("end-to-end latency, ms (continuous)")

# %% [markdown]
# Compare with the micro-batch latency above (a 1-second trigger: up to ~1 s plus the batch). Why not always
# continuous? Because it cannot keep state across records — Spark refuses the aggregation from the first part:

# %%
try:
    revenue.writeStream.format("memory").queryName("nope").outputMode("complete").trigger(continuous="1 second").start()
except Exception as error:  # AnalysisException
    print(str(error).splitlines()[0][:200])

# %% [markdown]
# ## Clean up
# Stop the session's queries and the session (the JVM stays for this kernel; restarting the kernel frees it).

# %%
for query in spark.streams.active:
    query.stop()
spark.stop()

# %% [markdown]
# ## Recap
# - Structured Streaming treats a stream as an unbounded table; the same DataFrame code runs in batch and stream.
# - Triggers: `processingTime` (micro-batches on a schedule), `availableNow` (the backlog, rate-limited, then
#   stop), `continuous` (ms latency, map-like queries only, at-least-once).
# - The checkpoint (offsets written before a batch, commits after) lets a restarted query resume exactly where it
#   stopped and replay an uncommitted batch with the same offsets.
# - End-to-end exactly-once = replayable source + checkpoint + idempotent (or transactional) sink: the file sink's
#   metadata log, or a `foreachBatch` upsert keyed on the record.
#
# **Going further**
# - **Databricks** runs the same code (plus Auto Loader and Delta Lake sinks); **Amazon EMR** / **Dataproc** and
#   **Spark on Kubernetes** (the Kubeflow `spark-operator`, `SparkApplication` resources) run it on clusters;
#   checkpoints then live on S3/ADLS/GCS — try `s3a://` with the stack's object store once `hadoop-aws` is added.
# - Point the Kafka options at managed Kafka (`DELAB_STACK=external`, `DELAB_KAFKA_BOOTSTRAP`, plus
#   `kafka.security.protocol`/`kafka.sasl.*` options).
# - Large state: `spark.sql.streaming.stateStore.providerClass` = RocksDB; watermarks bound it (lab 03.03 does
#   the same in Flink).
