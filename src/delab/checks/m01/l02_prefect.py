"""Checks of lab 01.02 (Prefect). They run the learner's flows, tasks and hooks for real against the lab's local
Prefect server, the stack's Postgres and object store, and the lab's flaky rates service and webhook receiver,
then recompute what should have happened independently (pandas over the raw tables, the server's REST API).
Prefect is imported inside the checks, so this file loads in every kernel."""

from __future__ import annotations

import atexit
import contextlib
import inspect
import io
import itertools
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pandas as pd

from delab import clients, config
from delab.grading import WrongAnswer, exercise, learner_code

#: where the lab's data lives; the unit tests point these at their own namespace
SCHEMA = "m01_l02"
PREFIX = "m01_l02/"
CHECK_DAY = date(2026, 3, 10)
OTHER_DAY = date(2026, 3, 11)
API_DAY = "2026-03-12"


def _report_key(day: date | str) -> str:
    return f"{PREFIX}daily_revenue/day={day}/revenue.parquet"


def _expected_report(day: date | str) -> pd.DataFrame:
    """One day's orders and revenue per category, from the raw tables and pandas (not the learner's SQL)."""
    with clients.postgres() as conn:

        def frame(sql: str, columns: list[str]) -> pd.DataFrame:
            return pd.DataFrame(conn.execute(sql).fetchall(), columns=columns)

        orders = frame(f"SELECT order_id, order_ts, status FROM {SCHEMA}.orders", ["order_id", "order_ts", "status"])
        items = frame(
            f"SELECT order_id, product_id, quantity, unit_price FROM {SCHEMA}.order_items",
            ["order_id", "product_id", "quantity", "unit_price"],
        )
        products = frame(f"SELECT product_id, category FROM {SCHEMA}.products", ["product_id", "category"])
    start = pd.Timestamp(str(day))
    orders = orders[(orders.order_ts >= start) & (orders.order_ts < start + pd.Timedelta(days=1))]
    orders = orders[orders.status != "cancelled"]
    lines = items[items.quantity > 0].merge(orders[["order_id"]], on="order_id").merge(products, on="product_id")
    lines = lines.assign(revenue=lines.quantity * lines.unit_price)
    out = lines.groupby("category").agg(orders=("order_id", "nunique"), revenue=("revenue", "sum")).reset_index()
    return out.assign(revenue=out.revenue.round(2)).sort_values("category", ignore_index=True)


def _read_parquet(key: str) -> pd.DataFrame | None:
    try:
        body = clients.s3().get_object(Bucket=config.s3().bucket, Key=key)["Body"].read()
    except Exception:
        return None
    return pd.read_parquet(io.BytesIO(body))


@contextlib.contextmanager
def _quiet_console() -> Iterator[None]:
    """Keep the check's own flow runs out of the notebook (their logs still reach the server)."""
    handlers = [h for h in logging.getLogger().handlers if "Prefect" in type(h).__name__]
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)


def _server():
    from delab.orchestration import prefect as lab_prefect

    try:
        return lab_prefect.current_server().wait_ready()
    except RuntimeError:
        raise WrongAnswer(
            "the lab's Prefect server is not running.", hint="run the setup cell (lab_prefect.setup) again."
        ) from None


def _failure(state: Any) -> str:
    message = (getattr(state, "message", "") or "").strip().splitlines()
    return message[0] if message else str(state)


def _raise_if_unsolved(state: Any) -> None:
    """A stub's NotImplementedError inside a run surfaces as 'not solved yet', not as a failed run."""
    if state.is_failed() or state.is_crashed():
        try:
            state.result(raise_on_failure=True, _sync=True)
        except NotImplementedError:
            raise
        except Exception:
            return


def _task_runs(flow_run_id: Any, expect: int = 1) -> list[dict]:
    """The task runs of a flow run, read back from the server. They arrive as events a server-side service
    records, seconds late on a busy machine: a right answer returns as soon as they are all in; only an answer
    with fewer tasks than expected waits the whole timeout."""
    return _server().task_runs(flow_run_id, expect=expect, timeout=15.0)


