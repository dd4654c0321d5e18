"""Incremental loading (lab 02.02): a source with an ``updated_at`` column, a target, a watermark table, and the
naive high-watermark extraction whose pitfalls the lab shows on real data.

Layout of a lab schema made by :func:`prepare` (``schema`` is e.g. ``m02_l02``):

* ``src_orders``  — the operational table (key ``order_id``; ``updated_at`` defaults to ``now()``, i.e. the start
  of the writing transaction, as in most applications);
* ``dw_orders``   — the warehouse copy, same columns, same key;
* ``watermarks``  — one row per pipeline: ``(pipeline, high_watermark, updated_at)``.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from delab.datasets import Shop
from delab.loading import bulk

ORDER_COLUMNS = ("order_id", "customer_id", "channel", "status", "updated_at")


def source_orders(shop: Shop) -> pd.DataFrame:
    """The shop's orders as an operational table: one row per order, ``updated_at`` = order time (UTC).

    Orders stamped in the future (an injected defect) are left out: their timestamp would push any watermark
    past every real change. The lab says so.
    """
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    orders = shop.orders.drop_duplicates("order_id").rename(columns={"order_ts": "updated_at"})
    orders = orders[orders.updated_at <= now]
    return orders[list(ORDER_COLUMNS)].sort_values("order_id", ignore_index=True)


def create_orders_table(conn, table: str, primary_key: bool = True) -> None:
    """(Re)create an orders table with ORDER_COLUMNS; ``updated_at`` defaults to the writing transaction's start."""
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(
        f"""CREATE TABLE {table} (
                order_id bigint {"PRIMARY KEY" if primary_key else "NOT NULL"}, customer_id bigint NOT NULL,
                channel text NOT NULL, status text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"""
    )


def load_orders(conn, table: str, orders: pd.DataFrame) -> None:
    """COPY an orders frame (naive UTC timestamps) into ``table``, in one transaction."""
    with conn.transaction():
        conn.execute("SET LOCAL timezone = 'UTC'")
        bulk.copy_rows(conn, table, ORDER_COLUMNS, bulk.rows_of(orders[list(ORDER_COLUMNS)]))


def prepare(conn, schema: str, shop: Shop) -> int:
    """(Re)create ``schema`` with ``src_orders`` (filled from the shop), an empty ``dw_orders`` and ``watermarks``.

    Returns the number of source rows. Every table has a primary key (the stack's Debezium publication covers all
    tables, and Postgres refuses UPDATE/DELETE on published tables without one).
    """
    orders = source_orders(shop)
    with conn.transaction():
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        for table in ("src_orders", "dw_orders"):
            create_orders_table(conn, f"{schema}.{table}")
        conn.execute(
            f"""CREATE TABLE {schema}.watermarks (
                    pipeline text PRIMARY KEY, high_watermark timestamptz NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT now())"""
        )
        conn.execute(f"CREATE INDEX ON {schema}.src_orders (updated_at, order_id)")
        load_orders(conn, f"{schema}.src_orders", orders)  # a savepoint inside this transaction
    return len(orders)


def get_watermark(conn, schema: str, pipeline: str = "orders") -> datetime | None:
    """The pipeline's persisted high watermark, or None before its first run."""
    row = conn.execute(f"SELECT high_watermark FROM {schema}.watermarks WHERE pipeline = %s", (pipeline,)).fetchone()
    return row[0] if row else None


def set_watermark(conn, schema: str, value: datetime, pipeline: str = "orders") -> None:
    """Persist the pipeline's high watermark (insert or replace)."""
    conn.execute(
        f"""INSERT INTO {schema}.watermarks (pipeline, high_watermark) VALUES (%s, %s)
            ON CONFLICT (pipeline) DO UPDATE SET high_watermark = EXCLUDED.high_watermark, updated_at = now()""",
        (pipeline, value),
    )


def upsert_rows(conn, schema: str, rows: list[tuple]) -> None:
    """Insert or overwrite ``rows`` (in ORDER_COLUMNS order) in ``dw_orders``."""
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                f"""INSERT INTO {schema}.dw_orders ({", ".join(ORDER_COLUMNS)}) VALUES (%s, %s, %s, %s, %s)
                    ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id,
                      channel = EXCLUDED.channel, status = EXCLUDED.status, updated_at = EXCLUDED.updated_at""",
                rows,
            )


def naive_run(conn, schema: str, pipeline: str = "orders") -> int:
    """The textbook incremental run: rows with ``updated_at`` > watermark; the new watermark is their maximum.

    Loads them into ``dw_orders`` and persists the watermark in the same transaction. Returns rows extracted.
    """
    with conn.transaction():
        watermark = get_watermark(conn, schema, pipeline)
        rows = conn.execute(
            f"SELECT {', '.join(ORDER_COLUMNS)} FROM {schema}.src_orders "
            "WHERE %(wm)s::timestamptz IS NULL OR updated_at > %(wm)s ORDER BY updated_at, order_id",
            {"wm": watermark},
        ).fetchall()
        upsert_rows(conn, schema, rows)
        if rows:
            set_watermark(conn, schema, max(r[-1] for r in rows), pipeline)
    return len(rows)


def naive_batches(conn, schema: str, limit: int) -> list[int]:
    """Extract everything in pages of ``limit`` rows with ``updated_at > last page's maximum``; returns the ids."""
    seen: list[int] = []
    watermark = None
    while True:
        page = conn.execute(
            f"SELECT order_id, updated_at FROM {schema}.src_orders "
            "WHERE %(wm)s::timestamptz IS NULL OR updated_at > %(wm)s ORDER BY updated_at LIMIT %(n)s",
            {"wm": watermark, "n": limit},
        ).fetchall()
        if not page:
            return seen
        seen += [order_id for order_id, _ in page]
        watermark = page[-1][1]


def compare(conn, schema: str) -> dict[str, int]:
    """Source vs target: row counts, keys missing from the target, keys the source no longer has, stale rows."""
    return dict(
        zip(
            ("source_rows", "target_rows", "missing_in_target", "deleted_in_source", "stale_in_target"),
            conn.execute(
                f"""SELECT (SELECT count(*) FROM {schema}.src_orders), (SELECT count(*) FROM {schema}.dw_orders),
                      (SELECT count(*) FROM {schema}.src_orders s WHERE NOT EXISTS
                          (SELECT 1 FROM {schema}.dw_orders d WHERE d.order_id = s.order_id)),
                      (SELECT count(*) FROM {schema}.dw_orders d WHERE NOT EXISTS
                          (SELECT 1 FROM {schema}.src_orders s WHERE s.order_id = d.order_id)),
                      (SELECT count(*) FROM {schema}.src_orders s JOIN {schema}.dw_orders d USING (order_id)
                          WHERE (s.status, s.updated_at) IS DISTINCT FROM (d.status, d.updated_at))"""
            ).fetchone(),
            strict=True,
        )
    )
