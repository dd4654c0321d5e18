"""The MLflow tracking server and model registry: ``mlflow server`` from the MLOps environment, its backend store
in a database of its own in the stack's Postgres, its artifacts under ``s3://<bucket>/mlflow`` on the stack's object
store, and its probe (the health endpoint, then a registry query that reaches the database).

On demand: the first start migrates an empty schema (~30 s on 2 cores), so it starts on the first
``stack.require("mlflow")`` or ``delab stack up mlflow``, not with the core stack. Experiments, runs, registered
models, versions and aliases live in Postgres and S3, so they survive ``down``/``up``; ``reset`` wipes them.
"""

from __future__ import annotations

from delab import config
from delab.stack import layout
from delab.stack.probes import ProbeFailed, http_json
from delab.stack.services.base import HOST, NativeService, ProcessSpec, wait_for_dependency
from delab.stack.services.postgres import probe_postgres
from delab.stack.services.s3 import probe_s3


def backend_store_uri(with_password: bool = True) -> str:
    """SQLAlchemy URI of MLflow's database (psycopg 3 driver)."""
    pg, ml = config.postgres(), config.mlflow()
    secret = f":{pg.password}" if with_password else ""
    return f"postgresql+psycopg://{pg.user}{secret}@{pg.host}:{pg.port}/{ml.database}"


def artifacts_destination() -> str:
    return f"s3://{config.s3().bucket}/{config.mlflow().artifacts_prefix}"


def probe_mlflow() -> None:
    """``/health`` answers OK and the registry API answers a search (so the backend database works)."""
    url = config.mlflow().tracking_uri.rstrip("/")
    try:
        import urllib.request

        with urllib.request.urlopen(f"{url}/health", timeout=3) as response:
            if response.status != 200:
                raise ProbeFailed(f"GET {url}/health: HTTP {response.status}")
    except OSError as error:
        raise ProbeFailed(f"GET {url}/health: {error}") from None
    answer = http_json(f"{url}/api/2.0/mlflow/registered-models/search?max_results=1", timeout=10)
    if not isinstance(answer, dict):
        raise ProbeFailed("the model registry did not answer a search with JSON")


class MLflow(NativeService):
    """``mlflow server`` (one worker) on 127.0.0.1 with a Postgres backend store and S3 artifacts."""

    name = "mlflow"
    on_demand = True
    depends_on = ("postgres", "s3")
    start_timeout = 180.0  # first start: ~30 s of schema migrations on 2 cores, longer on a busy machine

    def endpoint(self) -> str:
        return config.mlflow().tracking_uri

    def ui_url(self) -> str | None:
        return config.mlflow().tracking_uri

    def prepare(self) -> None:
        layout.mlops_python()  # a clear message before anything starts when the environment is missing
        layout.data_dir("mlflow").mkdir(parents=True, exist_ok=True)
        # dependants start once their dependencies listen: wait until Postgres has its role and S3 its bucket
        wait_for_dependency(self.name, probe_postgres, "postgres")
        wait_for_dependency(self.name, probe_s3, "the S3 store")
        import psycopg

        pg, database = config.postgres(), config.mlflow().database
        with psycopg.connect(
            host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database, autocommit=True
        ) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{database}"')

    def processes(self) -> list[ProcessSpec]:
        s3 = config.s3()
        return [
            ProcessSpec(
                "mlflow",
                [
                    str(layout.mlops_python()),
                    "-m",
                    "mlflow",
                    "server",
                    "--host",
                    HOST,
                    "--port",
                    str(config.port("mlflow")),
                    "--workers",
                    "1",
                    "--artifacts-destination",
                    artifacts_destination(),
                ],
                env={
                    # in the environment rather than on the command line: `ps` shows no password
                    "MLFLOW_BACKEND_STORE_URI": backend_store_uri(),
                    "AWS_ACCESS_KEY_ID": s3.access_key,
                    "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                    "AWS_DEFAULT_REGION": s3.region,
                    "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
                    # MLflow 3.17 otherwise starts a job runner and 7 huey consumers (~250 MB each, 2.7 GB in
                    # all) for server-side jobs (GenAI evaluation, prompt optimisation) no lab uses
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                    "MLFLOW_ENABLE_TELEMETRY": "false",
                    "MLFLOW_DISABLE_TELEMETRY": "true",
                    "DO_NOT_TRACK": "true",
                },
                cwd=layout.data_dir("mlflow"),
            )
        ]

    def probe(self) -> None:
        probe_mlflow()
