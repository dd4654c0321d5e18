#!/usr/bin/env python3
"""DuckDB reading Iceberg on the stack's object store: through an fsspec filesystem on one thread (how module 04
read S3 before the httpfs extension was locked) versus DuckDB's own S3 reader (httpfs) with its threads.

    .venv/bin/python scripts/bench_duckdb_s3.py [--scale 4] [--repeat 5]

Builds a day-partitioned Iceberg table of the shop's clicks (lab 06's queries, ``--scale`` times the lab's week)
in a scratch namespace, runs each query ``--repeat`` times per engine with DuckDB's file cache off, and prints the
best and median milliseconds and what each engine fetched. Needs the stack (`delab stack up`).
"""

from __future__ import annotations

import argparse
import statistics
import time

from fsspec.implementations.arrow import ArrowFSWrapper

from delab import clients, lakehouse
from delab.lakehouse import engines, ops

NAMESPACE = "bench_duckdb_s3"
QUERIES = {
    "count(*), no filter": "SELECT count(*) FROM {t}",
    "one day (pushdown)": "SELECT count(*) FROM {t} WHERE event_time >= '2026-03-03' AND event_time < '2026-03-04'",
    "group by, all files": "SELECT event_type, count(*), count(DISTINCT session_id) FROM {t} GROUP BY 1",
    "SELECT * (6 columns)": "SELECT * FROM {t}",
}


class _CountingS3(ArrowFSWrapper):
    """The old path: the object store as an fsspec filesystem registered on the connection (bytes counted)."""

    protocol = ("s3",)
    root_marker = ""

    def __init__(self) -> None:
        super().__init__(clients.s3_filesystem())
        self.bytes = 0

    def _open(self, path, mode="rb", *args, **kwargs):
        return _CountedFile(super()._open(path, mode, *args, **kwargs), self)


class _CountedFile:
    def __init__(self, handle, owner: _CountingS3) -> None:
        self._handle, self._owner = handle, owner

    def read(self, length: int = -1) -> bytes:
        data = self._handle.read(length)
        self._owner.bytes += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


def fsspec_connection() -> tuple[object, _CountingS3]:
    import duckdb
    import duckdb_extensions

    con = duckdb.connect()
    con.execute(f"SET extension_directory = '{engines._extension_directory()}'")
    con.execute("SET autoinstall_known_extensions = false")
    for name in ("avro", "iceberg"):
        duckdb_extensions.import_extension(name, con=con)
        con.execute(f"LOAD {name}")
    fs = _CountingS3()
    con.register_filesystem(fs)
    con.execute("SET threads = 1")  # duckdb/duckdb#16501: Python filesystems deadlock with several threads
    return con, fs


def bench(con, sql: str, repeat: int, fetched) -> dict:
    runs = []
    kib = 0.0
    for _ in range(repeat):
        kib, started = fetched(sql), time.perf_counter()
        con.sql(sql).fetchall()
        runs.append(1000 * (time.perf_counter() - started))
    return {"best ms": round(min(runs), 1), "median ms": round(statistics.median(runs), 1), "KiB fetched": kib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cat = lakehouse.catalog()
    lakehouse.fresh_namespace(cat, NAMESPACE)
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform

    schema = ops.clicks_schema()
    spec = PartitionSpec(PartitionField(schema.find_field("event_time").field_id, 1000, DayTransform(), "day"))
    table = cat.create_table(f"{NAMESPACE}.clicks", schema=schema, partition_spec=spec)
    rows = ops.clicks(scale=args.scale)
    table.append(rows)
    ref = f"iceberg_scan('{table.metadata_location}')"
    print(f"{rows.num_rows} clicks, {ops.file_stats(table)['data files']} data files")

    old, fs = fsspec_connection()
    new = engines.duckdb_iceberg()
    threads = new.sql("SELECT current_setting('threads')").fetchone()[0]
    for con in (old, new):
        con.execute("SET enable_external_file_cache = false")

    def fsspec_kib(sql: str) -> float:
        fs.bytes = 0
        old.sql(sql).fetchall()
        return round(fs.bytes / 1024, 1)

    def httpfs_kib(sql: str) -> float:
        return engines.measure(new, sql).kib_fetched

    print(f"| query | fsspec, 1 thread: best / median ms | KiB | httpfs, {threads} threads: best / median ms | KiB |")
    print("|---|---|---|---|---|")
    for label, template in QUERIES.items():
        sql = template.format(t=ref)
        before = bench(old, sql, args.repeat, fsspec_kib)
        after = bench(new, sql, args.repeat, httpfs_kib)
        print(
            f"| {label} | {before['best ms']} / {before['median ms']} | {before['KiB fetched']} "
            f"| {after['best ms']} / {after['median ms']} | {after['KiB fetched']} |"
        )
    cat.drop_table(f"{NAMESPACE}.clicks")
    clients.s3_delete_prefix(f"warehouse/{NAMESPACE}/")


if __name__ == "__main__":
    main()
