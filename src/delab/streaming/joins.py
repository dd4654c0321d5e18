"""Lab 03.05 (stream joins): the shop's orders, payments, order lines and price changes as event streams in
Kafka, their Flink SQL tables, independent pandas models of what an interval join and an event-time temporal
join emit, and reading a job's state size from the REST API's checkpoint statistics.

Every stream goes to its topic sorted by event time (one partition), so no event is late and the joins' output
is exactly what the pandas models predict.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pandas as pd

FMT = "%Y-%m-%d %H:%M:%S.%f"


def _stamp(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime(FMT).str[:-3]


# --------------------------------------------------------------------------------------------- the streams


def orders(shop: Any) -> pd.DataFrame:
    """One row per order (duplicated rows of the source removed), sorted by order time."""
    out = shop.orders.drop_duplicates("order_id")[["order_id", "customer_id", "order_ts", "channel"]]
    out = out.rename(columns={"order_ts": "order_time"})
    return out.sort_values(["order_time", "order_id"], kind="stable", ignore_index=True)


# Payments put on the edges of lab 03.05's 15-minute interval (delay after the order), so that its bounds matter:
# a window that excludes a bound, or reaches a minute too far either way, misses or adds one of these.
EDGE_DELAYS = {
    "in the same second as its order": pd.Timedelta(0),
    "a second before the 15 minutes are up": pd.Timedelta(minutes=14, seconds=59),
    "exactly 15 minutes after its order": pd.Timedelta(minutes=15),
    "15 minutes and 1 second after its order": pd.Timedelta(minutes=15, seconds=1),
    "30 seconds before its order (the payment provider's clock is behind)": pd.Timedelta(seconds=-30),
}


def payments(shop: Any) -> pd.DataFrame:
    """Every payment attempt (failed ones too), sorted by the time it was made. The only payments of a few
    captured orders are moved to the delays of ``EDGE_DELAYS``."""
    out = shop.payments[["payment_id", "order_id", "paid_at", "amount", "status"]].copy()
    times = orders(shop).set_index("order_id").order_time
    delay = out.paid_at - out.order_id.map(times)
    single = ~out.order_id.duplicated(keep=False)
    candidates = out[single & (out.status == "captured") & (delay >= pd.Timedelta(0)) & (delay < pd.Timedelta(hours=1))]
    step = max(len(candidates) // (len(EDGE_DELAYS) + 1), 1)  # spread over the period
    for position, edge in enumerate(EDGE_DELAYS.values(), start=1):
        index = candidates.index[min(position * step, len(candidates) - 1)]
        out.loc[index, "paid_at"] = times[out.loc[index, "order_id"]] + edge
    return out.sort_values(["paid_at", "payment_id"], kind="stable", ignore_index=True)


def order_lines(shop: Any) -> pd.DataFrame:
    """The order items with their order's time, sorted by it."""
    times = orders(shop)[["order_id", "order_time"]]
    lines = shop.order_items[["order_id", "line_no", "product_id", "quantity"]].merge(times, on="order_id")
    return lines.sort_values(["order_time", "order_id", "line_no"], kind="stable", ignore_index=True)


def price_changes(shop: Any, seed: int = 7) -> pd.DataFrame:
    """The price history of every product: its list price from before the first order, then 0-4 changes (up or
    down 5-25 %) at random times of the period. Sorted by ``valid_from``."""
    rng = np.random.default_rng(seed)
    start = shop.orders.order_ts.min().floor("D") - pd.Timedelta(days=1)
    end = orders(shop).order_time.quantile(0.99)
    rows = []
    for product in shop.products.itertuples():
        price = float(product.list_price)
        rows.append((product.product_id, price, start))
        changes = np.sort(rng.uniform(0, (end - start).total_seconds(), rng.integers(0, 5)))
        for offset in changes:
            price = round(price * float(rng.choice([0.75, 0.8, 0.9, 0.95, 1.05, 1.1, 1.2, 1.25])), 2)
            rows.append((product.product_id, price, start + pd.Timedelta(seconds=int(offset))))
    out = pd.DataFrame(rows, columns=["product_id", "price", "valid_from"])
    return out.sort_values(["valid_from", "product_id"], kind="stable", ignore_index=True)


def events(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows (timestamps as ``YYYY-MM-DD HH:MM:SS.mmm``), in the frame's order."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = _stamp(out[column])
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in out.to_dict("records")]


def publish(shop: Any, topics: dict[str, str]) -> dict[str, int]:
    """Send the four streams to their topics (keys: orders, payments, order_lines, prices); returns the counts."""
    from delab.streaming import flink_jobs

    frames = {"orders": orders(shop), "payments": payments(shop), "order_lines": order_lines(shop)}
    sent = {name: flink_jobs.produce_json(topics[name], events(frame)) for name, frame in frames.items()}
    sent["prices"] = produce_keyed(topics["prices"], events(price_changes(shop)), "product_id")
    return sent


def produce_keyed(topic: str, rows: list[dict], key: str) -> int:
    """Send each row as JSON with the JSON key ``{key: row[key]}`` (what an upsert-kafka table reads)."""
    from confluent_kafka import Producer

    from delab import config

    producer = Producer({"bootstrap.servers": config.kafka().bootstrap_servers, "linger.ms": 5})
    for row in rows:
        producer.produce(topic, value=json.dumps(row), key=json.dumps({key: row[key]}))
    if producer.flush(30) != 0:
        raise RuntimeError(f"could not deliver every message to {topic}: is Kafka up?")
    return len(rows)


# ------------------------------------------------------------------------------------------------ the tables


