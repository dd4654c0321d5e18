"""Checks of lab 01.05 (scheduling), in the delab-airflow environment against the real Postgres and object store."""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import Asset, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from delab import datasets
from delab.checks.m01 import l05_scheduling as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.orchestration import airflow as lab_airflow

GOOD_CRON = {
    "weekday_mornings": "30 6 * * 1-5",
    "business_quarter_hours": "*/15 8-18 * * 1-5",
    "monthly_close": "0 2 1 * *",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weekday_mornings": "30 6 * * 0-4"}, "fires at Sun"),
        ({"business_quarter_hours": "*/15 8-19 * * 1-5"}, "19:00"),
        ({"business_quarter_hours": "*/15 8-18 * * *"}, "fires at Sun"),
        ({"monthly_close": "0 2 * * 1"}, "monthly_close"),
        ({"monthly_close": "0 2 1 *"}, "not a valid cron"),
        ({"business_quarter_hours": "*/15 8-17 * * 1-5"}, "never fires at Mon 2026-03-02 18:00"),  # until 18:45
        ({"weekday_mornings": "6 30 * * 1-5"}, "not a valid cron"),  # hour and minute swapped: 30 is no hour
        ({"monthly_close": "0 2 1 * 1"}, "fires at"),  # day of month AND day of week: cron fires on either
        ({"weekday_mornings": "30 18 * * 1-5"}, "06:30"),  # 6:30 pm
    ],
)
def test_cron_rejects_wrong_schedules(change, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.cron_schedules({**GOOD_CRON, **change})


def test_cron_accepts_solution_and_placeholder_is_not_solved():
    checks.cron_schedules(GOOD_CRON)
    with pytest.raises(NotSolvedYet):
        checks.cron_schedules(...)
    with pytest.raises(WrongAnswer, match="no expression"):
        checks.cron_schedules({"weekday_mornings": "30 6 * * 1-5"})


def good_interval(run_after):
    end = run_after.replace(hour=6, minute=0, second=0, microsecond=0)
    if end > run_after:
        end -= timedelta(days=1)
    return end - timedelta(days=1), end


def test_interval_accepts_solution():
    checks.data_interval(good_interval)


def test_interval_rejects_the_interval_that_starts_now():
    def starting(run_after):
        end = good_interval(run_after)[1]
        return end, end + timedelta(days=1)

    with pytest.raises(WrongAnswer, match="just ENDED"):
        checks.data_interval(starting)


def test_interval_rejects_midnight_boundaries():
    def midnight(run_after):
        day = run_after.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=1), day

    with pytest.raises(WrongAnswer, match="06:00"):
        checks.data_interval(midnight)


def test_interval_says_when_the_pair_is_not_datetimes():
    # used to crash: pandas could not parse the values
    with pytest.raises(WrongAnswer, match="not two datetimes"):
        checks.data_interval(lambda run_after: ("yesterday 06:00", "today 06:00"))
    with pytest.raises(WrongAnswer, match="not two datetimes"):
        checks.data_interval(lambda run_after: (None, run_after))


def test_interval_stub_is_not_solved():
    def stub(run_after):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.data_interval(stub)


@pytest.fixture(scope="module")
def orders_in_postgres():
    shop = datasets.shop(seed=7, scale=0.25)
    datasets.to_postgres({"orders": shop.orders.drop_duplicates("order_id")}, schema="m01_l05")


def export_factory(unique_keys=False, outlets=()):
    def factory():
        @dag(
            dag_id="m01_l05_export",
            schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
            start_date=datetime(2026, 3, 1),
            catchup=False,
        )
        def export():
            @task(outlets=list(outlets))
            def export_orders(ds=None, data_interval_start=None, data_interval_end=None):
                frame = PostgresHook(postgres_conn_id="shop_postgres").get_df(
                    "SELECT * FROM m01_l05.orders WHERE order_ts >= %(s)s AND order_ts < %(e)s",
                    parameters={
                        "s": data_interval_start.strftime("%Y-%m-%d %H:%M:%S"),
                        "e": data_interval_end.strftime("%Y-%m-%d %H:%M:%S"),
                    },
                )
                buffer = io.BytesIO()
                frame.to_parquet(buffer)
                name = uuid.uuid4().hex if unique_keys else "orders"
                key = f"m01_l05/orders/day={ds}/{name}.parquet"
                S3Hook(aws_conn_id="lab_s3").load_bytes(buffer.getvalue(), key=key, bucket_name="delab", replace=True)
                return key

            export_orders()

        return export()

    return factory


