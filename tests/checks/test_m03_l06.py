"""Checks of lab 03.06 (Spark Structured Streaming), with a real local SparkSession against the stack's Kafka
and Postgres: right answers pass, realistic wrong ones are rejected, placeholders are "not solved yet"."""

from __future__ import annotations

import pytest

from delab import clients, stack
from delab.checks.m03 import l06_spark as checks
from delab.grading import NotSolvedYet, WrongAnswer

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def services():
    stack.require("kafka", "postgres", quiet=True)  # topics are dropped by the lab's next run, not here:
    # tests/streaming/test_spark.py may be streaming from one of them at the same time


# ------------------------------------------------------------------------------------------------- e1


def test_parsed_orders_accepts_typed_columns():
    checks.parsed_orders(checks.reference_parse)


def test_parsed_orders_rejects_kafka_columns_kept():
    def keeps_kafka_columns(raw):
        from pyspark.sql import functions as F

        schema = "order_id BIGINT, customer_id BIGINT, channel STRING, amount DOUBLE, order_ts STRING"
        parsed = F.from_json(F.col("value").cast("string"), schema).alias("o")
        return raw.select("offset", parsed).select(
            "offset",
            "o.order_id",
            "o.customer_id",
            "o.channel",
            "o.amount",
            F.to_timestamp("o.order_ts").alias("order_ts"),
        )

    with pytest.raises(WrongAnswer, match="unexpected: \\['offset'\\]"):
        checks.parsed_orders(keeps_kafka_columns)


def test_parsed_orders_rejects_text_timestamps():
    def text_timestamps(raw):
        from pyspark.sql import functions as F

        schema = "order_id BIGINT, customer_id BIGINT, channel STRING, amount DOUBLE, order_ts STRING"
        return raw.select(F.from_json(F.col("value").cast("string"), schema).alias("o")).select("o.*")

    with pytest.raises(WrongAnswer, match="order_ts is string; expected timestamp"):
        checks.parsed_orders(text_timestamps)


def test_parsed_orders_rejects_parsing_the_binary_value():
    def no_cast(raw):
        from pyspark.sql import functions as F

        schema = "order_id BIGINT, customer_id BIGINT, channel STRING, amount DOUBLE, order_ts TIMESTAMP"
        return raw.select(F.from_json(F.col("value"), schema).alias("o")).select("o.*")

    with pytest.raises(WrongAnswer, match="failed with"):
        checks.parsed_orders(no_cast)


def test_parsed_orders_rejects_collecting_to_pandas():
    def via_pandas(raw):
        spark = raw.sparkSession
        return spark.createDataFrame(checks.reference_parse(raw).toPandas())

    with pytest.raises(WrongAnswer, match="streaming"):
        checks.parsed_orders(via_pandas)


def parser(**columns):
    """The reference parser with some output columns replaced (name -> Column over the parsed struct `o`)."""

    def parse_orders(raw):
        from pyspark.sql import functions as F

        schema = "order_id BIGINT, customer_id BIGINT, channel STRING, amount DOUBLE, order_ts STRING"
        chosen = {
            "order_id": F.col("o.order_id"),
            "customer_id": F.col("o.customer_id"),
            "channel": F.col("o.channel"),
            "amount": F.col("o.amount"),
            "order_ts": F.to_timestamp("o.order_ts"),
            **columns,
        }
        parsed = raw.select(F.from_json(F.col("value").cast("string"), schema).alias("o"))
        return parsed.select(*[column.alias(name) for name, column in chosen.items()])

    return parse_orders


def test_parsed_orders_rejects_a_wrong_customer_id_and_channel():
    from pyspark.sql import functions as F

    with pytest.raises(WrongAnswer, match="customer_id differs from what was sent in 120 of 120 rows"):
        checks.parsed_orders(parser(customer_id=F.col("o.order_id")))
    with pytest.raises(WrongAnswer, match=r"channel differs .* got 'WEB', sent 'web'"):
        checks.parsed_orders(parser(channel=F.upper("o.channel")))


def test_parsed_orders_rejects_parsing_the_key():
    def parse_key(raw):
        from pyspark.sql import functions as F

        schema = "order_id BIGINT, customer_id BIGINT, channel STRING, amount DOUBLE, order_ts TIMESTAMP"
        return raw.select(F.from_json(F.col("key").cast("string"), schema).alias("o")).select("o.*")

    with pytest.raises(WrongAnswer, match="120 of 120 rows are all null"):
        checks.parsed_orders(parse_key)


def test_parsed_orders_accepts_a_struct_schema_with_a_timestamp_field():
    def struct_schema(raw):
        from pyspark.sql import functions as F
        from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType, TimestampType

        fields = [("order_id", LongType()), ("customer_id", LongType()), ("channel", StringType())]
        fields += [("amount", DoubleType()), ("order_ts", TimestampType())]
        schema = StructType([StructField(name, kind) for name, kind in fields])
        return (
            raw.selectExpr("CAST(value AS STRING) AS json")
            .select(F.from_json("json", schema).alias("o"))
            .select("o.order_ts", "o.amount", "o.channel", "o.customer_id", "o.order_id")
        )

    checks.parsed_orders(struct_schema)


def test_parsed_orders_placeholder_is_not_solved():
    def parse_orders(raw):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.parsed_orders(parse_orders)


# ------------------------------------------------------------------------------------------------- e2


def backfill(trigger: dict, fmt: str = "parquet", checkpoint: bool = True):
    def start_backfill(stream, path, checkpoint_dir):
        writer = stream.writeStream.format(fmt).option("path", path).trigger(**trigger)
        if fmt == "memory":
            writer = stream.writeStream.format("memory").queryName("m03_l06_test_backfill").trigger(**trigger)
        if checkpoint:
            writer = writer.option("checkpointLocation", checkpoint_dir)
        return writer.start()

    return start_backfill