def _compare_report(got: pd.DataFrame, day: date | str, what: str) -> None:
    want = _expected_report(day)
    need = {"category", "orders", "revenue"}
    if not need <= set(got.columns):
        raise WrongAnswer(
            f"{what} has the columns {sorted(map(str, got.columns))}; it needs {sorted(need)}.",
            hint="one row per category with the columns category, orders and revenue.",
        )
    got = got.sort_values("category", ignore_index=True)
    if list(got.category) != list(want.category):
        raise WrongAnswer(
            f"{what} for {day} has the categories {list(got.category)}, expected {list(want.category)}.",
            hint="group the day's order lines by category.",
        )
    try:
        got = got.assign(orders=got.orders.astype(int), revenue=got.revenue.astype(float))
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"{what}: orders and revenue must be numbers (no NULL, no text).",
            hint="keep them numeric in the DataFrame; format them only for display.",
        ) from None
    if (got.orders != want.orders).any():
        lines = _expected_lines_per_category(day)
        if (got.orders == lines).all():
            raise WrongAnswer(
                f"{what}: orders counts order lines, not orders.",
                hint="an order with two lines in the same category is one order: count distinct order ids.",
            )
        raise WrongAnswer(f"{what}: the order counts for {day} are off.", hint="count distinct order ids.")
    if ((got.revenue - want.revenue).abs() > 0.011).any():
        raise WrongAnswer(
            f"{what}: the revenue for {day} is off.",
            hint="revenue = sum of quantity * unit_price over the category's lines, rounded to cents.",
        )


def _expected_lines_per_category(day: date | str) -> pd.Series:
    with clients.postgres() as conn:
        rows = conn.execute(
            f"""SELECT p.category, count(*) FROM {SCHEMA}.orders o
                JOIN {SCHEMA}.order_items i USING (order_id) JOIN {SCHEMA}.products p USING (product_id)
                WHERE o.order_ts >= %(day)s::date AND o.order_ts < %(day)s::date + 1
                  AND o.status <> 'cancelled' AND i.quantity > 0
                GROUP BY p.category ORDER BY p.category""",
            {"day": str(day)},
        ).fetchall()
    return pd.Series([n for _, n in rows])


@learner_code("your task")
def _run_task_in_flow(task, name: str, *args: Any) -> Any:
    """Run a task once inside a throwaway flow run; returns the task run's final state."""
    from prefect import flow

    captured: dict[str, Any] = {}

    @flow(name=name)
    def probe_flow() -> None:
        captured["state"] = task(*args, return_state=True)

    with _quiet_console():
        outer = probe_flow(return_state=True)
    if "state" not in captured:
        raise WrongAnswer(f"the probe flow ended {outer.name}: {_failure(outer)}", hint="run your task alone.")
    state = captured["state"]
    _raise_if_unsolved(state)
    return state


# ----------------------------------------------------------------------------------- e1: flows and tasks


@learner_code("your flow")
def _run_flow(flow, *args: Any, **kwargs: Any):
    with _quiet_console():
        return flow(*args, return_state=True, **kwargs)


@exercise("m01.l02.e1")
def daily_revenue_flow(daily_revenue) -> None:
    """A flow of tasks: extract, revenue per category, Parquet report in the object store."""
    from prefect import Flow

    if not isinstance(daily_revenue, Flow):
        raise WrongAnswer(
            f"daily_revenue is a {type(daily_revenue).__name__}, not a Prefect flow.",
            hint="decorate the function with @flow.",
        )
    if "day" not in daily_revenue.parameters.properties:
        raise WrongAnswer("the flow has no parameter named day.", hint="def daily_revenue(day: date) -> str")
    clients.s3_delete_prefix(f"{PREFIX}daily_revenue/")
    state = _run_flow(daily_revenue, CHECK_DAY)
    _raise_if_unsolved(state)
    if not state.is_completed():
        raise WrongAnswer(
            f"the flow run for {CHECK_DAY} ended {state.name}: {_failure(state)}",
            hint="run daily_revenue(date(2026, 3, 10)) in a cell to see its logs.",
        )
    key = state.result(_sync=True)
    if key != _report_key(CHECK_DAY):
        raise WrongAnswer(
            f"the flow returned {key!r}; expected the key it wrote, {_report_key(CHECK_DAY)!r}.",
            hint="return what write_report returns: m01_l02/daily_revenue/day=YYYY-MM-DD/revenue.parquet.",
        )
    written = _read_parquet(key)
    if written is None:
        raise WrongAnswer(f"nothing was written to s3://{config.s3().bucket}/{key}.", hint="put the Parquet bytes.")
    _compare_report(written, CHECK_DAY, "the Parquet report")
    runs = _task_runs(state.state_details.flow_run_id, expect=3)
    names = {run["name"].rsplit("-", 1)[0] for run in runs}
    if len(runs) < 3:
        raise WrongAnswer(
            f"the flow run made {len(runs)} task run(s); extract, transform and load should be three tasks.",
            hint="decorate revenue_by_category and write_report with @task and call them from the flow.",
        )
    if len(names) < 3:
        raise WrongAnswer(
            f"the flow's task runs come from only {len(names)} task(s).",
            hint="extract_order_lines, revenue_by_category and write_report: one task each.",
        )


