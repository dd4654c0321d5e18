"""Data-quality KPIs for lab 05.03: the shop loaded into Postgres and DuckDB, Great Expectations run on both,
and a KPI history kept in Postgres.

Why Great Expectations (1.24) here: its SQL data source pushes every expectation down to Postgres as SQL (the
rows never leave the database), each result carries ``element_count`` and ``unexpected_count`` — exactly what a
KPI is made of — and it is the framework learners meet most in job descriptions. Soda Core 4 needs one data
source package per engine (soda-postgres, soda-duckdb), not in the lock; pandera's SQL path goes through ibis,
whose DuckDB backend did not run against duckdb 1.5.5 here. GE 1.24 has no DuckDB data source without the
``duckdb-engine`` SQLAlchemy dialect (not in the lock either), so on DuckDB the engine prepares the tables and
GE validates them through its pandas data source.

KPI = share of rows that pass a dimension's rule, ``1 - unexpected / element_count``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from delab import clients, config, datasets

DIMENSIONS = ("completeness", "validity", "uniqueness", "consistency", "timeliness", "accuracy")
TABLES = ("customers", "orders", "orders_checked")
SEED, SCALE = 42, 0.25
# the load happened on the morning after the shop's four weeks of data: anything later is from the future
AS_OF = pd.Timestamp("2026-03-29 06:00:00")

# orders_checked: one row per order id with what consistency and accuracy need from the other tables
ORDERS_CHECKED_SQL = """
SELECT o.order_id, o.customer_id, c.customer_id IS NOT NULL AS customer_known, i.items_total, p.paid_amount
FROM (SELECT DISTINCT order_id, customer_id FROM {s}.orders) o
LEFT JOIN {s}.customers c ON c.customer_id = o.customer_id
LEFT JOIN (SELECT order_id, round(CAST(sum(quantity * unit_price) AS numeric), 2) AS items_total
             FROM {s}.order_items GROUP BY order_id) i ON i.order_id = o.order_id
LEFT JOIN (SELECT order_id, round(CAST(max(amount) AS numeric), 2) AS paid_amount
             FROM {s}.payments WHERE status <> 'failed' GROUP BY order_id) p ON p.order_id = o.order_id
"""


def shop() -> datasets.Shop:
    """The lab's shop (deterministic; about 5,000 orders and their injected defects)."""
    return datasets.shop(seed=SEED, scale=SCALE)


def shop_frames(data: datasets.Shop | None = None) -> dict[str, pd.DataFrame]:
    data = data or shop()
    return {name: data.table(name) for name in ("customers", "orders", "order_items", "payments")}


def load_postgres(schema: str, data: datasets.Shop | None = None) -> dict[str, int]:
    """(Re)create ``schema`` with the shop's tables and ``orders_checked`` (one row per order, derived by a
    join); returns rows loaded per table."""
    loaded = datasets.to_postgres(shop_frames(data), schema)
    with clients.postgres() as conn:
        conn.execute(f"CREATE TABLE {schema}.orders_checked AS {ORDERS_CHECKED_SQL.format(s=schema)}")
    return loaded


def load_duckdb(con, data: datasets.Shop | None = None, schema: str = "shop") -> None:
    """The same tables (and orders_checked) in a DuckDB connection (schema ``schema``)."""
    con.execute(f"CREATE OR REPLACE SCHEMA {schema}")
    for name, frame in shop_frames(data).items():
        con.register(f"_{name}", frame)
        con.execute(f"CREATE TABLE {schema}.{name} AS SELECT * FROM _{name}")
        con.unregister(f"_{name}")
    con.execute(f"CREATE TABLE {schema}.orders_checked AS {ORDERS_CHECKED_SQL.format(s=schema)}")


def expected_unexpected(data: datasets.Shop | None = None) -> dict[str, int]:
    """Ground truth: how many rows each dimension's rule must flag, from the defects the generator injected.

    Uniqueness flags both copies of a duplicated order (that is how GE counts non-unique values); accuracy only
    sees the orders with a payment (a cancelled order has none to compare with)."""
    data = data or shop()
    kinds = data.defects.groupby("kind").size().to_dict()
    negative = set(data.defects.loc[data.defects.kind == "negative_quantity", "key"])
    paid = set(data.payments.loc[data.payments.status != "failed", "order_id"])
    return {
        "completeness": kinds.get("missing_email", 0),
        "validity": kinds.get("lowercase_country", 0),
        "uniqueness": 2 * kinds.get("duplicate_order", 0),
        "consistency": _unknown_customer_orders(data),
        "timeliness": _future_rows(data),
        "accuracy": len(negative & paid),
    }


def _unknown_customer_orders(data: datasets.Shop) -> int:
    distinct = data.orders.drop_duplicates("order_id")
    return int((~distinct.customer_id.isin(data.customers.customer_id)).sum())


