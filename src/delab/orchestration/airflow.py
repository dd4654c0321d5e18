"""Run Apache Airflow 3 DAGs defined in a notebook, in-process, with a lab-local metadata database.

``setup("m01_l01")`` must run before ``import airflow``: Airflow reads its configuration from the environment at
import time. It points AIRFLOW_HOME at the lab's folder (SQLite metadata, created with ``airflow db migrate`` once
and reused on re-runs), quietens the logs and declares two connections from delab.config:
``shop_postgres`` (the stack's Postgres) and ``lab_s3`` (the object store, as an ``aws`` connection with a local
endpoint). ``run(dag)`` registers a notebook-defined DAG with the metadata database — Airflow 3's ``dag.test()``
only runs DAGs it has serialised, normally by parsing a dags folder — and returns what happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from delab import config

POSTGRES_CONN_ID = "shop_postgres"
S3_CONN_ID = "lab_s3"


def connection_env() -> dict[str, str]:
    """AIRFLOW_CONN_* variables for the stack's services."""
    pg, s3 = config.postgres(), config.s3()
    return {
        f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}": json.dumps(
            {
                "conn_type": "postgres",
                "host": pg.host,
                "port": pg.port,
                "login": pg.user,
                "password": pg.password,
                "schema": pg.database,
            }
        ),
        f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": json.dumps(
            {
                "conn_type": "aws",
                "login": s3.access_key,
                "password": s3.secret_key,
                "extra": {"endpoint_url": s3.endpoint, "region_name": s3.region},
            }
        ),
    }


def setup(lab: str) -> Path:
    """Configure Airflow for this lab (before importing it) and make sure its metadata database exists."""
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(config.lab_dir(lab) / "airflow"):
        raise RuntimeError(
            "Airflow was imported before delab.orchestration.airflow.setup(): restart the kernel "
            "and run the setup cell first"
        )
    home = config.lab_dir(lab) / "airflow"
    (home / "dags").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:8080/execution/",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
            **connection_env(),
        }
    )
    marker = home / ".migrated"
    if not marker.exists():
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=300,
        )
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"`airflow db migrate` failed: {last[0]} (log: delete {home} and retry)")
        marker.write_text("ok\n")
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module="airflow")
    logging.getLogger("airflow").setLevel(logging.WARNING)
    return home


@dataclass
class DagRunResult:
    """What one dag.test() run did: the run state, each task's state and each task's return value (XCom)."""

    dag_id: str
    run_id: str
    state: str
    logical_date: datetime | None
    tasks: dict[str, str] = field(default_factory=dict)
    xcoms: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        tasks = ", ".join(f"{k}={v}" for k, v in sorted(self.tasks.items()))
        return f"<DagRunResult {self.dag_id} {self.state}: {tasks}>"


def register(dag) -> None:
    """Serialise a DAG object into the metadata database, as the DAG processor would after parsing a file."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def forget_runs(dag_id: str, logical_date: datetime | None = None) -> int:
    """Delete earlier runs of a DAG (all, or those of one logical date) so a re-run starts clean."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        query = session.query(DagRun).filter(DagRun.dag_id == dag_id)
        if logical_date is not None:
            query = query.filter(DagRun.logical_date == logical_date)
        runs = query.all()
        for dag_run in runs:
            session.delete(dag_run)
    return len(runs)


def _done_pattern(resume: DagRunResult | None) -> str | None:
    import re

    done = sorted(task for task, state in (resume.tasks if resume else {}).items() if state == "success")
    return "|".join(re.escape(task) for task in done) if done else None


@contextlib.contextmanager
def _scheduled_interval(dag, logical_date: datetime | None):
    """Make dag.test() give a run the data interval the *scheduler* would: the one starting at logical_date.

    dag.test() treats its logical date like a manual trigger time and picks the last complete interval before it,
    so a daily run "for 3 March" would process 2 March. Labs (and backfills) mean the scheduled run whose interval
    starts at the logical date; for timetables without intervals nothing changes.
    """
    from unittest import mock

    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    core = coerce_to_core_timetable(dag.timetable) if logical_date is not None else None
    info = None
    if core is not None and getattr(core, "can_be_scheduled", False):
        restriction = TimeRestriction(earliest=logical_date, latest=None, catchup=True)
        info = core.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    if info is None or info.data_interval.start != logical_date:
        yield
        return
    with mock.patch.object(type(core), "infer_manual_data_interval", lambda self, run_after: info.data_interval):
        yield


def run(
    dag, logical_date: datetime | None = None, conf: dict | None = None, resume: DagRunResult | None = None
) -> DagRunResult:
    """Register and run a DAG once with ``dag.test()``; task failures are reported in the result, not raised.

    With a ``logical_date`` on a scheduled DAG, the run covers the data interval that starts at that date, as a
    scheduled run (or a backfill) would. With ``resume`` (an earlier result of the same DAG and date), the tasks
    that succeeded then are marked successful without running again — what clearing the failed tasks in the UI
    does: the run resumes from where it failed. (Their XComs are not carried over: resumable pipelines hand data
    over through storage, not XComs.)
    """
    import copy
    import io

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    if logical_date is not None and logical_date.tzinfo is None:
        logical_date = logical_date.replace(tzinfo=UTC)  # Airflow stores aware UTC datetimes only
    register(dag)
    forget_runs(dag.dag_id, logical_date)
    # dag.test() runs tasks in this process and merges run_conf into each task's params *in place* (Airflow
    # 3.3.2), so one run's conf would leak into the next: keep a copy and put it back afterwards.
    saved_params = {task.task_id: copy.deepcopy(task.params) for task in dag.tasks}
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), _scheduled_interval(dag, logical_date):
            dag_run = dag.test(logical_date=logical_date, run_conf=conf, mark_success_pattern=_done_pattern(resume))
    finally:
        for task in dag.tasks:
            task.params = saved_params[task.task_id]
    result = DagRunResult(dag.dag_id, dag_run.run_id, str(dag_run.state), dag_run.logical_date)
    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            result.tasks[ti.task_id] = str(ti.state)
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag.dag_id, XComModel.run_id == dag_run.run_id, XComModel.key == "return_value"
        )
        for row in rows:
            result.xcoms[row.task_id] = XComModel.deserialize_value(row)
    return result
