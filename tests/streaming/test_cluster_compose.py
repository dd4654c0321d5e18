"""The docker profile's 3-node cluster (compose profile kafka-cluster) agrees with the native one."""

from __future__ import annotations

from pathlib import Path

import yaml

from delab import config
from delab.streaming import cluster

COMPOSE = Path(__file__).resolve().parents[2] / "infra" / "docker" / "compose.yaml"


def test_cluster_profile_matches_the_native_cluster():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    ids = set()
    for node in cluster.NODES:
        svc = services[f"kafka-{node}"]
        assert svc["profiles"] == [cluster.COMPOSE_PROFILE]
        assert svc["image"] == services["kafka"]["image"]  # one Kafka version for both
        env = svc["environment"]
        assert env["KAFKA_NODE_ID"] == str(node)
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka-1:29093,2@kafka-2:29093,3@kafka-3:29093"
        port = config.DEFAULT_PORTS[f"kafka_node{node}"]
        published = f"${{DELAB_KAFKA_NODE{node}_PORT:-{port}}}"  # the port table, shifted like the native one
        assert svc["ports"] == [f"127.0.0.1:{published}:{port}"]
        assert f"HOST://127.0.0.1:{published}" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert env["KAFKA_BROKER_SESSION_TIMEOUT_MS"] == "3000"
        ids.add(env["CLUSTER_ID"])
    assert len(ids) == 1  # one cluster


def test_native_cluster_properties():
    text = cluster.properties(2)
    assert "node.id=2" in text and "process.roles=broker,controller" in text
    assert f"listeners=PLAINTEXT://127.0.0.1:{cluster.broker_port(2)}" in text
    voters = ",".join(f"{n}@127.0.0.1:{cluster.controller_port(n)}" for n in cluster.NODES)
    assert f"controller.quorum.voters={voters}" in text
    assert "broker.session.timeout.ms=3000" in text
