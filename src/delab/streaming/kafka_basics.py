"""Kafka building blocks for the streaming labs (kafka-python): topics, reading a topic with its partitions and
offsets, consumer groups and their assignments, committed offsets and lag, and a consumer that crashes between
processing and committing (to show at-least-once versus at-most-once delivery).

Every function takes ``bootstrap`` (``host:port,...``); the default is the stack's single broker.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from delab import config


def _bootstrap(bootstrap: str | None) -> str:
    return bootstrap or config.kafka().bootstrap_servers


def admin(bootstrap: str | None = None, **kwargs: Any):
    """A kafka-python admin client (close it when done)."""
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=_bootstrap(bootstrap), request_timeout_ms=15_000, **kwargs)


def drop_topics(prefix: str, bootstrap: str | None = None, timeout: float = 20.0) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (an earlier run's leftovers); returns their names."""
    client = admin(bootstrap)
    try:
        doomed = sorted(t for t in client.list_topics() if t.startswith(prefix))
        if doomed:
            client.delete_topics(doomed, timeout_ms=int(timeout * 1000), raise_errors=False)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and set(doomed) & set(client.list_topics()):
                time.sleep(0.2)
        return doomed
    finally:
        client.close()


def create_topic(
    name: str,
    partitions: int = 1,
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
    bootstrap: str | None = None,
) -> str:
    """Create a topic (deleting an older one of that name first) and wait until every partition has a leader."""
    from kafka.admin import NewTopic

    drop_topics(name, bootstrap) if name in _topics(bootstrap) else None
    client = admin(bootstrap)
    try:
        topic = NewTopic(name, partitions, replication_factor, topic_configs=dict(configs or {}))
        client.create_topics([topic], timeout_ms=15_000)
        client.wait_for_topics([name], timeout_ms=20_000)
    finally:
        client.close()
    return name


def _topics(bootstrap: str | None) -> list[str]:
    client = admin(bootstrap)
    try:
        return client.list_topics()
    finally:
        client.close()


def producer(bootstrap: str | None = None, **kwargs: Any):
    """A kafka-python producer (bytes in, bytes out)."""
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=_bootstrap(bootstrap), **kwargs)


def produce_json(
    topic: str, events: Iterable[dict], key: str | None = None, bootstrap: str | None = None, **settings: Any
) -> int:
    """Send dicts as JSON values (keyed by ``event[key]`` as text when given) and wait until all are delivered;
    returns how many were sent."""
    out = producer(bootstrap, **settings)
    sent = 0
    for event in events:
        out.send(topic, key=str(event[key]).encode() if key else None, value=json.dumps(event).encode())
        sent += 1
    out.flush()
    out.close()
    return sent


def partitions_of(topic: str, bootstrap: str | None = None) -> list[int]:
    """The partition numbers of a topic."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=_bootstrap(bootstrap))
    try:
        return sorted(consumer.partitions_for_topic(topic) or [])
    finally:
        consumer.close()


def end_offsets(topic: str, bootstrap: str | None = None) -> dict[int, int]:
    """The log-end offset of each partition (the offset the next message will get)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=_bootstrap(bootstrap))
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def committed_offsets(group: str, topic: str, bootstrap: str | None = None) -> dict[int, int]:
    """The offsets a consumer group committed on a topic, by partition (partitions never committed are absent)."""
    client = admin(bootstrap)
    try:
        offsets = client.list_group_offsets({group: None}).get(group, {})
    finally:
        client.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def lag_table(group: str, topic: str, bootstrap: str | None = None) -> pd.DataFrame:
    """Per partition: committed offset, log-end offset and lag (end - committed; a never-committed partition
    counts from its start, as a group with auto.offset.reset=earliest would)."""
    ends = end_offsets(topic, bootstrap)
    done = committed_offsets(group, topic, bootstrap)
    rows = [
        {"partition": p, "committed": done.get(p), "end": end, "lag": end - done.get(p, 0)}
        for p, end in sorted(ends.items())
    ]
    return pd.DataFrame(rows, columns=["partition", "committed", "end", "lag"])


