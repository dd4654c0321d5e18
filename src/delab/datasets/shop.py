"""A deterministic fictional web shop: customers, products, orders, order items, payments and a clickstream.

Everything comes from one seed, so a check can rebuild exactly what the learner loaded. ``scale`` multiplies
the row counts (1.0 ≈ 2,000 customers, 20,000 orders, 150,000 click events). The data is realistic where labs
need it to be:

* the clickstream has event time and ingestion time; a fraction of events arrive late (minutes to hours) and
  the stream is ordered by arrival, so it is out of order in event time;
* injected defects (listed in ``Shop.defects``): orders of unknown customers, duplicated order rows,
  negative quantities, missing e-mails, future timestamps, badly cased country codes;
* marketplace orders are imported in a nightly batch stamped exactly at midnight, so day boundaries matter;
* a schema change: orders placed from ``schema_change_at`` on carry a ``coupon_code`` column (null before).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2026-03-01 00:00:00")
DAYS = 28
COUNTRIES = np.array(["DE", "FR", "NL", "ES", "IT", "PL", "SE", "GB", "US", "CA"])
COUNTRY_WEIGHTS = np.array([0.2, 0.15, 0.08, 0.1, 0.1, 0.07, 0.05, 0.1, 0.1, 0.05])
SEGMENTS = np.array(["consumer", "business", "student"])
CHANNELS = np.array(["web", "app", "marketplace"])
STATUSES = np.array(["placed", "shipped", "delivered", "cancelled", "returned"])
STATUS_WEIGHTS = np.array([0.1, 0.2, 0.55, 0.1, 0.05])
METHODS = np.array(["card", "paypal", "bank_transfer", "voucher"])
EVENT_TYPES = np.array(["page_view", "product_view", "add_to_cart", "checkout"])
EVENT_WEIGHTS = np.array([0.45, 0.38, 0.12, 0.05])
CATEGORIES = {
    "books": (8, 45),
    "electronics": (25, 900),
    "garden": (5, 250),
    "kitchen": (6, 180),
    "outdoor": (15, 400),
    "toys": (4, 80),
}
FIRST = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Ken",
    "Barbara",
    "Edsger",
    "Margaret",
    "Donald",
    "Frances",
    "John",
    "Radia",
    "Guido",
    "Katherine",
    "Tim",
    "Hedy",
    "Niklaus",
    "Sophie",
    "Dennis",
    "Anita",
]
LAST = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Thompson",
    "Liskov",
    "Dijkstra",
    "Hamilton",
    "Knuth",
    "Allen",
    "Backus",
    "Perlman",
    "Rossum",
    "Johnson",
    "Berners",
    "Lamarr",
    "Wirth",
    "Wilson",
    "Ritchie",
    "Borg",
]
DEFECT_KINDS = (
    "unknown_customer",
    "duplicate_order",
    "negative_quantity",
    "missing_email",
    "future_timestamp",
    "lowercase_country",
)


@dataclass
class Shop:
    """The generated tables plus the ground truth of what was injected."""

    seed: int
    scale: float
    customers: pd.DataFrame
    products: pd.DataFrame
    orders: pd.DataFrame
    order_items: pd.DataFrame
    payments: pd.DataFrame
    clicks: pd.DataFrame
    defects: pd.DataFrame
    schema_change_at: pd.Timestamp
    tables: tuple[str, ...] = field(default=("customers", "products", "orders", "order_items", "payments", "clicks"))

    def table(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            raise KeyError(f"no table {name!r}; the shop has {', '.join(self.tables)}")
        return getattr(self, name)

    def write(self, folder: str | Path, fmt: str = "parquet") -> dict[str, Path]:
        """Write every table as ``<folder>/<table>.<fmt>`` (parquet or csv); returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in self.tables:
            path = folder / f"{name}.{fmt}"
            frame = self.table(name)
            if fmt == "parquet":
                frame.to_parquet(path, index=False)
            elif fmt == "csv":
                frame.to_csv(path, index=False)
            else:
                raise ValueError(f"fmt must be parquet or csv, not {fmt!r}")
            paths[name] = path
        return paths


