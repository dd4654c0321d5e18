"""Checks of lab 03.06 (Spark Structured Streaming), against the stack's Kafka and Postgres with a real local
SparkSession: each check fills its own fresh topic, runs the learner's code in a real streaming query and reads
the result back (Parquet files, Postgres rows)."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd

from delab import clients, config
from delab.grading import WrongAnswer, exercise, learner_code
from delab.streaming import kafka_basics as kb
from delab.streaming import spark as lab_spark

PREFIX = "m03_l06.check"
SINK_TABLE = "m03_l06.orders_sink"
EXPECTED_TYPES = {
    "order_id": "bigint",
    "customer_id": "bigint",
    "channel": "string",
    "amount": "double",
    "order_ts": "timestamp",
}


def _spark():
    return lab_spark.session("m03_l06")


def _fresh_topic(label: str, events: list[dict]) -> str:
    topic = kb.create_topic(f"{PREFIX}.{label}.{uuid.uuid4().hex[:6]}", 3)
    kb.produce_json(topic, events, key="order_id")
    return topic


def _folder(label: str):
    """A fresh folder for one check run; leftovers of earlier runs (older than 10 minutes) are removed, never a
    folder another check may be using right now."""
    parent = config.lab_dir("m03_l06") / "checks"
    for old in parent.glob(f"{label}-*"):
        if time.time() - old.stat().st_mtime > 600:
            shutil.rmtree(old, ignore_errors=True)
    folder = parent / f"{label}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    return folder


def reference_parse(raw):
    """The parser the checks use for their own input (the expected columns and types)."""
    from pyspark.sql import functions as F

    schema = ", ".join(f"{name} {kind}" for name, kind in EXPECTED_TYPES.items() if name != "order_ts")
    parsed = F.from_json(F.col("value").cast("string"), f"{schema}, order_ts string")
    return raw.select(parsed.alias("o")).select(
        "o.order_id", "o.customer_id", "o.channel", "o.amount", F.to_timestamp("o.order_ts").alias("order_ts")
    )


# ------------------------------------------------------------------------------------------- e1: parse orders


@exercise("m03.l06.e1")
def parsed_orders(parse_orders: Callable) -> None:
    """Kafka records parsed into typed order columns, on a batch and on a stream."""
    spark = _spark()
    events = lab_spark.order_events(limit=120)
    topic = _fresh_topic("parse", events)
    raw = spark.read.format("kafka").options(**lab_spark.kafka_options(topic)).load()
    result = learner_code("parse_orders(raw)")(parse_orders)(raw)
    if result is None or not hasattr(result, "schema"):
        raise WrongAnswer(f"parse_orders returned {type(result).__name__}; expected a DataFrame.")
    types = {field.name: field.dataType.simpleString() for field in result.schema.fields}
    if set(types) != set(EXPECTED_TYPES):
        extra, missing = sorted(set(types) - set(EXPECTED_TYPES)), sorted(set(EXPECTED_TYPES) - set(types))
        raise WrongAnswer(
            f"columns missing: {missing or 'none'}, unexpected: {extra or 'none'}.",
            hint="parse the JSON value and select its fields — not Kafka's key/value/topic/offset columns.",
        )
    wrong_types = {name: kind for name, kind in types.items() if kind != EXPECTED_TYPES[name]}
    if wrong_types:
        name, kind = next(iter(wrong_types.items()))
        raise WrongAnswer(
            f"{name} is {kind}; expected {EXPECTED_TYPES[name]}.",
            hint="give from_json a schema with the right types, and turn the ISO text of order_ts into a timestamp.",
        )
    got = learner_code("collecting your DataFrame")(lambda: result.toPandas())()
    want = pd.DataFrame(events)
    if len(got) and got.isna().all(axis=1).any():
        raise WrongAnswer(
            f"{int(got.isna().all(axis=1).sum())} of {len(got)} rows are all null: the JSON did not parse.",
            hint="the order is the JSON text in Kafka's binary `value` column: cast it to a string first.",
        )
    if len(got) != len(want) or set(got["order_id"]) != set(want["order_id"]):
        raise WrongAnswer(f"got {len(got)} rows for {len(want)} records.", hint="one output row per Kafka record.")
    merged = want.merge(got, on="order_id", suffixes=("", "_got"))
    for column in ("customer_id", "channel"):
        differ = merged[merged[column] != merged[f"{column}_got"]]
        if len(differ):
            row = differ.iloc[0]
            got_value, sent_value = (v.item() if hasattr(v, "item") else v for v in (row[f"{column}_got"], row[column]))
            raise WrongAnswer(
                f"{column} differs from what was sent in {len(differ)} of {len(merged)} rows (order "
                f"{row.order_id}: got {got_value!r}, sent {sent_value!r}).",
                hint=f"take {column} from the JSON field of that name, unchanged.",
            )
    if not (merged["amount"] - merged["amount_got"]).abs().lt(0.005).all():
        raise WrongAnswer("the amounts differ from what was sent.")
    if not (pd.to_datetime(merged["order_ts"]) == pd.to_datetime(merged["order_ts_got"])).all():
        raise WrongAnswer(
            "the order timestamps differ from what was sent.",
            hint="the session's time zone is UTC; parse the text as it is.",
        )
    stream = spark.readStream.format("kafka").options(**lab_spark.kafka_options(topic)).load()
    streamed = learner_code("parse_orders on a streaming DataFrame")(parse_orders)(stream)
    if not getattr(streamed, "isStreaming", False):
        raise WrongAnswer(
            "on a streaming DataFrame your function did not return a streaming DataFrame.",
            hint="use only DataFrame transformations (select, from_json, cast) — no collect() or toPandas().",
        )


# --------------------------------------------------------------------------------------- e2: backfill trigger


def _wait_until_done(query: Any, rows: int, timeout: float = 120.0) -> None:
    """Wait until the query stops by itself, or has processed all ``rows`` while its trigger (read back from
    the query) never stops, or ``timeout`` passed. Only when Spark does not say which trigger runs: all rows
    processed and still running 10 s later counts as never stopping."""
    trigger = _trigger(query)
    if trigger.startswith(("AvailableNowTrigger", "OneTimeTrigger")):
        grace: float | None = None  # stops by itself, however long a busy machine makes it take
    elif trigger.startswith(("ProcessingTimeTrigger", "ContinuousTrigger")):
        grace = 0.0  # never stops by itself: no need to watch it idle
    else:
        grace = 10.0
    deadline, drained_at = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if query.awaitTermination(1):
            return
        if grace is not None and sum(p["numInputRows"] for p in query.recentProgress) >= rows:
            drained_at = drained_at or time.monotonic()
            if time.monotonic() - drained_at > grace:
                return


def _trigger(query: Any) -> str:
    """The trigger a query ran on, as Spark names it (``AvailableNowTrigger``, ``ProcessingTimeTrigger(1000)``,
    ``OneTimeTrigger``, ``ContinuousTrigger(1000)``), or "" when the JVM does not say."""
    try:
        return str(query._jsq.streamingQuery().trigger().toString())
    except Exception:
        return ""


@exercise("m03.l06.e2")
def backfill_query(start_backfill: Callable) -> None:
    """A query that processes everything available, in micro-batches, into Parquet, and stops."""
    from pyspark.sql.streaming import StreamingQuery

    spark = _spark()
    events = lab_spark.order_events(limit=350)
    topic = _fresh_topic("backfill", events)
    folder = _folder("backfill")
    path, checkpoint = folder / "orders", folder / "checkpoint"
    stream = reference_parse(
        spark.readStream.format("kafka").options(**lab_spark.kafka_options(topic, maxOffsetsPerTrigger=100)).load()
    )
    query = learner_code("start_backfill(stream, path, checkpoint)")(start_backfill)(stream, str(path), str(checkpoint))
    if not isinstance(query, StreamingQuery):
        raise WrongAnswer(
            f"start_backfill returned {type(query).__name__}; expected the StreamingQuery that .start() returns.",
            hint="return the result of writeStream....start().",
        )
    try:
        _wait_until_done(query, len(events))
    except Exception as error:  # the query failed: say how in one line
        first = str(error).strip().splitlines()[0][:300]
        raise WrongAnswer(f"the query failed: {first}") from None
    if query.isActive:
        query.stop()
        raise WrongAnswer(
            "the query was still running after processing everything: it waits for new data forever.",
            hint="a backfill needs a trigger that stops once it has processed what was available when it started.",
        )
    trigger = _trigger(query)
    if trigger.startswith(("ProcessingTimeTrigger", "ContinuousTrigger")):
        raise WrongAnswer(
            f"the query ran on {trigger} and your code stopped it; left alone it would have waited for new "
            "data forever, and a fixed wait stops a bigger backlog half-way.",
            hint="a backfill needs a trigger that stops once it has processed what was available when it started.",
        )
    files = list(path.rglob("*.parquet")) if path.exists() else []  # partitionBy writes into sub-folders
    if not files:
        raise WrongAnswer(
            f"nothing was written as Parquet under {path}.",
            hint="write with format('parquet') to the `path` given, and checkpoint to `checkpoint`.",
        )
    if not (checkpoint / "offsets").exists() or not (checkpoint / "commits").exists():
        raise WrongAnswer(
            "no checkpoint was written to `checkpoint`.", hint="set the checkpointLocation option of the writer."
        )
    written = pd.read_parquet(path)
    if len(written) != len(events) or written["order_id"].nunique() != len(events):
        raise WrongAnswer(
            f"the output holds {len(written)} rows ({written['order_id'].nunique()} orders); "
            f"{len(events)} were in the topic."
        )
    batches = [p for p in query.recentProgress if p["numInputRows"] > 0]
    if len(batches) < 2:
        raise WrongAnswer(
            "everything was processed in one micro-batch, ignoring the source's maxOffsetsPerTrigger limit.",
            hint="Trigger.Once (deprecated) takes it all at once; its successor splits the backlog into "
            "rate-limited micro-batches.",
        )


# ------------------------------------------------------------------------------------- e3: idempotent sink


def prepare_sink(table: str = SINK_TABLE) -> None:
    """(Re)create the exercise's sink table (or another of the same shape), empty."""
    with clients.postgres() as pg:
        pg.execute("CREATE SCHEMA IF NOT EXISTS m03_l06")
        pg.execute(f"DROP TABLE IF EXISTS {table}")
        pg.execute(
            f"CREATE TABLE {table} (order_id bigint PRIMARY KEY, channel text NOT NULL, "
            "amount numeric(12,2) NOT NULL, batch_id bigint NOT NULL)"
        )


