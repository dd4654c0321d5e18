"""Lab 03.07 (backpressure and exactly-once): a rate-limited feeder, consumer flow-control measurements, a
throttled Flink job to watch backpressure, and the exactly-once Flink job that the lab crashes on purpose.

The Flink jobs run on the stack's shared cluster (names start with the lab's prefix). The crash itself stays in
the notebook: ``with stack.disrupt("flink"): stack.kill("flink-taskmanager")``.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pandas as pd

from delab import config
from delab.streaming import flink_jobs


class Feeder:
    """Produce payments to a topic at ``rate`` per second in a background thread until ``stop()``.

    Every message has a unique ``seq``; ``sent`` is how many the broker acknowledged."""

    def __init__(self, topic: str, rate: float = 200, payments: pd.DataFrame | None = None) -> None:
        self.topic, self.rate = topic, rate
        self.payments = payments
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _row(self, seq: int) -> dict:
        if self.payments is None or self.payments.empty:
            return {"seq": seq, "payment_id": seq, "amount": round((seq % 997) * 1.37, 2)}
        row = self.payments.iloc[seq % len(self.payments)]
        return {"seq": seq, "payment_id": int(row.payment_id), "amount": float(row.amount)}

    def _run(self) -> None:
        from confluent_kafka import Producer

        try:
            producer = Producer({"bootstrap.servers": config.kafka().bootstrap_servers, "enable.idempotence": True})
            acked = [0]

            def delivered(error: Any, _message: Any) -> None:
                if error is None:
                    acked[0] += 1

            seq, started = 0, time.monotonic()
            while not self._stop.is_set():
                wait = started + seq / self.rate - time.monotonic()
                if wait > 0:
                    time.sleep(min(wait, 0.05))
                    continue
                producer.produce(self.topic, json.dumps(self._row(seq)), on_delivery=delivered)
                producer.poll(0)
                seq += 1
            producer.flush(30)
            self.sent = acked[0]
        except BaseException as error:
            self.error = error

    def stop(self) -> int:
        """Stop feeding, wait for the last acknowledgements, return how many messages were sent."""
        self._stop.set()
        self._thread.join(60)
        if self.error:
            raise RuntimeError(f"the feeder failed: {self.error}")
        return self.sent


# ------------------------------------------------------------------------------------- consumer flow control


def fill(topic: str, n: int, size: int = 200) -> None:
    """Put ``n`` messages of about ``size`` bytes into a topic (for consumer measurements)."""
    pad = "x" * max(0, size - 40)
    flink_jobs.produce_json(topic, ({"seq": i, "pad": pad} for i in range(n)), **{"linger.ms": 20})


def measure_consumer(topic: str, settings: dict[str, Any], handle_ms: float = 0.0) -> dict[str, float]:
    """Read a whole topic with a consumer configured by ``settings``; return messages/s, fetch round trips
    (``consume()`` calls that returned data) and the peak number of messages held in the client's queue.

    ``handle_ms`` simulates slow processing per message: the consumer then pauses its partitions whenever more
    than ``max.buffered`` (a setting of this helper, default 500) messages wait, and resumes below half of it —
    the flow control a slow consumer needs so it never buffers without bound."""
    from confluent_kafka import Consumer, TopicPartition

    settings = dict(settings)
    max_buffered = int(settings.pop("max.buffered", 500))
    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka().bootstrap_servers,
            "group.id": f"m03_l07-measure-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **settings,
        }
    )
    try:
        end = sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        )
        consumer.subscribe([topic])
        buffered: list[Any] = []
        read, fetches, pauses, peak = 0, 0, 0, 0
        paused = False
        started = time.monotonic()
        while read < end and time.monotonic() - started < 60:
            if not paused:
                batch = consumer.consume(500, timeout=0 if buffered else 0.2)
                batch = [m for m in batch if not m.error()]
                if batch:
                    fetches += 1
                    buffered += batch
                    peak = max(peak, len(buffered))
                if handle_ms and len(buffered) > max_buffered:
                    consumer.pause(consumer.assignment())
                    paused, pauses = True, pauses + 1
            handled = buffered[:50] if handle_ms else buffered
            if handle_ms and handled:
                time.sleep(handle_ms * len(handled) / 1000)  # the slow work, per chunk of 50
            read += len(handled)
            buffered = buffered[len(handled) :]
            if paused and len(buffered) < max_buffered // 2:
                consumer.resume(consumer.assignment())
                paused = False
        elapsed = time.monotonic() - started
    finally:
        consumer.close()
    return {
        "messages/s": round(read / elapsed),
        "consume calls with data": fetches,
        "pauses": pauses,
        "peak buffered": peak,
    }


# ------------------------------------------------------------------------------------------------ backpressure


#: How many records the throttled job's backlog holds: the slow operator takes at least ``sleep_ms`` per record,
#: so 150,000 keep it behind for more than 5 minutes, longer than the lab or the tests keep the job.
THROTTLE_BACKLOG = 150_000


def _skewed_topic(topic: str, backlog: int) -> None:
    """Make ``topic`` a two-partition topic whose records all sit in partition 0 (partition 1 stays empty)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewPartitions, NewTopic

    admin = flink_jobs._admin()
    metadata = admin.list_topics(timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result()
    elif len(metadata.partitions) < 2:
        admin.create_partitions([NewPartitions(topic, 2)])[topic].result()
    producer = Producer({"bootstrap.servers": config.kafka().bootstrap_servers, "linger.ms": 20})
    for i in range(backlog):
        producer.produce(topic, json.dumps({"id": i}), partition=0)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError(f"could not fill {topic}: is Kafka up?")


def start_throttled_job(
    t_env: Any, job_name: str, topic: str, sleep_ms: float = 2.0, backlog: int = THROTTLE_BACKLOG
) -> str:
    """A job whose middle operator is slow: a Kafka source (2 subtasks) → a Python function sleeping ``sleep_ms``
    per row → blackhole. The topic has two partitions and the whole backlog sits in the first one (a skewed
    topic): one source subtask is held back by the slow operator, the other has nothing to read — so a vertex's
    maximum over its subtasks and their average differ. Operator chaining is off, so each operator is its own
    vertex with its own metrics. Returns the job id once it runs."""
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    def throttle(value: int) -> int:
        time.sleep(sleep_ms / 1000)
        return value

    _skewed_topic(topic, backlog)
    slow = udf(throttle, result_type=DataTypes.BIGINT(), name="slow_enrichment")
    conf = t_env.get_config()
    conf.set("pipeline.operator-chaining.enabled", "false")
    conf.set("parallelism.default", "2")
    conf.set("python.fn-execution.bundle.size", "50")  # a small bundle: the slow operator blocks its input early
    t_env.create_temporary_system_function("slow_enrichment", slow)
    t_env.execute_sql("DROP TEMPORARY TABLE IF EXISTS skewed_source")
    bootstrap = config.kafka().bootstrap_servers
    t_env.execute_sql(
        f"""CREATE TEMPORARY TABLE skewed_source (id BIGINT) WITH (
        'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = 'throttled-{uuid.uuid4().hex[:6]}', 'scan.startup.mode' = 'earliest-offset',
        'format' = 'json')"""
    )
    t_env.execute_sql("CREATE TEMPORARY TABLE IF NOT EXISTS slow_sink (id BIGINT) WITH ('connector' = 'blackhole')")
    flink_jobs.name_jobs(t_env, job_name)
    result = t_env.execute_sql("INSERT INTO slow_sink SELECT slow_enrichment(id) FROM skewed_source")
    conf.set("pipeline.operator-chaining.enabled", "true")
    conf.set("parallelism.default", "1")
    job_id = str(result.get_job_client().get_job_id())
    if flink_jobs.wait_for_state(job_id, ["RUNNING"]) != "RUNNING":
        raise RuntimeError(f"the throttled job did not start: {flink_jobs.failure_cause(job_id)}")
    return job_id


def vertex_metrics(job_id: str, vertex_id: str, metric: str) -> dict[str, float]:
    """One vertex metric aggregated over its subtasks, as Flink's REST API gives it: min, max, avg, sum."""
    rows = flink_jobs.rest(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics", params={"get": metric})
    if not rows:
        return {key: float("nan") for key in ("min", "max", "avg", "sum")}
    return {key: float(rows[0].get(key, "nan")) for key in ("min", "max", "avg", "sum")}


def vertex_metric(job_id: str, vertex_id: str, metric: str) -> float:
    """The maximum over subtasks of one vertex metric (e.g. ``backPressuredTimeMsPerSecond``)."""
    return vertex_metrics(job_id, vertex_id, metric)["max"]


def wait_for_metrics(job_id: str, timeout: float = 90) -> None:
    """Wait until the job's metrics show the backpressure (Flink's REST metrics refresh about every 10 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vertices = flink_jobs.vertices(job_id)
        if all(v["status"] == "RUNNING" for v in vertices):
            pressure = [vertex_metric(job_id, v["id"], "backPressuredTimeMsPerSecond") for v in vertices]
            if max((p for p in pressure if p == p), default=0) > 500:
                return
        time.sleep(1)
    raise RuntimeError(
        "no backpressure in the job's metrics yet: Flink's REST metrics can stall for minutes after a TaskManager "
        "was killed — run this cell again in a moment"
    )


# ---------------------------------------------------------------------------------------------- exactly-once


def ledger_job(t_env: Any, topics: dict[str, str], sink_options: dict[str, str], job_name: str) -> str:
    """Start the payments → ledger job (unbounded) with the given Kafka sink options; returns its id."""
    bootstrap = config.kafka().bootstrap_servers
    t_env.execute_sql("DROP TEMPORARY TABLE IF EXISTS payments")
    t_env.execute_sql("DROP TEMPORARY TABLE IF EXISTS ledger")
    t_env.execute_sql(
        f"""CREATE TEMPORARY TABLE payments (seq BIGINT, payment_id BIGINT, amount DOUBLE) WITH (
        'connector' = 'kafka', 'topic' = '{topics["payments"]}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name.replace(" ", "_")}', 'scan.startup.mode' = 'earliest-offset',
        'format' = 'json')"""
    )
    options = {
        "connector": "kafka",
        "topic": topics["ledger"],
        "properties.bootstrap.servers": bootstrap,
        "format": "json",
        **sink_options,
    }
    with_clause = ", ".join(f"'{key}' = '{value}'" for key, value in options.items())
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE ledger (seq BIGINT, payment_id BIGINT, amount_cents BIGINT) WITH ({with_clause})"
    )
    flink_jobs.name_jobs(t_env, job_name)
    result = t_env.execute_sql(
        "INSERT INTO ledger SELECT seq, payment_id, CAST(ROUND(amount * 100) AS BIGINT) FROM payments"
    )
    job_id = str(result.get_job_client().get_job_id())
    if flink_jobs.wait_for_state(job_id, ["RUNNING"]) != "RUNNING":
        raise RuntimeError(f"the ledger job did not start: {flink_jobs.failure_cause(job_id)}")
    return job_id


def checkpoint_counts(job_id: str) -> dict[str, int]:
    """Completed, failed and restored checkpoint counts of a job."""
    return flink_jobs.rest(f"/jobs/{job_id}/checkpoints")["counts"]


def wait_for_checkpoint(job_id: str, after: int = 0, timeout: float = 60) -> int:
    """Wait until the job has completed more than ``after`` checkpoints; return the count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = checkpoint_counts(job_id)["completed"]
        if done > after:
            return done
        time.sleep(0.3)
    raise RuntimeError(f"no checkpoint completed in {timeout:.0f} s: is checkpointing on?")


def wait_for_restore(job_id: str, timeout: float = 120) -> float:
    """Wait until the job has been restored from a checkpoint and runs again; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if checkpoint_counts(job_id)["restored"] > 0 and flink_jobs.job_state(job_id) == "RUNNING":
            vertices = flink_jobs.vertices(job_id)
            if all(v["status"] == "RUNNING" for v in vertices):
                return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"the job did not recover within {timeout:.0f} s: {flink_jobs.failure_cause(job_id)}")


def wait_for_output(topic: str, expected: int, timeout: float = 60) -> list[dict]:
    """Read the committed output until it holds ``expected`` rows (or stops growing for ``timeout``)."""
    deadline = time.monotonic() + timeout
    rows = flink_jobs.read_json(topic)
    while len(rows) < expected and time.monotonic() < deadline:
        time.sleep(1)
        rows = flink_jobs.read_json(topic)
    return rows


def audit(sent: int, rows: list[dict]) -> dict[str, int]:
    """Compare the output's ``seq`` numbers with 0..sent-1: rows, distinct, duplicates, lost, unexpected."""
    counts = Counter(row["seq"] for row in rows if row is not None)
    expected = set(range(sent))
    return {
        "input": sent,
        "output rows": sum(counts.values()),
        "duplicates": sum(c - 1 for c in counts.values() if c > 1),
        "lost": len(expected - set(counts)),
        "unexpected": len(set(counts) - expected),
    }


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    """p50 and p99 of a list of latencies in milliseconds."""
    ordered = sorted(latencies_ms)
    return {
        "p50 ms": round(statistics.median(ordered), 2),
        "p99 ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
    }
