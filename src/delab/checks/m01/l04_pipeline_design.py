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


def _quarantine_one_line(conn, day: str, order_id: int) -> None:
    """Hold the first line of an order in quarantine, as a fix of an earlier failure would."""
    conn.execute(
        f"INSERT INTO {SCHEMA}.quarantine (day, order_id, line_no, reason) SELECT day, order_id, min(line_no), "
        f"'held by the check' FROM {SCHEMA}.staging_lines WHERE day = %s AND order_id = %s GROUP BY day, order_id",
        (day, order_id),
    )


def _judge_load(conn, day: str, when: str) -> None:
    got, want = loaded_fact(conn, day), expected_fact(conn, day)
    if _same(got, want):
        return
    held = {o for (o,) in conn.execute(f"SELECT order_id FROM {SCHEMA}.quarantine WHERE day = %s", (day,))}
    if held & set(got.order_id) - set(want.order_id):
        raise WrongAnswer(
            f"{when}, the facts of {day} hold {len(held & set(got.order_id))} order(s) that have a line in quarantine.",
            hint="leave out every order with a line in m01_l04.quarantine for that day (NOT EXISTS), the whole "
            "order, not only the quarantined line.",
        )
    raise WrongAnswer(
        f"{when}, the facts of {day} differ from the staged lines.",
        hint="one row per order: the sum of quantity * unit_price of its staged lines.",
    )


@exercise("m01.l04.e1")
def idempotent_load(load_day) -> None:
    """Loading a day replaces exactly that day, however often it runs."""
    with clients.postgres() as conn:
        for day in LOAD_DAYS:
            shop_pipeline.reset_day(conn, SCHEMA, day)
            shop_pipeline.extract_day(conn, SCHEMA, day)
        first, other = LOAD_DAYS
        multi_line = [
            o
            for (o,) in conn.execute(
                f"SELECT order_id FROM {SCHEMA}.staging_lines WHERE day = %s GROUP BY order_id "
                "HAVING count(*) >= 2 ORDER BY order_id LIMIT 2",
                (first,),
            )
        ]
        _quarantine_one_line(conn, first, multi_line[0])  # held before the first load
        for day in LOAD_DAYS:
            _load(load_day, conn, day)
            _judge_load(conn, day, "after one load")
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
            f"(order_id, line_no) = (SELECT order_id, line_no FROM {SCHEMA}.staging_lines s WHERE day = %s "
            f"AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.quarantine q WHERE q.day = s.day AND q.order_id = s.order_id) "
            "ORDER BY order_id, line_no LIMIT 1)",
            (first, first),
        )
        _load(load_day, conn, first)
        if not _same(loaded_fact(conn, first), expected_fact(conn, first)):
            raise WrongAnswer(
                "a corrected line in staging did not reach the facts on the next run.",
                hint="skipping rows that already exist keeps stale values: replace them.",
            )
        # an order quarantined after the day was loaded must leave the facts on the next run
        _quarantine_one_line(conn, first, multi_line[1])
        _load(load_day, conn, first)
        if multi_line[1] in set(loaded_fact(conn, first).order_id):
            raise WrongAnswer(
                f"order {multi_line[1]}, quarantined after {first} was loaded, is still in the facts after a re-run.",
                hint="an insert or upsert never removes a row: replace the day — delete its rows, then insert.",
            )
        _judge_load(conn, first, "after a re-run")
        _crash_midway(load_day, conn, first)


