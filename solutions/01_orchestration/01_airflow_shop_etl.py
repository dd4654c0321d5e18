# ---
# jupyter:
#   kernelspec: {name: delab-airflow, display_name: "Python 3 (delab-airflow · Airflow)", language: python}
# ---

# %% [markdown]
# # 01.01 · Apache Airflow: a shop ETL as a DAG
#
# **You will:**
# - describe a pipeline as a DAG of tasks, with dependencies, XComs and trigger rules;
# - read from Postgres through a *hook* and a *connection*, never a hard-coded password;
# - wait for data with a *sensor* that gives up cleanly on a day without data;
# - load Parquet into the object store, one partition per day, and run the DAG with `dag.test()`.
#
# *Needs:* Postgres and the object store (started for you). Kernel: `delab-airflow`. About 25 minutes.

# %%
from datetime import datetime

from delab import check, clients, datasets, stack
from delab.orchestration import airflow as lab_airflow

stack.require("postgres", "s3")
airflow_home = lab_airflow.setup("m01_l01")  # before `import airflow`: a lab-local metadata DB, quiet logs

shop = datasets.shop(seed=7, scale=0.25)
datasets.to_postgres(
    {"orders": shop.orders.drop_duplicates("order_id"), "order_items": shop.order_items, "products": shop.products},
    schema="m01_l01",
    primary_keys={"orders": ["order_id"]},
)
clients.s3_delete_prefix("m01_l01/")  # a re-run starts from an empty prefix

# %% [markdown]
# ## DAGs, tasks and operators
# A **DAG** (directed acyclic graph) is a pipeline: tasks plus the order they run in, a schedule and a start
# date. A **task** is one unit of work, created from an **operator** — `SQLExecuteQueryOperator` runs SQL,
# `BashOperator` a command — or from a plain Python function with the TaskFlow `@task` decorator. Operators talk
# to systems through **hooks** (`PostgresHook`, `S3Hook`), which take their credentials from **connections**:
# here `shop_postgres` and `lab_s3`, declared by the setup cell as `AIRFLOW_CONN_*` environment variables.
#
# A task's return value is stored as an **XCom** (cross-communication) and handed to the tasks that take it as
# an argument; passing it also creates the dependency. `a >> b` adds a dependency by hand.

# %%
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import dag, task


@dag(dag_id="m01_hello", schedule=None, start_date=datetime(2026, 3, 1), catchup=False)
def hello():
    count_orders = SQLExecuteQueryOperator(
        task_id="count_orders", conn_id="shop_postgres", sql="SELECT count(*) FROM m01_l01.orders"
    )

    @task
    def biggest_order() -> float:
        hook = PostgresHook(postgres_conn_id="shop_postgres")
        return hook.get_first("SELECT max(quantity * unit_price)::float FROM m01_l01.order_items")[0]

    @task
    def announce(amount: float) -> str:
        return f"the biggest order line is worth {amount:.2f}"

    count_orders >> announce(biggest_order())


hello_run = lab_airflow.run(hello())
hello_run, hello_run.xcoms

# %% [markdown]
# `lab_airflow.run` calls `dag.test()`: one DAG run, every task executed in this process, states and XComs kept in
# the lab's metadata database. In production the scheduler does the same from DAG *files*.
#
# ### Exercise 1 — extract through a hook
# Write `extract_daily_revenue(day)`: with a `PostgresHook` on `shop_postgres`, return one dict per product
# category sold on `day` (a `YYYY-MM-DD` string) with the keys `category`, `orders` (distinct orders) and
# `revenue` (sum of `quantity * unit_price`, rounded to 2 decimals). A day runs from midnight to the next
# midnight, excluded. Leave out cancelled orders. The tables are `m01_l01.orders`, `m01_l01.order_items` and
# `m01_l01.products`. XComs are JSON: return plain `int`/`float`/`str` values.


# %%
### BEGIN SOLUTION
def extract_daily_revenue(day: str) -> list[dict]:
    """Revenue and orders per category for one day, from Postgres."""
    hook = PostgresHook(postgres_conn_id="shop_postgres")
    rows = hook.get_records(
        """
        SELECT p.category, count(DISTINCT o.order_id) AS orders,
               round(sum(i.quantity * i.unit_price)::numeric, 2)::float AS revenue
        FROM m01_l01.orders o
        JOIN m01_l01.order_items i USING (order_id)
        JOIN m01_l01.products p USING (product_id)
        WHERE o.order_ts >= %(day)s::date AND o.order_ts < %(day)s::date + 1 AND o.status <> 'cancelled'
        GROUP BY p.category ORDER BY p.category
        """,
        parameters={"day": day},
    )
    return [{"category": c, "orders": n, "revenue": r} for c, n, r in rows]


### END SOLUTION


# %%
check.m01.extract_daily_revenue(extract_daily_revenue)

