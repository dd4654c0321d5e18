# ---
# jupyter:
#   kernelspec: {name: delab-flink, display_name: "Python 3 (delab-flink · PyFlink)", language: python}
# ---

# %% [markdown]
# # 03.07 · Backpressure, transactions and an exactly-once job crashed mid-run
#
# **You will:**
# - measure what producer batching (`linger.ms`, `batch.size`) and consumer flow control do to throughput and
#   latency, in a table you produce;
# - watch **backpressure** build up behind a slow operator in Flink, through its REST metrics;
# - publish a batch in a Kafka **transaction** and see an aborted one stay invisible to `read_committed` readers;
# - run a Flink job with checkpoints and an **exactly-once** Kafka sink, kill its TaskManager mid-run, and prove
#   that nothing was lost or duplicated.
#
# *Needs:* Kafka, Flink and the object store (started for you). Kernel: `delab-flink`. About 40 minutes. The last
# part stops the shared Flink TaskManager: it waits until no other notebook uses Flink.

# %%
import time

import pandas as pd
from confluent_kafka import Producer

from delab import check, config, datasets, stack
from delab.streaming import exactly_once, flink_jobs

stack.require("kafka", "flink", "s3")  # checkpoints go to the object store
ns = stack.namespace("m03_l07")
flink_jobs.cancel_jobs(ns.prefix)  # jobs an earlier run of this notebook may have left on the shared cluster
topics = flink_jobs.fresh_topics(ns, ["bench", "consume", "orders_txn", "payments", "ledger", "skewed"])
bootstrap = config.kafka().bootstrap_servers
payments = datasets.shop(seed=7, scale=0.05).payments

# %% [markdown]
# ## Producer buffering and batching
# `producer.produce()` only puts a message into the client's buffer; a background thread groups messages per
# partition into **batches** and sends them. Two settings trade latency for throughput:
# - `linger.ms` — how long a batch may wait for more messages (librdkafka's default is 5 ms);
# - `batch.size` — the most bytes in one batch (a full batch leaves at once).
#
# `acks` says how many replicas must have the batch before the broker answers, and `enable.idempotence` (on by
# default in librdkafka ≥ 2) numbers batches so a retry never writes a message twice.
#
# ### Exercise 1 — measure a producer
# Write `measure_producer(topic, n, settings, rate=None)`: send `n` small JSON messages to `topic` with a
# confluent-kafka `Producer` configured with `bootstrap.servers` plus `settings`, as fast as possible — or, when
# `rate` is given, paced at `rate` messages per second (sleep until message *i* is due at `i / rate` seconds).
# Record each message's latency — from `produce()` to its **delivery report** (`on_delivery=` callback; reports
# reach it when you call `producer.poll(0)`, so poll after each `produce()`) — and wait for all of them
# (`flush()`). Return `{"messages/s": ..., "p50 ms": ..., "p99 ms": ...}`
# (`exactly_once.latency_summary(latencies_ms)` computes the two percentiles).


# %%
### BEGIN SOLUTION
def measure_producer(topic: str, n: int, settings: dict, rate: float | None = None) -> dict:
    """Throughput and delivery latency of n messages with these producer settings."""
    producer = Producer({"bootstrap.servers": bootstrap, **settings})
    latencies_ms = []

    def delivered(error, message, sent_at):
        if error is None:
            latencies_ms.append((time.perf_counter() - sent_at) * 1000)

    started = time.perf_counter()
    for i in range(n):
        if rate:
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))
        sent_at = time.perf_counter()
        producer.produce(topic, f'{{"seq": {i}}}', on_delivery=lambda e, m, t=sent_at: delivered(e, m, t))
        producer.poll(0)
    producer.flush(30)
    elapsed = time.perf_counter() - started
    return {"messages/s": round(n / elapsed), **exactly_once.latency_summary(latencies_ms)}


### END SOLUTION

# %%
check.m03.producer_measurement(measure_producer)

# %% [markdown]
# Now the table: for each setting, 20,000 messages as fast as possible (a burst: throughput), then 1,000 at a
# steady 2,000 messages per second (a paced load: what latency does a message see?).

# %%
producer_settings = {
    "no linger": {"linger.ms": 0},
    "linger 5 ms (default)": {"linger.ms": 5},
    "linger 50 ms": {"linger.ms": 50},
    "linger 5 ms, acks=1, no idempotence": {"linger.ms": 5, "acks": 1, "enable.idempotence": False},
    "linger 5 ms, lz4": {"linger.ms": 5, "compression.type": "lz4"},
}
rows = {}
for name, settings in producer_settings.items():
    burst = measure_producer(topics["bench"], 20_000, settings)
    paced = measure_producer(topics["bench"], 1_000, settings, rate=2_000)
    rows[name] = {
        "burst msg/s": burst["messages/s"],
        "burst p99 ms": burst["p99 ms"],
        **{f"paced {key}": value for key, value in paced.items() if key != "messages/s"},
    }
