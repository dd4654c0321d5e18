"""Table operations of module 04 labs 04-06: the clickstream as an Iceberg table, what a scan plans to read,
file statistics, and the objects of a table that no snapshot references any more (orphans)."""

from __future__ import annotations

import contextlib
import json
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
    """One row per layout (table) and predicate: files and KiB a scan plans to read, and their share of the table."""
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
                    "KiB": round(plan.bytes / 1024, 1),
                    "% bytes": round(100 * plan.share_of_bytes, 1),
                    "planned": f"{plan.files}/{plan.total_files} files, {plan.bytes / 1024:.0f} KiB"
                    f" ({100 * plan.share_of_bytes:.0f}%)",
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


def metadata_json(metadata_location: str) -> dict:
    """A table's metadata file, read straight from the object store (no Iceberg library involved)."""
    bucket, key = metadata_location.removeprefix("s3://").split("/", 1)
    return json.loads(clients.s3().get_object(Bucket=bucket, Key=key)["Body"].read())


def timed(run: Any, repeat: int = 3) -> float:
    """Best wall time of ``run()`` over ``repeat`` runs, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


# ------------------------------------------------------------------------------------------ maintenance (lab 05)


def referenced_files(table: Any) -> set[str]:
    """Every object the table's metadata still points at: the metadata files of its log, the manifest lists and
    manifests of every live snapshot, and the data and delete files those manifests list."""
    refs = set(table.inspect.metadata_log_entries()["file"].to_pylist())
    refs.add(table.metadata_location)
    refs |= {snapshot.manifest_list for snapshot in table.snapshots()}
    refs |= set(table.inspect.all_manifests()["path"].to_pylist())
    refs |= set(table.inspect.all_files()["file_path"].to_pylist())
    return refs


def maintenance_figures(table: Any) -> dict[str, Any]:
    """What maintenance changes: data files and their mean size, snapshots, objects and bytes in the store."""
    stats = file_stats(table)
    client, bucket = clients.s3(), config.s3().bucket
    stored = 0
    objects = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=table_prefix(table)):
        for obj in page.get("Contents", []):
            objects += 1
            stored += obj["Size"]
    return {
        "data files": stats["data files"],
        "mean file KiB": stats["mean file KiB"],
        "rows": stats["rows"],
        "snapshots": len(table.snapshots()),
        "objects in store": objects,
        "KiB in store": round(stored / 1024, 1),
    }


# ----------------------------------------------------------------------------- a streaming writer (lab 05)


def fresh_topic(topic: str, partitions: int = 1) -> str:
    """Delete ``topic`` if it exists and create it empty."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

    admin = KafkaAdminClient(bootstrap_servers=config.kafka().bootstrap_servers)
    try:
        with contextlib.suppress(UnknownTopicOrPartitionError):
            admin.delete_topics([topic])
        for _ in range(40):  # deletion is asynchronous
            try:
                admin.create_topics([NewTopic(topic, partitions, 1)])
                return topic
            except TopicAlreadyExistsError:
                time.sleep(0.25)
        raise RuntimeError(f"topic {topic} could not be recreated")
    finally:
        admin.close()


def trickle_json(topic: str, rows: list[dict], seconds: float, batches: int = 20) -> int:
    """Produce ``rows`` as JSON in ``batches`` spread over ``seconds``, like a live source; returns the count."""
    producer = clients.kafka_producer(value_serializer=lambda row: json.dumps(row, default=str).encode())
    pause = seconds / batches
    size = max(1, -(-len(rows) // batches))
    for start in range(0, len(rows), size):
        for row in rows[start : start + size]:
            producer.send(topic, row)
        producer.flush()
        time.sleep(pause)
    producer.close()
    return len(rows)