# %% [markdown]
# ## Sensors and trigger rules
# A **sensor** is a task that waits for something — a row, a file, an object — by checking every
# `poke_interval` seconds until `timeout`. In `poke` mode it holds a worker slot the whole time; in `reschedule`
# mode it frees the slot between checks. When the timeout passes it fails, unless `soft_fail=True`, which ends it
# as *skipped*: "no data today" is not an error.
#
# A task normally runs when all its upstream tasks succeeded (`trigger_rule="all_success"`). Other **trigger
# rules** change that: `all_done` (all finished, whatever their state), `one_failed`, `none_failed`, `always`…
#
# ### Exercise 2 — a polite sensor and a report that always runs
# Set `sensor_settings`, the keyword arguments of the sensor that waits for the day's orders: it must give up
# after at most 30 seconds (check every second), free its worker slot between checks, and end as skipped rather
# than failed. Set `report_trigger_rule` so that a final report task runs once everything upstream has finished,
# whether it succeeded, failed or was skipped.

# %%
### BEGIN SOLUTION
sensor_settings = dict(poke_interval=1, timeout=5, mode="reschedule", soft_fail=True)
report_trigger_rule = "all_done"
### END SOLUTION

# %%
check.m01.sensor_and_report_settings(sensor_settings, report_trigger_rule)

# %% [markdown]
# ### Exercise 3 — the shop ETL
# Write `build_shop_etl()`, returning a DAG with `dag_id="m01_shop_etl"`, a daily schedule, `start_date`
# 2026-03-01 and no catch-up, whose tasks are:
# 1. `wait_for_orders` — a `SqlSensor` on `shop_postgres` that succeeds once the day (`{{ ds }}`) has orders,
#    created with `**sensor_settings`;
# 2. `extract` — a `@task` calling `extract_daily_revenue(ds)`;
# 3. `transform` — a `@task` adding to each row `share` = revenue / the day's total revenue;
# 4. `load` — a `@task` writing the rows as Parquet with `S3Hook(aws_conn_id="lab_s3")` to bucket `delab`, key
#    `m01_l01/daily_revenue/day={ds}/revenue.parquet`, and returning that key;
# 5. `report` — a `@task` with `trigger_rule=report_trigger_rule` that returns a one-line summary.
#
# They run in that order. TaskFlow functions receive the run's `ds` if they declare a parameter `ds=None`.


# %%
### BEGIN SOLUTION
def build_shop_etl():
    """The daily shop ETL: wait for orders, extract, transform, load Parquet, report."""
    import io

    import pandas as pd
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.common.sql.sensors.sql import SqlSensor

    @dag(dag_id="m01_shop_etl", schedule="@daily", start_date=datetime(2026, 3, 1), catchup=False)
    def shop_etl():
        wait_for_orders = SqlSensor(
            task_id="wait_for_orders",
            conn_id="shop_postgres",
            sql="SELECT count(*) FROM m01_l01.orders WHERE order_ts::date = '{{ ds }}'",
            **sensor_settings,
        )

        @task
        def extract(ds=None) -> list[dict]:
            return extract_daily_revenue(ds)

        @task
        def transform(rows: list[dict]) -> list[dict]:
            total = sum(r["revenue"] for r in rows)
            return [{**r, "share": r["revenue"] / total} for r in rows]

        @task
        def load(rows: list[dict], ds=None) -> str:
            key = f"m01_l01/daily_revenue/day={ds}/revenue.parquet"
            buffer = io.BytesIO()
            pd.DataFrame(rows).to_parquet(buffer, index=False)
            S3Hook(aws_conn_id="lab_s3").load_bytes(buffer.getvalue(), key=key, bucket_name="delab", replace=True)
            return key

        @task(trigger_rule=report_trigger_rule)
        def report(ds=None) -> str:
            return f"shop ETL for {ds} finished"

        extracted = extract()
        wait_for_orders >> extracted
        load(transform(extracted)) >> report()

    return shop_etl()


### END SOLUTION


# %%
check.m01.shop_etl_dag(build_shop_etl)

# %% [markdown]
# Run it yourself for a few days and look at what it wrote: one object per day, so re-running a day replaces
# that day's file and nothing else — the DAG is **idempotent** per run.

# %%
for day in ("2026-03-05", "2026-03-06"):
    print(lab_airflow.run(build_shop_etl(), logical_date=datetime.fromisoformat(day)))
clients.s3_keys("m01_l01/daily_revenue/")

# %% [markdown]
# ## The Airflow UI
# Everything above ran without a scheduler or web server. To see the same DAG in the UI, put its code in a file
# under `AIRFLOW_HOME/dags` and start the all-in-one server bound to this machine only:
# `AIRFLOW_HOME=<the folder printed by airflow_home> airflow standalone` (it prints an admin password; the UI is
# on http://127.0.0.1:8080). The Grid view shows each run's task states, the Graph view the dependencies you
# declared, and each task's XComs and logs.
#
# ## Recap
# - A DAG is tasks + dependencies + a schedule; TaskFlow return values travel as XComs and imply dependencies.
# - Hooks and connections keep credentials out of code.
# - Sensors wait; `reschedule` frees the slot, `soft_fail` turns "no data" into a skip; trigger rules decide
#   what runs after a skip or a failure.
# - Writing one partition per logical date makes re-runs safe.
#
# **Going further:** in production the same DAG file runs on a managed Airflow (Amazon MWAA, Google Cloud
# Composer, Astronomer) with the connections kept in a secrets backend; `dag.test()` stays the way to debug it
# locally.
