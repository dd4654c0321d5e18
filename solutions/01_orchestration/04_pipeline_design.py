# ---
# jupyter:
#   kernelspec: {name: delab-airflow, display_name: "Python 3 (delab-airflow · Airflow)", language: python}
# ---

# %% [markdown]
# # 01.04 · Pipeline design: idempotency, alerting and recovery
#
# **You will:**
# - make a load idempotent, so re-running a day never duplicates or loses data;
# - send an alert that says what failed, where and why;
# - fail a pipeline midway on purpose, fix the cause, and resume from the failed task;
# - prove the output complete: every source order is loaded or held in quarantine, none twice.
#
# *Needs:* Postgres (started for you). Kernel: `delab-airflow`. About 25 minutes.

# %%
from datetime import datetime, timedelta

from delab import check, clients, stack
from delab.localhttp import Receiver
from delab.orchestration import airflow as lab_airflow
from delab.orchestration import shop_pipeline

stack.require("postgres")
lab_airflow.setup("m01_l04")
shop_pipeline.prepare("m01_l04")  # the shop's orders and lines, plus empty pipeline tables (re-run safe)
pg = clients.postgres()
alerts = Receiver().start()  # a local stand-in for Slack/PagerDuty: it keeps what is POSTed to alerts.url

# %% [markdown]
# ## The pipeline
# One run per day, four steps, each writing to Postgres so that any step can be re-run on its own:
# 1. **extract** copies the day's order lines into `m01_l04.staging_lines` (replacing what an earlier run staged);
# 2. **validate** fails fast when a staged line is impossible (a quantity or price ≤ 0);
# 3. **load** turns the staged lines into one row per order in `m01_l04.fact_order_revenue`;
# 4. **publish** records the day's numbers.
#
# Every step writes a line to `m01_l04.task_log`, which is how we will see what ran. Steps hand data over through
# tables, not XComs: that is what makes them restartable one by one.
#
# ## Idempotency
# A step is **idempotent** when running it twice has the same effect as running it once. Appending rows is not:
# a retry after a timeout doubles the day. The usual cure for a partitioned load is *delete-then-insert of the
# partition in one transaction* (or an upsert keyed on the business key).
#
# ### Exercise 1 — an idempotent load
# Write `load_day(conn, day)`: replace the rows of `day` in `m01_l04.fact_order_revenue` (columns `order_id`,
# `day`, `revenue`) with one row per order from `m01_l04.staging_lines` of that day — `revenue` = sum of
# `quantity * unit_price`, rounded to 2 decimals — leaving out orders that have a line in `m01_l04.quarantine`
# for that day. Do it in one transaction (`with conn.transaction():`), so a crash midway leaves the old rows.


# %%
### BEGIN SOLUTION
def load_day(conn, day: str) -> None:
    """Replace one day of facts from staging, atomically."""
    with conn.transaction():
        conn.execute("DELETE FROM m01_l04.fact_order_revenue WHERE day = %s", (day,))
        conn.execute(
            """INSERT INTO m01_l04.fact_order_revenue (order_id, day, revenue)
               SELECT order_id, day, round(sum(quantity * unit_price)::numeric, 2)
               FROM m01_l04.staging_lines s
               WHERE day = %(day)s AND NOT EXISTS (
                   SELECT 1 FROM m01_l04.quarantine q WHERE q.day = s.day AND q.order_id = s.order_id)
               GROUP BY order_id, day""",
            {"day": day},
        )


### END SOLUTION


# %%
check.m01.idempotent_load(load_day)

# %% [markdown]
# ## Alerting
# When a task fails, Airflow calls its `on_failure_callback` with the task's *context*: `context["ti"]` (the task
# instance: `dag_id`, `task_id`), `context["logical_date"]` and `context["exception"]`. A good alert names the
# pipeline, the step, the run and the error — enough to act without opening the UI.
#
# ### Exercise 2 — an alert on failure
# Write `alert_on_failure(context)`: POST a JSON object to `alerts.url` with the keys `dag_id`, `task_id`,
# `logical_date` (as `YYYY-MM-DD…`) and `error` (the exception as text). `requests.post(url, json=...)` does it.

# %%
### BEGIN SOLUTION
import requests


def alert_on_failure(context) -> None:
    """Tell the on-call channel what failed, where and why."""
    ti = context["ti"]
    requests.post(
        alerts.url,
        json={
            "dag_id": ti.dag_id,
            "task_id": ti.task_id,
            "logical_date": context["logical_date"].isoformat(),
            "error": str(context.get("exception")),
        },
        timeout=5,
    )


### END SOLUTION


# %%
check.m01.failure_alert(alert_on_failure, alerts)

# %% [markdown]
# Now the DAG itself. It uses your `load_day` and `alert_on_failure`, retries nothing (bad data does not heal by
# waiting: retries are for *transient* errors such as a dropped connection), and runs daily over data intervals.

# %%
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable


