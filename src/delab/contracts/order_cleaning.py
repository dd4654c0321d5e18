"""The transformation lab 05.05 asks you to test: cleaning a batch of raw orders before it is loaded.

Rules:
- an ``order_id`` seen more than once keeps its **first** row (a retried export repeats rows);
- ``channel`` is trimmed and lower-cased (``"  Web "`` → ``"web"``);
- rows whose ``status`` is not one of ``STATUSES`` are dropped;
- rows placed after ``as_of`` are dropped (clock skew, test traffic); a row placed exactly at ``as_of`` is kept;
- the output keeps the input's columns and row order, with a fresh 0..n-1 index.
"""

from __future__ import annotations

import pandas as pd

STATUSES = ("placed", "shipped", "delivered", "cancelled", "returned")


def clean_orders(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The cleaned batch (see the module's rules)."""
    orders = orders.drop_duplicates("order_id", keep="first")
    orders = orders.assign(channel=orders.channel.str.strip().str.lower())
    orders = orders[orders.status.isin(STATUSES)]
    orders = orders[orders.order_ts <= as_of]
    return orders.reset_index(drop=True)
