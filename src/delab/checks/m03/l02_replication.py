"""Checks of lab 03.02 (replication on a 3-node KRaft cluster), against the real cluster of
``delab.streaming.cluster``: the checks create their own topics under ``m03_l02.check.*`` and inject the faults
themselves (a broker frozen, a leader SIGKILLed) so a verdict never rests on what the notebook did before."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import numpy as np
import pandas as pd

from delab.grading import WrongAnswer, exercise, learner_code
from delab.streaming import cluster
from delab.streaming import kafka_basics as kb

PREFIX = "m03_l02.check"


def _name(label: str) -> str:
    return f"{PREFIX}.{label}.{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------------------------------- e1: a durable topic


def _topic_appears(name: str, bootstrap: str | None, timeout: float = 5.0) -> bool:
    """Whether ``name`` is (or within ``timeout`` becomes) visible to the brokers at ``bootstrap``: a topic
    created through a plain admin client reaches every broker's metadata a moment after the call returns."""
    client = kb.admin(bootstrap)
    try:
        deadline = time.monotonic() + timeout
        while name not in client.list_topics():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True
    finally:
        client.close()


def _refusal_in_one_line(create: Callable[[str], object]) -> Callable[[str], object]:
    """The broker's reason when it refuses the topic (kafka-python puts it deep inside a long request dump)."""

    def run(name: str) -> object:
        try:
            return create(name)
        except Exception as error:
            reason = re.search(r"error_message='([^']+)'", str(error))
            if reason:
                raise WrongAnswer(
                    f"the cluster refused the topic: {reason.group(1)}.",
                    hint="topic configs take the broker's dotted names (like retention.ms) and string values."
                    if "config" in reason.group(1).lower()
                    else None,
                ) from None
            raise

    return run


@exercise("m03.l02.e1")
def durable_topic(create_orders_topic: Callable[[str], object]) -> None:
    """3 partitions, each on all 3 brokers, and acks=all writes need 2 in-sync copies."""
    name = _name("orders")
    learner_code("create_orders_topic(name)")(_refusal_in_one_line(create_orders_topic))(name)
    if not _topic_appears(name, cluster.bootstrap()):
        if _topic_appears(name, None, timeout=0):
            raise WrongAnswer(
                "the topic is not on the 3-node cluster but on the stack's single broker.",
                hint="the stack's single broker is the default bootstrap: pass bootstrap=cluster.bootstrap().",
            )
        raise WrongAnswer(
            f"no topic named {name!r} appeared on the cluster.",
            hint="create the topic whose name the function is given (its argument), on cluster.bootstrap().",
        )
    frame = cluster.wait_for(name, lambda f: f["leader"].notna().all(), timeout=20)
    if len(frame) != 3:
        raise WrongAnswer(f"the topic has {len(frame)} partition(s); the exercise asks for 3.")
    factors = sorted({len(r) for r in frame["replicas"]})
    if factors != [3]:
        raise WrongAnswer(
            f"each partition has {factors[0]} replica(s); the exercise puts every partition on all three brokers.",
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
    elsewhere = producer_settings.get("bootstrap_servers")
    if elsewhere is not None and _servers(elsewhere) != _servers(cluster.bootstrap()):
        raise WrongAnswer(
            f"bootstrap_servers={elsewhere!r} is not the 3-node cluster.",
            hint="leave bootstrap_servers out: the check adds the cluster's.",
        )
    given = producer_settings
    producer_settings = {**cluster.TEAM_PRODUCER_SETTINGS, **given}  # the answer overrides the team's settings
    idempotent = _effective_idempotence(producer_settings)
    topic = kb.create_topic(_name("acks"), 1, 3, {"min.insync.replicas": "2"}, bootstrap=cluster.bootstrap())
    report = learner_code("a producer with your settings")(cluster.acks_under_failover)(topic, producer_settings)
    if report.lost:
        raise WrongAnswer(
            f"{len(report.lost)} of {len(report.acked)} acknowledged writes were lost when the leader crashed "
            f"before its followers had copied them (acks={producer_settings.get('acks')}"
            f"{'' if 'acks' in given else ', the team setting you kept'}).",
            hint="an acknowledgement is only as durable as the copies that exist when it is sent: "
            "which acks setting waits for the in-sync followers?",
        )
    if report.failed:
        raise WrongAnswer(
            f"the producer gave up on {len(report.failed)} writes ({sorted(set(report.failed.values()))}) while "
            f"the cluster elected a new leader (retries={producer_settings.get('retries')}).",
            hint="a leader change takes seconds: let the producer retry until its delivery timeout.",
        )
    if len(report.acked) != report.sent:
        raise WrongAnswer(f"only {len(report.acked)} of {report.sent} writes were acknowledged.")
    if report.duplicates:
        raise WrongAnswer(
            f"{report.duplicates} writes are stored twice: a retry after a lost acknowledgement wrote them again.",
            hint="the idempotent producer lets the broker drop a retried batch it already has.",
        )
    # This crash happened to store nothing twice (the new leader never had the unreplicated batches), but a
    # retry after a lost acknowledgement does whenever the old leader had replicated the batch.
    if not idempotent:
        explicit = "enable_idempotence" in producer_settings
        raise WrongAnswer(
            "nothing was lost, but the producer is not idempotent"
            + ("" if explicit else " (kafka-python turned idempotence off because another setting conflicts with it)")
            + ": a batch retried after its acknowledgement was lost would be stored twice.",
            hint="ask for idempotence explicitly: kafka-python then refuses a conflicting setting instead of "
            "dropping it.",
        )


def _servers(bootstrap: object) -> set[str]:
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)  # type: ignore[call-overload]
    return {str(item).strip() for item in items}


