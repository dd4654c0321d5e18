"""Query engines on the shared lakehouse.

DuckDB with its Iceberg and httpfs extensions, loaded offline from the extension wheels of PyPI, reading the
stack's object store with DuckDB's own S3 reader (an S3 secret points it at the stack's endpoint) and all its
threads. What a query really fetched — the honest signal behind "pruning", "pushdown" and "caching" in module 04 —
comes from DuckDB's profile: the Iceberg scan's data files and httpfs's HTTP statistics::

    from delab.lakehouse import engines
    con = engines.duckdb_iceberg()
    reads = engines.measure(con, f"SELECT count(*) FROM iceberg_scan('{table.metadata_location}')")
    print(reads.data_files, reads.kib_fetched, reads.gets)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from delab import config
from delab.lakehouse import ops

DUCKDB_EXTENSIONS = ("avro", "iceberg", "httpfs")  # iceberg reads its manifests with avro; httpfs reads s3://
SECRET_NAME = "delab_s3"


@dataclass(frozen=True)
class QueryReads:
    """What one run of a query read, from DuckDB's EXPLAIN ANALYZE."""

    data_files: int  # the Iceberg scans' "Total Files Read"
    kib_fetched: float  # httpfs: bytes received from the object store (metadata, manifests, footers, data)
    gets: int  # httpfs: GET requests (ranged reads)
    heads: int  # httpfs: HEAD requests (object sizes; the Iceberg scan knows most from its manifests)
    ms: float  # wall time of the profiled run


_UNITS = {"bytes": 1 / 1024, "KiB": 1.0, "MiB": 1024.0, "GiB": 1024.0**2}


def http_stats(profile: str) -> dict[str, float]:
    """The "HTTPFS HTTP Stats" block of an EXPLAIN ANALYZE output: KiB in, GET and HEAD counts (zeros if absent,
    e.g. a query that read nothing remote)."""
    received = re.search(r"in:\s*([\d.]+)\s*(bytes|KiB|MiB|GiB)", profile)
    gets = re.search(r"#GET:\s*(\d+)", profile)
    heads = re.search(r"#HEAD:\s*(\d+)", profile)
    return {
        "kib": round(float(received.group(1)) * _UNITS[received.group(2)], 1) if received else 0.0,
        "gets": int(gets.group(1)) if gets else 0,
        "heads": int(heads.group(1)) if heads else 0,
    }


def measure(con: Any, sql: str) -> QueryReads:
    """Run ``sql`` once under EXPLAIN ANALYZE and say what it read and how long it took."""
    started = time.perf_counter()
    profile = con.sql("EXPLAIN ANALYZE " + sql).fetchall()[0][1]
    ms = round(1000 * (time.perf_counter() - started), 1)
    http = http_stats(profile)
    return QueryReads(ops.files_read(profile), http["kib"], int(http["gets"]), int(http["heads"]), ms)


def _extension_directory() -> str:
    folder = config.state_dir() / "duckdb-extensions"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def s3_secret_sql(name: str = SECRET_NAME) -> str:
    """``CREATE SECRET`` for the stack's object store (endpoint, path-style addressing, plain HTTP locally)."""
    s3 = config.s3()
    scheme, _, host = s3.endpoint.partition("://")
    return (
        f"CREATE OR REPLACE SECRET {name} (TYPE s3, KEY_ID '{s3.access_key}', SECRET '{s3.secret_key}', "
        f"ENDPOINT '{host.rstrip('/')}', URL_STYLE 'path', USE_SSL {str(scheme == 'https').lower()}, "
        f"REGION '{s3.region}')"
    )


def duckdb_iceberg(database: str = ":memory:", threads: int | None = None) -> Any:
    """A DuckDB connection with the Iceberg and httpfs extensions loaded (offline, from the PyPI extension wheels)
    and an S3 secret for the stack's object store, so ``iceberg_scan('s3://…')`` and ``read_parquet('s3://…')``
    work. DuckDB runs with its own threads (one per core) unless ``threads`` says otherwise."""
    import duckdb
    import duckdb_extensions

    con = duckdb.connect(database)
    con.execute(f"SET extension_directory = '{_extension_directory()}'")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    for name in DUCKDB_EXTENSIONS:
        duckdb_extensions.import_extension(name, con=con)
        con.execute(f"LOAD {name}")
    con.execute(s3_secret_sql())
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    return con
