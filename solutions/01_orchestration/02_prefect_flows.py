# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 01.02 · Prefect: flows, caching, retries, alerts and a served deployment
#
# **You will:**
# - turn plain Python functions into a Prefect *flow* of *tasks* with typed *parameters*;
# - cache a task's result on its inputs, so a second flow run is served from the cache;
# - retry a flaky API with exponential backoff and jitter, and fail cleanly when it stays down;
# - alert an on-call webhook when a flow run fails;
# - serve the flow as a *deployment* on a local Prefect server, then trigger and watch it through the REST API.
#
# *Needs:* Postgres and the object store (started for you). Kernel: `delab`. About 40 minutes.

# %%
from datetime import date, timedelta

from delab import check, clients, config, datasets, stack
from delab.localhttp import Receiver
from delab.orchestration import prefect as lab_prefect

stack.require("postgres", "s3")
server = lab_prefect.setup("m01_l02")  # before `import prefect`: a lab-local PREFECT_HOME and a local server

shop = datasets.shop(seed=7, scale=0.25)
datasets.to_postgres(
    {"orders": shop.orders.drop_duplicates("order_id"), "order_items": shop.order_items, "products": shop.products},
    schema="m01_l02",
    primary_keys={"orders": ["order_id"]},
)
clients.s3_delete_prefix("m01_l02/")  # a re-run starts from an empty prefix
BUCKET = config.s3().bucket

rates_service = lab_prefect.RatesService()  # a small exchange-rate API on 127.0.0.1 that fails when told to
on_call = Receiver()  # stands in for the on-call team's Slack/Teams/PagerDuty webhook
server, rates_service, on_call

# %% [markdown]
# ## A Prefect server of your own
# Prefect keeps the *orchestration state* — every flow run, task run, state change, log line, deployment and
# schedule — in a server with a REST API and a web UI. **Prefect Cloud** is the hosted one; `prefect server start`
# runs the same API and UI yourself. The setup cell started one in a subprocess, bound to 127.0.0.1, storing its
# state in the database `prefect_m01_l02` of the stack's Postgres (as a production server would; its SQLite
# default trips over concurrent writers) and its files under this lab's folder, and pointed `PREFECT_API_URL` at
# it: everything you run below reports there. Open `server.ui_url` in a browser to watch it happen.

# %%
server.wait_ready()  # the first start creates the database: a few seconds
server.api("GET", "/admin/version"), server.ui_url

# %% [markdown]
# ## Flows and tasks
# A **flow** is a Python function decorated with `@flow`; calling it creates a *flow run* that the server records.
# A **task** (`@task`) is a unit of work inside a flow; each call is a *task run* with its own state, retries and
# cache. Every run moves through **states** — `Pending`, `Running`, then `Completed`, `Failed`, `Crashed`,
# `Cancelled` … — and a flow's final state follows from what it returned or raised.
#
# The extract below reads one day of order lines from Postgres. A day runs from midnight to the next midnight,
# excluded; cancelled orders and lines with a non-positive quantity (a defect of this extract) are left out.

# %%
import pandas as pd
from prefect import flow, task

LINES_SQL = """
SELECT o.order_id, p.category, i.quantity, i.unit_price
FROM m01_l02.orders o
JOIN m01_l02.order_items i USING (order_id)
JOIN m01_l02.products p USING (product_id)
WHERE o.order_ts >= %(day)s AND o.order_ts < %(day)s + interval '1 day'
  AND o.status <> 'cancelled' AND i.quantity > 0
"""


@task
def extract_order_lines(day: date) -> pd.DataFrame:
    """The lines of one day's orders, with their product category."""
    with clients.postgres() as conn:
        rows = conn.execute(LINES_SQL, {"day": day}).fetchall()
    return pd.DataFrame(rows, columns=["order_id", "category", "quantity", "unit_price"])


@flow(log_prints=True)
def count_lines(day: date) -> int:
    lines = extract_order_lines(day)
    print(f"{day}: {len(lines)} order lines")  # log_prints=True turns print() into log lines the server keeps
    return len(lines)


count_lines(date(2026, 3, 10))

# %% [markdown]
# `return_state=True` gives you the final state instead of the return value (or the exception): its type, its
# message, and which flow run it belongs to.

# %%
state = count_lines(date(2026, 3, 11), return_state=True)
state, state.is_completed(), state.state_details.flow_run_id

# %% [markdown]
# ### Parameters
# A flow's arguments are its **parameters**. Prefect validates them against the type hints before the run starts
# (and coerces JSON values: the UI and the API send `"2026-03-12"`, a string, and the flow gets a `date`). They are
# stored with the run, so you can always see which day a run processed.

# %%
count_lines("2026-03-12")
try:
    count_lines("yesterday")
