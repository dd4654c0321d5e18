"""Checks of lab 01.04 (pipeline design), in the delab-airflow environment against the real Postgres."""

from __future__ import annotations

import contextlib
from datetime import datetime

import pytest
import requests
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from delab import clients
from delab.checks.m01 import l04_pipeline_design as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.localhttp import Receiver
from delab.orchestration import airflow as lab_airflow
from delab.orchestration import shop_pipeline

pytestmark = pytest.mark.stack

LOAD_SQL = """INSERT INTO m01_l04.fact_order_revenue (order_id, day, revenue)
    SELECT order_id, day, round(sum(quantity * unit_price)::numeric, 2) FROM m01_l04.staging_lines s
    WHERE day = %(day)s AND NOT EXISTS (SELECT 1 FROM m01_l04.quarantine q WHERE q.day = s.day
                                        AND q.order_id = s.order_id)
    GROUP BY order_id, day {conflict}"""


@pytest.fixture(scope="module", autouse=True)
def schema():
    shop_pipeline.prepare("m01_l04")


QUARANTINE_FILTER = """AND NOT EXISTS (SELECT 1 FROM m01_l04.quarantine q WHERE q.day = s.day
                                        AND q.order_id = s.order_id)"""


def make_load(delete="WHERE day = %(day)s", conflict="", quarantine=True, transaction=True):
    def load_day(conn, day):
        sql = LOAD_SQL.format(conflict=conflict)
        if not quarantine:
            sql = sql.replace(QUARANTINE_FILTER, "")
            assert "quarantine" not in sql
        with conn.transaction() if transaction else contextlib.nullcontext():
            if delete is not None:
                conn.execute(f"DELETE FROM m01_l04.fact_order_revenue {delete}", {"day": day})
            conn.execute(sql, {"day": day})

    return load_day


def test_load_accepts_delete_then_insert():
    checks.idempotent_load(make_load())


def test_load_rejects_plain_insert():
    with pytest.raises(WrongAnswer, match="UniqueViolation"):
        checks.idempotent_load(make_load(delete=None))


def test_load_rejects_insert_that_skips_existing_rows():
    with pytest.raises(WrongAnswer, match="corrected line"):
        checks.idempotent_load(make_load(delete=None, conflict="ON CONFLICT DO NOTHING"))


def test_load_rejects_deleting_every_day():
    with pytest.raises(WrongAnswer, match="damaged"):
        checks.idempotent_load(make_load(delete=""))


def test_load_rejects_ignoring_the_quarantine():
    with pytest.raises(WrongAnswer, match="that have a line in quarantine"):
        checks.idempotent_load(make_load(quarantine=False))


def test_load_rejects_an_upsert_of_the_day():
    upsert = "ON CONFLICT (order_id) DO UPDATE SET day = EXCLUDED.day, revenue = EXCLUDED.revenue"
    with pytest.raises(WrongAnswer, match="still in the facts after a re-run"):
        checks.idempotent_load(make_load(delete=None, conflict=upsert))


def test_load_rejects_delete_and_insert_outside_a_transaction():
    with pytest.raises(WrongAnswer, match="failed midway"):
        checks.idempotent_load(make_load(transaction=False))


def test_load_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.idempotent_load(...)


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as hook:
        yield hook


def make_alert(receiver, with_error=True, as_json=True, key="ti", dag_id=lambda context: context["ti"].dag_id):
    def alert(context):
        ti = context[key]
        body = {"dag_id": dag_id(context), "task_id": ti.task_id, "logical_date": context["logical_date"].isoformat()}
        if with_error:
            body["error"] = str(context["exception"])
        if as_json:
            requests.post(receiver.url, json=body, timeout=5)
        else:
            requests.post(receiver.url, data=body, timeout=5)

    return alert


def test_alert_accepts_solution(receiver):
    checks.failure_alert(make_alert(receiver), receiver)


def test_alert_rejects_missing_error(receiver):
    with pytest.raises(WrongAnswer, match="why"):
        checks.failure_alert(make_alert(receiver, with_error=False), receiver)


def test_alert_rejects_form_encoded_body(receiver):
    with pytest.raises(WrongAnswer, match="JSON"):
        checks.failure_alert(make_alert(receiver, as_json=False), receiver)


def test_alert_rejects_the_run_id_as_the_dag_id(receiver):
    with pytest.raises(WrongAnswer, match="the alert's dag_id is"):
        checks.failure_alert(make_alert(receiver, dag_id=lambda context: context["dag_run"].run_id), receiver)


def test_alert_rejects_a_callback_that_crashes(receiver):
    with pytest.raises(WrongAnswer, match="no alert"):
        checks.failure_alert(make_alert(receiver, key="taskinstance"), receiver)


def pipeline_factory(load=None):
    load_day = load or make_load()

    def build():
        @dag(
            dag_id="m01_l04_pipeline",
            schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
            start_date=datetime(2026, 3, 1),
            catchup=False,
            default_args={"retries": 0},
        )
        def pipeline():
            @task
            def extract(ds=None):
                with clients.postgres() as conn:
                    shop_pipeline.log_task(conn, "m01_l04", "extract", ds)
                    shop_pipeline.extract_day(conn, "m01_l04", ds)

            @task
            def validate(ds=None):
                with clients.postgres() as conn:
                    shop_pipeline.validate_day(conn, "m01_l04", ds)

            @task
            def load(ds=None):
                with clients.postgres() as conn:
                    load_day(conn, ds)

            extract() >> validate() >> load()

        return pipeline()

    return build


