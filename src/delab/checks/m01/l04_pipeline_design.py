"""Checks of lab 01.04 (pipeline design): an idempotent load, a failure alert, recovery from a failed run, and a
reconciliation that proves the output complete. They run the learner's code against the stack's Postgres and
re-derive every expected number with their own queries."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from delab import clients
from delab.grading import WrongAnswer, exercise, learner_code
from delab.orchestration import shop_pipeline

SCHEMA = "m01_l04"
LOAD_DAYS = ("2026-03-10", "2026-03-11")
POISON_DAY = "2026-03-14"  # two order lines with a negative quantity


def _frame(conn, sql: str, params=None) -> pd.DataFrame:
    cursor = conn.execute(sql, params)
    return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])


def expected_fact(conn, day: str) -> pd.DataFrame:
    return _frame(
        conn,
        f"""
        SELECT order_id, round(sum(quantity * unit_price)::numeric, 2)::float AS revenue
        FROM {SCHEMA}.staging_lines s WHERE day = %(day)s
          AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.quarantine q WHERE q.day = s.day AND q.order_id = s.order_id)
        GROUP BY order_id ORDER BY order_id""",
        {"day": day},
    )


def loaded_fact(conn, day: str) -> pd.DataFrame:
    return _frame(
        conn,
        f"SELECT order_id, revenue::float AS revenue FROM {SCHEMA}.fact_order_revenue "
        "WHERE day = %(day)s ORDER BY order_id",
        {"day": day},
    )


def _same(got: pd.DataFrame, want: pd.DataFrame) -> bool:
    return (
        len(got) == len(want)
        and (got.order_id.to_numpy() == want.order_id.to_numpy()).all()
        and ((got.revenue - want.revenue).abs() <= 0.005).all()
    )


@learner_code("load_day")
def _load(fn, conn, day):
    return fn(conn, day)


@exercise("m01.l04.e1")
def idempotent_load(load_day) -> None:
    """Loading a day replaces exactly that day, however often it runs."""
    with clients.postgres() as conn:
        for day in LOAD_DAYS:
            shop_pipeline.reset_day(conn, SCHEMA, day)
            shop_pipeline.extract_day(conn, SCHEMA, day)
        first, other = LOAD_DAYS
        for day in LOAD_DAYS:
            _load(load_day, conn, day)
            if not _same(loaded_fact(conn, day), expected_fact(conn, day)):
                raise WrongAnswer(
                    f"after one load, the facts of {day} differ from the staged lines.",
                    hint="one row per order: the sum of quantity * unit_price of its staged lines.",
                )
        _load(load_day, conn, first)
        if not _same(loaded_fact(conn, first), expected_fact(conn, first)):
            raise WrongAnswer(
                f"loading {first} a second time changed its facts.",
                hint="a re-run must replace the day's rows, not add to them.",
            )
        if not _same(loaded_fact(conn, other), expected_fact(conn, other)):
            raise WrongAnswer(f"loading {first} again damaged {other}.", hint="replace only the day being loaded.")
        # a late correction arrives in staging: the next run must pick it up
        conn.execute(
            f"UPDATE {SCHEMA}.staging_lines SET quantity = quantity + 1 WHERE day = %s AND "
            f"(order_id, line_no) = (SELECT order_id, line_no FROM {SCHEMA}.staging_lines WHERE day = %s "
            "ORDER BY order_id, line_no LIMIT 1)",
            (first, first),
        )
        _load(load_day, conn, first)
        if not _same(loaded_fact(conn, first), expected_fact(conn, first)):
            raise WrongAnswer(
                "a corrected line in staging did not reach the facts on the next run.",
                hint="skipping rows that already exist keeps stale values: replace them.",
            )


# ------------------------------------------------------------------------------------------------ alerting


def _probe_dag(callback, fail: bool):
    from airflow.sdk import DAG, task

    with DAG(
        "m01_l04_alert_probe",
        schedule="@daily",
        start_date=datetime(2026, 3, 1),
        catchup=False,
        default_args={"on_failure_callback": callback},
    ) as dag:

        @task
        def extract():
            return 1

        @task
        def load(_):
            if fail:
                raise ValueError("disk full on the warehouse")

        load(extract())
    return dag


@exercise("m01.l04.e2")
def failure_alert(alert_on_failure, receiver) -> None:
    """A failure callback that alerts with what failed, where and why — and stays quiet otherwise."""
    from delab.orchestration import airflow as lab_airflow

    if not callable(alert_on_failure):
        raise WrongAnswer("expected a function taking the task context.", hint="def alert_on_failure(context): ...")
    receiver.clear()
    lab_airflow.run(_probe_dag(alert_on_failure, fail=False), logical_date=datetime(2026, 3, 2))
    if receiver.wait_for(1, timeout=1):
        raise WrongAnswer("a run where nothing failed sent an alert.", hint="alert only on failure.")
    lab_airflow.run(_probe_dag(alert_on_failure, fail=True), logical_date=datetime(2026, 3, 3))
    messages = receiver.wait_for(1, timeout=5)
    if not messages:
        raise WrongAnswer(
            "the failing run sent no alert.",
            hint="Airflow swallows errors raised inside callbacks: call it yourself with a fake "
            "context to see them, and post JSON to alerts.url.",
        )
    if len(messages) != 1:
        raise WrongAnswer(f"one failure sent {len(messages)} alerts.", hint="one alert per failed task.")
    alert = messages[0]
    if not isinstance(alert, dict):
        raise WrongAnswer("the alert is not a JSON object.", hint="post json={...}.")
    expected = {"dag_id": "m01_l04_alert_probe", "task_id": "load", "logical_date": "2026-03-03"}
    for key, value in expected.items():
        if str(alert.get(key, ""))[: len(value)] != value:
            raise WrongAnswer(
                f"the alert's {key} is {alert.get(key)!r}, expected {value!r}.",
                hint="the context has ti (task instance) and logical_date.",
            )
    if "disk full" not in str(alert.get("error", "")):
        raise WrongAnswer("the alert does not say why the task failed.", hint="context['exception'] holds the error.")


# ------------------------------------------------------------------------------------------------- recovery


def _task_runs(conn, task_id: str, day: str) -> int:
    return conn.execute(
        f"SELECT count(*) FROM {SCHEMA}.task_log WHERE task_id = %s AND day = %s", (task_id, day)
    ).fetchone()[0]


@learner_code("recover")
def _recover(fn, dag, failed):
    return fn(dag, failed)


@exercise("m01.l04.e3")
def recovery(recover, build_pipeline) -> None:
    """Quarantine the poison, then resume the failed run from the failed task — no re-extract, nothing lost."""
    from delab.orchestration import airflow as lab_airflow

    with clients.postgres() as conn:
        shop_pipeline.reset_day(conn, SCHEMA, POISON_DAY)
    dag = build_pipeline()
    failed = lab_airflow.run(dag, logical_date=datetime.fromisoformat(POISON_DAY))
    if failed.tasks.get("validate") != "failed":
        raise WrongAnswer(
            f"the pipeline should fail at validate on {POISON_DAY}; it ended {failed.tasks}.",
            hint="run build_pipeline() as the lab defines it.",
        )
    with clients.postgres() as conn:
        bad = shop_pipeline.invalid_lines(conn, SCHEMA, POISON_DAY)
    result = _recover(recover, build_pipeline(), failed)
    if getattr(result, "state", None) != "success":
        raise WrongAnswer(
            f"after recovery the run ended {getattr(result, 'state', result)!r}.",
            hint="quarantine the invalid lines of the failed day first, then resume.",
        )
    with clients.postgres() as conn:
        if _task_runs(conn, "extract", POISON_DAY) != 1:
            raise WrongAnswer(
                "extract ran again although it had succeeded.",
                hint="resume the failed run (lab_airflow.run(..., resume=failed)) instead of starting over.",
            )
        quarantined = {
            (o, n)
            for o, n in conn.execute(
                f"SELECT order_id, line_no FROM {SCHEMA}.quarantine WHERE day = %s", (POISON_DAY,)
            ).fetchall()
        }
        if quarantined != {(o, n) for o, n, _ in bad}:
            raise WrongAnswer(
                f"the quarantine holds {len(quarantined)} line(s) for {POISON_DAY}; {len(bad)} were invalid.",
                hint="keep each invalid line in the quarantine table, with its reason — deleted "
                "evidence cannot be investigated or replayed.",
            )
        staged = conn.execute(f"SELECT count(*) FROM {SCHEMA}.staging_lines WHERE day = %s", (POISON_DAY,)).fetchone()[
            0
        ]
        source = conn.execute(
            f"SELECT count(*) FROM {SCHEMA}.order_items i JOIN {SCHEMA}.orders o USING (order_id)"
            " WHERE o.order_ts >= %(d)s::date AND o.order_ts < %(d)s::date + 1 "
            "AND o.status <> 'cancelled'",
            {"d": POISON_DAY},
        ).fetchone()[0]
        if staged != source:
            raise WrongAnswer("lines disappeared from staging.", hint="quarantine them; do not delete them.")
        if not _same(loaded_fact(conn, POISON_DAY), expected_fact(conn, POISON_DAY)):
            raise WrongAnswer("the facts of the recovered day are incomplete.", hint="load must run after the fix.")


# -------------------------------------------------------------------------------------------- reconciliation


def expected_reconciliation(conn) -> pd.DataFrame:
    source = _frame(
        conn,
        f"SELECT order_ts::date AS day, count(*) AS source_orders FROM {SCHEMA}.orders "
        "WHERE status <> 'cancelled' GROUP BY 1",
    )
    loaded = _frame(conn, f"SELECT day, count(*) AS loaded_orders FROM {SCHEMA}.fact_order_revenue GROUP BY 1")
    held = _frame(
        conn, f"SELECT day, count(DISTINCT order_id) AS quarantined_orders FROM {SCHEMA}.quarantine GROUP BY 1"
    )
    days = pd.concat([loaded.day, held.day]).drop_duplicates()
    out = pd.DataFrame({"day": days}).merge(source, on="day", how="left").merge(loaded, on="day", how="left")
    out = out.merge(held, on="day", how="left").fillna(0)
    for column in ("source_orders", "loaded_orders", "quarantined_orders"):
        out[column] = out[column].astype(int)
    out["complete"] = out.source_orders == out.loaded_orders + out.quarantined_orders
    return out.sort_values("day", ignore_index=True)


@exercise("m01.l04.e4")
def reconciliation(reconciliation_sql: str) -> None:
    """Per loaded day: orders in the source = orders loaded + orders held in quarantine."""
    with clients.postgres() as conn:
        want = expected_reconciliation(conn)
        got = _run(conn, reconciliation_sql)
    need = ["day", "source_orders", "loaded_orders", "quarantined_orders", "complete"]
    if list(got.columns) != need:
        raise WrongAnswer(f"expected the columns {need}, got {list(got.columns)}.", hint="name them with AS.")
    got = got.sort_values("day", ignore_index=True)
    if [str(d) for d in got.day] != [str(d) for d in want.day]:
        raise WrongAnswer(
            f"expected one row per day that was loaded or quarantined ({len(want)} days), got {len(got)}.",
            hint="start from the days present in the facts or the quarantine.",
        )
    for column in need[1:4]:
        if (got[column].astype(int).to_numpy() != want[column].to_numpy()).any():
            raise WrongAnswer(
                f"{column} is off for some days.", hint="count orders, not lines; the source excludes cancelled orders."
            )
    if (got.complete.astype(bool).to_numpy() != want.complete.to_numpy()).any():
        raise WrongAnswer(
            "complete does not say whether source = loaded + quarantined.", hint="compare the three counts in SQL."
        )


@learner_code("your query")
def _run(conn, sql: str) -> pd.DataFrame:
    if not isinstance(sql, str) or not sql.strip():
        raise WrongAnswer("expected the SQL as a non-empty string.", hint='"""SELECT ..."""')
    return _frame(conn, sql)