except Exception as error:  # ParameterTypeError: the run never started
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# ### Exercise 1 — the daily revenue flow
# Write two tasks and a flow:
# - `revenue_by_category(lines)` — one row per category, sorted by category, with the columns `category`,
#   `orders` (distinct orders) and `revenue` (sum of `quantity * unit_price`, rounded to cents);
# - `write_report(report, day)` — writes the report as Parquet to bucket `BUCKET`, key
#   `m01_l02/daily_revenue/day=YYYY-MM-DD/revenue.parquet` (`clients.s3()` is a boto3 client) and returns the key;
# - `daily_revenue(day: date) -> str` — a flow calling `extract_order_lines`, then your two tasks; returns the key.

# %%
import io


@task
### BEGIN SOLUTION
def revenue_by_category(lines: pd.DataFrame) -> pd.DataFrame:
    """Distinct orders and revenue per category, sorted by category."""
    lines = lines.assign(revenue=lines.quantity * lines.unit_price.astype(float))
    report = lines.groupby("category").agg(orders=("order_id", "nunique"), revenue=("revenue", "sum"))
    return report.reset_index().assign(revenue=lambda r: r.revenue.round(2)).sort_values("category")


### END SOLUTION


@task
### BEGIN SOLUTION
def write_report(report: pd.DataFrame, day: date) -> str:
    """Write one day's report as Parquet to the object store; returns its key."""
    key = f"m01_l02/daily_revenue/day={day}/revenue.parquet"
    buffer = io.BytesIO()
    report.to_parquet(buffer, index=False)
    clients.s3().put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return key


### END SOLUTION


@flow(log_prints=True)
### BEGIN SOLUTION
def daily_revenue(day: date) -> str:
    """Extract a day's order lines, compute revenue per category, write the report; returns the key."""
    report = revenue_by_category(extract_order_lines(day))
    key = write_report(report, day)
    print(f"{day}: {report.revenue.sum():.2f} EUR over {len(report)} categories -> s3://{BUCKET}/{key}")
    return key


### END SOLUTION


# %%
check.m01.daily_revenue_flow(daily_revenue)

# %% [markdown]
# Each call is a new flow run with three task runs. The server has them all: `server.task_runs(id)` asks its REST
# API (`POST /api/task_runs/filter`) for the task runs of one flow run.

# %%
state = daily_revenue(date(2026, 3, 5), return_state=True)
task_runs = server.task_runs(state.state_details.flow_run_id, expect=3)
pd.DataFrame({"task_run": t["name"], "state": t["state"]["name"], "took_s": t["total_run_time"]} for t in task_runs)

# %% [markdown]
# ## Caching
# Extracting the same day twice is wasted work. A task's **cache policy** computes a *cache key* from what it
# chooses — `INPUTS` (the arguments), `TASK_SOURCE` (the task's code), `RUN_ID` (the flow run), combinable with
# `+`. Before running, Prefect looks for a **persisted result** under that key; if one exists and has not
# expired, the task run ends `Cached` without executing. Results are persisted in *result storage*: here files
# under `PREFECT_HOME/storage` (in production an S3/GCS bucket).
#
# Out of the box a task is not cached across runs: its results are not persisted, and the default policy
# includes the run id. Two runs of the same flow both do the work:


# %%
@flow
def extract_state(day: date) -> str:
    return extract_order_lines(day, return_state=True).name


[extract_state(date(2026, 3, 10)) for _ in range(2)]

# %% [markdown]
# ### Exercise 2 — cache the extract
# Derive `cached_extract` from `extract_order_lines` with `.with_options(...)`: cached **on its inputs only**
# (another flow run for the same day reuses the result, another day does not), and the cached result expires
# after **one hour** (orders keep arriving during the day). Hint: `from prefect.cache_policies import ...`.

# %%
### BEGIN SOLUTION
from prefect.cache_policies import INPUTS

cached_extract = extract_order_lines.with_options(cache_policy=INPUTS, cache_expiration=timedelta(hours=1))
### END SOLUTION

# %%
check.m01.cached_extract(cached_extract)

# %% [markdown]
# Run it twice in two flow runs: the second task run is `Cached` — it never touched Postgres.


# %%
@flow
def cached_extract_state(day: date) -> str:
    return cached_extract(day, return_state=True).name


[cached_extract_state(date(2026, 3, 10)) for _ in range(2)]

# %% [markdown]
# ## Retries with exponential backoff
# Networks and APIs fail *transiently*: a timeout, a 503 while a service scales up. A task with `retries=n` is run
# again, up to `n` times, after `retry_delay_seconds` (a number, or one delay per retry). Waiting **longer each
# time** (exponential backoff) gives a struggling service room to recover; a bit of random **jitter** keeps many
# clients that failed together from retrying in lockstep. Retry only work that is safe to repeat — reading rates
# is; charging a card twice is not.
#
# `rates_service` publishes the EUR exchange rates of a day. Tell it to fail its next request and call it without
# retries:

