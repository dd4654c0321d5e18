"""Checks of lab 03.02 (replication on a 3-node KRaft cluster), against the real cluster of
``delab.streaming.cluster``: the checks create their own topics under ``m03_l02.check.*`` and inject the faults
themselves (a broker frozen, a leader SIGKILLed) so a verdict never rests on what the notebook did before."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pandas as pd

from delab.grading import WrongAnswer, exercise, learner_code
from delab.streaming import cluster
from delab.streaming import kafka_basics as kb

PREFIX = "m03_l02.check"


def _name(label: str) -> str:
    return f"{PREFIX}.{label}.{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------------------------------- e1: a durable topic


@exercise("m03.l02.e1")
def durable_topic(create_orders_topic: Callable[[str], object]) -> None:
    """3 partitions, each on all 3 brokers, and acks=all writes need 2 in-sync copies."""
    name = _name("orders")
    learner_code("create_orders_topic(name)")(create_orders_topic)(name)
    client = kb.admin(cluster.bootstrap())
    try:
        on_cluster = name in client.list_topics()
    finally:
        client.close()
    if not on_cluster:
        raise WrongAnswer(
            "the topic is not on the 3-node cluster.",
            hint="the stack's single broker is the default bootstrap: pass bootstrap=cluster.bootstrap().",
        )
    frame = cluster.wait_for(name, lambda f: f["leader"].notna().all(), timeout=20)
    if len(frame) != 3:
        raise WrongAnswer(f"the topic has {len(frame)} partition(s); the exercise asks for 3.")
    factors = sorted({len(r) for r in frame["replicas"]})
    if factors != [3]:
        raise WrongAnswer(
            f"each partition has {factors[0]} replica(s): one broker lost is data lost or unavailable.",
            hint="the replication factor is how many brokers keep a copy of each partition.",
        )
    min_isr = cluster.topic_config(name, "min.insync.replicas") or "1"
    if min_isr == "1":
        raise WrongAnswer(
            "min.insync.replicas is 1 (the broker default): an acks=all write is then acknowledged by the leader "
            "alone whenever the followers have fallen out of sync.",
            hint="set the topic config min.insync.replicas so that an acknowledged write always exists twice.",
        )
    if min_isr == "3":
        raise WrongAnswer(
            "min.insync.replicas equals the replication factor: a single broker down (even for a rolling restart) "
            "makes every acks=all write fail.",
            hint="leave room for one broker to be away: RF - 1.",
        )
    if min_isr != "2":
        raise WrongAnswer(f"min.insync.replicas is {min_isr}; with 3 replicas it should leave room for one failure.")


# ------------------------------------------------------------------------------- e2: durable producer settings


@exercise("m03.l02.e2")
def no_acked_write_lost(producer_settings: dict) -> None:
    """Followers stalled, the leader SIGKILLed: every write the producer was told succeeded is still there."""
    if not isinstance(producer_settings, dict):
        raise WrongAnswer(
            f"expected a dict of KafkaProducer settings, got a {type(producer_settings).__name__}.",
            hint='e.g. {"linger_ms": 5}: keyword arguments of kafka.KafkaProducer.',
        )
    topic = kb.create_topic(_name("acks"), 1, 3, {"min.insync.replicas": "2"}, bootstrap=cluster.bootstrap())
    report = learner_code("a producer with your settings")(cluster.acks_under_failover)(topic, producer_settings)
    if report.lost:
        raise WrongAnswer(
            f"{len(report.lost)} of {len(report.acked)} acknowledged writes were lost when the leader crashed "
            f"before its followers had copied them (acks={producer_settings.get('acks', 'default')}).",
            hint="an acknowledgement is only as durable as the copies that exist when it is sent: "
            "which acks setting waits for the in-sync followers?",
        )
    if report.failed:
        raise WrongAnswer(
            f"the producer gave up on {len(report.failed)} writes ({sorted(set(report.failed.values()))}) while "
            f"the cluster elected a new leader.",
            hint="a leader change takes seconds: let the producer retry until its delivery timeout.",
        )
    if len(report.acked) != report.sent:
        raise WrongAnswer(f"only {len(report.acked)} of {report.sent} writes were acknowledged.")
    if report.duplicates:
        raise WrongAnswer(
            f"{report.duplicates} writes are stored twice: a retry after a lost acknowledgement wrote them again.",
            hint="the idempotent producer lets the broker drop a retried batch it already has.",
        )


# ------------------------------------------------------------------------------------ e3: under-replicated


def _expected_under_replicated(frame: pd.DataFrame) -> list[int]:
    return sorted(
        int(p)
        for p, isr, replicas in zip(frame["partition"], frame["isr"], frame["replicas"], strict=True)
        if set(isr) != set(replicas)
    )


@exercise("m03.l02.e3")
def under_replicated_partitions(
    under_replicated: Callable[[pd.DataFrame], list[int]], during_outage: pd.DataFrame, after_recovery: pd.DataFrame
) -> None:
    """Under-replicated partitions: fewer in-sync replicas than replicas (during the outage, none after)."""
    for label, frame in (("during_outage", during_outage), ("after_recovery", after_recovery)):
        if not isinstance(frame, pd.DataFrame) or not {"partition", "isr", "replicas"} <= set(frame.columns):
            raise WrongAnswer(f"{label} should be a cluster.describe(...) frame, got {type(frame).__name__}.")
    if not _expected_under_replicated(during_outage):
        raise WrongAnswer(
            "during_outage shows every ISR whole: it was not taken while the broker was down.",
            hint="use the snapshot the kill run took while the node was down.",
        )
    if _expected_under_replicated(after_recovery):
        raise WrongAnswer("after_recovery still has partitions out of sync: wait for the ISRs to recover.")
    run = learner_code("under_replicated(frame)")(under_replicated)
    # after recovery first: there the answer is empty, so returning the in-sync partitions stands out
    for label, frame in (("after recovery", after_recovery), ("during the outage", during_outage)):
        want = _expected_under_replicated(frame)
        got = run(frame.copy())
        if isinstance(got, int | bool):
            raise WrongAnswer(
                f"got {got!r} {label}; expected the list of partition numbers.",
                hint="return the partitions themselves, e.g. [0, 2].",
            )
        try:
            got = sorted(int(p) for p in got)
        except (TypeError, ValueError):
            raise WrongAnswer(f"expected a list of partition numbers, got {got!r}.") from None
        if got == want:
            continue
        whole = sorted(int(p) for p in set(frame["partition"]) - set(want))
        if whole and got == whole:
            raise WrongAnswer(
                f"{label} you returned the partitions that are fully in sync.",
                hint="it is the other way round: under-replicated = some replica is missing from the ISR.",
            )
        if not got:
            raise WrongAnswer(
                f"{label} you found no under-replicated partition, but {len(want)} miss a replica: a partition can "
                f"still have a leader (it is not offline) and yet miss a replica.",
                hint="compare each partition's isr with its replicas.",
            )
        raise WrongAnswer(
            f"{label}: got {got}, which is not the set of partitions missing a replica.",
            hint="compare each partition's isr with its replicas.",
        )