def _crash_midway(load_day, conn, day: str) -> None:
    """A staged line too big for the facts' numeric(12, 2) makes the insert fail after the delete: the day's old
    rows must survive, which only a transaction guarantees (the connection commits each statement)."""
    before = loaded_fact(conn, day)
    conn.execute(
        f"INSERT INTO {SCHEMA}.staging_lines SELECT day, order_id, 999, product_id, 1, 1e11 "
        f"FROM {SCHEMA}.staging_lines WHERE day = %s AND (order_id, line_no) = (SELECT order_id, line_no FROM "
        f"{SCHEMA}.staging_lines s WHERE day = %s AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.quarantine q "
        "WHERE q.day = s.day AND q.order_id = s.order_id) ORDER BY order_id DESC, line_no LIMIT 1)",
        (day, day),
    )
    try:
        load_day(conn, day)
    except Exception:  # expected: the overflow; what matters is what the failed load left behind
        pass
    finally:
        if not conn.autocommit:
            conn.rollback()
        conn.execute(f"DELETE FROM {SCHEMA}.staging_lines WHERE day = %s AND line_no = 999", (day,))
    after = loaded_fact(conn, day)
    if not _same(after, before):
        _load(load_day, conn, day)  # leave the day loaded for the rest of the lab
        raise WrongAnswer(
            f"a load of {day} that failed midway (a revenue too big for numeric(12, 2)) left {len(after)} of its "
            f"{len(before)} facts.",
            hint="delete and insert in one transaction (with conn.transaction():), so a crash keeps the old rows.",
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
        got, want = loaded_fact(conn, POISON_DAY), expected_fact(conn, POISON_DAY)
        if not _same(got, want):
            if set(got.order_id) - set(want.order_id) & {o for o, _ in quarantined}:
                raise WrongAnswer(
                    "the recovery went right, but the facts hold quarantined orders: your load_day (exercise 1) "
                    "ignores the quarantine.",
                    hint="fix load_day so it leaves out orders with a line in m01_l04.quarantine, then run this "
                    "check again.",
                )
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


RECONCILE_DAY = "2026-03-21"  # a day no other step of the lab loads


def _reconcile_fixture(conn) -> None:
    """Inside the check's transaction: a day where a whole order of several lines is quarantined and one loaded
    order went missing — so counting lines, or `>=` instead of `=`, shows."""
    day = RECONCILE_DAY
    shop_pipeline.reset_day(conn, SCHEMA, day)
    shop_pipeline.extract_day(conn, SCHEMA, day)
    conn.execute(
        f"INSERT INTO {SCHEMA}.quarantine (day, order_id, line_no, reason) SELECT day, order_id, line_no, "
        f"'held by the check' FROM {SCHEMA}.staging_lines WHERE day = %(day)s AND order_id = (SELECT order_id "
        f"FROM {SCHEMA}.staging_lines WHERE day = %(day)s GROUP BY order_id HAVING count(*) >= 2 "
        "ORDER BY order_id LIMIT 1)",
        {"day": day},
    )
    conn.execute(
        f"""INSERT INTO {SCHEMA}.fact_order_revenue (order_id, day, revenue)
            SELECT order_id, day, round(sum(quantity * unit_price)::numeric, 2) FROM {SCHEMA}.staging_lines s
            WHERE day = %(day)s AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.quarantine q WHERE q.day = s.day
                                                AND q.order_id = s.order_id)
            GROUP BY order_id, day""",
        {"day": day},
    )
    conn.execute(
        f"DELETE FROM {SCHEMA}.fact_order_revenue WHERE order_id = (SELECT max(order_id) FROM "
        f"{SCHEMA}.fact_order_revenue WHERE day = %s)",
        (day,),
    )


def _line_counts(conn) -> tuple[pd.DataFrame, pd.DataFrame]:
    source = _frame(
        conn,
        f"SELECT o.order_ts::date AS day, count(*) AS n FROM {SCHEMA}.orders o JOIN {SCHEMA}.order_items "
        "USING (order_id) WHERE o.status <> 'cancelled' GROUP BY 1",
    )
    held = _frame(conn, f"SELECT day, count(*) AS n FROM {SCHEMA}.quarantine GROUP BY 1")
    return source, held


@exercise("m01.l04.e4")
def reconciliation(reconciliation_sql: str) -> None:
    """Per loaded day: orders in the source = orders loaded + orders held in quarantine."""
    with clients.postgres() as conn, conn.transaction(force_rollback=True):  # the fixture day is never kept
        _reconcile_fixture(conn)
        want = expected_reconciliation(conn)
        got = _run(conn, reconciliation_sql)
        source_lines, held_lines = _line_counts(conn)
    need = ["day", "source_orders", "loaded_orders", "quarantined_orders", "complete"]
    if list(got.columns) != need:
        raise WrongAnswer(f"expected the columns {need}, got {list(got.columns)}.", hint="name them with AS.")
    got = got.sort_values("day", ignore_index=True)
    if [str(d) for d in got.day] != [str(d) for d in want.day]:
        raise WrongAnswer(
            f"expected one row per day that was loaded or quarantined ({len(want)} days), got {len(got)}.",
            hint="start from the days present in the facts or the quarantine.",
        )
    lines = {"source_orders": source_lines, "quarantined_orders": held_lines}
    for column in need[1:4]:
        try:
            values = got[column].astype(int).to_numpy()
        except (TypeError, ValueError):
            raise WrongAnswer(f"{column} holds something other than counts.", hint="coalesce(count, 0)") from None
        if (values != want[column].to_numpy()).any():
            if column in lines:
                per_line = want[["day"]].merge(lines[column], on="day", how="left").n.fillna(0).astype(int)
                if (values == per_line.to_numpy()).all():
                    raise WrongAnswer(
                        f"{column} counts order lines: an order with several lines is counted several times.",
                        hint="count orders — count(DISTINCT order_id), or count the orders table itself.",
                    )
            raise WrongAnswer(
                f"{column} is off for some days.", hint="count orders, not lines; the source excludes cancelled orders."
            )
    complete = got.complete.astype(bool).to_numpy()
    if (complete != want.complete.to_numpy()).any():
        if (complete & ~want.complete.to_numpy()).any() and (
            want.source_orders >= want.loaded_orders + want.quarantined_orders
        ).to_numpy()[complete].all():
            raise WrongAnswer(
                "a day where an order is neither loaded nor quarantined is reported complete.",
                hint="complete means source = loaded + quarantined exactly; `>=` hides missing orders.",
            )
        raise WrongAnswer(
            "complete does not say whether source = loaded + quarantined.", hint="compare the three counts in SQL."
        )


@learner_code("your query")
def _run(conn, sql: str) -> pd.DataFrame:
    if not isinstance(sql, str) or not sql.strip():
        raise WrongAnswer("expected the SQL as a non-empty string.", hint='"""SELECT ..."""')
    return _frame(conn, sql)