# %%
import httpx


@task
def get_rates_once(day: str) -> dict:
    response = httpx.get(f"{rates_service.url}/rates", params={"day": day}, timeout=5)
    response.raise_for_status()
    return response.json()["rates"]


@flow
def rates_once(day: str) -> dict:
    return get_rates_once(day)


rates_service.fail_next(1)
rates_once("2026-03-10", return_state=True)

# %% [markdown]
# ### Exercise 3 — retry the rates API
# Write `get_rates(day)`: GET `{rates_service.url}/rates?day=YYYY-MM-DD`, raise on an HTTP error, return the
# `rates` object of the JSON body (a dict such as `{"USD": 1.08, ...}`). Then make `fetch_rates` a task of it
# (`task(get_rates, ...)`) that retries up to **4** times, waiting **0.1 s, then twice as long each time**, with
# **20 % jitter**. Hint: `prefect.tasks.exponential_backoff`.

# %%
### BEGIN SOLUTION
from prefect.tasks import exponential_backoff


def get_rates(day: str) -> dict[str, float]:
    """The EUR exchange rates of one day from the rates service; raises on an HTTP error."""
    response = httpx.get(f"{rates_service.url}/rates", params={"day": day}, timeout=5)
    response.raise_for_status()
    return response.json()["rates"]


fetch_rates = task(
    get_rates, retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=0.1), retry_jitter_factor=0.2
)
### END SOLUTION

# %%
check.m01.fetch_rates_with_backoff(fetch_rates, rates_service)

# %% [markdown]
# Watch it work: the service fails twice, the task waits longer before each new attempt, then succeeds.


# %%
@flow
def rates_with_retries(day: str) -> dict:
    return fetch_rates(day)


rates_service.clear()
rates_service.fail_next(2)
print(rates_with_retries("2026-03-10"))
attempts = rates_service.attempts("2026-03-10")
[(a.status, round(a.at - attempts[0].at, 2)) for a in attempts]  # (HTTP status, seconds after the first try)

# %% [markdown]
# ## The nightly report
# Put the pieces together: the cached extract, revenue per category, the day's USD rate with retries, and the
# report in the object store.


# %%
@flow(log_prints=True)
def nightly_report(day: date) -> str:
    """Revenue per category of one day, in EUR and USD, written as Parquet to the object store."""
    report = revenue_by_category(cached_extract(day))
    usd = fetch_rates(day.isoformat())["USD"]
    report = report.assign(revenue_usd=(report.revenue * usd).round(2))
    key = write_report(report, day)
    print(f"{day}: {report.revenue.sum():.2f} EUR = {report.revenue_usd.sum():.2f} USD -> s3://{BUCKET}/{key}")
    return key


key = nightly_report(date(2026, 3, 10))
pd.read_parquet(f"{BUCKET}/{key}", filesystem=clients.s3_filesystem())

# %% [markdown]
# ## Alerts when a run fails
# Somebody must hear about a failed nightly run before the morning meeting. A flow takes **state-change hooks**
# — `on_failure`, `on_completion`, `on_crashed`, `on_cancellation` — functions called as `hook(flow, flow_run,
# state)` when the run enters that state. (The server can also react to states itself: an *automation* that sends
# a *notification block* — Slack, e-mail, a custom webhook — whatever process ran the flow.)
#
# ### Exercise 4 — page the on-call channel
# Write `notify_on_call(flow, flow_run, state)`: POST to `on_call.url` a JSON object with the keys `flow` (the
# flow's name), `flow_run_id` (the run's id, as a string), `state` (the state's name, e.g. `"Failed"`) and
# `message` (the state's message, which says what went wrong).


# %%
### BEGIN SOLUTION
def notify_on_call(flow, flow_run, state) -> None:
    """Post a JSON alert about a finished flow run to the on-call webhook."""
    alert = {"flow": flow.name, "flow_run_id": str(flow_run.id), "state": state.name, "message": state.message}
    httpx.post(on_call.url, json=alert, timeout=5).raise_for_status()


### END SOLUTION

# %%
check.m01.on_failure_hook_alert(notify_on_call, on_call)

# %% [markdown]
# Attach it to the nightly report and take the rates API down for good: the task retries, gives up, the flow
# fails — and the alert lands.

# %%
alerting_report = nightly_report.with_options(on_failure=[notify_on_call])
on_call.clear()
rates_service.fail_next(None)  # down until recover()
final = alerting_report(date(2026, 3, 9), return_state=True)
rates_service.recover()
final, on_call.wait_for(1)[-1]