def _future_rows(data: datasets.Shop) -> int:
    return int((data.orders.order_ts > AS_OF).sum())


# ------------------------------------------------------------------------------------------ Great Expectations


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


@dataclass
class Runner:
    """A Great Expectations ephemeral context with one batch per table, on Postgres (SQL pushed down) or on
    DuckDB (tables prepared by DuckDB, validated through GE's pandas data source)."""

    engine: str
    batches: dict[str, Any]

    def validate(self, table: str, expectation) -> dict:
        """Run one expectation on one table: success, rows, unexpected rows, KPI."""
        if table not in self.batches:
            raise KeyError(f"no table {table!r}; choose one of {', '.join(self.batches)}")
        result = self.batches[table].validate(expectation)
        details = result.result or {}
        rows = details.get("element_count")
        unexpected = details.get("unexpected_count")
        if unexpected is None and "observed_value" in details:  # row-count style expectations
            unexpected = details["observed_value"]
        kpi = None if not rows else round(1 - (unexpected or 0) / rows, 6)
        return {"success": bool(result.success), "rows": rows, "unexpected": unexpected, "kpi": kpi}


def _context():
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def postgres_runner(schema: str) -> Runner:
    """GE batches on the Postgres tables of ``schema`` (every expectation runs as SQL in Postgres)."""
    pg = config.postgres()
    context = _context()
    source = context.data_sources.add_postgres(
        f"pg_{schema}",
        connection_string=f"postgresql+psycopg://{pg.user}:{pg.password}@{pg.host}:{pg.port}/{pg.database}",
    )
    batches = {}
    for table in TABLES:
        asset = source.add_table_asset(table, table_name=table, schema_name=schema)
        batches[table] = asset.add_batch_definition_whole_table("all").get_batch()
    return Runner("postgres", batches)


def duckdb_runner(con, schema: str = "shop") -> Runner:
    """GE batches on DuckDB's tables (DuckDB computes orders_checked; GE validates the frames)."""
    context = _context()
    source = context.data_sources.add_pandas("duckdb")
    batches = {}
    for table in TABLES:
        frame = con.execute(f"SELECT * FROM {schema}.{table}").df()
        asset = source.add_dataframe_asset(table)
        batches[table] = asset.add_batch_definition_whole_dataframe("all").get_batch(
            batch_parameters={"dataframe": frame}
        )
    return Runner("duckdb", batches)


def run_suite(runner: Runner, suite: dict[str, tuple[str, Any]]) -> pd.DataFrame:
    """One row per dimension: engine, table, expectation, rows, unexpected rows, KPI."""
    rows = []
    for dimension, (table, expectation) in suite.items():
        rows.append(
            {
                "engine": runner.engine,
                "dimension": dimension,
                "table": table,
                "expectation": type(expectation).__name__,
                **runner.validate(table, expectation),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------- history


def create_history(conn, schema: str) -> None:
    """``{schema}.kpi_history``: one row per KPI measured (kept across runs: it is the history)."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {schema}.kpi_history (
              id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
              run_id text NOT NULL, measured_for date NOT NULL, engine text NOT NULL, dimension text NOT NULL,
              tbl text NOT NULL, rows_checked bigint, unexpected bigint, kpi double precision,
              recorded_at timestamptz NOT NULL DEFAULT now(),
              UNIQUE (run_id, measured_for, engine, dimension))"""
    )


def record(conn, schema: str, run_id: str, measured_for, results: pd.DataFrame) -> int:
    """Upsert a run's KPIs (a re-run of the same run id replaces its rows: idempotent). Returns rows written."""
    with conn.transaction():
        for row in results.itertuples(index=False):
            conn.execute(
                f"""INSERT INTO {schema}.kpi_history
                      (run_id, measured_for, engine, dimension, tbl, rows_checked, unexpected, kpi)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (run_id, measured_for, engine, dimension) DO UPDATE SET
                      rows_checked = excluded.rows_checked, unexpected = excluded.unexpected, kpi = excluded.kpi,
                      tbl = excluded.tbl, recorded_at = now()""",
                (run_id, measured_for, row.engine, row.dimension, row.table, row.rows, row.unexpected, row.kpi),
            )
    return len(results)


def history(conn, schema: str) -> pd.DataFrame:
    rows = conn.execute(
        f"""SELECT run_id, measured_for, engine, dimension, tbl, rows_checked, unexpected, kpi
              FROM {schema}.kpi_history ORDER BY measured_for, engine, dimension"""
    ).fetchall()
    return pd.DataFrame(
        rows, columns=["run_id", "measured_for", "engine", "dimension", "table", "rows", "unexpected", "kpi"]
    )
