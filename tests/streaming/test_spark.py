"""The lab's SparkSession (delab.streaming.spark) and the restart-from-checkpoint proof of lab 03.06, on a real
local Spark with the stack's Kafka and Postgres."""

from __future__ import annotations

import pytest

from delab import clients, stack
from delab.checks.m03 import l06_spark
from delab.streaming import spark as lab_spark

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark():
    stack.require("kafka", "postgres", quiet=True)
    return lab_spark.session("m03_l06")


def test_session_is_local_loopback_without_ui_and_has_the_kafka_connector(spark):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.master") == "local[2]"
    assert conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert conf.get("spark.ui.enabled") == "false"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert "spark-sql-kafka-0-10" in conf.get("spark.jars")
    assert "spark.jars.packages" not in dict(conf.getAll())  # nothing fetched at run time


def test_a_crashed_query_replays_its_uncommitted_batch_and_an_upsert_absorbs_it(spark):
    table = "m03_l06.restart_test_sink"  # not the exercise's table: test_m03_l06 may run at the same time
    l06_spark.prepare_sink(table)
    events = lab_spark.order_events(start=2000, limit=250)

    def upsert(batch_df, batch_id):
        rows = [(r.order_id, r.channel, r.amount, batch_id) for r in batch_df.collect()]
        with clients.postgres(autocommit=False) as conn:
            conn.cursor().executemany(
                f"INSERT INTO {table} VALUES (%s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING", rows
            )
            conn.commit()

    outcome = l06_spark.crash_and_restart(upsert, events, crash_batch=1)
    assert outcome["crashed"] and "SimulatedCrash" in outcome["errors"][0] and outcome["errors"][1] is None
    # batch 1 was written, the query died before Spark committed it, and the restart ran it again
    assert outcome["calls"][:3] == [0, 1, 1] and outcome["calls"] == sorted(outcome["calls"])
    with clients.postgres() as pg:
        stored = pg.execute(f"SELECT count(*), count(DISTINCT order_id) FROM {table}").fetchone()
    assert stored == (250, 250)