producer_table = pd.DataFrame(rows).T
producer_table

# %% [markdown]
# Read the table: without linger, a burst leaves in many tiny batches — more requests, so lower throughput and
# messages queueing behind each other; a little linger fills bigger batches. Under a steady load, linger is the
# price: each message waits up to `linger.ms` for its batch. (`flush()` sends at once whatever waits, which is
# why a burst ending in `flush()` hides linger.) On one local broker the network is free; against a managed
# cluster (the `external` profile) the differences grow.
#
# ## Consumer flow control
# A consumer **pulls**: it never receives more than it asks for, which is Kafka's flow control. `fetch.min.bytes`
# and `fetch.wait.max.ms` make the broker wait for a fuller answer; `queued.max.messages.kbytes` caps what the
# client prefetches. A consumer that processes slowly must not let its own buffer grow without bound: it
# **pauses** its partitions when its buffer is full and resumes when it has drained (the last row).

# %%
exactly_once.fill(topics["consume"], 10_000)
consumer_settings = {
    "defaults": {},
    "fetch.min.bytes 1 MB, wait ≤ 100 ms": {"fetch.min.bytes": 1_000_000, "fetch.wait.max.ms": 100},
    "prefetch ≤ 64 KB": {"queued.max.messages.kbytes": 64},
}
consumer_table = pd.DataFrame(
    {name: exactly_once.measure_consumer(topics["consume"], settings) for name, settings in consumer_settings.items()}
).T
consumer_table.loc["slow handler, pause above 2,000 buffered"] = exactly_once.measure_consumer(
    topics["consume"], {"max.buffered": 2000, "fetch.queue.backoff.ms": 10}, handle_ms=0.05
)
consumer_table

# %% [markdown]
# ## Backpressure in Flink
# Inside a Flink job, operators exchange records through bounded network buffers. When an operator is slower
# than its input, its input buffers fill, the upstream operator cannot hand over its output and **waits**: it is
# *backpressured*. The pressure travels back to the source, which then reads Kafka more slowly — Kafka keeps the
# rest, so nothing is lost and memory stays bounded.
#
# Flink reports, per task and per second, how many milliseconds it was **busy**, **idle** or
# **backpressured** (`busyTimeMsPerSecond`, `idleTimeMsPerSecond`, `backPressuredTimeMsPerSecond`) through its
# REST API: `GET /jobs/<job>/vertices/<vertex>/subtasks/metrics?get=<metric>` aggregates a metric over a
# vertex's subtasks (min, max, avg, sum). Below, a Kafka source feeds a Python function that sleeps 2 ms per
# record (think: a slow enrichment call or a throttled sink), then a sink that discards. Every operator runs as
# **two subtasks**, and the topic is **skewed**: its backlog sits in partition 0, partition 1 is empty — so one
# source subtask is held back while the other has nothing to do.

# %%
throttle_env = flink_jobs.table_environment(f"{ns.prefix} throttled")
throttled_job = exactly_once.start_throttled_job(throttle_env, f"{ns.prefix} throttled", topics["skewed"])
exactly_once.wait_for_metrics(throttled_job)
[(v["name"], v["parallelism"]) for v in flink_jobs.vertices(throttled_job)]

# %% [markdown]
# ### Exercise 2 — where is the pressure?
# Write `backpressure_by_vertex(job_id)`: return `{vertex name: backPressuredTimeMsPerSecond}` for every vertex
# of the job (the `max` over its subtasks: a vertex is as backpressured as its most backpressured subtask —
# the average of a waiting and an idle subtask hides the wait), read with `flink_jobs.rest(path, params=...)` —
# the vertices are in `flink_jobs.vertices(job_id)`.


# %%
### BEGIN SOLUTION
def backpressure_by_vertex(job_id: str) -> dict:
    """Milliseconds per second each vertex spends waiting for its downstream."""
    out = {}
    for vertex in flink_jobs.vertices(job_id):
        path = f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
        [metric] = flink_jobs.rest(path, params={"get": "backPressuredTimeMsPerSecond"})
        out[vertex["name"]] = float(metric["max"])
    return out


### END SOLUTION

# %%
check.m03.backpressure_reading(backpressure_by_vertex, throttled_job)

