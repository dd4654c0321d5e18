"""Checks of lab 01.02 (Prefect), against a real local Prefect server, Postgres and the object store: the right
answer passes; realistic wrong answers are rejected with a telling message; the placeholder is not solved yet.

The tests load the shop into their own schema and prefix (``m01_l02_t``) and run their own Prefect server
(database ``prefect_m01_l02_t``), so they can run while the lab's notebooks do."""

from __future__ import annotations

import io
import os
import sys
from datetime import date, timedelta

import pandas as pd
import pytest

from delab import clients, config, datasets
from delab.checks.m01 import l02_prefect as checks
from delab.grading import NotSolvedYet, WrongAnswer

pytestmark = pytest.mark.stack

SCHEMA = "m01_l02_t"


@pytest.fixture(scope="module", autouse=True)
def lab():
    """Shop data in the test schema, and a local Prefect server for the module (the environment restored after)."""
    from delab.orchestration import prefect as lab_prefect

    saved = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_")}
    shop = datasets.shop(seed=7, scale=0.25)
    datasets.to_postgres(
        {"orders": shop.orders.drop_duplicates("order_id"), "order_items": shop.order_items, "products": shop.products},
        schema=SCHEMA,
    )
    server = lab_prefect.setup(SCHEMA, standby_runner=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checks, "SCHEMA", SCHEMA)
        patch.setattr(checks, "PREFIX", f"{SCHEMA}/")
        server.wait_ready()
        yield server
    lab_prefect.stop_all()
    clients.s3_delete_prefix(f"{SCHEMA}/")
    for key in [k for k in os.environ if k.startswith("PREFECT_")]:
        del os.environ[key]
    os.environ.update(saved)
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()


# ------------------------------------------------------------------------------------ learner-like answers


def lines_sql() -> str:
    return f"""
        SELECT o.order_id, p.category, i.quantity, i.unit_price
        FROM {SCHEMA}.orders o JOIN {SCHEMA}.order_items i USING (order_id)
        JOIN {SCHEMA}.products p USING (product_id)
        WHERE o.order_ts >= %(day)s AND o.order_ts < %(day)s + interval '1 day'
          AND o.status <> 'cancelled' AND i.quantity > 0"""


def extract_order_lines_fn(day: date) -> pd.DataFrame:
    with clients.postgres() as conn:
        rows = conn.execute(lines_sql(), {"day": day}).fetchall()
    return pd.DataFrame(rows, columns=["order_id", "category", "quantity", "unit_price"])


def revenue_fn(lines: pd.DataFrame, count=("order_id", "nunique")) -> pd.DataFrame:
    lines = lines.assign(revenue=lines.quantity * lines.unit_price.astype(float))
    report = lines.groupby("category").agg(orders=count, revenue=("revenue", "sum")).reset_index()
    return report.assign(revenue=report.revenue.round(2))


def write_fn(report: pd.DataFrame, day: date, key_format: str = "{prefix}daily_revenue/day={day}/revenue.parquet"):
    key = key_format.format(prefix=f"{SCHEMA}/", day=day)  # not checks.PREFIX: the runner does not see the patch
    buffer = io.BytesIO()
    report.to_parquet(buffer, index=False)
    clients.s3().put_object(Bucket=config.s3().bucket, Key=key, Body=buffer.getvalue())
    return key


def make_daily_revenue(count=("order_id", "nunique"), key_format=None, with_tasks=True):
    from prefect import flow, task

    extract = task(extract_order_lines_fn, name="extract_order_lines")
    transform = task(lambda lines: revenue_fn(lines, count), name="revenue_by_category")
    load = task(lambda report, day: write_fn(report, day, *([key_format] if key_format else [])), name="write_report")

    @flow(name="daily-revenue")
    def daily_revenue(day: date) -> str:
        if not with_tasks:
            lines = extract_order_lines_fn(day)
            return write_fn(revenue_fn(lines, count), day)
        return load(transform(extract(day)), day)

    return daily_revenue


# -------------------------------------------------------------------------------------------------- e1


def test_flow_accepts_solution():
    checks.daily_revenue_flow(make_daily_revenue())


def test_flow_rejects_counting_lines_as_orders():
    with pytest.raises(WrongAnswer, match="counts order lines"):
        checks.daily_revenue_flow(make_daily_revenue(count=("order_id", "size")))


def test_flow_says_when_counts_are_text():
    # used to crash in astype(int): counts written as "12 orders"
    with pytest.raises(WrongAnswer, match="must be numbers"):
        checks.daily_revenue_flow(make_daily_revenue(count=("order_id", lambda ids: f"{ids.nunique()} orders")))


