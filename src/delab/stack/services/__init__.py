"""The stack's services, one module each: configuration, processes, bootstrap and readiness probe.

A reader finds a service in one hop: ``services/kafka.py`` (native processes + probe) and its entry of the same
name in ``infra/docker/compose.yaml``. ``CORE`` start with ``delab stack up``; services marked ``on_demand`` start
on their first ``stack.require(...)`` (or ``delab stack up NAME``).
"""

from __future__ import annotations

from delab.stack.services.base import NativeService, ProcessSpec
from delab.stack.services.connect import Connect
from delab.stack.services.flink import Flink
from delab.stack.services.kafka import Kafka
from delab.stack.services.kubernetes import Kubernetes
from delab.stack.services.mlflow import MLflow
from delab.stack.services.postgres import Postgres
from delab.stack.services.registry import Registry
from delab.stack.services.s3 import S3

#: every service, in start order (dependencies first)
SERVICES: dict[str, NativeService] = {
    service.name: service
    for service in (Kafka(), Connect(), Postgres(), S3(), Flink(), Registry(), MLflow(), Kubernetes())
}
NAMES: tuple[str, ...] = tuple(SERVICES)
CORE: tuple[str, ...] = tuple(name for name, service in SERVICES.items() if not service.on_demand)
ON_DEMAND: tuple[str, ...] = tuple(name for name, service in SERVICES.items() if service.on_demand)

__all__ = ["CORE", "NAMES", "ON_DEMAND", "SERVICES", "NativeService", "ProcessSpec"]
