"""The transformation lab 01.06 asks you to test: daily revenue from orders and their lines.

Rules: each order counts once (extracts can repeat rows); cancelled orders earn nothing; order lines with a
quantity of zero or less are data errors and are left out; a line earns quantity * unit_price; a day is the
calendar day of ``order_ts``; revenue is rounded to cents.
"""

from __future__ import annotations

import pandas as pd


def daily_revenue(orders: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """One row per day with columns ``day`` (YYYY-MM-DD) and ``revenue``, days in order."""
    orders = orders.drop_duplicates("order_id")
    orders = orders[orders.status != "cancelled"]
    items = items[items.quantity > 0]
    lines = items.merge(orders[["order_id", "order_ts"]], on="order_id")
    lines = lines.assign(day=lines.order_ts.dt.strftime("%Y-%m-%d"), revenue=lines.quantity * lines.unit_price)
    out = lines.groupby("day", as_index=False).revenue.sum().sort_values("day", ignore_index=True)
    return out.assign(revenue=out.revenue.round(2))