def build_pipeline():
    @dag(
        dag_id="m01_l04_pipeline",
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
        start_date=datetime(2026, 3, 1),
        catchup=False,
        default_args={"retries": 0, "on_failure_callback": alert_on_failure},
    )
    def pipeline():
        @task
        def extract(ds=None) -> int:
            with clients.postgres() as conn:
                shop_pipeline.log_task(conn, "m01_l04", "extract", ds)
                return shop_pipeline.extract_day(conn, "m01_l04", ds)

        @task
        def validate(ds=None) -> None:
            with clients.postgres() as conn:
                shop_pipeline.log_task(conn, "m01_l04", "validate", ds)
                shop_pipeline.validate_day(conn, "m01_l04", ds)

        @task
        def load(ds=None) -> None:
            with clients.postgres() as conn:
                shop_pipeline.log_task(conn, "m01_l04", "load", ds)
                load_day(conn, ds)

        @task
        def publish(ds=None) -> dict:
            with clients.postgres() as conn:
                shop_pipeline.log_task(conn, "m01_l04", "publish", ds)
                orders, revenue = conn.execute(
                    "SELECT count(*), coalesce(sum(revenue), 0)::float FROM m01_l04.fact_order_revenue WHERE day = %s",
                    (ds,),
                ).fetchone()
            return {"day": ds, "orders": orders, "revenue": revenue}

        extract() >> validate() >> load() >> publish()

    return pipeline()


alerts.clear()
runs = {}
for offset in range(6):  # a week of data, one run per day
    day = datetime(2026, 3, 2) + timedelta(days=offset)
    runs[day] = lab_airflow.run(build_pipeline(), logical_date=day)
{f"{day:%m-%d}": result.state for day, result in runs.items()}, alerts.messages

# %% [markdown]
# One day failed at `validate`, and the alert says why. The fix is not to delete the bad lines (evidence gone,
# nothing to replay once the source is corrected) but to **quarantine** them: set them aside with a reason, load
# the rest, and look at them later. Then **resume** the failed run: with `resume=failed_result`,
# `lab_airflow.run` marks the tasks that already succeeded as done — exactly what clearing the failed task does
# in the Airflow UI — so `extract` does not run again.
#
# ### Exercise 3 — recover a failed run
# Write `recover(dag, failed)`: for the day of the failed run (`failed.logical_date`), copy every invalid staged
# line into `m01_l04.quarantine (day, order_id, line_no, reason)` — `shop_pipeline.invalid_lines(conn,
# "m01_l04", day)` lists them as `(order_id, line_no, reason)` — then resume the run and return the new result.


# %%
### BEGIN SOLUTION
def recover(dag, failed):
    """Quarantine the invalid lines of the failed day, then resume the run from the failed task."""
    day = failed.logical_date.strftime("%Y-%m-%d")
    with clients.postgres() as conn, conn.transaction():
        for order_id, line_no, reason in shop_pipeline.invalid_lines(conn, "m01_l04", day):
            conn.execute(
                "INSERT INTO m01_l04.quarantine (day, order_id, line_no, reason) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (day, order_id, line_no, reason),
            )
    return lab_airflow.run(dag, logical_date=failed.logical_date.replace(tzinfo=None), resume=failed)


### END SOLUTION


# %%
check.m01.recovery(recover, build_pipeline)

# %% [markdown]
# Recover this week's failed day the same way and look at the task log: `extract` ran once per day.

# %%
for day, result in runs.items():
    if result.state != "success":
        runs[day] = recover(build_pipeline(), result)
pg.execute("SELECT task_id, count(*) FROM m01_l04.task_log GROUP BY 1 ORDER BY 1").fetchall()

# %% [markdown]
# ## Proving the output complete
# "The run is green" is not proof. A **reconciliation** compares the output with the source: for every day,
# orders in the source = orders loaded + orders held in quarantine, and the primary key on `order_id` rules out
# duplicates.
#
# ### Exercise 4 — reconcile
# Write `reconciliation_sql`: one row per day present in `m01_l04.fact_order_revenue` or `m01_l04.quarantine`,
# with the columns `day`, `source_orders` (non-cancelled orders of that day in `m01_l04.orders`),
# `loaded_orders`, `quarantined_orders` (distinct orders) and `complete` (true when
# source = loaded + quarantined).

# %%
### BEGIN SOLUTION
reconciliation_sql = """
WITH days AS (
    SELECT day FROM m01_l04.fact_order_revenue UNION SELECT day FROM m01_l04.quarantine
), source AS (
    SELECT order_ts::date AS day, count(*) AS n FROM m01_l04.orders WHERE status <> 'cancelled' GROUP BY 1
), loaded AS (
    SELECT day, count(*) AS n FROM m01_l04.fact_order_revenue GROUP BY 1
), held AS (
    SELECT day, count(DISTINCT order_id) AS n FROM m01_l04.quarantine GROUP BY 1
)
SELECT d.day, coalesce(s.n, 0) AS source_orders, coalesce(l.n, 0) AS loaded_orders,
       coalesce(h.n, 0) AS quarantined_orders,
       coalesce(s.n, 0) = coalesce(l.n, 0) + coalesce(h.n, 0) AS complete
FROM days d LEFT JOIN source s USING (day) LEFT JOIN loaded l USING (day) LEFT JOIN held h USING (day)
ORDER BY d.day
"""
### END SOLUTION

# %%
check.m01.reconciliation(reconciliation_sql)

# %%
pg.execute(reconciliation_sql).fetchall()

# %%
alerts.stop()
pg.close()

# %% [markdown]
# ## Recap
# - Idempotent steps (replace a partition in one transaction) make retries, re-runs and backfills safe.
# - Alerts name the pipeline, step, run and error; retries are for transient failures, not bad data.
# - Quarantine bad records with a reason; resume a failed run from the failed task instead of starting over.
# - Reconcile output with source to prove completeness; keys rule out duplicates.
#
# **Going further:** managed Airflow sends failure callbacks to Slack or PagerDuty through provider notifiers
# (`apache-airflow-providers-slack`), and data-observability tools run reconciliations like exercise 4 on a
# schedule. Dagster calls resuming "re-execute from failure"; Prefect gets there by caching task results.
