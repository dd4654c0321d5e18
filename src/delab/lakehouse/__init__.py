"""Lakehouse helpers for module 04: one Iceberg catalog shared by pyiceberg, Flink and DuckDB.

The catalog is a SQL (JDBC) catalog whose tables live in the stack's Postgres and whose data and metadata files
live in the stack's object store, so a table written by a Flink job is read by pyiceberg and the other way round.
"""

from __future__ import annotations

from typing import Any

from delab import config

CATALOG_NAME = "lake"


def warehouse() -> str:
    """Where the catalog puts new tables: ``s3://<bucket>/warehouse`` (Flink's catalog uses the same)."""
    return f"s3://{config.s3().bucket}/warehouse"


def catalog_properties(name: str = CATALOG_NAME) -> dict[str, str]:
    """pyiceberg properties of the shared catalog (also what a learner would put in ``.pyiceberg.yaml``)."""
    pg, s3 = config.postgres(), config.s3()
    return {
        "type": "sql",
        "uri": f"postgresql+psycopg://{pg.user}:{pg.password}@{pg.host}:{pg.port}/{pg.database}",
        "warehouse": warehouse(),
        "s3.endpoint": s3.endpoint,
        "s3.access-key-id": s3.access_key,
        "s3.secret-access-key": s3.secret_key,
        "s3.region": s3.region,
        "s3.path-style-access": "true",
    }


_catalogs: dict[tuple, Any] = {}


def catalog(name: str = CATALOG_NAME, **overrides: str) -> Any:
    """A pyiceberg ``SqlCatalog`` on the stack (its tables are created on first use).

    One per process and set of properties: each ``SqlCatalog`` opens its own SQLAlchemy pool, whose connections
    stay open until the object is garbage-collected, and checks that made a catalog per call ran the stack's
    Postgres out of connection slots in CI. ``pool_pre_ping`` lets a kept catalog survive a Postgres restart."""
    from pyiceberg.catalog.sql import SqlCatalog

    properties = {**catalog_properties(name), "pool_pre_ping": "true", **overrides}
    key = (name, tuple(sorted(properties.items())))
    if key not in _catalogs:
        _catalogs[key] = SqlCatalog(name, **properties)
    return _catalogs[key]


def fresh_namespace(cat: Any, namespace: str) -> str:
    """Create ``namespace`` in the catalog after dropping it and every table in it, and deleting every object
    under its folder of the warehouse (rather than pyiceberg's purge, which leaves metadata files behind and warns
    about data files a lab already removed), so a lab can run twice in a row. Returns the namespace."""
    from pyiceberg.exceptions import NoSuchNamespaceError

    from delab import clients

    try:
        for identifier in cat.list_tables(namespace):
            cat.drop_table(identifier)
        cat.drop_namespace(namespace)
    except NoSuchNamespaceError:
        pass
    clients.s3_delete_prefix(f"warehouse/{namespace}/")
    cat.create_namespace(namespace)
    return namespace
