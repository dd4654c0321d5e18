"""Performance tools for lab 02.06: EXPLAIN (FORMAT JSON) parsed into Python, index sizes, Parquet codecs.

Plans are read as JSON, never as text: node names and fields are stable across Postgres versions and locales,
while the text layout is not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

# The workload of the indexing section (lab 02.06 exercise 2): `{table}` is filled in, parameters passed apart.
HOUR_QUERY = "SELECT count(*), count(DISTINCT session_id) FROM {table} WHERE ingest_time >= %s AND ingest_time < %s"
CUSTOMER_QUERY = "SELECT event_type, count(*) FROM {table} WHERE customer_id = %s GROUP BY event_type"


def explain(conn, query: str, params=None, analyze: bool = False) -> dict:
    """The plan of ``query`` as a dict: ``{"Plan": {...}, "Execution Time": ms (with analyze), ...}``."""
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    (document,) = conn.execute(f"EXPLAIN ({options}) {query}", params).fetchone()
    return document[0]


def nodes(plan: dict) -> Iterator[dict]:
    """Every node of a plan (accepts the explain() result or a bare ``Plan`` node), depth first."""
    node = plan.get("Plan", plan)
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def scanned_tables(plan: dict) -> list[str]:
    """The tables (or partitions) a plan reads, in plan order."""
    return [n["Relation Name"] for n in nodes(plan) if "Relation Name" in n]


def indexes_used(plan: dict) -> list[str]:
    """The indexes a plan reads (index scans, index-only scans, bitmap index scans)."""
    return [n["Index Name"] for n in nodes(plan) if "Index Name" in n]


def blocks_read(plan: dict) -> int:
    """Shared buffers hit + read by the whole plan (needs ``analyze=True``)."""
    root = plan.get("Plan", plan)
    return int(root.get("Shared Hit Blocks", 0)) + int(root.get("Shared Read Blocks", 0))


def summary(plan: dict) -> dict:
    """A one-line digest of an analysed plan: node types, tables, indexes, ms, blocks, parallel workers."""
    return {
        "nodes": " → ".join(n["Node Type"] for n in nodes(plan)),
        "tables": ", ".join(dict.fromkeys(scanned_tables(plan))),
        "indexes": ", ".join(indexes_used(plan)) or "—",
        "ms": round(plan.get("Execution Time", float("nan")), 2),
        "blocks": blocks_read(plan),
        "workers": max((n.get("Workers Launched", 0) for n in nodes(plan)), default=0),
    }


def relation_sizes(conn, table: str) -> pd.DataFrame:
    """The size of ``table`` (schema.name) and of each of its indexes, in kB."""
    rows = conn.execute(
        """SELECT c.relname, CASE WHEN c.oid = %(t)s::regclass THEN 'table' ELSE 'index' END,
                  am.amname, pg_relation_size(c.oid) / 1024
           FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam
           WHERE c.oid = %(t)s::regclass
              OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %(t)s::regclass)
           ORDER BY 2 DESC, 1""",
        {"t": table},
    ).fetchall()
    return pd.DataFrame(rows, columns=["relation", "kind", "method", "kB"])


def parquet_codecs(frame: pd.DataFrame, folder: Path, codecs: Sequence[str]) -> pd.DataFrame:
    """Write ``frame`` once per codec (and once as CSV for scale); size, write and read time of each file.

    A codec is a name (``"zstd"``) or a name and a level (``"gzip:6"``). Arrow's default gzip level is slow.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    rows = []
    csv_path = folder / "clicks.csv"
    start = time.perf_counter()
    pa_csv.write_csv(table, csv_path)  # Arrow's writer on both sides, so only the format differs
    written = time.perf_counter() - start
    start = time.perf_counter()
    pa_csv.read_csv(csv_path)
    rows.append(("csv (no compression)", csv_path.stat().st_size, written, time.perf_counter() - start))
    for codec in codecs:  # "zstd", or "gzip:6" for a codec at a given level
        name, _, level = codec.partition(":")
        path = folder / f"clicks.{name}{level}.parquet"
        start = time.perf_counter()
        pq.write_table(table, path, compression=name, compression_level=int(level) if level else None)
        written = time.perf_counter() - start
        start = time.perf_counter()
        pq.read_table(path)
        rows.append((f"parquet {codec}", path.stat().st_size, written, time.perf_counter() - start))
    out = pd.DataFrame(rows, columns=["format", "bytes", "write_s", "read_s"])
    out["MB"] = (out.bytes / 1e6).round(2)
    out["ratio_vs_csv"] = (out.bytes[0] / out.bytes).round(1)
    return out[["format", "MB", "ratio_vs_csv", "write_s", "read_s"]].round({"write_s": 3, "read_s": 3})
