"""Inference pipelines (lab 06.04): order requests as a checkout service sends them, a fallback estimate, a
ledger of predicted orders in Postgres, and a Kafka consume → predict → produce loop with a dead-letter topic.

A request is what a checkout knows before prices are summed::

    {"order_id": 10001, "customer_id": 17, "order_ts": "2026-03-04T19:12:05", "channel": "web",
     "items": [{"product_id": 101, "quantity": 2}, ...]}

The loop (``consume``) is at-least-once: it commits a message's offset only after the handler's output is on the
predictions (or dead-letter) topic. ``crash_after`` stops it before a commit, as a killed consumer would, so the
next run gets those messages again — which is what an idempotent handler must survive.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from delab import clients, config
from delab.mlops import shop_models

CHANNELS = ("web", "app", "marketplace")
LEDGER = "predicted_orders"


@dataclass(frozen=True)
class DeadLetter:
    """What a handler returns for a message it cannot process (unreadable or invalid): the loop sends the original
    bytes to the dead-letter topic with ``reason`` in a header, and moves on."""

    reason: str


def order_requests(schema: str, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Real orders of the shop in ``schema`` as requests (valid ones: every quantity positive), by order_id."""
    with clients.postgres() as conn:
        rows = conn.execute(
            f"""
            SELECT o.order_id, o.customer_id, o.order_ts, o.channel,
                   json_agg(json_build_object('product_id', i.product_id, 'quantity', i.quantity) ORDER BY i.line_no)
            FROM (SELECT DISTINCT order_id, customer_id, order_ts, channel FROM {schema}.orders) o
            JOIN {schema}.order_items i ON i.order_id = o.order_id
            GROUP BY o.order_id, o.customer_id, o.order_ts, o.channel
            HAVING min(i.quantity) > 0
            ORDER BY o.order_id
            LIMIT %s OFFSET %s""",
            (limit, offset),
        ).fetchall()
    return [
        {"order_id": int(oid), "customer_id": int(cid), "order_ts": ts.isoformat(), "channel": ch, "items": items}
        for oid, cid, ts, ch, items in rows
    ]


def expected_features(schema: str, order_ids: list[int]) -> pd.DataFrame:
    """The batch features of these orders (the SQL of ``shop_models``), indexed by order_id."""
    frame = shop_models.order_features(schema)
    return frame[frame.order_id.isin(order_ids)].set_index("order_id")


@dataclass
class Baseline:
    """A fallback estimate that cannot fail: the training data's mean value per unit × the order's units."""

    value_per_unit: float

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Baseline:
        return cls(float(frame[shop_models.TARGET].sum() / frame["n_units"].sum()))

    def __call__(self, features: dict[str, float] | np.ndarray) -> float:
        units = features["n_units"] if isinstance(features, dict) else np.asarray(features).ravel()[1]
        return round(float(units) * self.value_per_unit, 2)


# ------------------------------------------------------------------------------------- the ledger (Postgres)


def create_ledger(schema: str) -> str:
    """(Re)create ``<schema>.predicted_orders`` (one row per order predicted; its primary key is the order_id)
    and return its name."""
    name = f"{schema}.{LEDGER}"
    with clients.postgres() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(
            f"CREATE TABLE {name} (order_id bigint PRIMARY KEY, order_value double precision NOT NULL, "
            "source text NOT NULL, predicted_at timestamptz NOT NULL DEFAULT now())"
        )
    return name


# ------------------------------------------------------------------------------------------ Kafka plumbing


def fresh_topics(*topics: str) -> None:
    """Delete and recreate these topics (one partition each), empty."""
    from delab.streaming import kafka_basics

    for topic in topics:
        kafka_basics.create_topic(topic)


