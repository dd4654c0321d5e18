"""The 3-node KRaft cluster of lab 03.02 (delab.streaming.cluster) on real JVMs: it starts, survives a SIGKILLed
broker without losing an acknowledged write, recovers its ISRs, stops, and cleans up (a private instance)."""

from __future__ import annotations

import uuid

import pytest

from delab.stack import layout, manager
from delab.streaming import cluster
from delab.streaming import kafka_basics as kb
from tests.streaming.private_cluster import private_cluster

pytestmark = [pytest.mark.stack, pytest.mark.slow]
PORT_BASE = 29000


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with private_cluster(tmp_path_factory.mktemp("kafka-cluster"), PORT_BASE):
        yield


def test_three_brokers_on_loopback_with_one_active_controller(running):
    nodes = cluster.nodes()
    assert nodes["running"].all() and nodes["registered"].all()
    assert nodes["active controller"].sum() == 1
    assert all(b.startswith("127.0.0.1:") for b in nodes["broker"])
    assert cluster.brokers() == [1, 2, 3]
    assert all(rss < 600 for rss in cluster.memory_mib().values())  # small heaps: three JVMs on a laptop


def test_a_killed_leader_loses_no_acknowledged_write_and_the_isr_recovers(running):
    topic = kb.create_topic(f"t.kill.{uuid.uuid4().hex[:6]}", 3, 3, {"min.insync.replicas": "2"}, cluster.bootstrap())
    report = cluster.kill_leader_while_producing(topic, {"acks": "all"}, messages=1500, kill_at=500)
    assert len(report.acked) == report.sent == 1500
    assert report.lost == [] and report.duplicates == 0
    victim = int(report.snapshots["before"].loc[0, "leader"])
    assert all(victim not in isr for isr in report.snapshots["broker down"]["isr"])
    assert cluster.fully_replicated(report.snapshots["recovered"])
    assert cluster.brokers() == [1, 2, 3]


def test_acks_1_loses_acknowledged_writes_when_the_leader_crashes(running):
    topic = kb.create_topic(f"t.acks1.{uuid.uuid4().hex[:6]}", 1, 3, {"min.insync.replicas": "2"}, cluster.bootstrap())
    report = cluster.acks_under_failover(topic, {"acks": 1, "enable_idempotence": False}, messages=50)
    assert len(report.acked) == 50 and len(report.lost) == 50


def test_min_insync_refuses_acks_all_writes_below_it(running):
    topic = kb.create_topic(f"t.strict.{uuid.uuid4().hex[:6]}", 1, 3, {"min.insync.replicas": "3"}, cluster.bootstrap())
    assert cluster.try_write(topic, {"acks": "all"}) == "acknowledged"
    follower = next(
        n for n in cluster.describe(topic).loc[0, "replicas"] if n != cluster.describe(topic).loc[0, "leader"]
    )
    cluster.kill(follower)
    try:
        cluster.wait_for(topic, cluster.leaders_avoid(follower))
        assert cluster.try_write(topic, {"acks": "all"}) == "NotEnoughReplicasError"
        assert cluster.try_write(topic, {"acks": 1}) == "acknowledged"
    finally:
        cluster.start(follower)


def test_down_stops_every_node_and_frees_its_ports(tmp_path):
    with private_cluster(tmp_path / "lifecycle", PORT_BASE + 40):
        pids = [cluster._pid(n) for n in cluster.NODES]
        assert all(pids)
        cluster.freeze(2)  # a frozen node must not keep down() waiting
        cluster.down()
        assert not any(cluster.alive(n) for n in cluster.NODES)
        assert all(manager.port_free(cluster.broker_port(n)) for n in cluster.NODES)
        assert all(manager.port_free(cluster.controller_port(n)) for n in cluster.NODES)
        assert not any(layout.pid_file(cluster.process_name(n)).exists() for n in cluster.NODES)
        cluster.down()  # idempotent
        data = layout.data_dir("kafka-cluster")
        assert (data / "node1" / "meta.properties").exists()  # kept for the next run
        cluster.up(progress=None)  # restarts on the formatted data
        assert cluster.brokers() == [1, 2, 3]
        cluster.reset()
        assert not data.exists()