def _effective_idempotence(producer_settings: dict) -> bool:
    """Whether a producer with these settings is idempotent: kafka-python silently turns idempotence off when
    acks, retries or max_in_flight_requests_per_connection conflict with it (and raises if it was asked for)."""
    from kafka import KafkaProducer

    try:
        producer = KafkaProducer(**{"bootstrap_servers": cluster.bootstrap(), **producer_settings})
    except ValueError as error:
        if "Unrecognized configs" in str(error):
            raise WrongAnswer(
                f"kafka.KafkaProducer does not know {str(error).split(': ', 1)[-1]}.",
                hint="kafka-python takes Python keyword names (linger_ms), not the Java client's (linger.ms).",
            ) from None
        raise WrongAnswer(f"a producer with your settings failed: {error}") from None
    except Exception as error:
        raise WrongAnswer(f"a producer with your settings failed with {type(error).__name__}: {error}") from None
    try:
        return bool(producer.config["enable_idempotence"])
    finally:
        producer.close(timeout=2)


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
    # after recovery first: there the answer is empty, so returning the in-sync partitions stands out. Last, a
    # topic with replication factor 2 (a describe frame written by hand): nothing says a topic has 3 replicas.
    for label, frame in (
        ("after recovery", after_recovery),
        ("during the outage", during_outage),
        ("on a topic with replication factor 2 while broker 2 is down", _rf2_frame()),
    ):
        want = _expected_under_replicated(frame)
        got = run(frame.copy())
        if isinstance(got, pd.DataFrame):
            raise WrongAnswer(
                f"got a DataFrame {label}; expected the list of partition numbers.",
                hint="take the partition column of the rows you selected.",
            )
        if isinstance(got, int | bool):
            raise WrongAnswer(
                f"got {got!r} {label}; expected the list of partition numbers.",
                hint="return the partitions themselves, e.g. [0, 2].",
            )
        try:
            items = list(got)
        except TypeError:
            raise WrongAnswer(f"expected a list of partition numbers, got a {type(got).__name__}.") from None
        if items and all(isinstance(p, bool | np.bool_) for p in items):
            raise WrongAnswer(
                f"got one True/False per partition {label}; expected the numbers of the under-replicated ones.",
                hint="use the True/False to select rows, then return their partition numbers.",
            )
        try:
            got = sorted(int(p) for p in items)
        except (TypeError, ValueError):
            raise WrongAnswer(f"expected a list of partition numbers, got {str(items)[:80]}.") from None
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
                f"still have a leader and enough in-sync replicas to take writes, and yet miss a replica.",
                hint="compare each partition's isr with its replicas.",
            )
        raise WrongAnswer(
            f"{label}: got {got}, which is not the set of partitions missing a replica.",
            hint="compare each partition's isr with its own replicas (topics differ in replication factor)."
            if label.startswith("on a topic")
            else "compare each partition's isr with its replicas.",
        )


def _rf2_frame() -> pd.DataFrame:
    """What ``cluster.describe`` shows for a 3-partition topic of replication factor 2 while broker 2 is down."""
    return pd.DataFrame(
        {
            "partition": [0, 1, 2],
            "leader": [1, 3, 1],
            "replicas": [[1, 2], [2, 3], [1, 3]],
            "isr": [[1], [3], [1, 3]],
        }
    )