# %% [markdown]
# ## Deployments: run it without the notebook
# So far every run started from this kernel. A **deployment** tells the server how to start a flow on its own:
# where its code lives, default parameters, a schedule, and which process runs it. The simplest runner is
# `flow.serve()`: a long-running process that registers the deployment, polls the server for runs to start, and
# executes each one in a subprocess. In production a *work pool* plays that role (`flow.deploy()`), and its
# *workers* start each run as a Kubernetes job, an ECS task, a container…
#
# `lab_prefect.serve` starts such a runner process for the alerting nightly report, scheduled every day at 06:00.

# %%
deployment = lab_prefect.serve(
    alerting_report, "nightly", cron="0 6 * * *", parameters={"day": "2026-03-28"}, tags=["m01", "shop"]
)
info = server.api("GET", f"/deployments/{deployment.id}")
deployment, info["status"], info["parameters"], [s["schedule"] for s in info["schedules"]]

# %% [markdown]
# ### Exercise 5 — trigger and watch through the REST API
# The runner waits for the server to hand it runs. Anything can ask for one: the UI's *Run* button, a schedule,
# an automation, or a client — `run_deployment("nightly-report/nightly", parameters={...})` in Python (in a
# notebook, `await` it: Jupyter runs an event loop and Prefect's client then returns a coroutine). They all go
# through the server's REST API (`server.ui_url + "/docs"` documents it). Write `trigger_and_wait(deployment_id,
# day)` with `httpx` and `server.api_url` only:
# 1. create a run of the deployment with the parameter `day` —
#    `POST /deployments/{id}/create_flow_run` with the JSON body `{"parameters": {...}}`;
# 2. poll `GET /flow_runs/{flow_run_id}` every half second until its `state.type` is final (`COMPLETED`,
#    `FAILED`, `CRASHED` or `CANCELLED`), giving up after 60 seconds;
# 3. return the flow run's JSON (a dict).

# %%
### BEGIN SOLUTION
import time


def trigger_and_wait(deployment_id: str, day: str, timeout: float = 60) -> dict:
    """Create a run of a deployment for one day through the REST API and wait until it ends."""
    created = httpx.post(
        f"{server.api_url}/deployments/{deployment_id}/create_flow_run", json={"parameters": {"day": day}}
    )
    created.raise_for_status()
    run_url = f"{server.api_url}/flow_runs/{created.json()['id']}"
    deadline = time.monotonic() + timeout
    while True:
        run = httpx.get(run_url).raise_for_status().json()
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


### END SOLUTION

# %%
check.m01.deployment_run_via_api(trigger_and_wait, deployment)

# %% [markdown]
# The server keeps every run of the deployment, whoever started it (and the schedule has already lined up the
# next 06:00 runs, in state `Scheduled`). The latest finished ones:

# %%
finished = {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]}}
runs = server.api(
    "POST",
    "/flow_runs/filter",
    json={
        "deployments": {"id": {"any_": [deployment.id]}},
        "flow_runs": {"state": finished},
        "sort": "START_TIME_DESC",
        "limit": 5,
    },
)
pd.DataFrame(
    {"run": r["name"], "day": r["parameters"].get("day"), "state": r["state"]["name"], "took_s": r["total_run_time"]}
    for r in runs
)

# %% [markdown]
# ## Clean up
# The server and the runner are processes: stop them when you are done (closing the notebook does too).

# %%
lab_prefect.stop_all()
server.running, deployment.running

# %% [markdown]
# ## Recap
# - A flow is a function whose runs the server records; tasks are its steps, each with its own state.
# - Parameters are validated from the type hints and stored with each run.
# - A cache policy keyed on the inputs plus persisted results turn a repeated task run into `Cached`;
#   an expiration bounds how stale a cached result may be.
# - Retries with exponential backoff and jitter absorb transient failures; a task that stays down must fail.
# - State hooks (or server-side automations) turn a failure into an alert somebody sees.
# - A deployment lets the server start runs — on a schedule or through its API — in a runner or worker process.
#
# **Going further:** point `PREFECT_API_URL` at **Prefect Cloud** (`prefect cloud login`) and the same flows,
# deployments and API calls run against the hosted server, with automations, SSO and audit logs on top. For
# production infrastructure, create a **work pool** (`prefect work-pool create --type kubernetes`) and publish the
# flow with `flow.deploy(name=..., work_pool_name=..., image=...)`: a worker in your cluster then starts every run
# as a Kubernetes job from your image — the Helm chart `prefect-worker` installs one. Keep result storage in an
# object store (`prefect-aws`'s `S3Bucket` block) so any worker can read a cached result.
