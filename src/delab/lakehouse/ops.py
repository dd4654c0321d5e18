"""Table operations of module 04 labs 04-06: the clickstream as an Iceberg table, what a scan plans to read,
file statistics, and the objects of a table that no snapshot references any more (orphans)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from delab import clients, config, datasets


def clicks_schema() -> Any:
    """The Iceberg schema of the shop's clickstream (ids 1..6; ``event_time`` is a timestamp without zone)."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType, TimestampType

    return Schema(
        NestedField(1, "event_id", LongType(), required=False),
        NestedField(2, "session_id", LongType(), required=False),
        NestedField(3, "customer_id", LongType(), required=False),
        NestedField(4, "event_type", StringType(), required=False),
        NestedField(5, "product_id", LongType(), required=False),
        NestedField(6, "event_time", TimestampType(), required=False),
    )


def clicks(seed: int = 4, scale: float = 1.0, start: str = "2026-03-01", days: int = 7) -> pa.Table:
    """``days`` days of the shop's clicks from ``start`` as an Arrow table in the shape of ``clicks_schema()``."""
    frame = datasets.shop(seed=seed, scale=scale).clicks
    begin = pd.Timestamp(start)
    frame = frame[(frame.event_time >= begin) & (frame.event_time < begin + pd.Timedelta(days=days))]
    frame = frame.sort_values("event_time").drop(columns=["ingest_time"])
    return pa.Table.from_pandas(frame, preserve_index=False).cast(clicks_schema().as_arrow())


@dataclass(frozen=True)
class ScanPlan:
    """What a scan with a filter plans to read, against the whole table."""

    files: int
    bytes: int
    total_files: int
    total_bytes: int

    @property
    def share_of_bytes(self) -> float:
        return self.bytes / self.total_bytes if self.total_bytes else 0.0


def scan_plan(table: Any, row_filter: Any = "True") -> ScanPlan:
    """Files and bytes that ``table.scan(row_filter=...)`` would read after partition and min/max pruning."""
    from pyiceberg.expressions import AlwaysTrue

    chosen = list(table.scan(row_filter=row_filter).plan_files())
    every = list(table.scan(row_filter=AlwaysTrue()).plan_files())
    return ScanPlan(
        files=len(chosen),
        bytes=sum(task.file.file_size_in_bytes for task in chosen),
        total_files=len(every),
        total_bytes=sum(task.file.file_size_in_bytes for task in every),
    )


def pruning_table(tables: dict[str, Any], predicates: dict[str, Any]) -> pd.DataFrame:
    """One row per layout (table) and predicate: files and bytes a scan plans to read, out of the table's total."""
    rows = []
    for layout, table in tables.items():
        for label, predicate in predicates.items():
            plan = scan_plan(table, predicate)
            rows.append(
                {
                    "layout": layout,
                    "query": label,
                    "files": plan.files,
                    "of files": plan.total_files,
                    "% bytes": round(100 * plan.share_of_bytes, 1),
                    "planned": f"{plan.files}/{plan.total_files} files, {100 * plan.share_of_bytes:.0f}%",
                }
            )
    return pd.DataFrame(rows)


def files_read(profile: str) -> int:
    """The "Total Files Read" of DuckDB's EXPLAIN ANALYZE output (summed over the scans of the query)."""
    import re

    return sum(int(n) for n in re.findall(r"Total Files Read:\s*(\d+)", profile))


def file_stats(table: Any) -> dict[str, float]:
    """Data files of the current snapshot: how many, total and mean size (KiB), rows."""
    files = table.inspect.files()
    if files.num_rows == 0:
        return {"data files": 0, "total KiB": 0.0, "mean file KiB": 0.0, "rows": 0}
    sizes = files["file_size_in_bytes"].to_pylist()
    return {
        "data files": len(sizes),
        "total KiB": round(sum(sizes) / 1024, 1),
        "mean file KiB": round(sum(sizes) / len(sizes) / 1024, 1),
        "rows": sum(files["record_count"].to_pylist()),
    }


def table_prefix(table: Any) -> str:
    """The object-store key prefix of a table (``warehouse/<ns>/<table>/``)."""
    bucket = config.s3().bucket
    location = table.location().rstrip("/")
    return location.split(f"s3://{bucket}/", 1)[1] + "/"


def table_objects(table: Any) -> list[str]:
    """Every object under the table's location, as ``s3://`` URIs."""
    bucket = config.s3().bucket
    return [f"s3://{bucket}/{key}" for key in clients.s3_keys(table_prefix(table))]


def timed(run: Any, repeat: int = 3) -> float:
    """Best wall time of ``run()`` over ``repeat`` runs, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)
