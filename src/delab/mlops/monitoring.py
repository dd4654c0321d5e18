"""Monitoring a model in production (lab 06.05): the monitored server, a normal and a shifted week of orders,
predictions logged to Postgres with their labels arriving days later.

* ``serve(model, lab)`` — ``delab.mlops.monitored_service`` on a free loopback port (a ``LocalServer``).
* ``split_weeks(frame)`` — a reference period and a "current week" drawn from the same orders (no drift);
  ``shifted(week)`` — the same week during an electronics promotion pushed in the app (drift in a few features,
  and in the predictions).
* ``log_predictions(...)`` / ``arrive_labels(...)`` — the predictions table and the labels that come later (a
  delivered order's value is known once it is not returned: one to six days).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from delab import clients, config
from delab.mlops import shop_models
from delab.servers import LocalServer, free_port

SHIFTED_COLUMNS = ("units_electronics", "n_units", "channel_app", "channel_marketplace")
WEEK_START = pd.Timestamp("2026-03-23", tz="UTC")


def serve(model, lab: str) -> LocalServer:
    """Save ``model`` and start the monitored server for it (stopped with ``.stop()`` or when the kernel ends)."""
    import joblib

    folder = config.lab_dir(lab)
    path = Path(folder) / "monitored_model.joblib"
    joblib.dump(model, path)
    port = free_port()
    argv = [sys.executable, "-m", "delab.mlops.monitored_service", "--model", str(path), "--port", str(port)]
    server = LocalServer("monitored-model", argv, port=port, ready="/healthz", log_dir=folder / "logs", timeout=90)
    return server.start().wait_ready()


def split_weeks(frame: pd.DataFrame, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, current): 75 % and 25 % of the orders, drawn at random — the same distribution."""
    rng = np.random.default_rng(seed)
    current = rng.random(len(frame)) < 0.25
    return frame[~current].reset_index(drop=True), frame[current].reset_index(drop=True)


def shifted(week: pd.DataFrame, seed: int = 11) -> pd.DataFrame:
    """The week during a promotion: half the orders add electronics units, and web orders move to the app."""
    rng = np.random.default_rng(seed)
    out = week.copy()
    promoted = rng.random(len(out)) < 0.5
    extra = np.where(promoted, rng.integers(1, 4, len(out)), 0).astype("float32")
    out["units_electronics"] = out["units_electronics"] + extra
    out["n_units"] = out["n_units"] + extra
    to_app = (out["channel_app"] == 0) & (out["channel_marketplace"] == 0) & (rng.random(len(out)) < 0.6)
    out.loc[to_app, "channel_app"] = 1.0
    moved = (out["channel_marketplace"] == 1) & (rng.random(len(out)) < 0.5)
    out.loc[moved, ["channel_marketplace", "channel_app"]] = [0.0, 1.0]
    if shop_models.TARGET in out:
        out[shop_models.TARGET] = out[shop_models.TARGET] + extra * 180.0  # electronics are dear
    return out


def log_predictions(schema: str, week: pd.DataFrame, predictions: np.ndarray, seed: int = 5) -> pd.DataFrame:
    """(Re)create ``<schema>.predictions`` and ``<schema>.labels``: one prediction per order of the week, spread
    over its seven days; labels empty. Returns the predictions as written."""
    rng = np.random.default_rng(seed)
    offsets = pd.to_timedelta(rng.integers(0, 7 * 24 * 3600, len(week)), unit="s")
    frame = pd.DataFrame(
        {
            "order_id": week["order_id"].astype("int64").to_numpy(),
            "predicted_at": (WEEK_START + offsets).to_numpy(),
            "predicted_value": np.round(np.asarray(predictions, dtype=float), 2),
        }
    ).sort_values("predicted_at", ignore_index=True)
    with clients.postgres() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {schema}.predictions, {schema}.labels")
        conn.execute(
            f"CREATE TABLE {schema}.predictions (order_id bigint PRIMARY KEY, predicted_at timestamptz NOT NULL, "
            "predicted_value double precision NOT NULL)"
        )
        conn.execute(
            f"CREATE TABLE {schema}.labels (order_id bigint PRIMARY KEY, actual_value double precision NOT NULL, "
            "labelled_at timestamptz NOT NULL)"
        )
        with conn.cursor().copy(f"COPY {schema}.predictions FROM STDIN") as copy:
            for row in frame.itertuples(index=False):
                copy.write_row((int(row.order_id), row.predicted_at.to_pydatetime(), float(row.predicted_value)))
    return frame


def arrive_labels(schema: str, week: pd.DataFrame, as_of: pd.Timestamp, seed: int = 6) -> int:
    """Insert the labels known at ``as_of``: an order's value is confirmed 1–6 days after its prediction (some
    never: cancelled). Idempotent; returns how many labels exist now."""
    rng = np.random.default_rng(seed)
    with clients.postgres() as conn:
        predicted = pd.DataFrame(
            conn.execute(f"SELECT order_id, predicted_at FROM {schema}.predictions ORDER BY order_id").fetchall(),
            columns=["order_id", "predicted_at"],
        )
        actual = week.set_index("order_id")[shop_models.TARGET].reindex(predicted.order_id).to_numpy()
        delay = pd.to_timedelta(rng.integers(24 * 3600, 6 * 24 * 3600, len(predicted)), unit="s")
        labelled_at = pd.to_datetime(predicted.predicted_at, utc=True) + delay
        known = (labelled_at <= as_of) & (rng.random(len(predicted)) < 0.92)
        rows = [
            (int(oid), float(value), when.to_pydatetime())
            for oid, value, when, ok in zip(predicted.order_id, actual, labelled_at, known, strict=True)
            if ok
        ]
        conn.cursor().executemany(
            f"INSERT INTO {schema}.labels VALUES (%s, %s, %s) ON CONFLICT (order_id) DO NOTHING",
            rows,
        )
        return conn.execute(f"SELECT count(*) FROM {schema}.labels").fetchone()[0]