def read_topic(topic: str, bootstrap: str | None = None, timeout: float = 15.0) -> pd.DataFrame:
    """Every message of a topic from the beginning: partition, offset, key, value (decoded as UTF-8) and the
    record timestamp, ordered by partition and offset. Reads up to the end offsets taken when it starts."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=_bootstrap(bootstrap), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    rows: list[dict] = []
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in parts):
            for tp, records in consumer.poll(timeout_ms=500).items():
                rows += [
                    {
                        "partition": tp.partition,
                        "offset": r.offset,
                        "key": r.key.decode() if r.key is not None else None,
                        "value": r.value.decode(errors="replace") if r.value is not None else None,
                        "timestamp": r.timestamp,
                    }
                    for r in records
                    if r.offset < ends[tp]
                ]
    finally:
        consumer.close()
    frame = pd.DataFrame(rows, columns=["partition", "offset", "key", "value", "timestamp"])
    return frame.sort_values(["partition", "offset"]).reset_index(drop=True)


def json_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The JSON values of ``read_topic``'s frame as columns, next to partition, offset and key."""
    parsed = pd.DataFrame([json.loads(v) for v in frame["value"]], index=frame.index)
    return pd.concat([frame[["partition", "offset", "key"]], parsed], axis=1)


# --------------------------------------------------------------------------------------------- consumer groups


@dataclass
class AssignmentLog:
    """Records every rebalance each consumer of a group goes through: (time, consumer, event, partitions)."""

    events: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def listener(self, name: str):
        from kafka import ConsumerRebalanceListener

        log = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                log._add(name, "revoked", revoked)

            def on_partitions_assigned(self, assigned):
                log._add(name, "assigned", assigned)

        return Listener()

    def _add(self, name: str, event: str, partitions: Iterable) -> None:
        parts = sorted(tp.partition for tp in partitions)
        if not parts and event == "revoked":
            return  # a new member's first callback: nothing to give back
        self.events.append(
            {"t_s": round(time.monotonic() - self.started, 2), "consumer": name, "event": event, "partitions": parts}
        )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.events, columns=["t_s", "consumer", "event", "partitions"])


def group_consumer(
    topic: str,
    group: str,
    name: str = "",
    log: AssignmentLog | None = None,
    bootstrap: str | None = None,
    **kwargs: Any,
):
    """A consumer in ``group`` subscribed to ``topic``: offsets committed by hand, reading from the earliest
    offset when the group has none. ``name`` labels it in the assignment log and in the broker (client.id)."""
    from kafka import KafkaConsumer

    settings = {
        "bootstrap_servers": _bootstrap(bootstrap),
        "group_id": group,
        "client_id": name or "delab",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # a small lab: notice a dead member in seconds, not the default 45 s
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        **kwargs,
    }
    consumer = KafkaConsumer(**settings)
    consumer.subscribe([topic], listener=log.listener(name) if log else None)
    consumer.delab_name = name  # type: ignore[attr-defined]
    return consumer


def assignments(consumers: Iterable) -> dict[str, list[int]]:
    """Which partitions each consumer owns right now."""
    return {
        getattr(c, "delab_name", str(i)): sorted(tp.partition for tp in c.assignment()) for i, c in enumerate(consumers)
    }


class GroupMember:
    """One consumer of a group running in its own thread, as a separate process would: it polls, records what
    it read (partition, offset) and commits after each batch. ``leave()`` closes it: it leaves the group and
    the others rebalance at once."""

    def __init__(self, topic: str, group: str, name: str, log: AssignmentLog | None = None, **kwargs: Any):
        import threading

        self.name = name
        self.assignments_received = 0  # rebalances this member has completed
        self.consumer = group_consumer(topic, group, name, None, **kwargs)
        self.consumer.subscribe([topic], listener=self._listener(log))
        self.read: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self.consumer.poll(timeout_ms=200)
            for tp, records in batch.items():
                self.read += [{"consumer": self.name, "partition": tp.partition, "offset": r.offset} for r in records]
            if batch:
                self.consumer.commit()
        self.consumer.close()  # leaves the group

    def _listener(self, log: AssignmentLog | None):
        from kafka import ConsumerRebalanceListener

        member, logged = self, log.listener(self.name) if log else None

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                if logged:
                    logged.on_partitions_revoked(revoked)

            def on_partitions_assigned(self, assigned):
                member.assignments_received += 1
                if logged:
                    logged.on_partitions_assigned(assigned)

        return Listener()

    def partitions(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment())

    def leave(self) -> None:
        """Close the consumer cleanly: it commits, leaves the group and the others take its partitions at once."""
        self._stop.set()
        self._thread.join(timeout=30)


def wait_balanced(members: list[GroupMember], partitions: int, timeout: float = 30.0) -> dict[str, list[int]]:
    """Wait until every partition has exactly one owner among ``members`` and the assignment has been stable for
    half a second; returns it (member name -> partitions)."""
    deadline, stable, previous = time.monotonic() + timeout, 0, None
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = {m.name: m.partitions() for m in members}
        owned = sorted(p for parts in now.values() for p in parts)
        joined = all(m.assignments_received for m in members)  # a newcomer has had its first assignment
        if joined and owned == list(range(partitions)) and now == previous:
            stable += 1
            if stable >= 5:
                return now
        else:
            stable = 0
        previous = now
    raise TimeoutError(f"the group did not settle within {timeout:.0f} s: {previous}")


