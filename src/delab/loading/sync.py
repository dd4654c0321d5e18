"""Synchronisation helpers for lab 02.04: a stock-movement ledger (the event log), a consumer that delivers a topic
at least once (and can "crash" before committing its offsets), and drift injection for reconciliation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from delab import config
from delab.loading.cdc import Message, _decode

KINDS = ("received", "sold", "returned", "counted")


def stock_movements(products: pd.DataFrame, seed: int = 4, per_product: int = 12) -> pd.DataFrame:
    """A ledger of stock movements in time order: deliveries, sales, returns and stock-takes.

    ``quantity`` is a change for received (+), sold (-) and returned (+) rows, but the **counted absolute level**
    for a stock-take ("counted"): replaying the ledger must respect the order.
    """
    rng = np.random.default_rng(seed)
    rows = []
    level = {int(p): 0 for p in products.product_id}
    for step in range(per_product * len(level)):
        product = int(rng.choice(list(level)))
        roll = rng.random()
        if level[product] < 5 or roll < 0.15:
            kind, quantity = "received", int(rng.integers(10, 40))
        elif roll < 0.75:
            kind, quantity = "sold", -int(rng.integers(1, min(level[product], 6) + 1))
        elif roll < 0.88:
            kind, quantity = "returned", int(rng.integers(1, 3))
        else:  # a stock-take finds a little shrinkage
            kind, quantity = "counted", max(0, level[product] - int(rng.integers(0, 3)))
        level[product] = quantity if kind == "counted" else level[product] + quantity
        rows.append({"movement_id": step + 1, "product_id": product, "kind": kind, "quantity": quantity})
    return pd.DataFrame(rows)


def stock_from_ledger(conn, table: str) -> dict[int, int]:
    """Stock per product from the ledger table in SQL: the last stock-take plus every change after it."""
    rows = conn.execute(
        f"""
        WITH last_count AS (
            SELECT DISTINCT ON (product_id) product_id, movement_id, quantity
            FROM {table} WHERE kind = 'counted' ORDER BY product_id, movement_id DESC)
        SELECT m.product_id,
               coalesce(max(c.quantity), 0)
               + coalesce(sum(m.quantity) FILTER (WHERE m.kind <> 'counted'
                                                  AND m.movement_id > coalesce(c.movement_id, 0)), 0)
        FROM {table} m LEFT JOIN last_count c USING (product_id)
        GROUP BY m.product_id"""
    ).fetchall()
    return {int(p): int(q) for p, q in rows}


def deliver(
    topic: str,
    group: str,
    handle: Callable[[Message], None],
    crash_after: int | None = None,
    timeout: float = 10.0,
    decode: bool = True,
) -> int:
    """Hand every record after ``group``'s committed offset to ``handle``, then commit — at-least-once delivery.

    With ``crash_after=n`` it stops after n records *without committing*, as a consumer killed between processing
    and committing would: the next ``deliver`` of the same group hands those records over again.
    ``decode=False`` hands over key and value as raw bytes (for records that may not be JSON at all).
    Returns how many records were handled.
    """
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka().bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    handled = 0
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    if crash_after is not None and handled >= crash_after:
                        return handled  # "crash": nothing committed
                    key, value = (_decode(r.key), _decode(r.value)) if decode else (r.key, r.value)
                    headers = {k: v for k, v in (r.headers or [])}
                    handle(Message(tp.topic, tp.partition, r.offset, key, value, headers))
                    handled += 1
        consumer.commit()
        return handled
    finally:
        consumer.close(autocommit=False)


def inject_drift(conn, source: str, replica: str, key: str, seed: int) -> dict[str, set[int]]:
    """Copy ``source`` into ``replica`` and break it a little: rows deleted, rows added, rows changed.

    ``source`` needs the columns of the lab's products table (name, category, list_price, version); the changed
    rows differ in one column each: a name, a category set to NULL, prices.

    Returns the truth: ``{"missing": ..., "extra": ..., "different": ...}`` keys.
    """
    rng = np.random.default_rng(seed)
    conn.execute(f"DROP TABLE IF EXISTS {replica}")
    conn.execute(f"CREATE TABLE {replica} (LIKE {source} INCLUDING ALL)")
    conn.execute(f"INSERT INTO {replica} SELECT * FROM {source}")
    keys = [k for (k,) in conn.execute(f"SELECT {key} FROM {source} ORDER BY {key}").fetchall()]
    chosen = [int(k) for k in rng.choice(keys, size=7, replace=False)]
    missing, different = set(chosen[:3]), set(chosen[3:])
    conn.execute(f"DELETE FROM {replica} WHERE {key} = ANY(%s)", [list(missing)])
    # different in one column each: a renamed row, a category lost to NULL (missed by a `<>` comparison, which
    # is NULL, not true, when one side is NULL), and prices
    renamed, nulled, repriced = chosen[3], chosen[4], chosen[5:]
    conn.execute(f"UPDATE {replica} SET name = name || ' (old)' WHERE {key} = %s", [renamed])
    conn.execute(f"UPDATE {replica} SET category = NULL WHERE {key} = %s", [nulled])
    conn.execute(
        f"UPDATE {replica} SET list_price = round((list_price * 1.1)::numeric, 2) WHERE {key} = ANY(%s)",
        [repriced],
    )
    top = max(keys)
    extra = {top + 1000 + int(i) for i in rng.choice(100, size=2, replace=False)}
    for k in extra:
        conn.execute(
            f"INSERT INTO {replica} SELECT %s, 'ghost #' || %s, category, list_price, version FROM {source} LIMIT 1",
            [k, k],
        )
    return {"missing": missing, "extra": extra, "different": different}
