"""Error-handling helpers for lab 02.05: order events with real defects and a few poison records, a row lock held
in the background (a genuine transient failure), consumer lag read from Kafka, and raw at-least-once delivery."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from delab import clients, config, datasets

#: When the extract was taken: an order stamped later than this cannot be real.
AS_OF = "2026-03-29T00:00:00"
CHANNELS = ("web", "app", "marketplace")
#: Records that are not even JSON, or not an object: they must reach the dead-letter topic untouched.
POISON = [b"\x00\xff not json", b'{"order_id": 99999, "customer_id": ', b"[1, 2, 3]", b""]


@dataclass(frozen=True)
class OrderEvents:
    """Raw (key, value) records for a topic, and the truth about them (for checks and for the learner to look at)."""

    records: list[tuple[bytes, bytes]]
    known_customers: set[int]
    defects: dict[int, str]  # order_id -> unknown_customer | future_timestamp | negative_quantity
    poison_positions: list[int]  # positions in `records` of the poison records
    duplicate_orders: set[int]


def order_events(seed: int = 7, scale: float = 0.25, clean: int = 400) -> OrderEvents:
    """Order events (with their lines) from the shop: ``clean`` good orders, every defective one, the duplicated
    rows the generator made, and the poison records spread among them. Deterministic."""
    shop = datasets.cached(seed, scale)
    defects = shop.defects
    order_defects = {
        int(k): kind
        for k, kind in defects[defects.kind.isin(["unknown_customer", "future_timestamp", "negative_quantity"])][
            ["key", "kind"]
        ].itertuples(index=False)
    }
    duplicates = set(defects[defects.kind == "duplicate_order"].key.astype(int))
    orders = shop.orders
    keep = set(orders.order_id.head(clean)) | set(order_defects) | duplicates
    chosen = orders[orders.order_id.isin(keep)].sort_values("order_ts", kind="stable")
    lines = shop.order_items[shop.order_items.order_id.isin(keep)]
    by_order = {
        int(order_id): [
            {"product_id": int(r.product_id), "quantity": int(r.quantity), "unit_price": float(r.unit_price)}
            for r in group.itertuples()
        ]
        for order_id, group in lines.groupby("order_id")
    }
    records: list[tuple[bytes, bytes]] = []
    for row in chosen.itertuples(index=False):
        event = {
            "order_id": int(row.order_id),
            "customer_id": int(row.customer_id),
            "order_ts": pd.Timestamp(row.order_ts).isoformat(),
            "channel": str(row.channel),
            "lines": by_order.get(int(row.order_id), []),
        }
        # compact JSON, as many producers send it: a dead letter re-encoded with json.dumps' defaults differs
        records.append((str(row.order_id).encode(), json.dumps(event, separators=(",", ":")).encode()))
    step = max(1, len(records) // (len(POISON) + 1))
    positions = []
    for i, poison in enumerate(POISON):
        at = step * (i + 1) + i
        records.insert(at, (b"poison", poison))
        positions.append(at)
    known = set(shop.customers.customer_id.astype(int))
    return OrderEvents(records, known, order_defects, positions, duplicates)


def produce(topic: str, records: list[tuple[bytes, bytes]]) -> int:
    """Send raw records in order (one partition: the topic is created with the broker's default of 1)."""
    producer = clients.kafka_producer(acks="all")
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()
    return len(records)


@contextlib.contextmanager
def row_locked(table: str, where: str, seconds: float) -> Iterator[None]:
    """Another session holds a lock on some rows for ``seconds`` (from the moment the block starts).

    A writer with a short ``lock_timeout`` meets a genuine transient failure (``LockNotAvailable``) until then.
    """
    locked = threading.Event()

    def hold() -> None:
        with clients.postgres(autocommit=False) as conn:
            conn.execute(f"SELECT 1 FROM {table} WHERE {where} FOR UPDATE")
            locked.set()
            time.sleep(seconds)
            conn.rollback()

    holder = threading.Thread(target=hold, name="delab-row-lock", daemon=True)
    holder.start()
    if not locked.wait(10):
        raise RuntimeError(f"could not lock {table} WHERE {where}")
    try:
        yield
    finally:
        holder.join()


def consumer_lag(group: str, topic: str) -> int:
    """Records of ``topic`` that consumer group ``group`` has not committed yet (summed over partitions)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=config.kafka().bootstrap_servers, group_id=group)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        ends = consumer.end_offsets(partitions)
        return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in partitions)
    finally:
        consumer.close(autocommit=False)


def wait_running(name: str, timeout: float = 90.0) -> dict:
    """Wait until a connector and its task run again (after Connect came back); returns Connect's status."""
    return clients.connect_wait_running(name, timeout, while_restarting=True)