# ------------------------------------------------------------------------------------------- e2: caching


@exercise("m01.l02.e2")
def cached_extract(cached_extract) -> None:
    """A task cached on its inputs, persisted across flow runs, expiring within an hour."""
    from prefect import Task
    from prefect.cache_policies import NO_CACHE
    from prefect.filesystems import LocalFileSystem

    if not isinstance(cached_extract, Task):
        raise WrongAnswer(
            f"cached_extract is a {type(cached_extract).__name__}, not a Prefect task.",
            hint="derive it from the extract task with .with_options(...).",
        )
    if cached_extract.cache_policy in (None, NO_CACHE) or cached_extract.refresh_cache:
        raise WrongAnswer(
            "this task never reads a cached result.",
            hint="give it a cache policy (prefect.cache_policies) and do not refresh the cache.",
        )
    expiration = cached_extract.cache_expiration
    if expiration is None:
        raise WrongAnswer(
            "cached results never expire: orders placed later today would never show up.",
            hint="set cache_expiration to a timedelta of at most an hour.",
        )
    if not isinstance(expiration, timedelta):
        raise WrongAnswer(
            f"cache_expiration is {expiration!r}, not a duration.", hint="cache_expiration=timedelta(hours=...)"
        )
    if expiration > timedelta(hours=1) or expiration <= timedelta(0):
        raise WrongAnswer(f"the cache expires after {expiration}.", hint="at most one hour (and more than zero).")
    if cached_extract.persist_result is False:
        raise WrongAnswer(
            "persist_result=False: results vanish with the run, so another flow run cannot reuse them.",
            hint="leave persist_result alone (a cache policy turns it on) or set it to True.",
        )
    # a storage of our own, so the first call below is a miss whatever the notebook ran before
    cache_dir = tempfile.mkdtemp(prefix="m01-l02-cache-")
    atexit.register(shutil.rmtree, cache_dir, True)  # results are read below; the folder goes with the kernel
    storage = LocalFileSystem(basepath=cache_dir)
    storage.save("m01-l02-check-cache", overwrite=True, _sync=True)
    probe = cached_extract.with_options(result_storage=storage)

    states = []
    for day in (CHECK_DAY, CHECK_DAY, OTHER_DAY):
        state = _run_task_in_flow(probe, "m01-l02-check-cache", day)
        if not state.is_completed():
            raise WrongAnswer(f"your task ended {state.name}: {_failure(state)}", hint="run it in a flow alone.")
        states.append(state)
    first, again, other = states
    if first.name == "Cached":
        raise WrongAnswer("the very first call was already a cache hit.", hint="the cache key must depend on day.")
    if again.name != "Cached":
        raise WrongAnswer(
            f"a second flow run with the same day ended {again.name}, not Cached: the work was done twice.",
            hint="the default policy includes the flow run's id in the key; pick one keyed on the inputs only.",
        )
    if other.name == "Cached":
        raise WrongAnswer(
            f"the call for {OTHER_DAY} was served from the cache of {CHECK_DAY}: it returned the wrong day's data.",
            hint="the cache key must include the task's inputs.",
        )
    for day, state in ((CHECK_DAY, again), (OTHER_DAY, other)):
        lines = state.result(_sync=True)
        if not isinstance(lines, pd.DataFrame):
            raise WrongAnswer(f"the task returned a {type(lines).__name__}.", hint="keep the extract's body as it is.")
        got = lines.assign(revenue=lines.quantity * lines.unit_price).revenue.sum()
        if abs(got - _expected_report(day).revenue.sum()) > 0.05:
            raise WrongAnswer(
                f"the lines returned for {day} do not add up to that day's revenue.",
                hint="derive the task from extract_order_lines without changing what it does.",
            )


