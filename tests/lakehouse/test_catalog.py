"""The shared Iceberg catalog: Postgres-backed, data in the object store, and a namespace that starts clean."""

from __future__ import annotations

import pyarrow as pa
import pytest

from delab import clients, lakehouse

pytestmark = pytest.mark.stack


def test_fresh_namespace_drops_tables_and_their_files():
    cat = lakehouse.catalog()
    ns = lakehouse.fresh_namespace(cat, "test_catalog_smoke")
    table = cat.create_table(f"{ns}.t", schema=pa.schema([("id", pa.int64())]))
    table.append(pa.table({"id": [1, 2, 3]}))
    assert cat.load_table(f"{ns}.t").scan().to_arrow().num_rows == 3
    assert table.metadata_location.startswith(lakehouse.warehouse() + f"/{ns}/")
    assert clients.s3_keys(f"warehouse/{ns}/")
    lakehouse.fresh_namespace(cat, ns)
    assert cat.list_tables(ns) == [] and clients.s3_keys(f"warehouse/{ns}/") == []
    cat.drop_namespace(ns)


def test_one_catalog_per_process_so_checks_do_not_exhaust_postgres():
    """Checks call lakehouse.catalog() on every run; each SqlCatalog used to keep its own connection pool."""
    cat = lakehouse.catalog()
    assert lakehouse.catalog() is cat
    assert lakehouse.catalog(**{"s3.region": "eu-west-1"}) is not cat  # other properties, another catalog
    with clients.postgres() as conn:
        before = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()
        for _ in range(30):
            lakehouse.catalog().list_namespaces()
        after = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()
    assert after[0] - before[0] <= 1