def publish(topic: str, values: list[bytes], keys: list[bytes | None] | None = None) -> int:
    """Produce raw values (and keys) to ``topic`` in order; returns how many."""
    producer = clients.kafka_producer(acks="all")
    try:
        for i, value in enumerate(values):
            producer.send(topic, value=value, key=(keys[i] if keys else None))
        producer.flush(30)
    finally:
        producer.close()
    return len(values)


def encode(request: dict[str, Any]) -> bytes:
    return json.dumps(request).encode()


@dataclass
class LoopRun:
    """What one run of ``consume`` did."""

    read: int = 0
    published: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    committed_offset: int | None = None
    crashed: bool = False
    handler_error: str | None = None
    offsets: list[int] = field(default_factory=list)


class HandlerFailed(RuntimeError):
    """The handler raised on a message: a real consumer would crash there and get it again after each restart."""

    def __init__(self, offset: int, value: bytes, error: BaseException) -> None:
        super().__init__(f"offset {offset}: {type(error).__name__}: {error}")
        self.offset, self.value, self.error = offset, value, error


def consume(
    handle: Callable[[bytes], dict | DeadLetter | None],
    source: str,
    predictions: str,
    dead_letters: str,
    group: str,
    *,
    crash_after: int | None = None,
    idle_s: float = 2.0,
    max_messages: int = 10_000,
) -> LoopRun:
    """At-least-once: read ``source`` from the group's committed offset (the start when none), ``handle`` each
    message's bytes, publish a dict result to ``predictions`` (key: its ``order_id``), a ``DeadLetter``'s message
    to ``dead_letters``, nothing for ``None``; flush, then commit. Stops when no message came for ``idle_s``.

    ``crash_after=k`` stops right after the k-th message's output was flushed and before its offset is committed
    (as a consumer killed at that moment). A handler that raises stops the loop: ``HandlerFailed``.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    bootstrap = config.kafka().bootstrap_servers
    partition = TopicPartition(source, 0)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    producer = clients.kafka_producer(acks="all")
    run = LoopRun()
    try:
        consumer.assign([partition])  # one partition, assigned: no group rebalance to wait for
        committed = consumer.committed(partition)
        if committed is None:
            consumer.seek_to_beginning(partition)
        else:
            consumer.seek(partition, committed)
        empty_polls = 0
        while run.read < max_messages and empty_polls * 0.25 < idle_s:
            batch = consumer.poll(timeout_ms=250, max_records=50).get(partition, [])
            empty_polls = 0 if batch else empty_polls + 1
            for message in batch:
                run.read += 1
                run.offsets.append(message.offset)
                try:
                    result = handle(message.value)
                except Exception as error:
                    raise HandlerFailed(message.offset, message.value, error) from error
                if isinstance(result, DeadLetter):
                    producer.send(
                        dead_letters,
                        value=message.value,
                        key=message.key,
                        headers=[("error", str(result.reason).encode()), ("offset", str(message.offset).encode())],
                    )
                    run.dead_lettered += 1
                elif isinstance(result, dict):
                    key = str(result.get("order_id", "")).encode()
                    producer.send(predictions, value=json.dumps(result, default=float).encode(), key=key)
                    run.published += 1
                else:
                    run.skipped += 1
                producer.flush(30)
                if crash_after is not None and run.read >= crash_after:
                    run.crashed = True  # killed here: output flushed, offset not committed
                    return run
                consumer.commit({partition: OffsetAndMetadata(message.offset + 1, "", -1)})
                run.committed_offset = message.offset + 1
        return run
    finally:
        producer.close()
        consumer.close(autocommit=False)


def topic_records(topic: str) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """Every message of a topic from the start: (key, value, headers)."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=config.kafka().bootstrap_servers, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    try:
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        out: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
        deadline = time.monotonic() + 30
        while consumer.position(partition) < end and time.monotonic() < deadline:
            for message in consumer.poll(timeout_ms=250).get(partition, []):
                out.append((message.key, message.value, dict(message.headers or [])))
        return out
    finally:
        consumer.close()
