"""The data stack: Kafka, Kafka Connect + Debezium, PostgreSQL, an S3 object store and Flink.

In a notebook::

    from delab import stack
    stack.require("kafka", "postgres")     # starts what is missing (native profile) and returns when they answer
    ns = stack.namespace("m03_l02")        # this lab's prefix for topics, tables and object keys

Fault injection (a lab that crashes a service on purpose)::

    with stack.disrupt("connect"):         # waits until no other kernel uses Connect; restarts it on the way out
        stack.kill("connect")              # SIGKILL: a crash, no clean shutdown

From a shell: ``delab stack up|down|status|logs|reset`` and ``delab doctor``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass

from delab import config
from delab.stack import usage
from delab.stack.errors import MissingPrerequisite, PortTaken, ServiceFailed, StackError
from delab.stack.manager import CORE, NAMES, ServiceStatus, down, kill, logs, reset, resolve, status, up
from delab.stack.services import ON_DEMAND
from delab.stack.usage import disrupt

__all__ = [
    "CORE",
    "NAMES",
    "ON_DEMAND",
    "MissingPrerequisite",
    "Namespace",
    "PortTaken",
    "ServiceFailed",
    "ServiceStatus",
    "StackError",
    "disrupt",
    "down",
    "kill",
    "learner",
    "logs",
    "namespace",
    "require",
    "reset",
    "status",
    "up",
]


def _say(message: str) -> None:
    print(f"[stack] {message}", file=sys.stdout, flush=True)


def require(*services: str, quiet: bool = False) -> list[ServiceStatus]:
    """Make sure these services answer before a lab uses them.

    native: starts whatever is missing (printing progress) and returns when each one really works.
    docker / external: checks them and, if one does not answer, says in one line what to run.
    Every failure is a ``StackError`` that Jupyter shows as one line.
    """
    names = list(services) or list(CORE)
    profile = config.profile()
    if profile == "native":
        usage.use(resolve(names))  # shared use: a fault-injection lab elsewhere waits for us, and we for it
        started = time.monotonic()
        rows = up(names, progress=_say if not quiet else None)
        if not quiet and time.monotonic() - started > 1:
            _say(f"ready: {', '.join(row.service for row in rows)}")
        return rows
    rows = status(names)
    down_rows = [row for row in rows if not row.ok]
    if down_rows:
        names_down = ", ".join(f"{row.service} ({row.endpoint})" for row in down_rows)
        if profile == "docker":
            raise StackError(f"not answering: {names_down}. Start the stack: make up  (docker compose up -d --wait)")
        raise StackError(f"not answering: {names_down}. Check your DELAB_* endpoints (external profile)")
    return rows


@dataclass(frozen=True)
class Namespace:
    """One lab's prefix for everything it creates, so labs never collide and re-runs stay idempotent.

    ``learner`` is set when ``delab grade`` runs a learner's submission (``DELAB_LEARNER``): Kafka and Connect
    names, which the whole cluster shares, then carry it too. Tables and objects keep their names — the grader
    gives each learner a database and a bucket of their own — so SQL a learner wrote against ``m00_l03.orders``
    still runs."""

    prefix: str
    learner: str = ""

    @property
    def _cluster_prefix(self) -> str:
        return f"{self.prefix}_{self.learner}" if self.learner else self.prefix

    def topic(self, name: str) -> str:
        """A Kafka topic name, e.g. ``m03_l02.orders`` (``m03_l02_<learner>.orders`` when grading)."""
        return f"{self._cluster_prefix}.{name}"

    def group(self, name: str) -> str:
        """A Kafka consumer-group id."""
        return f"{self._cluster_prefix}.{name}"

    def table(self, name: str) -> str:
        """A SQL identifier (Postgres table, Iceberg table), e.g. ``m03_l02_orders``."""
        return f"{self.prefix}_{_ident(name)}"

    @property
    def schema(self) -> str:
        """A Postgres schema / Iceberg namespace for this lab."""
        return self.prefix

    @property
    def bucket(self) -> str:
        """The object store bucket (shared; labs write under ``key()``)."""
        return config.s3().bucket

    def key(self, name: str = "") -> str:
        """An object key under this lab's prefix, e.g. ``m03_l02/raw/orders.json``."""
        return f"{self.prefix}/{name.lstrip('/')}"

    def s3_uri(self, name: str = "") -> str:
        """``s3://<bucket>/<prefix>/<name>``."""
        return f"s3://{self.bucket}/{self.key(name)}"

    def connector(self, name: str) -> str:
        """A Kafka Connect connector name (also usable as a Debezium topic.prefix / slot name base)."""
        return f"{self._cluster_prefix}_{_ident(name)}"


def _ident(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def namespace(name: str) -> Namespace:
    """A lab's namespace from a label such as ``"m03.l02"`` or ``"03_streaming/02"`` → prefix ``m03_l02``."""
    prefix = _ident(name)
    if not prefix:
        raise StackError(f"namespace({name!r}): give a label with letters or digits, e.g. 'm03_l02'")
    if prefix[0].isdigit():
        prefix = f"n{prefix}"
    return Namespace(prefix, learner=learner())


def learner() -> str:
    """``DELAB_LEARNER`` as an identifier: set by ``delab grade`` for each submission it runs, empty otherwise."""
    return _ident(os.environ.get("DELAB_LEARNER", ""))