# %% [markdown]
# The slow operator itself is *busy*; the one **before** it is *backpressured*. Flink's `/backpressure` endpoint
# (what the web UI shows) classifies the same figure as ok / low / high:

# %%
levels = {}
for vertex in flink_jobs.vertices(throttled_job):
    report = flink_jobs.rest(f"/jobs/{throttled_job}/vertices/{vertex['id']}/backpressure")
    busy = exactly_once.vertex_metric(throttled_job, vertex["id"], "busyTimeMsPerSecond")
    levels[vertex["name"]] = {"level": report.get("backpressureLevel"), "busy ms/s": busy}
flink_jobs.cancel_jobs(f"{ns.prefix} throttled")
pd.DataFrame(levels).T

# %% [markdown]
# The cures, in order: make the slow operator faster (batch its calls, async I/O), give it more parallelism
# (more subtasks share the load: *scaling*), or accept the lower rate — Kafka buffers the backlog, and consumer
# lag (lab 03.01) shows it.
#
# ## Transactions: all of a batch or none of it
# A **transactional** producer (`transactional.id`) groups writes — to several topics and partitions, and the
# consumer's offsets too — into one atomic unit: `begin_transaction()`, produce…, `commit_transaction()` or
# `abort_transaction()`. Readers with `isolation.level=read_committed` only ever see committed transactions;
# `read_uncommitted` readers see everything, aborted messages included. `init_transactions()` also **fences** an
# older producer with the same id: a zombie that comes back after a crash can no longer commit.
#
# ### Exercise 3 — publish a batch atomically
# Write `publish_in_transaction(producer, topic, rows)`: in one transaction, produce each row as JSON
# (`json.dumps`) and commit; if anything fails midway, abort the transaction and re-raise the error.


# %%
### BEGIN SOLUTION
def publish_in_transaction(producer, topic: str, rows: list[dict]) -> None:
    """All rows become visible together, or none does."""
    import json

    producer.begin_transaction()
    try:
        for row in rows:
            producer.produce(topic, json.dumps(row))
        producer.commit_transaction(30)
    except Exception:
        producer.abort_transaction(30)
        raise


### END SOLUTION

# %%
check.m03.transaction_all_or_nothing(publish_in_transaction)

# %% [markdown]
# What each kind of reader sees after one committed batch and one that failed halfway:

# %%
txn_producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{ns.prefix}-orders-demo"})
txn_producer.init_transactions(10)
publish_in_transaction(txn_producer, topics["orders_txn"], [{"order": i} for i in range(5)])
try:
    publish_in_transaction(txn_producer, topics["orders_txn"], [{"order": 5}, {"order": 6}, {"order": object()}])
except TypeError as error:
    print("the second batch failed:", error)
{
    level: len(flink_jobs.read_json(topics["orders_txn"], isolation=level))
    for level in ("read_committed", "read_uncommitted")
}

# %% [markdown]
# **Read-process-write** applications (consume, transform, produce) use the same tool: they add the consumed
# offsets to the transaction with `producer.send_offsets_to_transaction(...)`, so output and progress commit
# together — Kafka Streams' `exactly_once_v2` does exactly this. Flink's Kafka sink does it through its
# checkpoints, which is what the last part shows.
#
# ## An exactly-once Flink job, crashed mid-run
# Flink takes **checkpoints**: consistent snapshots of every operator's state and of the source's Kafka offsets,
# written to durable storage (here the object store). After a failure, the job's **restart strategy** restarts it
# from the last completed checkpoint: the source rewinds to the checkpointed offsets and replays.
#
# Replaying means some records are processed twice. An **exactly-once** Kafka sink hides that from readers: it
# writes inside a Kafka transaction that it commits only when a checkpoint completes (two-phase commit). Records
# written after the last checkpoint belong to a transaction that is aborted on recovery — `read_committed`
# readers never see them.
#
# ### Exercise 4 — configure the job
# Write two dicts:
# - `ledger_sink_options`: the Kafka sink's options (Flink SQL `WITH` keys) for exactly-once delivery —
#   `sink.delivery-guarantee`, a `sink.transactional-id-prefix` unique to this job (e.g. `m03-l07-ledger`), and a
#   producer `properties.transaction.timeout.ms` of 60 s (it must stay below the broker's 15-minute maximum);
# - `checkpoint_settings`: job settings that take a checkpoint every second (`execution.checkpointing.interval`)
#   into `ns.s3_uri("checkpoints")` (`execution.checkpointing.dir`), with a `fixed-delay` restart strategy
#   (`restart-strategy.type`) of up to 30 attempts, 1 s apart (`restart-strategy.fixed-delay.attempts`,
#   `restart-strategy.fixed-delay.delay`).

