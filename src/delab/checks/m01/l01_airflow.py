"""Checks of lab 01.01 (Apache Airflow). They run the learner's code for real: the extract function against the
stack's Postgres, the sensor settings and the DAG through ``dag.test()``, and read what landed in the object store.
Airflow is imported inside the checks, so this file loads in every kernel."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import pandas as pd

from delab import clients, config
from delab.grading import WrongAnswer, exercise, learner_code

SCHEMA = "m01_l01"
DAG_ID = "m01_shop_etl"
EMPTY_DAY = "2026-05-01"  # no orders: the extract is a month later than this day
BUSY_DAY = "2026-03-10"


def output_key(day: str) -> str:
    return f"{SCHEMA}/daily_revenue/day={day}/revenue.parquet"


def expected_daily_revenue(day: str) -> pd.DataFrame:
    """Independently of the learner's SQL: revenue and orders per category for one day, cancelled excluded."""
    with clients.postgres() as conn:
        orders = pd.DataFrame(
            conn.execute(f"SELECT order_id, order_ts, status FROM {SCHEMA}.orders").fetchall(),
            columns=["order_id", "order_ts", "status"],
        )
        items = pd.DataFrame(
            conn.execute(f"SELECT order_id, product_id, quantity, unit_price FROM {SCHEMA}.order_items").fetchall(),
            columns=["order_id", "product_id", "quantity", "unit_price"],
        )
        products = pd.DataFrame(
            conn.execute(f"SELECT product_id, category FROM {SCHEMA}.products").fetchall(),
            columns=["product_id", "category"],
        )
    start = pd.Timestamp(day)
    orders = orders[(orders.order_ts >= start) & (orders.order_ts < start + pd.Timedelta(days=1))]
    orders = orders[orders.status != "cancelled"]
    lines = items.merge(orders[["order_id"]], on="order_id").merge(products, on="product_id")
    lines = lines.assign(revenue=lines.quantity * lines.unit_price)
    out = lines.groupby("category").agg(orders=("order_id", "nunique"), revenue=("revenue", "sum")).reset_index()
    return out.assign(revenue=out.revenue.round(2)).sort_values("category", ignore_index=True)


def _as_frame(rows, what: str) -> pd.DataFrame:
    try:
        json.dumps(rows)
    except TypeError as error:
        raise WrongAnswer(
            f"{what} cannot travel through XCom: {error}.",
            hint="XComs are stored as JSON: cast numerics to float/int in SQL (::float).",
        ) from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise WrongAnswer(
            f"{what} should be a list of dicts (one per category), got {type(rows).__name__}.",
            hint="build [{'category': ..., 'orders': ..., 'revenue': ...}, ...] from the rows.",
        )
    frame = pd.DataFrame(rows)
    need = {"category", "orders", "revenue"}
    if not need <= set(frame.columns):
        raise WrongAnswer(
            f"each dict needs the keys {sorted(need)}; got {sorted(frame.columns)}.",
            hint="name your SQL columns with AS.",
        )
    return frame


def _compare_revenue(got: pd.DataFrame, day: str, what: str) -> None:
    want = expected_daily_revenue(day)
    got = got.sort_values("category", ignore_index=True)
    if list(got.category) != list(want.category):
        raise WrongAnswer(
            f"{what} for {day} has the categories {list(got.category)}, expected {list(want.category)}.",
            hint="one row per product category that sold that day.",
        )
    try:
        got = got.assign(orders=got.orders.astype(int), revenue=got.revenue.astype(float))
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"{what} for {day}: orders and revenue must be numbers (no NULL, no text).",
            hint="count(DISTINCT o.order_id) and sum(quantity * unit_price), named with AS.",
        ) from None
    if (got.orders != want.orders).any():
        raise WrongAnswer(
            f"{what}: the order counts for {day} are off.",
            hint="count distinct orders; a day is [midnight, next midnight) — the end is excluded; "
            "cancelled orders do not count.",
        )
    if ((got.revenue - want.revenue).abs() > 0.011).any():
        raise WrongAnswer(
            f"{what}: the revenue for {day} is off.",
            hint="revenue = quantity * unit_price of the lines of the day's non-cancelled orders.",
        )


@learner_code("your extract function")
def _call(fn, day: str):
    return fn(day)


@exercise("m01.l01.e1")
def extract_daily_revenue(fn) -> None:
    """Extract one day's revenue per category from Postgres through a hook."""
    if not callable(fn):
        raise WrongAnswer("expected a function of one argument, the day (YYYY-MM-DD).", hint="def f(day): ...")
    for day in (BUSY_DAY, "2026-03-01", "2026-03-28"):
        _compare_revenue(_as_frame(_call(fn, day), "the result"), day, "the result")
    rows = _call(fn, EMPTY_DAY)
    if rows:
        raise WrongAnswer(f"{EMPTY_DAY} had no orders, yet your function returned rows.", hint="filter on the day.")