def make_recover(quarantine=True, delete=False, resume=True):
    def recover(dag, failed):
        day = failed.logical_date.strftime("%Y-%m-%d")
        with clients.postgres() as conn:
            for order_id, line_no, reason in shop_pipeline.invalid_lines(conn, "m01_l04", day):
                if quarantine:
                    conn.execute(
                        "INSERT INTO m01_l04.quarantine VALUES (%s, %s, %s, %s)", (day, order_id, line_no, reason)
                    )
                if delete:
                    conn.execute(
                        "DELETE FROM m01_l04.staging_lines WHERE day = %s AND order_id = %s AND line_no = %s",
                        (day, order_id, line_no),
                    )
        return lab_airflow.run(
            dag, logical_date=failed.logical_date.replace(tzinfo=None), resume=failed if resume else None
        )

    return recover


def test_recovery_accepts_quarantine_and_resume():
    checks.recovery(make_recover(), pipeline_factory())


def test_recovery_rejects_starting_over():
    with pytest.raises(WrongAnswer, match="extract ran again"):
        checks.recovery(make_recover(resume=False), pipeline_factory())


def test_recovery_rejects_deleting_the_evidence():
    with pytest.raises(WrongAnswer, match="quarantine holds 0"):
        checks.recovery(make_recover(quarantine=False, delete=True), pipeline_factory())


def test_recovery_blames_a_load_that_ignores_the_quarantine():
    build = pipeline_factory(load=make_load(quarantine=False))
    with pytest.raises(WrongAnswer, match=r"your load_day \(exercise 1\) ignores the quarantine"):
        checks.recovery(make_recover(), build)


def test_recovery_rejects_resuming_without_a_fix():
    with pytest.raises(WrongAnswer, match="ended 'failed'"):
        checks.recovery(make_recover(quarantine=False), pipeline_factory())


RECONCILE = """
WITH days AS (SELECT day FROM m01_l04.fact_order_revenue UNION SELECT day FROM m01_l04.quarantine),
source AS (SELECT order_ts::date AS day, count({count}) AS n FROM m01_l04.orders {source_from} GROUP BY 1),
loaded AS (SELECT day, count(*) AS n FROM m01_l04.fact_order_revenue GROUP BY 1),
held AS (SELECT day, count(DISTINCT order_id) AS n FROM m01_l04.quarantine GROUP BY 1)
SELECT d.day, coalesce(s.n, 0) AS source_orders, coalesce(l.n, 0) AS loaded_orders,
       coalesce(h.n, 0) AS quarantined_orders, coalesce(s.n, 0) = coalesce(l.n, 0) + coalesce(h.n, 0) AS complete
FROM days d LEFT JOIN source s USING (day) LEFT JOIN loaded l USING (day) LEFT JOIN held h USING (day)
"""
GOOD_SOURCE = "WHERE status <> 'cancelled'"


def test_reconciliation_accepts_solution():
    checks.reconciliation(RECONCILE.format(count="*", source_from=GOOD_SOURCE))


def test_reconciliation_rejects_counting_cancelled_orders():
    with pytest.raises(WrongAnswer, match="source_orders is off"):
        checks.reconciliation(RECONCILE.format(count="*", source_from=""))


def test_reconciliation_rejects_counting_lines():
    lines = "o JOIN m01_l04.order_items USING (order_id) WHERE status <> 'cancelled'"
    with pytest.raises(WrongAnswer, match="source_orders counts order lines"):
        checks.reconciliation(RECONCILE.format(count="*", source_from=lines))


def test_reconciliation_rejects_counting_quarantined_lines():
    sql = RECONCILE.format(count="*", source_from=GOOD_SOURCE).replace("count(DISTINCT order_id)", "count(*)")
    with pytest.raises(WrongAnswer, match="quarantined_orders counts order lines"):
        checks.reconciliation(sql)


def test_reconciliation_rejects_at_least_instead_of_equal():
    sql = RECONCILE.format(count="*", source_from=GOOD_SOURCE).replace(
        "coalesce(s.n, 0) = coalesce(l.n, 0)", "coalesce(s.n, 0) >= coalesce(l.n, 0)"
    )
    with pytest.raises(WrongAnswer, match="reported complete"):
        checks.reconciliation(sql)


def test_reconciliation_leaves_no_trace_of_its_fixture():
    checks.reconciliation(RECONCILE.format(count="*", source_from=GOOD_SOURCE))
    with clients.postgres() as conn:
        kept = conn.execute(
            "SELECT count(*) FROM m01_l04.staging_lines WHERE day = %s", (checks.RECONCILE_DAY,)
        ).fetchone()[0]
    assert kept == 0


def test_reconciliation_rejects_missing_columns():
    with pytest.raises(WrongAnswer, match="columns"):
        checks.reconciliation("SELECT day FROM m01_l04.fact_order_revenue")
