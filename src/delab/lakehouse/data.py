"""The shop's tables as Arrow tables ready for a lakehouse write: one row per key, plain Arrow types
(``string``, ``int64``, ``double``, ``timestamp[us]``), columns in a stable order."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from delab import datasets

KEYS = {
    "customers": ["customer_id"],
    "products": ["product_id"],
    "orders": ["order_id"],
    "order_items": ["order_id", "line_no"],
    "payments": ["payment_id"],
}


def _plain(table: pa.Table) -> pa.Table:
    """large_string → string, timestamps → microseconds without zone (what every engine here reads alike)."""
    fields = []
    for field in table.schema:
        kind = field.type
        if pa.types.is_large_string(kind) or pa.types.is_string(kind):
            kind = pa.string()
        elif pa.types.is_timestamp(kind):
            kind = pa.timestamp("us")
        elif pa.types.is_integer(kind):
            kind = pa.int64()
        elif pa.types.is_floating(kind):
            kind = pa.float64()
        fields.append(pa.field(field.name, kind))
    return table.cast(pa.schema(fields))


def shop_table(name: str, seed: int = 7, scale: float = 0.25) -> pa.Table:
    """One table of ``datasets.shop(seed, scale)``, deduplicated on its key and sorted by it."""
    frame = datasets.cached(seed=seed, scale=scale).table(name)
    keys = KEYS[name]
    frame = frame.drop_duplicates(keys).sort_values(keys, ignore_index=True)
    return _plain(pa.Table.from_pandas(frame, preserve_index=False))


def payment_changes(payments: pa.Table) -> pa.Table:
    """Change records for a payments table, as a CDC feed delivers them (the table's columns plus ``op``):
    rows 10-24 refunded (``op = "upsert"``) and rows 60-64 deleted (``op = "delete"``)."""
    frame = payments.to_pandas()
    refunds = frame.iloc[10:25].assign(status="refunded", op="upsert")
    deletions = frame.iloc[60:65].assign(op="delete")
    return pa.Table.from_pandas(pd.concat([refunds, deletions], ignore_index=True), preserve_index=False)


def customers_v1(seed: int = 7, scale: float = 0.25) -> pa.Table:
    """The shop's customers as "version 1" of a customers table: the shop's columns plus ``order_count``
    (orders per customer) stored as a 32-bit integer — a type lab 04.02 widens later."""
    customers = shop_table("customers", seed, scale)
    orders = shop_table("orders", seed, scale).to_pandas()
    counts = orders.groupby("customer_id").size()
    order_count = customers["customer_id"].to_pandas().map(counts).fillna(0).astype("int32")
    return customers.append_column("order_count", pa.array(order_count, pa.int32()))


def customer_orders(seed: int = 7, scale: float = 0.25) -> pa.Table:
    """Orders with their customer's name and email copied in (a typical denormalised lakehouse table: personal
    data spread over every file that holds a customer's orders), sorted by order_id."""
    orders = shop_table("orders", seed, scale).to_pandas()
    customers = shop_table("customers", seed, scale).to_pandas()[["customer_id", "name", "email"]]
    joined = orders.merge(customers, on="customer_id", how="left").sort_values("order_id", ignore_index=True)
    return _plain(pa.Table.from_pandas(joined, preserve_index=False))


def loyalty_batch(customers: pa.Table, start: int, count: int) -> pa.Table:
    """``count`` rows of ``customers_v1()`` from ``start``, with a new column ``loyalty_points`` (10 per order):
    what a writer that already knows the next schema version produces."""
    batch = customers.slice(start, count)
    return batch.append_column("loyalty_points", pc.multiply(batch["order_count"].cast(pa.int64()), 10))