def test_flow_rejects_returning_another_key():
    with pytest.raises(WrongAnswer, match="returned"):
        checks.daily_revenue_flow(make_daily_revenue(key_format="{prefix}daily_revenue/{day}.parquet"))


def test_flow_rejects_a_flow_without_tasks():
    with pytest.raises(WrongAnswer, match="task run"):
        checks.daily_revenue_flow(make_daily_revenue(with_tasks=False))


def test_flow_rejects_a_plain_function():
    with pytest.raises(WrongAnswer, match="not a Prefect flow"):
        checks.daily_revenue_flow(lambda day: "nope")


def test_flow_placeholder_is_not_solved():
    from prefect import flow

    @flow
    def daily_revenue(day: date) -> str:
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.daily_revenue_flow(daily_revenue)


# -------------------------------------------------------------------------------------------------- e2


@pytest.fixture(scope="module")
def extract_task():
    from prefect import task

    return task(extract_order_lines_fn, name="extract_order_lines")


def test_cache_accepts_inputs_policy(extract_task):
    from prefect.cache_policies import INPUTS

    checks.cached_extract(extract_task.with_options(cache_policy=INPUTS, cache_expiration=timedelta(hours=1)))


def test_cache_accepts_inputs_and_source(extract_task):
    from prefect.cache_policies import INPUTS, TASK_SOURCE

    policy = INPUTS + TASK_SOURCE
    checks.cached_extract(extract_task.with_options(cache_policy=policy, cache_expiration=timedelta(minutes=30)))


def test_cache_rejects_the_default_policy(extract_task):
    with pytest.raises(WrongAnswer, match="done twice"):
        checks.cached_extract(extract_task.with_options(cache_expiration=timedelta(hours=1)))


def test_cache_rejects_a_key_that_ignores_the_inputs(extract_task):
    from prefect.cache_policies import TASK_SOURCE

    with pytest.raises(WrongAnswer, match="served from the cache"):
        checks.cached_extract(extract_task.with_options(cache_policy=TASK_SOURCE, cache_expiration=timedelta(hours=1)))


def test_cache_rejects_results_that_never_expire(extract_task):
    from prefect.cache_policies import INPUTS

    with pytest.raises(WrongAnswer, match="never expire"):
        checks.cached_extract(extract_task.with_options(cache_policy=INPUTS))


def test_cache_rejects_a_day_long_expiration(extract_task):
    from prefect.cache_policies import INPUTS

    with pytest.raises(WrongAnswer, match="expires after 1 day"):
        checks.cached_extract(extract_task.with_options(cache_policy=INPUTS, cache_expiration=timedelta(days=1)))


def test_cache_says_when_the_expiration_is_not_a_duration(extract_task):
    # seconds as a plain number: used to crash comparing an int with a timedelta
    from prefect.cache_policies import INPUTS

    with pytest.raises(WrongAnswer, match="not a duration"):
        checks.cached_extract(extract_task.with_options(cache_policy=INPUTS, cache_expiration=3600))


def test_cache_rejects_refreshing_the_cache(extract_task):
    from prefect.cache_policies import INPUTS

    answer = extract_task.with_options(cache_policy=INPUTS, cache_expiration=timedelta(hours=1), refresh_cache=True)
    with pytest.raises(WrongAnswer, match="never reads a cached result"):
        checks.cached_extract(answer)


def test_cache_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.cached_extract(...)


# -------------------------------------------------------------------------------------------------- e3


@pytest.fixture(scope="module")
def rates_service(lab):
    from delab.orchestration.prefect import RatesService

    return RatesService()


def make_get_rates(rates_service, swallow=False, whole_body=False):
    import httpx

    def get_rates(day: str) -> dict:
        response = httpx.get(f"{rates_service.url}/rates", params={"day": day}, timeout=5)
        if swallow and response.is_error:
            return {}
        response.raise_for_status()
        return response.json() if whole_body else response.json()["rates"]

    return get_rates


def make_fetch_rates(rates_service, swallow=False, whole_body=False, **options):
    from prefect import task
    from prefect.tasks import exponential_backoff

    settings = dict(retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=0.1), retry_jitter_factor=0.2)
    return task(make_get_rates(rates_service, swallow, whole_body), **{**settings, **options})