def test_backfill_accepts_available_now():
    checks.backfill_query(backfill({"availableNow": True}))


class SlowToStop:
    """A query on the AvailableNow trigger that, as on a busy machine, stops 30 s after its last row (a stand-in
    for the query object only, with a clock that advances one second per awaitTermination(1))."""

    def __init__(self, clock):
        self.clock, self.isActive = clock, True
        self.recentProgress = [{"numInputRows": 350}]

    @property
    def _jsq(self):
        trigger = type("Trigger", (), {"toString": lambda _: "AvailableNowTrigger"})()
        query = type("Query", (), {"trigger": lambda _: trigger})()
        return type("JQuery", (), {"streamingQuery": lambda _: query})()

    def awaitTermination(self, seconds):
        self.clock.now += seconds
        self.isActive = self.clock.now < 30
        return not self.isActive


def test_backfill_waits_for_an_available_now_query_however_long_it_takes(monkeypatch):
    # used to give up 10 s after the last row: a busy machine made a right answer "still running"
    clock = type("Clock", (), {"now": 0.0, "monotonic": lambda self: self.now})()
    monkeypatch.setattr(checks, "time", clock)
    query = SlowToStop(clock)
    checks._wait_until_done(query, rows=350)
    assert not query.isActive


def test_backfill_rejects_trigger_once():
    with pytest.raises(WrongAnswer, match="one micro-batch"):
        checks.backfill_query(backfill({"once": True}))


def test_backfill_rejects_a_query_that_never_stops():
    with pytest.raises(WrongAnswer, match="still running"):
        checks.backfill_query(backfill({"processingTime": "1 second"}))


def test_backfill_rejects_a_missing_checkpoint():
    with pytest.raises(WrongAnswer, match="checkpointLocation"):
        checks.backfill_query(backfill({"availableNow": True}, checkpoint=False))


def test_backfill_rejects_not_returning_the_query():
    def no_return(stream, path, checkpoint):
        backfill({"availableNow": True})(stream, path, checkpoint).awaitTermination()

    with pytest.raises(WrongAnswer, match="returned NoneType"):
        checks.backfill_query(no_return)


def test_backfill_rejects_stopping_a_processing_time_query_after_a_wait():
    def stopped_after_a_wait(stream, path, checkpoint):
        query = backfill({"processingTime": "1 second"})(stream, path, checkpoint)
        query.processAllAvailable()
        query.stop()
        return query

    with pytest.raises(WrongAnswer, match=r"ran on ProcessingTimeTrigger\(1000\) and your code stopped it"):
        checks.backfill_query(stopped_after_a_wait)


def test_backfill_accepts_partitioned_output_and_start_with_the_path():
    def partitioned(stream, path, checkpoint):
        writer = stream.writeStream.format("parquet").partitionBy("channel").option("checkpointLocation", checkpoint)
        return writer.trigger(availableNow=True).start(path)

    checks.backfill_query(partitioned)


def test_backfill_placeholder_is_not_solved():
    def start_backfill(stream, path, checkpoint):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.backfill_query(start_backfill)


# ------------------------------------------------------------------------------------------------- e3


def sink(sql: str, truncate: bool = False):
    def write_batch(batch_df, batch_id):
        rows = [(r.order_id, r.channel, r.amount, batch_id) for r in batch_df.collect()]
        with clients.postgres(autocommit=False) as conn:
            if truncate:
                conn.execute(f"TRUNCATE {checks.SINK_TABLE}")
            conn.cursor().executemany(sql, rows)
            conn.commit()

    return write_batch


INSERT = f"INSERT INTO {checks.SINK_TABLE} (order_id, channel, amount, batch_id) VALUES (%s, %s, %s, %s)"
UPSERT = INSERT + " ON CONFLICT (order_id) DO UPDATE SET amount = EXCLUDED.amount, batch_id = EXCLUDED.batch_id"


def test_idempotent_sink_accepts_an_upsert():
    checks.idempotent_sink(sink(UPSERT))


def test_idempotent_sink_accepts_insert_ignoring_conflicts():
    checks.idempotent_sink(sink(INSERT + " ON CONFLICT (order_id) DO NOTHING"))


def test_idempotent_sink_rejects_a_plain_insert():
    with pytest.raises(WrongAnswer, match="replayed batch"):
        checks.idempotent_sink(sink(INSERT))


def test_idempotent_sink_rejects_overwriting_the_table():
    with pytest.raises(WrongAnswer, match="missing after the crash"):
        checks.idempotent_sink(sink(UPSERT, truncate=True))


def test_idempotent_sink_rejects_remembering_batches_in_memory():
    seen: set[int] = set()
    plain_insert = sink(INSERT)

    def write_batch(batch_df, batch_id):  # a restarted process has an empty `seen`
        if batch_id not in seen:
            plain_insert(batch_df, batch_id)
            seen.add(batch_id)

    with pytest.raises(WrongAnswer, match=r"replayed batch 1 and your write_batch failed: .*UniqueViolation"):
        checks.idempotent_sink(write_batch)


def test_idempotent_sink_accepts_replacing_the_batch_by_its_id():
    def write_batch(batch_df, batch_id):
        rows = [(r.order_id, r.channel, r.amount, batch_id) for r in batch_df.collect()]
        with clients.postgres(autocommit=False) as conn:
            conn.execute(f"DELETE FROM {checks.SINK_TABLE} WHERE batch_id = %s", (batch_id,))
            conn.cursor().executemany(INSERT, rows)
            conn.commit()

    checks.idempotent_sink(write_batch)


def test_idempotent_sink_placeholder_is_not_solved():
    def write_batch(batch_df, batch_id):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.idempotent_sink(write_batch)
