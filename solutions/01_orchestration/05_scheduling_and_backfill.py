# ---
# jupyter:
#   kernelspec: {name: delab-airflow, display_name: "Python 3 (delab-airflow · Airflow)", language: python}
# ---

# %% [markdown]
# # 01.05 · Scheduling: cron, data intervals, backfills and event-driven runs
#
# **You will:**
# - write cron expressions for real business schedules and verify when they fire;
# - work out which *data interval* a scheduled run processes — the most common source of off-by-one-day bugs;
# - backfill a date range with one idempotent run per day, partitioned output checked;
# - trigger a pipeline from another pipeline's data (Airflow assets) instead of the clock.
#
# *Needs:* Postgres and the object store (started for you). Kernel: `delab-airflow`. About 25 minutes.

# %%
from datetime import datetime, timedelta

from croniter import croniter

from delab import check, clients, datasets, stack
from delab.orchestration import airflow as lab_airflow

stack.require("postgres", "s3")
lab_airflow.setup("m01_l05")

shop = datasets.shop(seed=7, scale=0.25)
datasets.to_postgres(
    {"orders": shop.orders.drop_duplicates("order_id")}, schema="m01_l05", primary_keys={"orders": ["order_id"]}
)
clients.s3_delete_prefix("m01_l05/")

# %% [markdown]
# ## Cron expressions
# A cron expression has five fields: **minute hour day-of-month month day-of-week**. `*` means every value,
# `a-b` a range (both ends included), `a,b` a list, `*/n` every n-th value. Days of the week run from 0 (Sunday)
# to 6. `croniter` computes when an expression fires:

# %%
nightly = croniter("0 6 * * *", datetime(2026, 3, 1))
[nightly.get_next(datetime).strftime("%a %Y-%m-%d %H:%M") for _ in range(4)]

# %% [markdown]
# ### Exercise 1 — three business schedules
# Fill `cron_expressions` with one expression per schedule:
# - `weekday_mornings`: 06:30, Monday to Friday;
# - `business_quarter_hours`: every 15 minutes from 08:00 to 18:45, Monday to Friday;
# - `monthly_close`: 02:00 on the first day of every month.
#
# The check compares every firing over two months with the intended times.

# %%
### BEGIN SOLUTION
cron_expressions = {
    "weekday_mornings": "30 6 * * 1-5",
    "business_quarter_hours": "*/15 8-18 * * 1-5",
    "monthly_close": "0 2 1 * *",
}
### END SOLUTION

# %%
check.m01.cron_schedules(cron_expressions)

# %% [markdown]
# ## Data intervals: which data does a run process?
# A nightly job that runs at 06:00 on 5 March processes the data of the day that has just ended. Airflow models
# this with a **data interval**: the run for the interval [4 March 06:00, 5 March 06:00) starts when the interval
# ends. Its **logical date** (`ds`) is the interval's *start*. Airflow 3 offers both behaviours:
# `CronDataIntervalTimetable` (intervals, as above) and `CronTriggerTimetable` (a plain trigger; what a bare cron
# string means in Airflow 3, with start = end = the firing time).

# %%
from airflow.timetables.interval import CronDataIntervalTimetable
from airflow.timetables.trigger import CronTriggerTimetable

run_after = datetime(2026, 3, 5, 6).astimezone()
for timetable in (
    CronDataIntervalTimetable("0 6 * * *", timezone="UTC"),
    CronTriggerTimetable("0 6 * * *", timezone="UTC"),
):
    interval = timetable.infer_manual_data_interval(run_after=run_after)
    print(f"{type(timetable).__name__:28} {interval.start} -> {interval.end}")

# %% [markdown]
# ### Exercise 2 — the interval of a run
# Write `data_interval(run_after)` for a daily schedule at 06:00 UTC with data intervals: given the moment a run
# is triggered (a naive datetime in UTC), return `(start, end)` of the most recent *complete* interval — the one
# whose end is the last 06:00 at or before `run_after`.


# %%
### BEGIN SOLUTION
def data_interval(run_after: datetime) -> tuple[datetime, datetime]:
    """The complete 06:00-to-06:00 interval that ended last at or before run_after."""
    end = run_after.replace(hour=6, minute=0, second=0, microsecond=0)
    if end > run_after:
        end -= timedelta(days=1)
    return end - timedelta(days=1), end


### END SOLUTION


# %%
check.m01.data_interval(data_interval)

# %% [markdown]
# ## Backfill
# A **backfill** runs a pipeline for past intervals — after a bug fix, or when a new pipeline must cover
# history. It is only safe if each run is **idempotent**: it replaces its own partition (here the key
# `day={ds}`) instead of appending. Here is the daily export the rest of this lab uses; its runs cover midnight to
# midnight and write one Parquet object per day. (`export_outlets` is for exercise 4.)