# ------------------------------------------------------------------------------------------- e3: retries


def _counting_attempts(fetch_rates: Any, rates_service: Any, day: str) -> tuple[Any, list[int]]:
    """A copy of the task whose every attempt records how many requests for ``day`` the service got during it."""
    import functools

    per_attempt: list[int] = []
    body = fetch_rates.fn

    @functools.wraps(body)
    def counted(*args: Any, **kwargs: Any) -> Any:
        before = len(rates_service.attempts(day))
        try:
            return body(*args, **kwargs)
        finally:
            per_attempt.append(len(rates_service.attempts(day)) - before)

    copy = fetch_rates.with_options()
    copy.fn = counted
    return copy, per_attempt


@exercise("m01.l02.e3")
def fetch_rates_with_backoff(fetch_rates, rates_service) -> None:
    """Retries with exponential backoff and jitter: survive a flaky API, give up cleanly when it stays down."""
    from prefect import Task

    from delab.orchestration.prefect import eur_rates

    if not isinstance(fetch_rates, Task):
        raise WrongAnswer(
            f"fetch_rates is a {type(fetch_rates).__name__}, not a Prefect task.",
            hint="task(get_rates, retries=..., ...) turns a function into a task.",
        )
    retries = fetch_rates.retries or 0
    if retries < 3:
        raise WrongAnswer(
            f"fetch_rates retries {retries} time(s); the service can be down for three requests in a row.",
            hint="retry up to 4 times.",
        )
    if retries > 6:
        raise WrongAnswer(f"{retries} retries hammer a service that is down.", hint="retry up to 4 times.")
    delays = fetch_rates.retry_delay_seconds
    delays = [float(delays)] * retries if isinstance(delays, int | float) else [float(d) for d in delays or [0]]
    if len(set(delays)) == 1:
        raise WrongAnswer(
            f"every retry waits the same {delays[0]:g} s: a struggling service gets no room to recover.",
            hint="the waits should grow exponentially: prefect.tasks.exponential_backoff(backoff_factor=...).",
        )
    if any(b < 1.5 * a for a, b in itertools.pairwise(delays)):
        raise WrongAnswer(
            f"the waits {delays} do not double.", hint="exponential backoff: each wait twice the one before."
        )
    if delays[0] > 0.5 or sum(delays[:retries]) > 10:
        raise WrongAnswer(f"the waits {delays} are too long for this lab.", hint="start at 0.1 s.")
    if not fetch_rates.retry_jitter_factor:
        raise WrongAnswer(
            "no jitter: many clients that failed together retry together, and knock the service over again.",
            hint="set retry_jitter_factor (e.g. 0.2).",
        )
    if float(fetch_rates.retry_jitter_factor) > 1:
        raise WrongAnswer(
            f"retry_jitter_factor={fetch_rates.retry_jitter_factor:g} lets a wait grow to "
            f"{1 + float(fetch_rates.retry_jitter_factor):g} times its delay.",
            hint="the factor is a fraction of the delay: 20 % jitter is 0.2.",
        )

    day = "2026-03-07"
    rates_service.clear()
    rates_service.fail_next(3)
    counted, requests_per_attempt = _counting_attempts(fetch_rates, rates_service, day)
    try:
        inner = _run_task_in_flow(counted, "m01-l02-check-rates", day)
    finally:
        rates_service.recover()
    attempts = rates_service.attempts(day)
    # Counted per attempt, not timed: a retry loop inside the task sends several requests in one attempt, however
    # long each request takes on a busy machine.
    if any(n > 1 for n in requests_per_attempt):
        raise WrongAnswer(
            f"one attempt of your task sent {max(requests_per_attempt)} requests: it retries inside the task, so the "
            f"waits between requests are shorter than the configured {delays}.",
            hint="let Prefect wait between retries (retry_delay_seconds); do not retry inside the task.",
        )
    if not attempts:
        raise WrongAnswer(
            "the rates service received no request for the day asked.",
            hint="GET {rates_service.url}/rates?day=YYYY-MM-DD (pass day as a query parameter).",
        )
    if not inner.is_completed():
        raise WrongAnswer(
            f"with the service failing its first 3 requests, the task ended {inner.name} after "
            f"{len(attempts)} attempt(s): {_failure(inner)}",
            hint="raise on an HTTP error (response.raise_for_status()) and let Prefect retry.",
        )
    got = inner.result(_sync=True)
    if got != eur_rates(day):
        raise WrongAnswer(
            f"the task returned {got!r}, not the day's rates {eur_rates(day)!r}.",
            hint="return the 'rates' object of the JSON body, and raise when the response is an error.",
        )
    if len(attempts) != 4:
        raise WrongAnswer(
            f"the service was called {len(attempts)} times; 3 failures then a success is 4 calls.",
            hint="one request per attempt: let Prefect do the retrying.",
        )
    # Each retry must really have waited its configured delay (less the jitter). Only a lower bound: the time a
    # task run takes on a busy machine adds to every gap, so comparing gaps with each other is noise.
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    jitter = float(fetch_rates.retry_jitter_factor or 0)
    if any(gap < 0.9 * (1 - jitter) * delay for gap, delay in zip(gaps, delays, strict=False)):
        raise WrongAnswer(
            f"the observed waits {[round(g, 2) for g in gaps]} s between attempts are shorter than the "
            f"configured {delays}.",
            hint="let Prefect wait between retries (retry_delay_seconds); do not retry inside the task.",
        )
    # a service that stays down: the task must end Failed after its retries, not 'succeed' with nothing
    rates_service.clear()
    rates_service.fail_next(None)
    try:
        inner = _run_task_in_flow(fetch_rates, "m01-l02-check-rates", day)
    finally:
        rates_service.recover()
    calls = len(rates_service.attempts(day))
    if not inner.is_failed():
        raise WrongAnswer(
            f"with the service down for good, the task ended {inner.name}, "
            f"returning {inner.result(raise_on_failure=False, _sync=True)!r}.",
            hint="do not swallow the error: a task that cannot get the rates must fail, so the flow fails.",
        )
    if calls != retries + 1:
        raise WrongAnswer(
            f"with {retries} retries the service should see {retries + 1} requests, it saw {calls}.",
            hint="one request per attempt.",
        )


