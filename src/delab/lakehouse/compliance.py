"""Proof that data is gone: look for a value in every Parquet file stored under a table's location.

Reading the table (even with time travel) only shows what its metadata points at; a file that no snapshot
references any more is invisible to readers but still sits in the object store. Erasure is proven on the raw
files.
"""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq

from delab import clients
from delab.lakehouse.storage import objects_under


def rows_in_stored_files(location: str, column: str, value: object) -> dict[str, int]:
    """For every Parquet object under ``location`` (an ``s3://`` table folder) that has ``column``: how many of its
    rows hold ``value``. Files without a match are left out, so an empty dict means "not stored anywhere"."""
    bucket = location.split("/")[2]
    fs = clients.s3_filesystem()
    hits: dict[str, int] = {}
    for key in objects_under(location):
        if not key.endswith(".parquet"):
            continue
        path = f"{bucket}/{key}"
        if column not in pq.read_schema(path, filesystem=fs).names:
            continue
        found = pc.sum(pc.equal(pq.read_table(path, columns=[column], filesystem=fs)[column], value)).as_py() or 0
        if found:
            hits[f"s3://{path}"] = found
    return hits
