"""Run Flink SQL on the stack's Flink cluster from any kernel.

PyFlink lives in the Flink environment (see docs/environments.md), so a lab in the main kernel hands its SQL to
that environment's Python, which builds a TableEnvironment bound to the standalone cluster, runs the DDL and
submits the last statement as a job — the same path `flink run` takes. The job really runs on the cluster (it
shows in the Flink UI); this call waits for it to finish (bounded sources) or for ``timeout``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from delab.grading import LabFeedback

_RUNNER = r"""
import json, sys
from delab.stack import flink
statements, wait, settings = json.loads(sys.stdin.read())
t_env = flink.table_environment(streaming=True)
for key, value in settings.items():
    t_env.get_config().set(key, value)
for statement in statements[:-1]:
    t_env.execute_sql(statement)
result = t_env.execute_sql(statements[-1])
client = result.get_job_client()
job_id = str(client.get_job_id()) if client else ""
if wait and client:
    result.wait()
print(json.dumps({"job_id": job_id}))
"""


class FlinkSqlError(LabFeedback):
    """Flink rejected the SQL or the job failed: shown as one line."""

    label = "Flink SQL failed"


@dataclass(frozen=True)
class FlinkJob:
    job_id: str


def _first_cause(stderr: str) -> str:
    """The most telling line of a Java/Python stack trace: Flink's own validation or parser message."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for marker in (
        "ValidationException:",
        "SqlParserException:",
        "ParseException:",
        "TableException:",
        "JobExecutionException:",
        "Caused by:",
        "Error",
    ):
        for line in lines:
            if marker in line:
                return line[:400]
    return (lines[-1] if lines else "no output")[:400]


def run(
    statements: list[str], wait: bool = True, timeout: float = 240, settings: dict[str, str] | None = None
) -> FlinkJob:
    """Run ``statements`` (DDL first, the job's INSERT last) on the cluster; return the job id.

    ``settings`` are the table config options a SQL client would ``SET`` (executeSql refuses SET), e.g.
    ``{"pipeline.name": "m04_l05_writer", "execution.checkpointing.interval": "1s"}``.
    """
    from delab.stack import layout

    if not statements or not all(isinstance(s, str) and s.strip() for s in statements):
        raise FlinkSqlError("expected a list of SQL statements, the job's INSERT last.")
    python = layout.flink_python()
    try:
        done = subprocess.run(
            [str(python), "-c", _RUNNER],
            input=json.dumps([statements, wait, {str(k): str(v) for k, v in (settings or {}).items()}]),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise FlinkSqlError(
            f"the job did not finish within {timeout:.0f} s",
            hint="is the source bounded ('scan.bounded.mode' = 'latest-offset')?",
        ) from None
    if done.returncode != 0:
        raise FlinkSqlError(_first_cause(done.stderr), hint="read the message: a column, table or option name?")
    return FlinkJob(json.loads(done.stdout.strip().splitlines()[-1])["job_id"])
