"""Data-quality tools for lab 02.06: a column profile and the daily load log the volume monitor reads."""

from __future__ import annotations

import pandas as pd


def profile(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per column: type, share of missing values, distinct values, min and max."""
    rows = []
    for column in frame.columns:
        values = frame[column]
        present = values.dropna()
        rows.append(
            {
                "column": column,
                "dtype": str(values.dtype),
                "null_%": round(100 * values.isna().mean(), 2),
                "distinct": int(present.nunique()),
                "min": present.min() if len(present) else None,
                "max": present.max() if len(present) else None,
            }
        )
    return pd.DataFrame(rows)


def create_load_log(conn, schema: str) -> None:
    """(Re)create ``{schema}.load_log``: one row per load run (day loaded, rows, when)."""
    conn.execute(f"DROP TABLE IF EXISTS {schema}.load_log")
    conn.execute(
        f"""CREATE TABLE {schema}.load_log (run_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
              day date NOT NULL, rows_loaded bigint NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now())"""
    )


def daily_volumes(conn, schema: str) -> pd.Series:
    """Rows loaded per day according to the load log (summing re-runs), as a Series indexed by date."""
    rows = conn.execute(f"SELECT day, sum(rows_loaded) FROM {schema}.load_log GROUP BY day ORDER BY day").fetchall()
    return pd.Series({day: int(n) for day, n in rows}, name="rows_loaded")
