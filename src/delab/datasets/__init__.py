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
