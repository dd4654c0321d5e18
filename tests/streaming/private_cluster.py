"""A private 3-node Kafka cluster for tests: its own state folder and ports, the shared build folder (jars).

Tests kill, freeze and stop brokers; on a private instance they never disturb a notebook (lab 03.02) that uses
the default cluster at the same time, and two test files on different ports can run in parallel workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from delab.stack import layout
from delab.streaming import cluster


@contextlib.contextmanager
def private_cluster(folder: Path, port_base: int) -> Iterator[None]:
    """Start a cluster under ``folder`` on ports port_base + 100*node (+1 for the controller); stop and delete
    it afterwards."""
    build = layout.build_dir()  # resolved before the stack folder moves
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DELAB_STACK_DIR", str(folder))
        env.setenv("DELAB_STACK_BUILD_DIR", str(build))
        env.setenv("DELAB_STACK", "native")
        env.delenv("DELAB_KAFKA_CLUSTER_BOOTSTRAP", raising=False)
        for node in cluster.NODES:
            env.setenv(f"DELAB_KAFKA_NODE{node}_PORT", str(port_base + 100 * node))
            env.setenv(f"DELAB_KAFKA_NODE{node}_CONTROLLER_PORT", str(port_base + 100 * node + 1))
        try:
            cluster.up(progress=None)
            yield
        finally:
            cluster.reset()