# ------------------------------------------------------------------------------------ sensors & trigger rules


def _probe_dag(settings: dict, report_rule: str, dag_id: str = "m01_probe_sensor"):
    from airflow.providers.common.sql.sensors.sql import SqlSensor
    from airflow.sdk import DAG, task

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 3, 1), catchup=False) as dag:
        wait = SqlSensor(
            task_id="wait_for_orders",
            conn_id="shop_postgres",
            sql=f"SELECT count(*) FROM {SCHEMA}.orders WHERE order_ts::date = '{{{{ ds }}}}'",
            **settings,
        )

        @task
        def work():
            return "worked"

        @task(trigger_rule=report_rule)
        def report():
            return "reported"

        wait >> work() >> report()
    return dag


def _seconds(settings: dict, name: str, default: float) -> float:
    """A sensor duration setting in seconds (a number or a timedelta), or a one-line verdict."""
    value = settings.get(name, default)
    try:
        return value.total_seconds() if isinstance(value, timedelta) else float(value)
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"{name}={value!r} is not a duration.", hint=f"{name} takes seconds (a number) or a timedelta."
        ) from None


@exercise("m01.l01.e2")
def sensor_and_report_settings(sensor_settings: dict, report_trigger_rule: str) -> None:
    """A sensor that gives up quickly and politely on an empty day; a report that always runs."""
    from airflow.task.trigger_rule import TriggerRule

    from delab.orchestration import airflow as lab_airflow

    if not isinstance(sensor_settings, dict):
        raise WrongAnswer("sensor_settings should be a dict of sensor arguments.", hint="dict(timeout=..., ...)")
    allowed = {"poke_interval", "timeout", "mode", "soft_fail", "exponential_backoff", "max_wait"}
    unknown = set(sensor_settings) - allowed
    if unknown:
        raise WrongAnswer(f"unexpected sensor arguments: {sorted(unknown)}.", hint=f"use some of {sorted(allowed)}.")
    if report_trigger_rule not in set(TriggerRule):
        raise WrongAnswer(
            f"{report_trigger_rule!r} is not an Airflow trigger rule.",
            hint="see airflow.task.trigger_rule.TriggerRule.",
        )
    timeout = _seconds(sensor_settings, "timeout", 7 * 24 * 3600)
    if timeout > 30:
        raise WrongAnswer(
            f"the sensor would wait {timeout:.0f} s for a day that never comes.",
            hint="give it a timeout of a few seconds (the default is 7 days!).",
        )
    poke_interval = _seconds(sensor_settings, "poke_interval", 60)
    if poke_interval > timeout:
        raise WrongAnswer(
            f"the sensor checks every {poke_interval:g} s but gives up after {timeout:g} s: it looks once, "
            "then waits past its own timeout.",
            hint="poke_interval is how often it checks (the default is 60 s): check every second.",
        )
    if sensor_settings.get("mode", "poke") != "reschedule":
        raise WrongAnswer(
            "in 'poke' mode the sensor holds a worker slot for its whole wait.",
            hint="the other mode frees the slot between checks.",
        )
    result = lab_airflow.run(_probe_dag(sensor_settings, report_trigger_rule), logical_date=datetime(2026, 5, 1))
    sensor_state = result.tasks.get("wait_for_orders")
    if sensor_state != "skipped":
        raise WrongAnswer(
            f"on a day without orders the sensor ended '{sensor_state}', so the run looks broken.",
            hint="a sensor can end as skipped instead of failed when it times out (soft_fail).",
        )
    if result.tasks.get("report") != "success":
        raise WrongAnswer(
            f"with the work skipped, the report ended '{result.tasks.get('report')}'.",
            hint="the report must run whatever happened upstream: pick the rule that waits for "
            "all upstream tasks to be done, whatever their state.",
        )
    if report_trigger_rule == TriggerRule.ALWAYS:
        raise WrongAnswer(
            "'always' does not even wait for upstream tasks to finish: the report could run first.",
            hint="pick the rule that waits for all upstream tasks to be done, whatever their state.",
        )
    if report_trigger_rule != TriggerRule.ALL_DONE:
        raise WrongAnswer(
            f"{report_trigger_rule} lets the report run here, but not after a failed load.",
            hint="the report must also run when an upstream task failed.",
        )


# --------------------------------------------------------------------------------------------- the whole DAG


def _read_parquet(key: str) -> pd.DataFrame:
    """The Parquet object load wrote, or a one-line verdict when there is none (or it is not Parquet)."""
    if key not in clients.s3_keys(key):
        raise WrongAnswer(
            f"load returned {key!r}, but no object was written there.",
            hint="upload the Parquet bytes with S3Hook(aws_conn_id='lab_s3').load_bytes(..., bucket_name='delab').",
        )
    body = clients.s3().get_object(Bucket=config.s3().bucket, Key=key)["Body"].read()
    try:
        return pd.read_parquet(io.BytesIO(body))
    except Exception:
        raise WrongAnswer(
            f"{key} is not a Parquet file.", hint="DataFrame(rows).to_parquet(buffer, index=False)"
        ) from None