# %%
### BEGIN SOLUTION
ledger_sink_options = {
    "sink.delivery-guarantee": "exactly-once",
    "sink.transactional-id-prefix": "m03-l07-ledger",
    "properties.transaction.timeout.ms": "60000",
}
checkpoint_settings = {
    "execution.checkpointing.interval": "1 s",
    "execution.checkpointing.dir": ns.s3_uri("checkpoints"),
    "restart-strategy.type": "fixed-delay",
    "restart-strategy.fixed-delay.attempts": "30",
    "restart-strategy.fixed-delay.delay": "1 s",
}
### END SOLUTION

# %% [markdown]
# Start the job and a feeder that sends 200 payments a second (each with a sequence number `seq`), and wait for
# the first checkpoints.

# %%
ledger_env = flink_jobs.table_environment(f"{ns.prefix} ledger")
for key, value in checkpoint_settings.items():
    ledger_env.get_config().set(key, str(value))
ledger_job = exactly_once.ledger_job(ledger_env, topics, ledger_sink_options, f"{ns.prefix} ledger")
feeder = exactly_once.Feeder(topics["payments"], rate=200, payments=payments).start()
exactly_once.wait_for_checkpoint(ledger_job, after=1)

# %% [markdown]
# Now the crash: `stack.disrupt("flink")` waits until no other notebook uses the cluster, then we **SIGKILL** the
# TaskManager — no clean shutdown, open Kafka transactions left behind. On the way out, `disrupt` starts a new
# TaskManager (the JobManager, and the job, never stopped); the job restarts from its last checkpoint.

# %%
with stack.disrupt("flink"):
    before = exactly_once.checkpoint_counts(ledger_job)
    stack.kill("flink-taskmanager")
    print(f"TaskManager killed after {before['completed']} checkpoints, while payments kept coming")
recovery_seconds = exactly_once.wait_for_restore(ledger_job)
time.sleep(2)  # a little more traffic after the restart
sent = feeder.stop()
print(f"job running again {recovery_seconds:.1f} s after the TaskManager came back; {sent} payments sent")

# %% [markdown]
# Wait until the committed ledger has caught up, then compare it with what was sent — and look at what a
# `read_uncommitted` reader would have seen.

# %%
committed = exactly_once.wait_for_output(topics["ledger"], sent)
uncommitted = flink_jobs.read_json(topics["ledger"], isolation="read_uncommitted")
pd.DataFrame(
    {
        "read_committed": exactly_once.audit(sent, committed),
        "read_uncommitted": exactly_once.audit(sent, uncommitted),
    }
)

# %%
check.m03.exactly_once_after_crash(ledger_sink_options, checkpoint_settings, ledger_job, sent, topics)

# %%
print(exactly_once.checkpoint_counts(ledger_job))
flink_jobs.cancel_jobs(ns.prefix)

# %% [markdown]
# The `read_uncommitted` column shows the replay: records written after the last checkpoint before the crash
# are in the log twice — once in a transaction that was aborted, once in the one that committed. With
# `'sink.delivery-guarantee' = 'at-least-once'` those duplicates would be visible to everyone.
#
# ## Recap
# - Batching (`linger.ms`, `batch.size`, compression) buys throughput with latency; measure it, don't guess.
# - Kafka consumers pull, so they are never flooded; inside Flink, bounded buffers propagate **backpressure**
#   upstream. `backPressuredTimeMsPerSecond` points at the operator *after* which the bottleneck sits.
# - Idempotent producers remove duplicates from retries; transactions make a batch (and consumed offsets)
#   atomic; `read_committed` readers never see aborted data.
# - Flink's checkpoints + replayable sources + a transactional sink = exactly-once results, even when a
#   TaskManager dies mid-run.
#
# **Going further:**
# - On Kubernetes, the Flink Kubernetes Operator restarts lost TaskManagers and can scale a job on backpressure
#   (its autoscaler reads the same busy/backpressured metrics). Managed Flink (Amazon Managed Service for Apache
#   Flink, Confluent Cloud for Apache Flink) does both for you.
# - Against managed Kafka (MSK, Confluent Cloud) the batching table changes a lot: re-run it with the
#   `external` profile (`DELAB_STACK=external`, `DELAB_KAFKA_BOOTSTRAP`).
# - Unaligned checkpoints (`execution.checkpointing.unaligned.enabled`) keep checkpoints fast under
#   backpressure.
