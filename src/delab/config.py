"""Every endpoint, credential and path the labs use, in one place.

Values come from environment variables (``DELAB_*``) with local defaults, so a learner can point the labs at
their own clusters (the ``external`` profile) without editing code. Every server the project starts binds
127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HOST = "127.0.0.1"

#: One table of ports, chosen to avoid the usual clashes (Jupyter 8888, a learner's own Postgres 5432,
#: a Flink cluster's 8081, Kafka's 9092). Override any of them with DELAB_<NAME>_PORT.
DEFAULT_PORTS: dict[str, int] = {
    "kafka": 19092,
    "kafka_controller": 19093,
    "connect": 18083,
    "postgres": 15432,
    "s3": 17070,
    "flink": 18081,
    "flink_rpc": 16123,
    "schema_registry": 18085,
    "schema_registry_management": 18086,
    "mlflow": 18050,
    "kubernetes": 16443,
    "etcd": 12379,
    "etcd_peer": 12380,
    # the 3-node KRaft cluster of lab 03.02 (delab.streaming.cluster): broker and controller port per node
    "kafka_node1": 19192,
    "kafka_node1_controller": 19193,
    "kafka_node2": 19292,
    "kafka_node2_controller": 19293,
    "kafka_node3": 19392,
    "kafka_node3_controller": 19393,
    # module 07: a single-node broker with SASL/SCRAM and ACLs (lab 07.05), started by the lab beside the stack's
    "kafka_secure": 19492,
    "kafka_secure_controller": 19493,
    # module 07: moto's AWS emulator in server mode (CloudFormation, lab 07.02), started by the lab
    "moto": 15050,
    "jupyter": 8888,
}

PROFILES = ("native", "docker", "external")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DELAB_{name.upper()}", default)


def port_offset() -> int:
    """``DELAB_PORT_OFFSET``: added to every default port, so a second checkout (another stack, a docker stack
    beside a native one, a contributor's worktree) runs on its own ports without listing each one."""
    raw = os.environ.get("DELAB_PORT_OFFSET", "0").strip() or "0"
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"DELAB_PORT_OFFSET={raw!r} is not a whole number (e.g. export DELAB_PORT_OFFSET=10)"
        ) from None


def port(service: str) -> int:
    """The port of a service, e.g. ``port("kafka")``; ``DELAB_KAFKA_PORT`` overrides it, ``DELAB_PORT_OFFSET``
    shifts every default."""
    if service not in DEFAULT_PORTS:
        raise KeyError(f"unknown service {service!r}; known: {', '.join(DEFAULT_PORTS)}")
    return int(_env(f"{service}_port", str(DEFAULT_PORTS[service] + port_offset())))


@cache
def project_root() -> Path:
    """The checkout the labs live in: $DELAB_ROOT, else the folder holding curriculum.yaml above this file or cwd."""
    if "DELAB_ROOT" in os.environ:
        return Path(os.environ["DELAB_ROOT"]).resolve()
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "curriculum.yaml").is_file():
                return folder
    return Path.cwd().resolve()


def state_dir() -> Path:
    """Where the project keeps local state (progress, the stack's data): $DELAB_STATE_DIR or <root>/.delab."""
    return Path(_env("state_dir", str(project_root() / ".delab")))


