"""Checks of lab 01.01 (Airflow), run in the delab-airflow environment against the real Postgres and object store:
the right answer passes; realistic wrong answers are rejected with a telling message."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.common.sql.sensors.sql import SqlSensor
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import dag, task

from delab import datasets
from delab.checks.m01 import l01_airflow as checks
from delab.grading import NotSolvedYet, WrongAnswer

pytestmark = pytest.mark.stack

GOOD_SENSOR = dict(poke_interval=1, timeout=3, mode="reschedule", soft_fail=True)
EXTRACT_SQL = """
SELECT p.category, {count} AS orders, round(sum(i.quantity * i.unit_price)::numeric, 2){cast}
FROM m01_l01.orders o JOIN m01_l01.order_items i USING (order_id) JOIN m01_l01.products p USING (product_id)
WHERE o.order_ts >= %(day)s::date AND o.order_ts {end} %(day)s::date + 1 {status}
GROUP BY p.category ORDER BY p.category
"""


@pytest.fixture(scope="module", autouse=True)
def shop_in_postgres():
    shop = datasets.shop(seed=7, scale=0.25)
    datasets.to_postgres(
        {"orders": shop.orders.drop_duplicates("order_id"), "order_items": shop.order_items, "products": shop.products},
        schema="m01_l01",
    )


def make_extract(cast="::float", end="<", status="AND o.status <> 'cancelled'", count="count(DISTINCT o.order_id)"):
    def extract(day):
        rows = PostgresHook(postgres_conn_id="shop_postgres").get_records(
            EXTRACT_SQL.format(cast=cast, end=end, status=status, count=count), parameters={"day": day}
        )
        return [{"category": c, "orders": n, "revenue": r} for c, n, r in rows]

    return extract


def test_extract_accepts_solution():
    checks.extract_daily_revenue(make_extract())


def test_extract_rejects_inclusive_day_end():
    with pytest.raises(WrongAnswer, match=r"order counts|revenue"):
        checks.extract_daily_revenue(make_extract(end="<="))


def test_extract_rejects_cancelled_orders():
    with pytest.raises(WrongAnswer, match="off"):
        checks.extract_daily_revenue(make_extract(status=""))


def test_extract_rejects_counting_lines_as_orders():
    # an order with two lines in one category counts once
    with pytest.raises(WrongAnswer, match="order counts"):
        checks.extract_daily_revenue(make_extract(count="count(o.order_id)"))


def test_extract_rejects_keeping_only_some_statuses():
    # the text leaves out cancelled orders only: placed, shipped and returned ones are still sales of the day
    with pytest.raises(WrongAnswer, match="order counts"):
        checks.extract_daily_revenue(make_extract(status="AND o.status = 'delivered'"))


def test_extract_rejects_decimals_that_cannot_be_xcoms():
    with pytest.raises(WrongAnswer, match="XCom"):
        checks.extract_daily_revenue(make_extract(cast=""))


def test_extract_says_when_values_are_not_numbers():
    # used to crash in astype: revenue formatted as text
    def formatted(day):
        return [dict(row, revenue=f"{row['revenue']:.2f} EUR") for row in make_extract()(day)]

    with pytest.raises(WrongAnswer, match="must be numbers"):
        checks.extract_daily_revenue(formatted)


def test_extract_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.extract_daily_revenue(...)


def test_sensor_settings_accept_solution():
    checks.sensor_and_report_settings(GOOD_SENSOR, "all_done")


@pytest.mark.parametrize(
    ("settings", "rule", "message"),
    [
        ({**GOOD_SENSOR, "mode": "poke"}, "all_done", "worker slot"),
        ({k: v for k, v in GOOD_SENSOR.items() if k != "timeout"}, "all_done", "never comes"),
        ({**GOOD_SENSOR, "soft_fail": False}, "all_done", "looks broken"),
        (GOOD_SENSOR, "all_success", "report ended"),
        (GOOD_SENSOR, "none_failed", "not after a failed load"),
        (GOOD_SENSOR, "always", "does not even wait"),
        (GOOD_SENSOR, "whenever", "not an Airflow trigger rule"),
        ({**GOOD_SENSOR, "timeout": 31}, "all_done", "never comes"),  # "at most 30 seconds"
        ({**GOOD_SENSOR, "timeout": "five seconds"}, "all_done", "not a duration"),  # used to crash in float()
        ({**GOOD_SENSOR, "timeout": None}, "all_done", "not a duration"),
        ({k: v for k, v in GOOD_SENSOR.items() if k != "poke_interval"}, "all_done", "checks every 60 s"),
    ],
)
def test_sensor_settings_reject_wrong_answers(settings, rule, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.sensor_and_report_settings(settings, rule)


def make_factory(
    catchup=False,
    key="m01_l01/daily_revenue/day={ds}/revenue.parquet",
    with_share=True,
    sensor_first=True,
    share_of="revenue",
    sensor_sql="SELECT count(*) FROM m01_l01.orders WHERE order_ts::date = '{{ ds }}'",
    write=True,
):
    def factory():
        import pandas as pd

        @dag(dag_id="m01_shop_etl", schedule="@daily", start_date=datetime(2026, 3, 1), catchup=catchup)
        def shop_etl():
            wait = SqlSensor(
                task_id="wait_for_orders",
                conn_id="shop_postgres",
                sql=sensor_sql,
                **GOOD_SENSOR,
            )

            @task
            def extract(ds=None):
                return make_extract()(ds)

            @task
            def transform(rows):
                total = sum(r[share_of] for r in rows)
                return [{**r, "share": r[share_of] / total} if with_share else r for r in rows]

            @task
            def load(rows, ds=None):
                target = key.format(ds=ds)
                buffer = io.BytesIO()
                pd.DataFrame(rows).to_parquet(buffer)
                if write:
                    S3Hook(aws_conn_id="lab_s3").load_bytes(
                        buffer.getvalue(), key=target, bucket_name="delab", replace=True
                    )
                return target

            @task(trigger_rule="all_done")
            def report():
                return "done"

            extracted = extract()
            if sensor_first:
                wait >> extracted
            load(transform(extracted)) >> report()

        return shop_etl()

    return factory


def test_dag_accepts_solution():
    checks.shop_etl_dag(make_factory())


def test_dag_rejects_catchup():
    with pytest.raises(WrongAnswer, match="catchup"):
        checks.shop_etl_dag(make_factory(catchup=True))


def test_dag_rejects_extract_not_waiting_for_sensor():
    with pytest.raises(WrongAnswer, match="extract does not wait for wait_for_orders"):
        checks.shop_etl_dag(make_factory(sensor_first=False))


def test_dag_rejects_unpartitioned_key():
    with pytest.raises(WrongAnswer, match="load returned"):
        checks.shop_etl_dag(make_factory(key="m01_l01/daily_revenue/revenue.parquet"))


def test_dag_rejects_missing_share():
    with pytest.raises(WrongAnswer, match="share"):
        checks.shop_etl_dag(make_factory(with_share=False))


def test_dag_rejects_a_share_of_the_orders():
    # orders / total orders also adds up to 1: each row's share is compared with its revenue
    with pytest.raises(WrongAnswer, match="part of the orders"):
        checks.shop_etl_dag(make_factory(share_of="orders"))


def test_dag_says_when_load_returns_a_key_it_did_not_write():
    # used to crash in get_object (NoSuchKey)
    with pytest.raises(WrongAnswer, match="no object was written there"):
        checks.shop_etl_dag(make_factory(write=False))


def test_dag_rejects_a_sensor_that_ignores_the_day():
    # counting every order: the sensor succeeds on a day without orders (the hint used to blame the settings)
    with pytest.raises(WrongAnswer, match="found orders on 2026-05-01"):
        checks.shop_etl_dag(make_factory(sensor_sql="SELECT count(*) FROM m01_l01.orders"))


def test_dag_factory_placeholder_is_not_solved():
    def stub():
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.shop_etl_dag(stub)
