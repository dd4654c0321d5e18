"""A Dagster job for lab 01.06: six day-exports fanned out, each holding a "warehouse" connection for a while.

It lives in the package (not the notebook) because Dagster's multiprocess executor starts each step in a fresh
process that must be able to import the job (``reconstructable``).
"""

from __future__ import annotations

import os
import time

from dagster import DynamicOut, DynamicOutput, job, op

DAYS = [f"2026-03-{d:02d}" for d in range(2, 8)]
QUERY_SECONDS = 0.8


@op(out=DynamicOut(str))
def list_days():
    for day in DAYS:
        yield DynamicOutput(day, mapping_key=day.replace("-", "_"))


@op(tags={"resource": "warehouse"})
def export_day(day: str) -> dict:
    """Count the day's orders in Postgres, holding the connection as a heavy warehouse query would."""
    from delab import clients

    started = time.time()
    with clients.postgres() as conn:
        orders = conn.execute("SELECT count(*) FROM m01_l06.orders WHERE order_ts::date = %s", (day,)).fetchone()[0]
        time.sleep(QUERY_SECONDS)
    return {"day": day, "orders": orders, "start": started, "end": time.time(), "pid": os.getpid()}


@op
def summarise(exports: list) -> list:
    return sorted(exports, key=lambda e: e["day"])


@job
def export_days():
    summarise(list_days().map(export_day).collect())


def max_overlap(exports: list[dict]) -> int:
    """The largest number of exports that were running at the same instant."""
    events = sorted([(e["start"], 1) for e in exports] + [(e["end"], -1) for e in exports])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


#: the last run's (success, exports, seconds), so a notebook can show what a check just ran
last_run: tuple[bool, list, float] | None = None


def run(run_config: dict, instance_dir: str) -> tuple[bool, list, float]:
    """Execute the job with a run config (console logs at WARNING); return (success, exports, seconds)."""
    import warnings

    from dagster import DagsterInstance, execute_job, reconstructable

    global last_run
    os.makedirs(instance_dir, exist_ok=True)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    started = time.time()
    instance = DagsterInstance.local_temp(instance_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with execute_job(reconstructable(export_days), instance=instance, run_config={**quiet, **run_config}) as result:
            exports = result.output_for_node("summarise") if result.success else []
    last_run = (result.success, exports, time.time() - started)
    return last_run