def wait_caught_up(group: str, topic: str, bootstrap: str | None = None, timeout: float = 30.0) -> pd.DataFrame:
    """Wait until a group's lag on a topic is 0 on every partition; returns the final lag table."""
    deadline = time.monotonic() + timeout
    while True:
        table = lag_table(group, topic, bootstrap)
        if int(table["lag"].sum()) == 0 or time.monotonic() > deadline:
            return table
        time.sleep(0.3)


# --------------------------------------------------------------------------------------- delivery semantics


class SimulatedCrash(Exception):
    """Raised inside processing to stand for the consumer process dying at that moment."""


Handler = Callable[[Any, list, Callable[[Any], None]], None]


def commit_then_process(consumer, records: list, process: Callable[[Any], None]) -> None:
    """At-most-once: commit the batch's offsets first, then process it. A crash in between loses records."""
    consumer.commit()
    for record in records:
        process(record)


@dataclass
class CrashReport:
    """What a crash-and-restart run did: how often each message was processed."""

    strategy: str
    messages: int
    crashed_at: int
    processed: Counter
    crash_escaped: bool = True  # False when the handler swallowed the simulated crash

    @property
    def lost(self) -> int:
        return sum(1 for i in range(self.messages) if self.processed.get(i, 0) == 0)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.processed.values() if n > 1)

    def row(self) -> dict:
        return {
            "strategy": self.strategy,
            "messages": self.messages,
            "processed": sum(self.processed.values()),
            "lost": self.lost,
            "duplicates": self.duplicates,
        }


def fill_numbered(topic: str, messages: int, bootstrap: str | None = None) -> None:
    """Produce messages whose values are 0 .. messages-1 (as text), so a reader can tell each one apart."""
    out = producer(bootstrap)
    for i in range(messages):
        out.send(topic, value=str(i).encode())
    out.flush()
    out.close()


def run_with_crash(
    handle_batch: Handler,
    topic: str,
    group: str,
    crash_after: int,
    batch_size: int = 10,
    bootstrap: str | None = None,
    timeout: float = 30.0,
    mid_processing: bool = False,
) -> CrashReport:
    """Consume ``topic`` (filled by ``fill_numbered``) in ``group`` with ``handle_batch(consumer, records,
    process)`` and make the consumer crash right after it has processed its ``crash_after``-th message (that
    message is processed, then the process "dies" before anything else happens). With ``mid_processing`` it
    dies *while* processing that message instead: the message's work dies with it and does not count. A second
    consumer of the same group then takes over from the group's committed offsets and drains the topic. Returns
    how often each message was processed."""
    messages = sum(end_offsets(topic, bootstrap).values())
    processed: Counter = Counter()
    crash = {"armed": True, "escaped": False, "calls": 0}

    def process(record) -> None:
        crash["calls"] += 1
        if crash["armed"] and mid_processing and crash["calls"] >= crash_after:
            crash["armed"] = False
            raise SimulatedCrash(f"crashed while processing message {int(record.value)}")
        processed[int(record.value)] += 1
        if crash["armed"] and not mid_processing and sum(processed.values()) >= crash_after:
            crash["armed"] = False
            raise SimulatedCrash(f"crashed after processing message {int(record.value)}")

    def drain(name: str, stop_on_crash: bool) -> None:
        consumer = group_consumer(topic, group, name, bootstrap=bootstrap, max_poll_records=batch_size)
        deadline, empty_polls = time.monotonic() + timeout, 0
        try:
            while time.monotonic() < deadline:
                batch = [r for records in consumer.poll(timeout_ms=500).values() for r in records]
                if not batch:
                    empty_polls += 1
                    # joined, assigned, and nothing more to read: done
                    if empty_polls >= 2 and consumer.assignment():
                        return
                    continue
                empty_polls = 0
                try:
                    handle_batch(consumer, batch, process)
                except SimulatedCrash:
                    crash["escaped"] = True
                    if stop_on_crash:
                        return
                    raise
        finally:
            # A crash: no commit on the way out (autocommit=False); the group's committed offsets stay as they are
            consumer.close(autocommit=False)

    drain("before-crash", stop_on_crash=True)
    drain("after-restart", stop_on_crash=False)
    name = getattr(handle_batch, "__name__", "handler")
    return CrashReport(name, messages, crash_after, processed, crash["escaped"] or crash["armed"])
