"""Checks of lab 03.02 (replication), against a real 3-node cluster (a private instance: these tests freeze and
kill brokers): right answers pass, realistic wrong ones are rejected, placeholders are "not solved yet"."""

from __future__ import annotations

import uuid

import pytest

from delab import stack
from delab.checks.m03 import l02_replication as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.streaming import cluster
from delab.streaming import kafka_basics as kb
from tests.streaming.private_cluster import private_cluster

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def running(tmp_path_factory):
    stack.require("kafka", quiet=True)  # the stack's own broker (one test writes to it by mistake, on purpose)
    with private_cluster(tmp_path_factory.mktemp("kafka-cluster"), 29050):
        yield


# ------------------------------------------------------------------------------------------------- e1


def creator(partitions=3, rf=3, configs=None, on_cluster=True):
    def create_orders_topic(name):
        bootstrap = cluster.bootstrap() if on_cluster else cluster.bootstrap().split(",")[0]
        kb.create_topic(name, partitions, rf, {"min.insync.replicas": "2"} if configs is None else configs, bootstrap)

    return create_orders_topic


def test_durable_topic_accepts_rf3_min_isr2():
    checks.durable_topic(creator())


def test_durable_topic_rejects_a_single_replica():
    with pytest.raises(WrongAnswer, match="1 replica"):
        checks.durable_topic(creator(rf=1, configs={}))


def test_durable_topic_rejects_the_default_min_insync():
    with pytest.raises(WrongAnswer, match=r"min\.insync\.replicas is 1"):
        checks.durable_topic(creator(configs={}))


def test_durable_topic_rejects_min_insync_equal_to_rf():
    with pytest.raises(WrongAnswer, match="equals the replication factor"):
        checks.durable_topic(creator(configs={"min.insync.replicas": "3"}))


def test_durable_topic_rejects_the_stack_broker():
    def on_single_broker(name):
        kb.create_topic(name, 3, 1)  # the stack's broker is not part of the cluster

    with pytest.raises(WrongAnswer, match="not on the 3-node cluster but on the stack's single broker"):
        checks.durable_topic(on_single_broker)
    kb.drop_topics(checks.PREFIX)


def test_durable_topic_accepts_a_plain_admin_client():
    from kafka.admin import KafkaAdminClient, NewTopic

    def create_orders_topic(name):  # returns before every broker's metadata lists the topic
        client = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
        client.create_topics([NewTopic(name, 3, 3, topic_configs={"min.insync.replicas": 2})])
        client.close()

    checks.durable_topic(create_orders_topic)


def test_durable_topic_rejects_a_hard_coded_name():
    def create_orders_topic(name):
        creator()(f"{checks.PREFIX}.orders")

    with pytest.raises(WrongAnswer, match=r"no topic named .* appeared on the cluster"):
        checks.durable_topic(create_orders_topic)


def test_durable_topic_says_why_the_cluster_refused_the_topic():
    with pytest.raises(WrongAnswer, match=r"refused the topic: Unknown topic config name: min\.insync\.replica\."):
        checks.durable_topic(creator(configs={"min.insync.replica": "2"}))


def test_durable_topic_placeholder_is_not_solved():
    def create_orders_topic(name):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.durable_topic(create_orders_topic)


# ------------------------------------------------------------------------------------------------- e2


DURABLE = {"acks": "all", "retries": 2_147_483_647, "enable_idempotence": True}


def test_no_acked_write_lost_accepts_acks_all():
    checks.no_acked_write_lost(DURABLE)


def test_no_acked_write_lost_rejects_keeping_the_teams_settings():
    # used to pass: kafka-python's own defaults are durable, so {} was a right answer
    with pytest.raises(WrongAnswer, match="acks=1, the team setting you kept"):
        checks.no_acked_write_lost({})


def test_no_acked_write_lost_rejects_acks_1():
    with pytest.raises(WrongAnswer, match="acknowledged writes were lost"):
        checks.no_acked_write_lost({"acks": 1})


def test_no_acked_write_lost_rejects_giving_up_without_retries():
    with pytest.raises(WrongAnswer, match="gave up"):
        checks.no_acked_write_lost({"acks": "all", "retries": 0})


def test_no_acked_write_lost_accepts_acks_minus_one_with_the_clusters_bootstrap():
    checks.no_acked_write_lost({**DURABLE, "acks": -1, "bootstrap_servers": cluster.bootstrap()})