# ------------------------------------------------------------------------------------ e4: failure alerts


@exercise("m01.l02.e4")
def on_failure_hook_alert(notify_on_call, webhook) -> None:
    """An on_failure hook that posts one useful JSON alert to the on-call webhook."""
    from prefect import flow

    if not callable(notify_on_call):
        raise WrongAnswer("notify_on_call should be a function.", hint="def notify_on_call(flow, flow_run, state):")

    @flow(name="m01-l02-check-nightly", on_failure=[notify_on_call])
    def failing(day: str):
        raise RuntimeError(f"the rates service is down (day {day})")

    webhook.clear()
    state = _run_flow(failing, "2026-03-09")
    if not state.is_failed():
        raise WrongAnswer(f"the probe flow ended {state.name}.", hint="run the check again.")
    # hooks run inside the flow call, before it returns: what they posted has arrived (or never will)
    received = webhook.wait_for(1, timeout=1.0)
    if not received:  # Prefect only logs a hook's errors: call it directly to show the learner what went wrong
        probe = _probe_hook(notify_on_call, state)
        raise WrongAnswer(
            f"the webhook received nothing when a flow run failed{probe}.",
            hint="POST to on_call.url with httpx (or requests) inside the hook.",
        )
    time.sleep(0.3)
    received = webhook.received
    if len(received) > 1:
        raise WrongAnswer(f"one failure sent {len(received)} alerts.", hint="post once per call of the hook.")
    alert = received[0].json
    if not isinstance(alert, dict):
        raise WrongAnswer(
            "the alert is not a JSON object.", hint="post json={...} so the body is JSON (not form data or text)."
        )
    run_id = str(state.state_details.flow_run_id)
    need = {"flow", "flow_run_id", "state", "message"}
    if not need <= set(alert):
        raise WrongAnswer(f"the alert has the keys {sorted(alert)}; it needs {sorted(need)}.", hint="see the spec.")
    if str(alert["flow_run_id"]) != run_id:
        raise WrongAnswer(
            "the alert's flow_run_id is not the id of the run that failed.", hint="use flow_run.id (as a string)."
        )
    if alert["flow"] != "m01-l02-check-nightly":
        raise WrongAnswer(f"the alert names the flow {alert['flow']!r}.", hint="flow.name is the flow's name.")
    if alert["state"] != "Failed":
        raise WrongAnswer(
            f"the alert's state is {alert['state']!r}; expected the state's name, 'Failed'.",
            hint="state.name (state.type is an enum; str(state) adds the message).",
        )
    if "rates service is down" not in str(alert["message"]):
        raise WrongAnswer(
            "the alert's message does not say what went wrong.",
            hint="state.message carries the exception of the failed run.",
        )