class SimulatedCrash(RuntimeError):
    """The query's process dying after a batch was written but before Spark committed it."""


def crash_and_restart(write_batch: Callable, events: list[dict], crash_batch: int = 1) -> dict:
    """Stream ``events`` (from a fresh topic, 100 per micro-batch) into ``write_batch``; right after batch
    ``crash_batch`` has been written, crash the query; then restart it from its checkpoint with a copy of
    ``write_batch`` as a new process would load it. Returns what happened: the batch ids handed to write_batch in
    order, and whether the crash happened."""
    spark = _spark()
    topic = _fresh_topic("sink", events)
    checkpoint = _folder("sink") / "checkpoint"
    calls: list[int] = []
    state = {"crashed": False, "not_implemented": False}
    # the restarted query gets a copy taken before the first run: a new process knows nothing of the first one
    current = {"write_batch": write_batch, "after_restart": _as_in_a_new_process(write_batch)}

    def guarded(batch_df, batch_id):
        try:
            current["write_batch"](batch_df, batch_id)
        except NotImplementedError:
            state["not_implemented"] = True
            raise

    def crashing(batch_df, batch_id):
        calls.append(batch_id)
        guarded(batch_df, batch_id)
        if batch_id == crash_batch and not state["crashed"]:
            state["crashed"] = True
            raise SimulatedCrash(f"crashed after writing batch {batch_id}, before Spark committed it")

    def run(handler) -> str | None:
        source = spark.readStream.format("kafka").options(**lab_spark.kafka_options(topic, maxOffsetsPerTrigger=100))
        query = (
            reference_parse(source.load())
            .writeStream.foreachBatch(handler)
            .option("checkpointLocation", str(checkpoint))
            .trigger(availableNow=True)
            .start()
        )
        try:
            query.awaitTermination(120)
        except Exception as error:
            return str(error)
        finally:
            if query.isActive:
                query.stop()
        return None

    first_error = run(crashing)
    if state["not_implemented"]:
        raise NotImplementedError  # the lab's placeholder: "not solved yet"
    current["write_batch"] = current["after_restart"]
    second_error = run(lambda df, batch_id: (calls.append(batch_id), guarded(df, batch_id)))
    return {"calls": calls, "crashed": state["crashed"], "errors": [first_error, second_error]}