def make_backfill(inclusive=True, shift=0, returns=lambda results: results):
    def backfill(dag, start, end):
        results, day = [], start + timedelta(days=shift)
        while day <= end + timedelta(days=shift) if inclusive else day < end:
            results.append(lab_airflow.run(dag, logical_date=day))
            day += timedelta(days=1)
        return returns(results)

    return backfill


@pytest.mark.stack
def test_backfill_accepts_solution(orders_in_postgres):
    checks.backfill(make_backfill(), export_factory())


@pytest.mark.stack
def test_backfill_rejects_exclusive_end(orders_in_postgres):
    with pytest.raises(WrongAnswer, match="both ends"):
        checks.backfill(make_backfill(inclusive=False), export_factory())


@pytest.mark.stack
def test_backfill_rejects_shifted_days(orders_in_postgres):
    with pytest.raises(WrongAnswer, match="START of the day"):
        checks.backfill(make_backfill(shift=1), export_factory())


@pytest.mark.stack
def test_backfill_rejects_appending_runs(orders_in_postgres):
    with pytest.raises(WrongAnswer, match="changed the output"):
        checks.backfill(make_backfill(), export_factory(unique_keys=True))


@pytest.mark.stack
def test_backfill_says_when_nothing_is_returned(orders_in_postgres):
    # the runs happened, but the hint used to say "both ends are included"
    with pytest.raises(WrongAnswer, match="returned NoneType"):
        checks.backfill(make_backfill(returns=lambda results: None), export_factory())


@pytest.mark.stack
def test_backfill_says_when_states_are_returned_instead_of_results(orders_in_postgres):
    with pytest.raises(WrongAnswer, match="holds str values"):
        checks.backfill(make_backfill(returns=lambda results: [r.state for r in results]), export_factory())


ASSET = Asset("s3://delab/m01_l05/orders")


def report_factory(schedule):
    def factory():
        @dag(dag_id="m01_l05_report", schedule=schedule, start_date=datetime(2026, 3, 1), catchup=False)
        def report():
            @task
            def count():
                return 1

            count()

        return report()

    return factory


@pytest.mark.stack
def test_asset_trigger_accepts_solution(orders_in_postgres):
    checks.asset_trigger(ASSET, report_factory([ASSET]), export_factory(outlets=[ASSET]))


@pytest.mark.stack
def test_asset_trigger_rejects_clock_schedule(orders_in_postgres):
    with pytest.raises(WrongAnswer, match="nothing queued"):
        checks.asset_trigger(ASSET, report_factory("@daily"), export_factory(outlets=[ASSET]))


@pytest.mark.stack
def test_asset_trigger_rejects_a_report_on_another_uri(orders_in_postgres):
    # the report waits for the prefix with a trailing slash: another asset, which nothing updates
    with pytest.raises(WrongAnswer, match="nothing queued"):
        checks.asset_trigger(
            ASSET, report_factory([Asset("s3://delab/m01_l05/orders/")]), export_factory(outlets=[ASSET])
        )


@pytest.mark.stack
def test_asset_trigger_rejects_export_without_outlet(orders_in_postgres):
    with pytest.raises(WrongAnswer, match="outlet"):
        checks.asset_trigger(ASSET, report_factory([ASSET]), export_factory())


def test_asset_trigger_rejects_other_uri():
    with pytest.raises(WrongAnswer, match="URI"):
        checks.asset_trigger(Asset("s3://delab/orders"), report_factory([ASSET]), export_factory())
