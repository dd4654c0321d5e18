"""Datasets for the labs: the generated shop domain and real public data shipped inside PyPI packages.

Nothing is downloaded at run time: the shop is generated from a seed, and the public data sets come with
packages pinned in the lock files (see datasets/README.md for sources and licences).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from delab.datasets.shop import DEFECT_KINDS, Shop, cached, generate

__all__ = ["DEFECT_KINDS", "Shop", "cached", "nycflights13", "penguins", "shop"]


def shop(seed: int = 42, scale: float = 1.0, defect_rate: float = 0.01, late_fraction: float = 0.05) -> Shop:
    """A fresh copy of the fictional shop (customers, products, orders, order_items, payments, clicks)."""
    return generate(seed=seed, scale=scale, defect_rate=defect_rate, late_fraction=late_fraction)


def _package_data(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"the data package {package!r} is not installed: run `make setup`")
    return Path(spec.origin).parent / relative


NYCFLIGHTS13_TABLES = {
    "flights": "data/flights.csv.zip",
    "airlines": "data/airlines.csv",
    "airports": "data/airports.csv",
    "planes": "data/planes.csv",
    "weather": "data/weather.csv",
}


def nycflights13(table: str = "flights") -> pd.DataFrame:
    """Every flight that departed New York City in 2013 (and its airlines, airports, planes, weather). CC0."""
    if table not in NYCFLIGHTS13_TABLES:
        raise KeyError(f"nycflights13 has no table {table!r}; choose one of {', '.join(NYCFLIGHTS13_TABLES)}")
    # read the CSVs directly: the package's own __init__ imports pkg_resources, gone from current setuptools
    return pd.read_csv(_package_data("nycflights13", NYCFLIGHTS13_TABLES[table]))


def penguins(raw: bool = False) -> pd.DataFrame:
    """The Palmer Archipelago penguins (344 birds, 3 species). Data CC0, package MIT."""
    return pd.read_csv(_package_data("palmerpenguins", "data/penguins-raw.csv" if raw else "data/penguins.csv"))


_PG_TYPES = {"i": "bigint", "u": "bigint", "f": "double precision", "b": "boolean", "M": "timestamp"}


def _pg_type(series: pd.Series) -> str:
    kind = getattr(series.dtype, "kind", "O")
    return _PG_TYPES.get(kind, "text")


def to_postgres(
    frames: dict[str, pd.DataFrame], schema: str, primary_keys: dict[str, list[str]] | None = None, conn=None
) -> dict[str, int]:
    """(Re)create ``schema`` in the stack's Postgres and COPY each DataFrame into a table of the same name.

    Re-running replaces the schema, so a lab that calls this is idempotent. Returns rows loaded per table.
    """
    from delab import clients

    if not schema.replace("_", "").isalnum():
        raise ValueError(f"schema names are letters, digits and _ only, not {schema!r}")
    own = conn is None
    conn = conn or clients.postgres()
    loaded = {}
    try:
        with conn.transaction():
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
            for table, frame in frames.items():
                columns = ", ".join(f"{c} {_pg_type(frame[c])}" for c in frame.columns)
                keys = (primary_keys or {}).get(table)
                key_sql = f", PRIMARY KEY ({', '.join(keys)})" if keys else ""
                conn.execute(f"CREATE TABLE {schema}.{table} ({columns}{key_sql})")
                rows = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
                with conn.cursor().copy(f"COPY {schema}.{table} ({', '.join(frame.columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                loaded[table] = len(frame)
    finally:
        if own:
            conn.close()
    return loaded
