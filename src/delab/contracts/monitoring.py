"""Quality monitoring for lab 05.03: the shop's orders as daily batches on a Kafka topic, a baseline learned from
normal days, anomalies injected mid-run (volume, freshness, schema, distribution), alerts to a webhook, and a
quarantine in Postgres from which fixed batches are replayed.

Everything a check judges is computed from the data (row counts, the batch's own ``loaded_at``, column names,
value distributions), never from wall-clock timings: the verdict is the same on a busy and an idle machine.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from delab import config, datasets
from delab.datasets.shop import DAYS, START

ALERT_KINDS = ("volume", "freshness", "schema", "drift")
COLUMNS = {
    "order_id": "int64",
    "customer_id": "int64",
    "order_ts": "datetime64[ns]",
    "channel": "object",
    "amount": "float64",
}
BASELINE_DAYS = 14  # the first two weeks are known to be normal
# day index -> what goes wrong in that day's batch (the run's ground truth)
ANOMALIES = {16: "volume", 18: "freshness", 20: "schema", 23: "drift"}
LOAD_HOUR = 2  # a day's batch lands at 02:00 the next morning


def daily_batches(data: datasets.Shop) -> dict[int, pd.DataFrame]:
    """Day index -> that day's orders (order id, customer, time, channel, amount = its items' total), stamped
    with ``loaded_at``, the time the batch landed."""
    totals = (data.order_items.quantity * data.order_items.unit_price).groupby(data.order_items.order_id).sum()
    orders = data.orders.assign(amount=data.orders.order_id.map(totals).round(2).fillna(0.0))
    day = ((orders.order_ts - START) / pd.Timedelta(days=1)).apply(np.floor)
    batches = {}
    for d in range(DAYS):
        rows = orders.loc[day == d, list(COLUMNS)].sort_values("order_ts", kind="stable").reset_index(drop=True)
        rows["loaded_at"] = START + pd.Timedelta(days=d + 1, hours=LOAD_HOUR)
        batches[d] = rows
    return batches


def inject_anomalies(batches: dict[int, pd.DataFrame], seed: int = 0) -> dict[int, pd.DataFrame]:
    """A copy of the run with ``ANOMALIES`` injected: a partial extract (35 % of the rows), yesterday's file
    re-sent, ``amount`` renamed by an upstream release, amounts sent in cents."""
    rng = np.random.default_rng(seed)
    out = {d: frame.copy() for d, frame in batches.items()}
    for d, kind in ANOMALIES.items():
        frame = out[d]
        if kind == "volume":
            keep = np.sort(rng.choice(len(frame), int(len(frame) * 0.35), replace=False))
            out[d] = frame.iloc[keep].reset_index(drop=True)
        elif kind == "freshness":
            out[d] = batches[d - 1].assign(loaded_at=frame.loaded_at.iloc[0])
        elif kind == "schema":
            out[d] = frame.rename(columns={"amount": "total_amount"})
        elif kind == "drift":
            out[d] = frame.assign(amount=(frame.amount * 100).round(0))
    return out


@dataclass
class Baseline:
    """What normal looks like, learned from normal batches: rows per day, freshness lags, columns and types,
    and the amount distribution (decile edges and the share of baseline rows in each bin)."""

    rows: list[int]
    lags_hours: list[float]
    columns: dict[str, str]
    amounts: np.ndarray = field(repr=False)
    edges: np.ndarray = field(repr=False)

    @classmethod
    def learn(cls, batches: list[pd.DataFrame]) -> Baseline:
        amounts = np.concatenate([b.amount.to_numpy(dtype=float) for b in batches])
        edges = np.unique(np.quantile(amounts, np.linspace(0, 1, 11)))
        return cls(
            rows=[len(b) for b in batches],
            lags_hours=[freshness_lag_hours(b) for b in batches],
            columns={c: str(t) for c, t in batches[0].dtypes.items()},
            amounts=amounts,
            edges=edges,
        )

    @property
    def median_rows(self) -> float:
        return float(np.median(self.rows))


def freshness_lag_hours(batch: pd.DataFrame) -> float:
    """Hours between the newest event in a batch and the moment the batch landed (its own ``loaded_at``)."""
    if batch.empty or "order_ts" not in batch or "loaded_at" not in batch:
        return float("nan")
    return float((batch.loaded_at.max() - batch.order_ts.max()) / pd.Timedelta(hours=1))


def bin_shares(values, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin between ``edges`` (values outside go to the first or last bin)."""
    values = np.asarray(values, dtype=float)
    inner = edges[1:-1]
    counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(edges) - 1)
    return counts / max(1, counts.sum())


def reference_psi(baseline_values, batch_values, bins: int = 10, eps: float = 1e-4) -> float:
    """The population stability index with bins at the baseline's quantiles; empty bins floored at ``eps``."""
    baseline_values = np.asarray(baseline_values, dtype=float)
    edges = np.unique(np.quantile(baseline_values, np.linspace(0, 1, bins + 1)))
    expected = np.maximum(bin_shares(baseline_values, edges), eps)
    actual = np.maximum(bin_shares(batch_values, edges), eps)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def batch_kpis(batch: pd.DataFrame, known_customers: set[int]) -> dict[str, float]:
    """Per-batch KPIs for the history: completeness, uniqueness and consistency (share of rows passing)."""
    n = len(batch)
    if n == 0:
        return {"completeness": float("nan"), "uniqueness": float("nan"), "consistency": float("nan")}
    required = [c for c in COLUMNS if c in batch]
    complete = batch[required].notna().all(axis=1).mean() if len(required) == len(COLUMNS) else 0.0
    return {
        "completeness": round(float(complete), 6),
        "uniqueness": round(float((~batch.order_id.duplicated(keep=False)).mean()), 6),
        "consistency": round(float(batch.customer_id.isin(known_customers).mean()), 6),
    }