def _kafka(topic: str, bootstrap: str, bounded: bool) -> str:
    end = "'scan.bounded.mode' = 'latest-offset', " if bounded else ""
    return (
        f"'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}', "
        f"'scan.startup.mode' = 'earliest-offset', {end}'scan.watermark.emit.strategy' = 'on-event', "
        "'format' = 'json'"
    )


def _upsert(topic: str, bootstrap: str, bounded: bool) -> str:
    end = "'scan.bounded.mode' = 'latest-offset', " if bounded else ""
    return (
        f"'connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}', "
        f"{end}'scan.watermark.emit.strategy' = 'on-event', 'key.format' = 'json', 'value.format' = 'json', "
        "'value.fields-include' = 'ALL'"
    )


def source_ddl(topics: dict[str, str], bootstrap: str, suffix: str = "", bounded: bool = True) -> list[str]:
    """``CREATE TABLE`` for orders, payments and order_lines (append streams with a 1-minute watermark) and prices
    (a versioned table: primary key, event time ``valid_from``). ``suffix`` names a second set (``orders_live``)."""
    wm = "WATERMARK FOR {0} AS {0} - INTERVAL '1' MINUTE"
    return [
        f"""CREATE TABLE orders{suffix} (
    order_id BIGINT, customer_id BIGINT, order_time TIMESTAMP(3), channel STRING, {wm.format("order_time")}
) WITH ({_kafka(topics["orders"], bootstrap, bounded)})""",
        f"""CREATE TABLE payments{suffix} (
    payment_id BIGINT, order_id BIGINT, paid_at TIMESTAMP(3), amount DOUBLE, status STRING, {wm.format("paid_at")}
) WITH ({_kafka(topics["payments"], bootstrap, bounded)})""",
        f"""CREATE TABLE order_lines{suffix} (
    order_id BIGINT, line_no INT, product_id BIGINT, quantity INT, order_time TIMESTAMP(3),
    {wm.format("order_time")}
) WITH ({_kafka(topics["order_lines"], bootstrap, bounded)})""",
        f"""CREATE TABLE prices{suffix} (
    product_id BIGINT, price DOUBLE, valid_from TIMESTAMP(3), {wm.format("valid_from")},
    PRIMARY KEY (product_id) NOT ENFORCED
) WITH ({_upsert(topics["prices"], bootstrap, bounded)})""",
    ]


# ------------------------------------------------------------------------------------------ the pandas models


def interval_expected(
    orders: pd.DataFrame, payments: pd.DataFrame, lower: pd.Timedelta, upper: pd.Timedelta
) -> pd.DataFrame:
    """Each order with each payment of it made between ``order_time + lower`` and ``order_time + upper``
    (bounds included): what an interval join emits when no event is late."""
    pairs = orders.merge(payments, on="order_id")
    keep = (pairs.paid_at >= pairs.order_time + lower) & (pairs.paid_at <= pairs.order_time + upper)
    return pairs[keep].reset_index(drop=True)


def temporal_expected(lines: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Each order line with the price its product had at the order's time (the latest version whose
    ``valid_from`` is not after it): what an event-time temporal join emits."""
    left = lines.sort_values("order_time", kind="stable")
    right = prices.sort_values("valid_from", kind="stable")
    out = pd.merge_asof(left, right, left_on="order_time", right_on="valid_from", by="product_id")
    return out.dropna(subset=["price"]).reset_index(drop=True)


def latest_prices(prices: pd.DataFrame) -> pd.Series:
    """The last price of every product (what a regular join against the changelog ends up with)."""
    return prices.sort_values("valid_from", kind="stable").groupby("product_id").price.last()


# ----------------------------------------------------------------------------------------------- state size


def start(t_env: Any, statement: str, job_name: str) -> str:
    """Submit an INSERT as a job named ``job_name`` and return its id as soon as it runs (for unbounded jobs)."""
    from delab.streaming import flink_jobs

    flink_jobs.name_jobs(t_env, job_name)
    job_id = str(t_env.execute_sql(statement).get_job_client().get_job_id())
    state = flink_jobs.wait_for_state(job_id, ["RUNNING"])
    if state != "RUNNING":
        raise RuntimeError(f"job {job_name!r} ended {state}: {flink_jobs.failure_cause(job_id)}")
    return job_id


def checkpoints(job_id: str) -> dict:
    """The job's checkpoint statistics: ``GET /jobs/<id>/checkpoints``."""
    from delab.streaming import flink_jobs

    return flink_jobs.rest(f"/jobs/{job_id}/checkpoints")


def settle(job_id: str, sink: str, rows: int, timeout: float = 90) -> dict:
    """Wait until the job has written ``rows`` messages to ``sink`` and a checkpoint triggered after that has
    completed; return the checkpoint statistics then."""
    from delab.streaming import flink_jobs

    deadline = time.monotonic() + timeout
    while sum(flink_jobs.end_offsets(sink).values()) < rows:
        if time.monotonic() > deadline or flink_jobs.job_state(job_id) != "RUNNING":
            raise RuntimeError(f"the job wrote {sum(flink_jobs.end_offsets(sink).values())} of {rows} rows")
        time.sleep(0.3)
    done_at = time.time() * 1000
    while True:
        stats = checkpoints(job_id)
        latest = (stats.get("latest") or {}).get("completed")
        if latest and latest["trigger_timestamp"] > done_at:
            return stats
        if time.monotonic() > deadline:
            raise RuntimeError("no checkpoint completed in time: is checkpointing enabled for the job?")
        time.sleep(0.3)


def state_size(stats: dict) -> int | None:
    """The state size (bytes) of the latest completed checkpoint, None when none has completed yet."""
    latest = (stats.get("latest") or {}).get("completed")
    return None if latest is None else int(latest["state_size"])
