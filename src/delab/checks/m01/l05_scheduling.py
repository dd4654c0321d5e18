"""Checks of lab 01.05 (scheduling): cron expressions, data intervals, a backfill and asset-triggered runs.

Expected answers are computed independently: fire times from a plain predicate over every minute of a window,
intervals from Airflow's own timetable, partitions from Postgres. Airflow and croniter are imported inside checks.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandas as pd

from delab import clients, config
from delab.grading import WrongAnswer, exercise, learner_code

SCHEMA = "m01_l05"
EXPORT_PREFIX = f"{SCHEMA}/orders/"
ASSET_URI = f"s3://delab/{SCHEMA}/orders"
REPORT_DAG_ID = "m01_l05_report"
WINDOW_START = datetime(2026, 3, 1)
WINDOW_DAYS = 62

#: what each schedule must do, as a predicate on a minute (the checks' independent truth)
SCHEDULES: dict[str, tuple[str, Callable[[pd.DatetimeIndex], pd.Series]]] = {
    "weekday_mornings": ("06:30 on Monday to Friday", lambda t: (t.weekday < 5) & (t.hour == 6) & (t.minute == 30)),
    "business_quarter_hours": (
        "every 15 minutes from 08:00 to 18:45, Monday to Friday",
        lambda t: (t.weekday < 5) & (t.hour >= 8) & (t.hour <= 18) & (t.minute % 15 == 0),
    ),
    "monthly_close": (
        "02:00 on the first day of every month",
        lambda t: (t.day == 1) & (t.hour == 2) & (t.minute == 0),
    ),
}


def expected_fire_times(name: str) -> list[datetime]:
    minutes = pd.date_range(WINDOW_START, periods=WINDOW_DAYS * 24 * 60, freq="min")
    return list(minutes[SCHEDULES[name][1](minutes)].to_pydatetime())


def fire_times(expression: str) -> list[datetime]:
    from croniter import croniter

    it = croniter(expression, WINDOW_START - timedelta(minutes=1))
    end = WINDOW_START + timedelta(days=WINDOW_DAYS)
    out: list[datetime] = []
    while (nxt := it.get_next(datetime)) < end:
        out.append(nxt)
        if len(out) > WINDOW_DAYS * 24 * 60:
            break
    return out


@exercise("m01.l05.e1")
def cron_schedules(expressions: dict) -> None:
    """Cron expressions for three business schedules."""
    from croniter import croniter

    if not isinstance(expressions, dict):
        raise WrongAnswer("expected a dict of schedule name -> cron expression.", hint="{'weekday_mornings': '...'}")
    missing = [name for name in SCHEDULES if name not in expressions]
    if missing:
        raise WrongAnswer(f"no expression for {missing}.", hint=f"the keys are {list(SCHEDULES)}.")
    for name, (meaning, _) in SCHEDULES.items():
        expression = expressions[name]
        if not isinstance(expression, str) or not croniter.is_valid(expression):
            raise WrongAnswer(
                f"{name}: {expression!r} is not a valid cron expression.",
                hint="five fields: minute hour day-of-month month day-of-week.",
            )
        got, want = set(fire_times(expression)), set(expected_fire_times(name))
        extra, missed = sorted(got - want), sorted(want - got)
        if extra or missed:
            example = (
                f"it fires at {extra[0]:%a %Y-%m-%d %H:%M}, which it should not"
                if extra
                else f"it never fires at {missed[0]:%a %Y-%m-%d %H:%M}"
            )
            raise WrongAnswer(
                f"{name} ({meaning}): {example}.",
                hint="cron days of week run 0-6 from Sunday (1-5 = Monday to Friday); "
                "ranges like 8-18 include both ends.",
            )


# ---------------------------------------------------------------------------------------------- data intervals


def expected_interval(run_after: datetime) -> tuple[datetime, datetime]:
    from airflow.timetables.interval import CronDataIntervalTimetable

    timetable = CronDataIntervalTimetable("0 6 * * *", timezone="UTC")
    interval = timetable.infer_manual_data_interval(run_after=run_after.replace(tzinfo=UTC))
    return interval.start.replace(tzinfo=None), interval.end.replace(tzinfo=None)


@learner_code("your function")
def _interval(fn, run_after: datetime):
    return fn(run_after)


def _naive(value) -> datetime:
    value = pd.Timestamp(value).to_pydatetime()
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


@exercise("m01.l05.e2")
def data_interval(fn) -> None:
    """The data interval a daily 06:00 run covers."""
    probes = [
        datetime(2026, 3, 5, 6),
        datetime(2026, 3, 5, 10, 30),
        datetime(2026, 3, 1, 5, 59),
        datetime(2026, 4, 1, 6),
        datetime(2026, 12, 31, 23, 59),
    ]
    for run_after in probes:
        got = _interval(fn, run_after)
        if not (isinstance(got, tuple | list) and len(got) == 2):
            raise WrongAnswer("return a (start, end) pair of datetimes.", hint="return start, end")
        try:
            start, end = (_naive(v) for v in got)
        except (TypeError, ValueError, AttributeError):
            raise WrongAnswer(
                f"for a run at {run_after} you returned {got!r}: not two datetimes.", hint="return start, end"
            ) from None
        if pd.isna(start) or pd.isna(end):
            raise WrongAnswer(f"for a run at {run_after} you returned {got!r}: not two datetimes.")
        want_start, want_end = expected_interval(run_after)
        if (start, end) == (want_start, want_end):
            continue
        if (start, end) == (want_end, want_end + timedelta(days=1)):
            raise WrongAnswer(
                f"for a run at {run_after} you return the interval that starts then.",
                hint="a run processes the period that has just ENDED, not the one that begins.",
            )
        if start.hour != 6 or end.hour != 6:
            raise WrongAnswer(
                f"for a run at {run_after} your interval is {start} – {end}.",
                hint="intervals run from 06:00 to 06:00, not midnight to midnight.",
            )
        raise WrongAnswer(
            f"for a run at {run_after} expected {want_start} – {want_end}, got {start} – {end}.",
            hint="find the last 06:00 at or before run_after: that is the END of the interval.",
        )


# ------------------------------------------------------------------------------------------------- backfill


def expected_partition_rows(day: str) -> int:
    with clients.postgres() as conn:
        return conn.execute(
            f"SELECT count(*) FROM {SCHEMA}.orders WHERE order_ts >= %s::date AND order_ts < %s::date + 1",
            (day, day),
        ).fetchone()[0]


def partition_rows() -> dict[str, int]:
    client, bucket = clients.s3(), config.s3().bucket
    out = {}
    for key in clients.s3_keys(EXPORT_PREFIX):
        day = key.split("day=")[1].split("/")[0]
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        out[day] = out.get(day, 0) + len(pd.read_parquet(io.BytesIO(body)))
    return out


@learner_code("your backfill")
def _backfill(fn, dag, start, end):
    return fn(dag, start, end)


@exercise("m01.l05.e3")
def backfill(fn, export_dag_factory) -> None:
    """A backfill over a date range: one run per day, both ends included, safe to repeat."""
    start, end = datetime(2026, 3, 3), datetime(2026, 3, 6)
    days = [f"2026-03-{d:02d}" for d in range(3, 7)]
    clients.s3_delete_prefix(EXPORT_PREFIX)
    results = _backfill(fn, export_dag_factory(), start, end)
    if results is None or isinstance(results, str | dict) or not hasattr(results, "__iter__"):
        raise WrongAnswer(
            f"your backfill returned {type(results).__name__}, not the list of its runs' results.",
            hint="collect what each lab_airflow.run(...) returns in a list, and return it.",
        )
    results = list(results)
    if any(not hasattr(r, "state") for r in results):
        odd = next(r for r in results if not hasattr(r, "state"))
        raise WrongAnswer(
            f"your backfill's list holds {type(odd).__name__} values, not the results lab_airflow.run returns.",
            hint="append each lab_airflow.run(...) result as it is.",
        )
    states = [r.state for r in results]
    if len(states) != len(days):
        raise WrongAnswer(
            f"a backfill from {start:%Y-%m-%d} to {end:%Y-%m-%d} made {len(states)} runs, expected {len(days)}.",
            hint="one run per day, and both ends are included.",
        )
    if any(s != "success" for s in states):
        raise WrongAnswer(f"not every run succeeded: {states}.", hint="run each logical date with lab_airflow.run.")
    got = partition_rows()
    if sorted(got) != days:
        raise WrongAnswer(
            f"the partitions written are {sorted(got)}, expected {days}.",
            hint="the logical date of a daily run is the START of the day it processes.",
        )
    for day in days:
        if got[day] != expected_partition_rows(day):
            raise WrongAnswer(
                f"day={day} holds {got[day]} rows, Postgres has {expected_partition_rows(day)}.",
                hint="export the orders of the run's data interval.",
            )
    _backfill(fn, export_dag_factory(), start, end)
    again = partition_rows()
    if again != got:
        raise WrongAnswer(
            "running the same backfill again changed the output.",
            hint="each run must replace its own partition, never append to it.",
        )


# ------------------------------------------------------------------------------------------ asset triggers


def _queued_for(dag_id: str) -> list[str]:
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetModel.uri)
            .join(AssetDagRunQueue, AssetDagRunQueue.asset_id == AssetModel.id)
            .filter(AssetDagRunQueue.target_dag_id == dag_id)
            .all()
        )
    return [uri for (uri,) in rows]


def _clear_queue() -> None:
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(AssetDagRunQueue).filter(AssetDagRunQueue.target_dag_id == REPORT_DAG_ID).delete()


@exercise("m01.l05.e4")
def asset_trigger(orders_asset, report_dag_factory, export_dag_factory) -> None:
    """A report DAG triggered by the export's asset, not by the clock."""
    from airflow.sdk import Asset

    from delab.orchestration import airflow as lab_airflow

    if not isinstance(orders_asset, Asset):
        raise WrongAnswer(
            f"orders_asset should be an Asset, got {type(orders_asset).__name__}.",
            hint="Asset('s3://...') from airflow.sdk.",
        )
    if orders_asset.uri != ASSET_URI:
        raise WrongAnswer(
            f"the asset's URI is {orders_asset.uri!r}, expected {ASSET_URI!r}.",
            hint="name the asset after the data it stands for: the export's prefix.",
        )
    report = report_dag_factory()
    if getattr(report, "dag_id", None) != REPORT_DAG_ID:
        raise WrongAnswer(f"expected a DAG with dag_id {REPORT_DAG_ID!r}.", hint="return the DAG object.")
    export = export_dag_factory()
    if not any(ASSET_URI in {getattr(o, "uri", None) for o in t.outlets} for t in export.tasks):
        raise WrongAnswer(
            "no task of the export DAG declares the asset as an outlet.",
            hint="export_outlets feeds the export task's outlets=[...].",
        )
    lab_airflow.register(report)
    _clear_queue()
    lab_airflow.run(export, logical_date=datetime(2026, 3, 10))
    queued = _queued_for(REPORT_DAG_ID)
    if ASSET_URI not in queued:
        schedule = getattr(report, "timetable", None)
        raise WrongAnswer(
            f"after the export ran, nothing queued a run of {REPORT_DAG_ID} (its timetable is "
            f"{type(schedule).__name__}).",
            hint="schedule=[orders_asset] makes a DAG wait for updates of that asset instead of a clock.",
        )
    result = lab_airflow.run(report)
    if result.state != "success":
        raise WrongAnswer(f"the report run ended {result.state}: {result.tasks}.", hint="run it and read the log.")