# ---------------------------------------------------------------------------------------------- on Kafka


def to_messages(day: int, batch: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    """A batch as Kafka records: key = the batch's day, one JSON row per record, then an end-of-batch marker
    (a producer of daily files says when a file is complete; the consumer evaluates the batch then)."""
    key = str(day).encode()
    datetimes = [c for c in batch.columns if str(batch[c].dtype).startswith("datetime")]
    rows = batch.assign(**{c: batch[c].astype(str) for c in datetimes})
    records = [(key, json.dumps({"batch": day, "row": row}).encode()) for row in rows.to_dict(orient="records")]
    return [*records, (key, json.dumps({"batch": day, "end": True, "rows": len(batch)}).encode())]


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in ("order_ts", "loaded_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    return frame


def produce_run(topic: str, batches: dict[int, pd.DataFrame], pause: float = 0.0) -> threading.Thread:
    """Send the batches day after day from a background thread (the upstream system); returns the thread."""
    from confluent_kafka import Producer

    def run() -> None:
        producer = Producer({"bootstrap.servers": config.kafka().bootstrap_servers, "linger.ms": 5})
        for day, batch in sorted(batches.items()):
            for key, value in to_messages(day, batch):
                producer.produce(topic, key=key, value=value)
            producer.flush(30)
            if pause:
                time.sleep(pause)

    thread = threading.Thread(target=run, name=f"producer {topic}", daemon=True)
    thread.start()
    return thread


def consume_batches(topic: str, group: str, expected: int, timeout: float = 60.0) -> Iterator[tuple[int, pd.DataFrame]]:
    """Read the topic as it is written and yield (day, batch) each time a batch's end marker arrives; stops
    after ``expected`` batches (or when nothing arrived for ``timeout`` seconds). Offsets are committed once
    a batch has been handed over, so a restarted monitor resumes after the last batch it finished."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka().bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    pending: dict[int, list[dict]] = {}
    done = 0
    idle_since = time.monotonic()
    try:
        while done < expected and time.monotonic() - idle_since < timeout:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            idle_since = time.monotonic()
            record = json.loads(message.value())
            day = int(record["batch"])
            if not record.get("end"):
                pending.setdefault(day, []).append(record["row"])
                continue
            yield day, _frame(pending.pop(day, []))
            consumer.commit(message=message, asynchronous=False)
            done += 1
    finally:
        consumer.close()


# ----------------------------------------------------------------------------------------- quarantine


def create_tables(conn, schema: str) -> None:
    """(Re)create ``accepted_orders`` (one row per order received, with its batch day) and ``quarantine`` (whole
    batches with the reasons they were held back) in ``schema``. Both have a primary key: the stack's Postgres
    publishes every table for CDC, and a published table needs a replica identity to accept deletes."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.execute(f"DROP TABLE IF EXISTS {schema}.accepted_orders, {schema}.quarantine")
    conn.execute(
        f"""CREATE TABLE {schema}.accepted_orders (
              id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, batch_day int NOT NULL, order_id bigint NOT NULL,
              customer_id bigint, order_ts timestamp, channel text, amount double precision,
              loaded_at timestamp)"""
    )
    conn.execute(
        f"""CREATE TABLE {schema}.quarantine (batch_day int PRIMARY KEY, reasons text[] NOT NULL,
              rows jsonb NOT NULL, held_at timestamptz NOT NULL DEFAULT now())"""
    )


def accept(conn, schema: str, day: int, batch: pd.DataFrame) -> int:
    """Load a batch (replacing any earlier load of the same day: replays are idempotent)."""
    columns = [*COLUMNS, "loaded_at"]
    with conn.transaction():
        conn.execute(f"DELETE FROM {schema}.accepted_orders WHERE batch_day = %s", (day,))
        with conn.cursor().copy(f"COPY {schema}.accepted_orders (batch_day, {', '.join(columns)}) FROM STDIN") as copy:
            for row in batch[columns].itertuples(index=False, name=None):
                copy.write_row((day, *row))
        conn.execute(f"DELETE FROM {schema}.quarantine WHERE batch_day = %s", (day,))
    return len(batch)


def quarantine(conn, schema: str, day: int, batch: pd.DataFrame, reasons: list[str]) -> None:
    """Hold a batch back with its reasons (the rows kept as JSON, whatever their columns)."""
    conn.execute(
        f"""INSERT INTO {schema}.quarantine (batch_day, reasons, rows) VALUES (%s, %s, %s)
            ON CONFLICT (batch_day) DO UPDATE SET reasons = excluded.reasons, rows = excluded.rows,
              held_at = now()""",
        (day, reasons, batch.to_json(orient="records", date_format="iso")),
    )


def quarantined(conn, schema: str) -> dict[int, tuple[list[str], pd.DataFrame]]:
    """Day -> (reasons, rows) of every batch in quarantine."""
    out = {}
    for day, reasons, rows in conn.execute(
        f"SELECT batch_day, reasons, rows FROM {schema}.quarantine ORDER BY batch_day"
    ).fetchall():
        out[day] = (list(reasons), _frame(rows))
    return out