def _money(values: np.ndarray) -> np.ndarray:
    return np.round(values, 2)


def _customers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    ids = np.arange(1, n + 1)
    first = rng.choice(FIRST, n)
    last = rng.choice(LAST, n)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "name": np.char.add(np.char.add(first, " "), last),
            "email": [f"{f.lower()}.{s.lower()}{i}@example.com" for f, s, i in zip(first, last, ids, strict=True)],
            "country": rng.choice(COUNTRIES, n, p=COUNTRY_WEIGHTS),
            "segment": rng.choice(SEGMENTS, n, p=[0.75, 0.2, 0.05]),
            "signup_at": START - pd.to_timedelta(rng.integers(1, 720 * 24 * 60, n), unit="min"),
        }
    )


def _products(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    product_id = 100
    for category, (low, high) in CATEGORIES.items():
        for k in range(12):
            product_id += 1
            price = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            rows.append(
                (
                    product_id,
                    f"{category[:-1] if category.endswith('s') else category} #{k + 1}",
                    category,
                    round(price, 2) - 0.01 if price > 1 else round(price, 2),
                )
            )
    return pd.DataFrame(rows, columns=["product_id", "name", "category", "list_price"])


def generate(seed: int = 42, scale: float = 1.0, defect_rate: float = 0.01, late_fraction: float = 0.05) -> Shop:
    """Build the shop. Same arguments, same data, on every machine."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    rng = np.random.default_rng(seed)
    n_customers = max(20, int(2_000 * scale))
    n_orders = max(100, int(20_000 * scale))
    n_sessions = max(100, int(25_000 * scale))

    customers = _customers(rng, n_customers)
    products = _products(rng)

    # Orders: busier evenings and weekends; ids follow insertion order, not event time (late inserts exist).
    day = rng.integers(0, DAYS, n_orders)
    minute = np.clip(rng.normal(19 * 60, 200, n_orders), 0, 24 * 60 - 1).astype(int)
    weekend = pd.DatetimeIndex(START + pd.to_timedelta(day, unit="D")).day_of_week >= 5
    extra = rng.random(n_orders) < np.where(weekend, 0.0, 0.12)  # thin weekdays a little
    day = np.where(extra, np.minimum(day + 1, DAYS - 1), day)
    order_ts = (
        START + pd.to_timedelta(day, unit="D") + pd.to_timedelta(minute * 60 + rng.integers(0, 60, n_orders), unit="s")
    )
    order_ts = pd.Series(order_ts).sort_values(ignore_index=True)
    jitter = rng.normal(0, 40, n_orders)  # insertion order is roughly, not exactly, time order
    insert_rank = np.argsort(np.arange(n_orders) + jitter, kind="stable")
    order_ts = order_ts.iloc[insert_rank].reset_index(drop=True)
    orders = pd.DataFrame(
        {
            "order_id": np.arange(1, n_orders + 1) + 10_000,
            "customer_id": rng.integers(1, n_customers + 1, n_orders),
            "order_ts": order_ts.values,
            "channel": rng.choice(CHANNELS, n_orders, p=[0.55, 0.35, 0.10]),
            "status": rng.choice(STATUSES, n_orders, p=STATUS_WEIGHTS),
        }
    )
    # marketplace orders arrive in a nightly batch stamped at midnight: day boundaries matter
    marketplace = orders.channel == "marketplace"
    orders.loc[marketplace, "order_ts"] = orders.loc[marketplace, "order_ts"].dt.floor("D")
    schema_change_at = START + pd.Timedelta(days=DAYS * 3 // 4)
    coupon = rng.random(n_orders) < 0.15
    codes = rng.choice(np.array(["SPRING10", "WELCOME5", "FREESHIP"]), n_orders)
    orders["coupon_code"] = pd.Series(
        np.where(coupon & (orders.order_ts >= schema_change_at), codes, None), dtype="object"
    )

    # Order items: 1–4 lines per order, unit price = list price, sometimes discounted.
    lines = rng.choice([1, 2, 3, 4], n_orders, p=[0.55, 0.25, 0.13, 0.07])
    item_order = np.repeat(orders.order_id.to_numpy(), lines)
    line_no = np.concatenate([np.arange(1, k + 1) for k in lines])
    item_product = rng.choice(products.product_id.to_numpy(), len(item_order))
    list_price = products.set_index("product_id").list_price.reindex(item_product).to_numpy()
    discount = np.where(rng.random(len(item_order)) < 0.2, rng.choice([0.9, 0.8, 0.75], len(item_order)), 1.0)
    order_items = pd.DataFrame(
        {
            "order_id": item_order,
            "line_no": line_no,
            "product_id": item_product,
            "quantity": rng.choice([1, 1, 1, 2, 2, 3, 5], len(item_order)),
            "unit_price": _money(list_price * discount),
        }
    )

    # Payments: one per order that was not cancelled; some fail then succeed, a few are refunded.
    totals = (order_items.quantity * order_items.unit_price).groupby(order_items.order_id).sum().round(2)
    paid = orders[orders.status != "cancelled"].reset_index(drop=True)
    amount = totals.reindex(paid.order_id).to_numpy()
    method = rng.choice(METHODS, len(paid), p=[0.6, 0.25, 0.1, 0.05])
    first_try = paid.order_ts + pd.to_timedelta(rng.integers(5, 600, len(paid)), unit="s")
    failed = rng.random(len(paid)) < 0.04
    retry = pd.to_timedelta(np.where(failed, rng.integers(1, 30, len(paid)), 0), unit="min")
    final = pd.DataFrame(
        {
            "order_id": paid.order_id,
            "paid_at": first_try + retry,
            "amount": amount,
            "method": method,
            "status": np.where(paid.status == "returned", "refunded", "captured"),
            "attempt": 2,
        }
    )
    failures = pd.DataFrame(
        {
            "order_id": paid.order_id,
            "paid_at": first_try,
            "amount": amount,
            "method": method,
            "status": "failed",
            "attempt": 1,
        }
    )[failed]
    payments = (
        pd.concat([final, failures])
        .sort_values(["order_id", "attempt"], kind="stable", ignore_index=True)
        .drop(columns="attempt")
    )
    payments.insert(0, "payment_id", np.arange(1, len(payments) + 1) + 500_000)

    clicks = _clickstream(rng, n_sessions, n_customers, products, late_fraction)

    orders, order_items, customers, defects = _inject_defects(rng, orders, order_items, customers, defect_rate)
    return Shop(seed, scale, customers, products, orders, order_items, payments, clicks, defects, schema_change_at)


def _clickstream(
    rng: np.random.Generator, n_sessions: int, n_customers: int, products: pd.DataFrame, late_fraction: float
) -> pd.DataFrame:
    events_per_session = rng.geometric(0.18, n_sessions)
    session = np.repeat(np.arange(1, n_sessions + 1), events_per_session)
    n = len(session)
    session_start = START + pd.to_timedelta(rng.integers(0, DAYS * 24 * 3600, n_sessions), unit="s")
    step = np.concatenate([np.arange(k) for k in events_per_session])
    gaps = np.where(step == 0, 0, rng.exponential(35, n).round().astype(int) + 1)
    offset = pd.Series(gaps).groupby(session).cumsum().to_numpy()
    event_time = np.repeat(session_start.values, events_per_session) + pd.to_timedelta(offset, unit="s").values
    customer = np.where(rng.random(n_sessions) < 0.7, rng.integers(1, n_customers + 1, n_sessions), 0)
    normal_delay = rng.exponential(2.0, n)  # seconds from device to broker
    late = rng.random(n) < late_fraction
    late_delay = rng.choice([90, 600, 3600, 4 * 3600], n, p=[0.5, 0.3, 0.15, 0.05]) * rng.uniform(0.5, 1.5, n)
    ingest_time = event_time + pd.to_timedelta(np.where(late, late_delay, normal_delay).round(3), unit="s").values
    clicks = pd.DataFrame(
        {
            "session_id": session,
            "customer_id": pd.array(np.repeat(customer, events_per_session), dtype="Int64"),
            "event_type": np.where(step == 0, "page_view", rng.choice(EVENT_TYPES, n, p=EVENT_WEIGHTS)),
            "product_id": pd.array(rng.choice(products.product_id.to_numpy(), n), dtype="Int64"),
            "event_time": pd.to_datetime(event_time).floor("ms"),
            "ingest_time": pd.to_datetime(ingest_time).floor("ms"),
        }
    )
    clicks.loc[clicks.customer_id == 0, "customer_id"] = pd.NA  # anonymous visitors
    clicks.loc[clicks.event_type == "page_view", "product_id"] = pd.NA
    clicks = clicks.sort_values(["ingest_time", "session_id"], kind="stable", ignore_index=True)
    clicks.insert(0, "event_id", np.arange(1, len(clicks) + 1))
    return clicks


def _inject_defects(
    rng: np.random.Generator, orders: pd.DataFrame, order_items: pd.DataFrame, customers: pd.DataFrame, rate: float
):
    defects: list[tuple[str, int, str]] = []
    k = max(1, int(len(orders) * rate / 4))
    picks = rng.choice(len(orders), 4 * k, replace=False)
    unknown, dup, future, negative = np.split(picks, 4)

    orders = orders.copy()
    orders.loc[unknown, "customer_id"] = rng.integers(len(customers) + 1, len(customers) + 500, k)
    defects += [("orders", int(i), "unknown_customer") for i in orders.order_id.iloc[unknown]]
    orders.loc[future, "order_ts"] = orders.order_ts.iloc[future] + pd.Timedelta(days=365)
    defects += [("orders", int(i), "future_timestamp") for i in orders.order_id.iloc[future]]
    duplicated = orders.iloc[dup]
    defects += [("orders", int(i), "duplicate_order") for i in duplicated.order_id]
    orders = pd.concat([orders, duplicated], ignore_index=True)

    order_items = order_items.copy()
    bad_orders = orders.order_id.iloc[negative].to_numpy()
    first_lines = order_items.index[order_items.order_id.isin(bad_orders) & (order_items.line_no == 1)]
    order_items.loc[first_lines, "quantity"] = -order_items.loc[first_lines, "quantity"]
    defects += [("order_items", int(i), "negative_quantity") for i in bad_orders]

    customers = customers.copy()
    n_cust = max(1, int(len(customers) * rate))
    no_email = rng.choice(len(customers), n_cust, replace=False)
    customers["email"] = customers.email.astype("object")
    customers.loc[no_email, "email"] = None
    defects += [("customers", int(i), "missing_email") for i in customers.customer_id.iloc[no_email]]
    rest = np.setdiff1d(np.arange(len(customers)), no_email)
    lower = rng.choice(rest, n_cust, replace=False)
    customers.loc[lower, "country"] = customers.country.iloc[lower].str.lower()
    defects += [("customers", int(i), "lowercase_country") for i in customers.customer_id.iloc[lower]]

    return orders, order_items, customers, pd.DataFrame(defects, columns=["table", "key", "kind"])


@lru_cache(maxsize=8)
def cached(seed: int = 42, scale: float = 1.0) -> Shop:
    """``generate`` with default rates, memoised per process (checks rebuild the learner's data this way)."""
    return generate(seed=seed, scale=scale)