def test_no_acked_write_lost_rejects_a_producer_that_is_not_idempotent():
    with pytest.raises(WrongAnswer, match="nothing was lost, but the producer is not idempotent"):
        checks.no_acked_write_lost({"acks": "all", "retries": 2_147_483_647})


def test_no_acked_write_lost_rejects_java_setting_names_and_another_bootstrap():
    with pytest.raises(WrongAnswer, match=r"does not know \{'enable\.idempotence': True\}"):
        checks.no_acked_write_lost({"acks": "all", "enable.idempotence": True})
    with pytest.raises(WrongAnswer, match="is not the 3-node cluster"):
        checks.no_acked_write_lost({"acks": "all", "bootstrap_servers": "127.0.0.1:1"})


def test_no_acked_write_lost_rejects_a_non_dict_and_the_placeholder():
    with pytest.raises(WrongAnswer, match="expected a dict"):
        checks.no_acked_write_lost("acks=all")
    with pytest.raises(NotSolvedYet):
        checks.no_acked_write_lost(...)


# ------------------------------------------------------------------------------------------------- e3


@pytest.fixture(scope="module")
def snapshots():
    topic = kb.create_topic(f"t.urp.{uuid.uuid4().hex[:6]}", 3, 3, {"min.insync.replicas": "2"}, cluster.bootstrap())
    cluster.kill(2)
    try:
        during = cluster.wait_for(topic, cluster.leaders_avoid(2))
    finally:
        cluster.start(2)
    after = cluster.wait_for(topic, cluster.fully_replicated)
    return during, after


def right(frame):
    return [int(r.partition) for r in frame.itertuples() if set(r.isr) != set(r.replicas)]


def test_under_replicated_accepts_isr_smaller_than_replicas(snapshots):
    checks.under_replicated_partitions(right, *snapshots)


def test_under_replicated_rejects_the_in_sync_ones(snapshots):
    def in_sync(frame):
        return [int(r.partition) for r in frame.itertuples() if set(r.isr) == set(r.replicas)]

    with pytest.raises(WrongAnswer, match="fully in sync"):
        checks.under_replicated_partitions(in_sync, *snapshots)


def test_under_replicated_rejects_offline_partitions_only(snapshots):
    def offline(frame):
        return [int(r.partition) for r in frame.itertuples() if r.leader is None or r.leader != r.leader]

    with pytest.raises(WrongAnswer, match="can still have a leader"):
        checks.under_replicated_partitions(offline, *snapshots)


def test_under_replicated_rejects_a_count(snapshots):
    with pytest.raises(WrongAnswer, match="list of partition numbers"):
        checks.under_replicated_partitions(lambda frame: len(right(frame)), *snapshots)


def test_under_replicated_rejects_a_snapshot_without_outage(snapshots):
    _, after = snapshots
    with pytest.raises(WrongAnswer, match="not taken while the broker was down"):
        checks.under_replicated_partitions(right, after, after)


def test_under_replicated_rejects_assuming_three_replicas(snapshots):
    def three_replicas(frame):
        return [int(r.partition) for r in frame.itertuples() if len(r.isr) < 3]

    with pytest.raises(WrongAnswer, match=r"replication factor 2 .* got \[0, 1, 2\]"):
        checks.under_replicated_partitions(three_replicas, *snapshots)


def test_under_replicated_rejects_rows_and_masks(snapshots):
    def rows(frame):
        return frame[frame["isr"].str.len() < frame["replicas"].str.len()]

    def mask(frame):
        return frame["isr"].str.len() < frame["replicas"].str.len()

    with pytest.raises(WrongAnswer, match="got a DataFrame"):
        checks.under_replicated_partitions(rows, *snapshots)
    with pytest.raises(WrongAnswer, match="one True/False per partition"):
        checks.under_replicated_partitions(mask, *snapshots)


def test_under_replicated_accepts_a_series_of_partitions(snapshots):
    def series(frame):
        return frame.loc[frame["isr"].str.len() < frame["replicas"].str.len(), "partition"]

    checks.under_replicated_partitions(series, *snapshots)


def test_under_replicated_placeholder_is_not_solved(snapshots):
    def under_replicated(frame):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.under_replicated_partitions(under_replicated, *snapshots)