def test_retries_accept_solution(rates_service):
    checks.fetch_rates_with_backoff(make_fetch_rates(rates_service), rates_service)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": 0}, "retries 0 time"),
        ({"retries": 2}, "retries 2 time"),
        ({"retry_delay_seconds": 0.2}, "waits the same"),
        ({"retry_jitter_factor": None}, "no jitter"),
        ({"retry_delay_seconds": [1, 2, 4, 8]}, "too long"),
        ({"retry_jitter_factor": 20}, "20 % jitter is 0.2"),  # a percentage (used to pass: any waits are long enough)
        ({"retry_delay_seconds": [0.1, 0.1, 0.2, 0.2]}, "do not double"),
    ],
)
def test_retries_reject_wrong_settings(rates_service, options, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.fetch_rates_with_backoff(make_fetch_rates(rates_service, **options), rates_service)


def test_retries_reject_swallowing_errors(rates_service):
    with pytest.raises(WrongAnswer, match="not the day's rates"):
        checks.fetch_rates_with_backoff(make_fetch_rates(rates_service, swallow=True), rates_service)


def test_retries_reject_returning_the_whole_body(rates_service):
    with pytest.raises(WrongAnswer, match="not the day's rates"):
        checks.fetch_rates_with_backoff(make_fetch_rates(rates_service, whole_body=True), rates_service)


def test_retries_reject_a_retry_loop_inside_the_task(rates_service):
    """Retrying inside the task body (no waits) makes the same 4 calls, but gives the service no time."""
    import httpx
    from prefect import task
    from prefect.tasks import exponential_backoff

    def get_rates(day: str) -> dict:
        for _ in range(5):
            response = httpx.get(f"{rates_service.url}/rates", params={"day": day}, timeout=5)
            if not response.is_error:
                return response.json()["rates"]
        response.raise_for_status()

    looping = task(get_rates, retries=4, retry_delay_seconds=exponential_backoff(0.1), retry_jitter_factor=0.2)
    with pytest.raises(WrongAnswer, match="shorter than the configured") as verdict:
        checks.fetch_rates_with_backoff(looping, rates_service)
    assert "do not retry inside the task" in verdict.value.hint


def test_retries_reject_a_retry_loop_that_waits_inside_the_task(rates_service):
    """A hand-written backoff inside the task waits long enough between requests on any machine: the check counts
    the requests of each attempt instead of timing them (it used to accept this, and to give the loop above
    another hint when a busy machine made each request slow)."""
    import time

    import httpx
    from prefect import task
    from prefect.tasks import exponential_backoff

    def get_rates(day: str) -> dict:
        for wait in (0.1, 0.2, 0.4, 0.8, 0):
            response = httpx.get(f"{rates_service.url}/rates", params={"day": day}, timeout=5)
            if not response.is_error:
                return response.json()["rates"]
            time.sleep(wait)
        response.raise_for_status()

    looping = task(get_rates, retries=4, retry_delay_seconds=exponential_backoff(0.1), retry_jitter_factor=0.2)
    with pytest.raises(WrongAnswer, match="retries inside the task") as verdict:
        checks.fetch_rates_with_backoff(looping, rates_service)
    assert "do not retry inside the task" in verdict.value.hint


def test_retries_placeholder_is_not_solved(rates_service):
    from prefect import task
    from prefect.tasks import exponential_backoff

    def get_rates(day: str) -> dict:
        raise NotImplementedError

    stub = task(get_rates, retries=4, retry_delay_seconds=exponential_backoff(0.1), retry_jitter_factor=0.2)
    with pytest.raises(NotSolvedYet):
        checks.fetch_rates_with_backoff(stub, rates_service)
    with pytest.raises(NotSolvedYet):
        checks.fetch_rates_with_backoff(..., rates_service)


# -------------------------------------------------------------------------------------------------- e4


@pytest.fixture(scope="module")
def webhook(lab):
    from delab.localhttp import Receiver

    return Receiver()


def make_hook(
    webhook, how="json", state_value=lambda state: state.name, keys=None, run_id=lambda run: str(run.id), name=None
):
    import httpx

    def notify_on_call(flow, flow_run, state):
        alert = {
            "flow": (name or (lambda f: f.name))(flow),
            "flow_run_id": run_id(flow_run),
            "state": state_value(state),
        }
        alert["message"] = state.message
        alert = {k: v for k, v in alert.items() if keys is None or k in keys}
        if how == "json":
            httpx.post(webhook.url, json=alert, timeout=5)
        elif how == "form":
            httpx.post(webhook.url, data=alert, timeout=5)
        else:
            httpx.post("http://127.0.0.1:1/nowhere", json=alert, timeout=1).raise_for_status()

    return notify_on_call


def test_alert_accepts_solution(webhook):
    checks.on_failure_hook_alert(make_hook(webhook), webhook)


def test_alert_rejects_form_data(webhook):
    with pytest.raises(WrongAnswer, match="not a JSON object"):
        checks.on_failure_hook_alert(make_hook(webhook, how="form"), webhook)


def test_alert_rejects_the_state_repr(webhook):
    with pytest.raises(WrongAnswer, match="state's name"):
        checks.on_failure_hook_alert(make_hook(webhook, state_value=str), webhook)


def test_alert_rejects_the_state_type(webhook):
    # state.type is an enum whose JSON is "FAILED", not the state's name
    with pytest.raises(WrongAnswer, match="state's name"):
        checks.on_failure_hook_alert(make_hook(webhook, state_value=lambda state: state.type), webhook)


def test_alert_rejects_the_run_name_as_its_id(webhook):
    with pytest.raises(WrongAnswer, match="not the id of the run"):
        checks.on_failure_hook_alert(make_hook(webhook, run_id=lambda run: run.name), webhook)


def test_alert_rejects_the_function_name_as_the_flow_name(webhook):
    with pytest.raises(WrongAnswer, match="names the flow 'failing'"):
        checks.on_failure_hook_alert(make_hook(webhook, name=lambda flow: flow.fn.__name__), webhook)


def test_alert_says_when_the_hook_cannot_encode_the_run_id(webhook):
    # a UUID is not JSON: the post fails inside the hook, which Prefect only logs
    with pytest.raises(WrongAnswer, match=r"received nothing.*TypeError"):
        checks.on_failure_hook_alert(make_hook(webhook, run_id=lambda run: run.id), webhook)


def test_alert_rejects_an_alert_without_run_id(webhook):
    with pytest.raises(WrongAnswer, match="keys"):
        checks.on_failure_hook_alert(make_hook(webhook, keys={"flow", "state", "message"}), webhook)


def test_alert_reports_a_hook_that_cannot_post(webhook):
    with pytest.raises(WrongAnswer, match=r"received nothing.*ConnectError"):
        checks.on_failure_hook_alert(make_hook(webhook, how="broken"), webhook)


def test_alert_placeholder_is_not_solved(webhook):
    def notify_on_call(flow, flow_run, state):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.on_failure_hook_alert(notify_on_call, webhook)


# -------------------------------------------------------------------------------------------------- e5


def nightly_report_fn(day: str) -> str:  # a str: this module's postponed annotations are not resolvable once pickled
    lines = extract_order_lines_fn(date.fromisoformat(day))
    return write_fn(revenue_fn(lines), day)


@pytest.fixture(scope="module")
def deployment(lab):
    import cloudpickle
    from prefect import flow

    from delab.orchestration import prefect as lab_prefect

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the runner cannot import the tests package
    nightly = flow(nightly_report_fn, name="nightly-report")
    served = lab_prefect.serve(nightly, "nightly", parameters={"day": "2026-03-28"})
    yield served
    served.stop()


def make_trigger(lab, wait=True, send_day=True, default_timeout=60, top_level_day=False):
    import time

    import httpx

    def trigger_and_wait(deployment_id: str, day: str, timeout: float = default_timeout) -> dict:
        body = {"parameters": {"day": day}} if send_day else {}
        body = {"day": day} if top_level_day else body
        created = httpx.post(f"{lab.api_url}/deployments/{deployment_id}/create_flow_run", json=body)
        run = created.raise_for_status().json()
        deadline = time.monotonic() + timeout
        while wait and run["state"]["type"] not in checks.TERMINAL and time.monotonic() < deadline:
            time.sleep(0.5)
            run = httpx.get(f"{lab.api_url}/flow_runs/{run['id']}").raise_for_status().json()
        return run

    return trigger_and_wait


def test_deployment_accepts_solution(lab, deployment):
    checks.deployment_run_via_api(make_trigger(lab), deployment)


def test_deployment_gives_a_busy_machine_time(lab, deployment):
    # used to fail on a loaded machine: the run outlasted the answer's own 60 s and the check said "RUNNING"
    checks.deployment_run_via_api(make_trigger(lab, default_timeout=0), deployment)


def test_deployment_rejects_not_waiting(lab, deployment):
    with pytest.raises(WrongAnswer, match="returned while the run was"):
        checks.deployment_run_via_api(make_trigger(lab, wait=False), deployment)


def test_deployment_rejects_the_default_day(lab, deployment):
    with pytest.raises(WrongAnswer, match="used day=2026-03-28"):
        checks.deployment_run_via_api(make_trigger(lab, send_day=False), deployment)


def test_deployment_rejects_the_day_outside_parameters(lab, deployment):
    # {"day": ...} at the top of the body: the server refuses it (422)
    with pytest.raises(WrongAnswer, match="422 Unprocessable Entity") as verdict:
        checks.deployment_run_via_api(make_trigger(lab, top_level_day=True), deployment)
    assert '{"parameters": {"day": ...}}' in verdict.value.hint


def test_deployment_placeholder_is_not_solved(deployment):
    def trigger_and_wait(deployment_id: str, day: str, timeout: float = 60) -> dict:
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.deployment_run_via_api(trigger_and_wait, deployment)