def _compare_shares(written: pd.DataFrame) -> None:
    """Each row's share is its revenue over the day's total (a share of orders also adds up to 1)."""
    try:
        share, revenue, orders = (written[c].astype(float) for c in ("share", "revenue", "orders"))
    except (TypeError, ValueError):
        raise WrongAnswer("the shares must be numbers.", hint="share = revenue / the day's total revenue.") from None
    if abs(share.sum() - 1) > 0.001:
        raise WrongAnswer("the shares do not add up to 1.", hint="share = revenue / the day's total revenue.")
    if ((share - revenue / revenue.sum()).abs() > 0.001).any():
        of_orders = ((share - orders / orders.sum()).abs() <= 0.001).all()
        raise WrongAnswer(
            "the shares add up to 1, but they are not each category's part of the revenue"
            + (": they are its part of the orders." if of_orders else "."),
            hint="share = revenue / the day's total revenue, row by row.",
        )


@learner_code("your DAG factory")
def _build(factory):
    return factory()


@exercise("m01.l01.e3")
def shop_etl_dag(factory) -> None:
    """The shop ETL DAG: wait for orders, extract, transform, load Parquet to the object store, report."""
    from airflow.sdk import BaseSensorOperator

    from delab.orchestration import airflow as lab_airflow

    dag = _build(factory)
    if getattr(dag, "dag_id", None) != DAG_ID:
        raise WrongAnswer(
            f"expected a DAG with dag_id {DAG_ID!r}, got {getattr(dag, 'dag_id', dag)!r}.",
            hint="return the DAG object your @dag function builds.",
        )
    tasks = {t.task_id: t for t in dag.tasks}
    need = ["wait_for_orders", "extract", "transform", "load", "report"]
    missing = [t for t in need if t not in tasks]
    if missing:
        raise WrongAnswer(f"tasks missing: {missing}.", hint="task ids come from the function names of @task.")
    if not isinstance(tasks["wait_for_orders"], BaseSensorOperator):
        raise WrongAnswer(
            "wait_for_orders is not a sensor.", hint="SqlSensor waits for a query to return a truthy value."
        )
    edges = {"extract": "wait_for_orders", "transform": "extract", "load": "transform", "report": "load"}
    for task_id, upstream in edges.items():
        if upstream not in tasks[task_id].upstream_task_ids:
            raise WrongAnswer(
                f"{task_id} does not wait for {upstream}.",
                hint="pass one task's result to the next, or chain them with >>.",
            )
    if dag.catchup:
        raise WrongAnswer(
            "catchup is on: enabling this DAG would start one run per day since start_date.",
            hint="catchup=False; backfill on purpose instead (lab 05).",
        )
    clients.s3_delete_prefix(f"{SCHEMA}/daily_revenue/")
    busy = lab_airflow.run(dag, logical_date=datetime.fromisoformat(BUSY_DAY))
    failed = sorted(t for t, s in busy.tasks.items() if s != "success")
    if failed:
        raise WrongAnswer(
            f"on {BUSY_DAY} these tasks did not succeed: {failed}.",
            hint="run the DAG with lab_airflow.run(...) and read the task states and logs.",
        )
    if busy.xcoms.get("load") != output_key(BUSY_DAY):
        raise WrongAnswer(
            f"load returned {busy.xcoms.get('load')!r}, expected the key it wrote.",
            hint=f"write to {output_key('{ds}')} and return that key.",
        )
    written = _read_parquet(output_key(BUSY_DAY))
    if "share" not in written.columns:
        raise WrongAnswer("the Parquet file has no share column.", hint="transform adds share = revenue / total.")
    _compare_revenue(written, BUSY_DAY, "the file written by load")
    _compare_shares(written)
    empty = lab_airflow.run(dag, logical_date=datetime.fromisoformat(EMPTY_DAY))
    if empty.tasks.get("wait_for_orders") == "success":
        raise WrongAnswer(
            f"the sensor found orders on {EMPTY_DAY}, a day without any.",
            hint="its query must count only the run's day: WHERE order_ts::date = '{{ ds }}'.",
        )
    if empty.tasks.get("wait_for_orders") != "skipped" or empty.tasks.get("report") != "success":
        raise WrongAnswer(
            f"on a day without orders: {empty.tasks}.",
            hint="create the sensor with **sensor_settings and the report with report_trigger_rule.",
        )
    if clients.s3_keys(output_key(EMPTY_DAY)):
        raise WrongAnswer("something was written for a day without orders.", hint="load must not run then.")