def _python_error(query_error: str | None) -> str:
    """The learner's Python exception (``psycopg.errors.UniqueViolation: duplicate key ...``) out of a failed
    query's message, which starts with Spark's own wrapper; else the message's first line."""
    text = (query_error or "").split("=== Streaming Query ===")[0]
    raised = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception|Violation|Crash)): (.+)$", text, re.MULTILINE)
    if raised:
        name, message = raised[-1]
        return f"{name}: {message.split(' SQLSTATE:')[0].strip()}"[:300]
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""


def _as_in_a_new_process(function: Callable) -> Callable:
    """A copy of ``function`` with the state it holds right now (globals it uses, closure variables), as a
    process started after a crash would have it: whatever the first run adds to a set in memory is not in the
    copy. Spark pickles functions the same way (cloudpickle). A function that cannot be pickled (it holds a
    connection or the SparkSession) is used as it is."""
    from pyspark import cloudpickle

    try:
        return cloudpickle.loads(cloudpickle.dumps(function))
    except Exception:
        return function


@exercise("m03.l06.e3")
def idempotent_sink(write_batch: Callable) -> None:
    """A crash after a batch was written, a restart from the checkpoint: every order in Postgres exactly once."""
    prepare_sink()
    events = lab_spark.order_events(start=600, limit=350)
    outcome = crash_and_restart(write_batch, events)
    first_error, second_error = outcome["errors"]
    if not outcome["crashed"]:
        raise WrongAnswer(
            f"write_batch failed before the planned crash: {_python_error(first_error) or 'no batch ran'}",
            hint="run write_batch on a small DataFrame in a cell of its own to see the whole error.",
        )
    if second_error:
        first = _python_error(second_error)
        duplicate = "duplicate key" in second_error or "UniqueViolation" in second_error
        raise WrongAnswer(
            f"after the restart Spark replayed batch {outcome['calls'][2] if len(outcome['calls']) > 2 else '?'} "
            f"and your write_batch failed: {first}",
            hint="a replayed batch must be absorbed, not rejected: write so that doing it twice changes nothing."
            if duplicate
            else "run write_batch on a small DataFrame in a cell of its own to see the whole error.",
        )
    with clients.postgres() as pg:
        rows = pg.execute(f"SELECT order_id, amount FROM {SINK_TABLE}").fetchall()
    stored = pd.DataFrame(rows, columns=["order_id", "amount"])
    want = {e["order_id"] for e in events}
    if stored["order_id"].duplicated().any():
        raise WrongAnswer(f"{int(stored['order_id'].duplicated().sum())} orders are stored twice.")
    missing = want - set(stored["order_id"])
    if missing:
        raise WrongAnswer(
            f"{len(missing)} of {len(want)} orders are missing after the crash and restart.",
            hint="write every row of each batch, and keep what earlier batches wrote (each batch holds only new "
            "records).",
        )
    if set(stored["order_id"]) - want:
        raise WrongAnswer("the table holds orders that were not in the stream.")
    amounts = dict(zip(stored["order_id"], stored["amount"].astype(float), strict=True))
    if any(abs(amounts[e["order_id"]] - e["amount"]) > 0.005 for e in events):
        raise WrongAnswer("some amounts differ from the stream's.")