# %%
import io

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import dag, task

export_outlets = []


def daily_export_dag():
    @dag(
        dag_id="m01_l05_export",
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
        start_date=datetime(2026, 3, 1),
        catchup=False,
    )
    def export():
        @task(outlets=export_outlets)
        def export_orders(ds=None, data_interval_start=None, data_interval_end=None) -> str:
            frame = PostgresHook(postgres_conn_id="shop_postgres").get_df(
                "SELECT * FROM m01_l05.orders WHERE order_ts >= %(start)s AND order_ts < %(end)s",
                parameters={
                    "start": data_interval_start.strftime("%Y-%m-%d %H:%M:%S"),
                    "end": data_interval_end.strftime("%Y-%m-%d %H:%M:%S"),
                },
            )
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            key = f"m01_l05/orders/day={ds}/orders.parquet"
            S3Hook(aws_conn_id="lab_s3").load_bytes(buffer.getvalue(), key=key, bucket_name="delab", replace=True)
            return key

        export_orders()

    return export()


lab_airflow.run(daily_export_dag(), logical_date=datetime(2026, 3, 2)).xcoms

# %% [markdown]
# ### Exercise 3 — backfill a range
# Write `backfill(dag, start, end)`: run `dag` once for every day from `start` to `end`, **both included**,
# with `lab_airflow.run(dag, logical_date=...)`, and return the list of results. (Airflow's own
# `airflow backfill create --from-date ... --to-date ...` asks the scheduler to do exactly this.)


# %%
### BEGIN SOLUTION
def backfill(dag, start: datetime, end: datetime) -> list:
    """One run per day from start to end inclusive."""
    results = []
    day = start
    while day <= end:
        results.append(lab_airflow.run(dag, logical_date=day))
        day += timedelta(days=1)
    return results


### END SOLUTION


# %%
check.m01.backfill(backfill, daily_export_dag)

# %%
sorted(clients.s3_keys("m01_l05/orders/"))

# %% [markdown]
# ## Event-driven runs and cross-pipeline dependencies
# Clocks are a guess: the report should run when the export *has written* new data, not at 07:00 "because it is
# usually done by then". In Airflow 3 a task declares the data it updates as an **asset** (`outlets=[...]`), and a
# DAG with `schedule=[asset]` runs whenever that asset is updated. (The older cross-DAG tool,
# `ExternalTaskSensor`, polls another DAG's task state instead; it couples the two DAGs' schedules.)
#
# `dag.test()` runs one DAG; the scheduler is what creates the triggered run. The check therefore shows the
# mechanism: after the export runs, Airflow records an asset event and *queues* a run of every DAG scheduled on
# that asset; the check then runs the report.
#
# ### Exercise 4 — a report triggered by the export
# Create `orders_asset`, an `Asset` with the URI `s3://delab/m01_l05/orders`; set `export_outlets` so the export
# task declares it; and write `build_report_dag()` returning a DAG `m01_l05_report` scheduled on that asset, with
# one task that counts the objects under `m01_l05/orders/` (with `S3Hook(aws_conn_id="lab_s3").list_keys`).

# %%
from airflow.sdk import Asset

### BEGIN SOLUTION
orders_asset = Asset("s3://delab/m01_l05/orders")
export_outlets = [orders_asset]


def build_report_dag():
    """A report that runs whenever the orders export updates its asset."""

    @dag(dag_id="m01_l05_report", schedule=[orders_asset], start_date=datetime(2026, 3, 1), catchup=False)
    def report():
        @task
        def count_partitions() -> int:
            return len(S3Hook(aws_conn_id="lab_s3").list_keys(bucket_name="delab", prefix="m01_l05/orders/"))

        count_partitions()

    return report()


### END SOLUTION


# %%
check.m01.asset_trigger(orders_asset, build_report_dag, daily_export_dag)

# %% [markdown]
# ## Recap
# - Cron: minute hour day-of-month month day-of-week; verify an expression by listing its next firings.
# - A scheduled run processes the interval that has just ended; its logical date is the interval's start.
# - Backfills are safe when each run overwrites its own partition; one run per interval, both ends included.
# - Assets make pipelines react to data instead of guessing with clocks.
#
# **Going further:** on a managed Airflow the scheduler creates asset-triggered and backfill runs for you
# (`airflow backfill create`), and Dagster expresses the same ideas with partitioned assets, schedules and
# sensors. Cloud schedulers (EventBridge Scheduler, Cloud Scheduler) use the same cron syntax, with a time zone.