def _probe_hook(hook, state) -> str:
    """Call the hook directly (outside Prefect, which only logs hook errors) to surface its error, if any."""

    class _Flow:
        name = "m01-l02-check-nightly"

    class _Run:
        id = state.state_details.flow_run_id
        name = "probe"

    try:
        hook(_Flow(), _Run(), state)
    except NotImplementedError:
        raise
    except Exception as error:
        return f" — calling your hook raised {type(error).__name__}: {error}"
    return ""


# ---------------------------------------------------------------------------- e5: deployment through REST

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


#: the wait the check gives a trigger_and_wait that takes a ``timeout``: the lab's 60 s can pass before a run
#: ends on a busy machine, and "returned while the run was RUNNING" would then blame a right answer
RUN_WAIT_TIMEOUT = 600


@learner_code("your trigger_and_wait")
def _trigger(fn, deployment_id: str, day: str):
    try:
        takes_timeout = "timeout" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_timeout = False
    return fn(deployment_id, day, timeout=RUN_WAIT_TIMEOUT) if takes_timeout else fn(deployment_id, day)


@exercise("m01.l02.e5")
def deployment_run_via_api(trigger_and_wait, deployment) -> None:
    """Trigger a served deployment with a parameter through the REST API and wait for the run to finish."""
    if not callable(trigger_and_wait):
        raise WrongAnswer("trigger_and_wait should be a function.", hint="def trigger_and_wait(deployment_id, day):")
    if not getattr(deployment, "running", False):
        raise WrongAnswer("the deployment is not served any more.", hint="run the cell with lab_prefect.serve again.")
    server = _server()
    clients.s3_delete_prefix(_report_key(API_DAY))
    started = time.time()
    try:
        run = _trigger(trigger_and_wait, deployment.id, API_DAY)
    except WrongAnswer as failed:
        if "422" not in failed.message:
            raise
        raise WrongAnswer(
            failed.message,
            hint='the server refused the request body: create_flow_run takes {"parameters": {"day": ...}}.',
        ) from None
    if not isinstance(run, dict) or "id" not in run:
        raise WrongAnswer(
            f"trigger_and_wait returned a {type(run).__name__}; expected the flow run as a dict (its JSON).",
            hint="return response.json() of the last GET /flow_runs/{id}.",
        )
    fresh = server.api("GET", f"/flow_runs/{run['id']}")
    if fresh.get("deployment_id") != deployment.id:
        raise WrongAnswer("that flow run does not belong to the deployment.", hint="POST .../create_flow_run.")
    if _iso_epoch(fresh["created"]) < started - 5:
        raise WrongAnswer("that flow run existed before the check started.", hint="create a new run each call.")
    state = (run.get("state") or {}).get("type")
    if state not in TERMINAL:
        raise WrongAnswer(
            f"you returned while the run was {state}: the caller cannot know how it ended.",
            hint="poll GET /flow_runs/{id} until the state type is COMPLETED, FAILED, CRASHED or CANCELLED.",
        )
    day = str((fresh.get("parameters") or {}).get("day", ""))[:10]
    if day != API_DAY:
        raise WrongAnswer(
            f"the run used day={day or 'the deployment default'}, not {API_DAY}.",
            hint='create the run with {"parameters": {"day": ...}} in the JSON body.',
        )
    if fresh["state"]["type"] != "COMPLETED":
        raise WrongAnswer(
            f"the deployment's run ended {fresh['state']['name']}: {fresh['state'].get('message')}",
            hint="look at the run in the UI (server.ui_url) or at the runner's log (deployment.log_path).",
        )
    written = _read_parquet(_report_key(API_DAY))
    if written is None:
        raise WrongAnswer("the run completed but wrote no report.", hint="serve the nightly report flow.")
    _compare_report(written, API_DAY, "the report the deployment wrote")


def _iso_epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