def docker_daemon_answers() -> bool:
    """True when a Docker engine answers (not just a docker CLI on PATH)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    sock = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if sock.startswith("unix://"):
        path = sock.removeprefix("unix://")
        if not os.path.exists(path):
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1)
                s.connect(path)
            return True
        except OSError:
            return False
    return True  # a remote DOCKER_HOST: trust the learner


def profile() -> str:
    """``DELAB_STACK`` = native | docker | external; native when unset and no Docker daemon answers."""
    chosen = os.environ.get("DELAB_STACK", "").strip().lower()
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(f"DELAB_STACK={chosen!r} is not one of {', '.join(PROFILES)}")
        return chosen
    return "docker" if docker_daemon_answers() else "native"


@dataclass(frozen=True)
class Postgres:
    host: str = HOST
    port: int = DEFAULT_PORTS["postgres"]
    user: str = "delab"
    password: str = "delab"
    database: str = "shop"
    superuser: str = "postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class S3:
    endpoint: str = f"http://{HOST}:{DEFAULT_PORTS['s3']}"
    access_key: str = "delab"
    secret_key: str = "delab-local-secret"
    region: str = "us-east-1"
    bucket: str = "delab"


@dataclass(frozen=True)
class Kafka:
    bootstrap_servers: str = f"{HOST}:{DEFAULT_PORTS['kafka']}"
    connect_url: str = f"http://{HOST}:{DEFAULT_PORTS['connect']}"
    schema_registry_url: str = f"http://{HOST}:{DEFAULT_PORTS['schema_registry']}"


@dataclass(frozen=True)
class SchemaRegistry:
    url: str = f"http://{HOST}:{DEFAULT_PORTS['schema_registry']}"
    management_url: str = f"http://{HOST}:{DEFAULT_PORTS['schema_registry_management']}"
    database: str = "schema_registry"

    @property
    def ccompat_url(self) -> str:
        """The Confluent-compatible API (what confluent-kafka's SchemaRegistryClient is given)."""
        return f"{self.url.rstrip('/')}/apis/ccompat/v7"


@dataclass(frozen=True)
class Flink:
    rest_url: str = f"http://{HOST}:{DEFAULT_PORTS['flink']}"


@dataclass(frozen=True)
class MLflow:
    tracking_uri: str = f"http://{HOST}:{DEFAULT_PORTS['mlflow']}"
    #: the server's own database in the stack's Postgres (experiments, runs, the model registry)
    database: str = "mlflow"
    #: where the server keeps artifacts (models, plots): a prefix of the stack's bucket
    artifacts_prefix: str = "mlflow"


def postgres() -> Postgres:
    """Postgres connection settings (DELAB_POSTGRES_HOST/_PORT/_USER/_PASSWORD/_DATABASE override)."""
    return Postgres(
        host=_env("postgres_host", HOST),
        port=port("postgres"),
        user=_env("postgres_user", Postgres.user),
        password=_env("postgres_password", Postgres.password),
        database=_env("postgres_database", Postgres.database),
    )


def s3() -> S3:
    """S3 object-store settings (DELAB_S3_ENDPOINT/_ACCESS_KEY/_SECRET_KEY/_REGION/_BUCKET override)."""
    return S3(
        endpoint=_env("s3_endpoint", f"http://{HOST}:{port('s3')}"),
        access_key=_env("s3_access_key", S3.access_key),
        secret_key=_env("s3_secret_key", S3.secret_key),
        region=_env("s3_region", S3.region),
        bucket=_env("s3_bucket", S3.bucket),
    )


def kafka() -> Kafka:
    """Kafka, Connect and schema-registry endpoints (DELAB_KAFKA_BOOTSTRAP, DELAB_CONNECT_URL, ... override)."""
    return Kafka(
        bootstrap_servers=_env("kafka_bootstrap", f"{HOST}:{port('kafka')}"),
        connect_url=_env("connect_url", f"http://{HOST}:{port('connect')}"),
        schema_registry_url=_env("schema_registry_url", f"http://{HOST}:{port('schema_registry')}"),
    )


def schema_registry() -> SchemaRegistry:
    """The schema registry (Apicurio, Confluent-compatible API): DELAB_SCHEMA_REGISTRY_URL,
    DELAB_SCHEMA_REGISTRY_MANAGEMENT_URL and DELAB_SCHEMA_REGISTRY_DATABASE (its Postgres database) override."""
    return SchemaRegistry(
        url=_env("schema_registry_url", f"http://{HOST}:{port('schema_registry')}"),
        management_url=_env("schema_registry_management_url", f"http://{HOST}:{port('schema_registry_management')}"),
        database=_env("schema_registry_database", SchemaRegistry.database),
    )


def flink() -> Flink:
    """The Flink cluster's REST endpoint (DELAB_FLINK_URL overrides)."""
    return Flink(rest_url=_env("flink_url", f"http://{HOST}:{port('flink')}"))


def mlflow() -> MLflow:
    """The MLflow tracking server and model registry (DELAB_MLFLOW_URL, DELAB_MLFLOW_DATABASE override)."""
    return MLflow(
        tracking_uri=_env("mlflow_url", f"http://{HOST}:{port('mlflow')}"),
        database=_env("mlflow_database", MLflow.database),
    )


def lab_dir(name: str) -> Path:
    """A lab's own working folder under the state folder (created if missing; kept between runs)."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"lab folder names are letters, digits and _ only, not {name!r}")
    folder = state_dir() / "labs" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
