"""A tiny *teaching* writer of Apache Hudi copy-on-write tables, so that hudi-rs has a real table to read.

Why it exists: there is no Hudi writer for Python (hudi-rs, the ``hudi`` package, only reads), and Hudi's Spark
bundles are built per Spark minor version — none exists for the Spark 4.3 that pyspark installs here. This module
writes the on-disk layout of the Hudi spec (table version 6) for the simplest case and nothing more:

- ``.hoodie/hoodie.properties`` (table config) and a timeline of instants
  (``<instant>.commit.requested`` → ``<instant>.inflight`` → ``<instant>.commit``, the last one with the write
  statistics); an instant only counts once its ``.commit`` file exists — that is Hudi's atomic publish;
- one *file group* per partition (``channel=web/``); every commit that touches the partition rewrites the group
  as a new base file ``<fileId>_<writeToken>_<instant>.parquet`` — copy-on-write: the old *file slice* stays for
  time travel until a cleaner removes it;
- the five meta columns (``_hoodie_commit_time``, ``_hoodie_commit_seqno``, ``_hoodie_record_key``,
  ``_hoodie_partition_path``, ``_hoodie_file_name``) in every row.

Upserts merge on the record key and keep the row with the larger precombine value. There are no indexes, no
merge-on-read log files, no metadata table, no cleaning, no locking: one writer at a time. Real pipelines write
Hudi with Spark, Flink or the Java client.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from delab import clients
from delab.lakehouse.storage import s3_key

META_COLUMNS = (
    "_hoodie_commit_time",
    "_hoodie_commit_seqno",
    "_hoodie_record_key",
    "_hoodie_partition_path",
    "_hoodie_file_name",
)


def _new_instant(after: str | None) -> str:
    instant = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + f"{int(time.time() * 1000) % 1000:03d}"
    if after is not None and instant <= after:  # two commits in one millisecond: keep the timeline ordered
        instant = str(int(after) + 1)
    return instant


class CowWriter:
    """Writes a Hudi copy-on-write table under an ``s3://`` location of the stack's object store."""

    def __init__(self, uri: str, table_name: str, record_key: str, partition_field: str, precombine_field: str):
        self.uri, self.root = uri.rstrip("/"), s3_key(uri).rstrip("/")
        self.bucket = uri.split("/")[2]
        self.table_name, self.record_key = table_name, record_key
        self.partition_field, self.precombine_field = partition_field, precombine_field
        self.fs = clients.s3_filesystem()

    # ------------------------------------------------------------------------------------------- layout
    def _path(self, relative: str) -> str:
        return f"{self.bucket}/{self.root}/{relative}"

    def _put(self, relative: str, text: str) -> None:
        with self.fs.open_output_stream(self._path(relative)) as out:
            out.write(text.encode())

    def _ensure_table(self) -> None:
        if self.fs.get_file_info(self._path(".hoodie/hoodie.properties")).type.name == "File":
            return
        properties = {
            "hoodie.table.name": self.table_name,
            "hoodie.table.type": "COPY_ON_WRITE",
            "hoodie.table.version": "6",
            "hoodie.timeline.layout.version": "1",
            "hoodie.table.base.file.format": "PARQUET",
            "hoodie.table.recordkey.fields": self.record_key,
            "hoodie.table.partition.fields": self.partition_field,
            "hoodie.table.precombine.field": self.precombine_field,
            "hoodie.datasource.write.hive_style_partitioning": "true",
            "hoodie.table.keygenerator.class": "org.apache.hudi.keygen.SimpleKeyGenerator",
            "hoodie.populate.meta.fields": "true",
        }
        self._put(".hoodie/hoodie.properties", "".join(f"{k}={v}\n" for k, v in properties.items()))

    def completed_instants(self) -> list[str]:
        """The instants whose ``.commit`` file exists, oldest first."""
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector(self._path(".hoodie"), allow_not_found=True))
        return sorted(i.base_name.split(".")[0] for i in infos if i.base_name.endswith(".commit"))

    def _latest_slice(self, partition: str) -> tuple[str, str, pa.Table] | None:
        """(file id, instant, rows) of the partition's newest committed base file; the rows keep only the
        ``_hoodie_commit_time`` meta column (an unchanged record keeps the instant that last wrote it)."""
        from pyarrow import fs

        committed = set(self.completed_instants())
        infos = self.fs.get_file_info(fs.FileSelector(self._path(partition), allow_not_found=True))
        slices = []
        for info in infos:
            if info.base_name.endswith(".parquet"):
                file_id, _token, instant = info.base_name[: -len(".parquet")].split("_")
                if instant in committed:
                    slices.append((instant, file_id, info.path))
        if not slices:
            return None
        instant, file_id, path = max(slices)
        rows = pq.read_table(path, filesystem=self.fs)
        return file_id, instant, rows.drop_columns(list(META_COLUMNS[1:]))

    # -------------------------------------------------------------------------------------------- write
    def upsert(self, rows: pa.Table) -> str:
        """Insert or update ``rows`` (by record key; the larger precombine value wins) in one commit.
        Returns the commit's instant time."""
        self._ensure_table()
        done = self.completed_instants()
        instant = _new_instant(done[-1] if done else None)
        self._put(f".hoodie/{instant}.commit.requested", "")
        self._put(f".hoodie/{instant}.inflight", "")
        stats: dict[str, list[dict[str, Any]]] = {}
        for value in pc.unique(rows[self.partition_field]).to_pylist():
            partition = f"{self.partition_field}={value}"
            incoming = rows.filter(pc.equal(rows[self.partition_field], value))
            incoming = incoming.add_column(0, "_hoodie_commit_time", pa.array([instant] * incoming.num_rows))
            current = self._latest_slice(partition)
            if current is None:
                file_id, previous, merged, updates = f"{uuid.uuid4()}-0", "null", incoming, 0
                self._put(f"{partition}/.hoodie_partition_metadata", f"commitTime={instant}\npartitionDepth=1\n")
            else:
                file_id, previous, existing = current
                merged = self._merge(existing, incoming.select(existing.column_names))
                updates = incoming.num_rows - (merged.num_rows - existing.num_rows)
            name = f"{file_id}_0-1-0_{instant}.parquet"
            merged = merged.sort_by(self.record_key)
            n = merged.num_rows
            meta = {
                "_hoodie_commit_time": merged["_hoodie_commit_time"],
                "_hoodie_commit_seqno": [f"{instant}_0_{i}" for i in range(n)],
                "_hoodie_record_key": [str(k) for k in merged[self.record_key].to_pylist()],
                "_hoodie_partition_path": [partition] * n,
                "_hoodie_file_name": [name] * n,
            }
            data = [c for c in merged.column_names if c != "_hoodie_commit_time"]
            table = pa.table({**meta, **{c: merged[c] for c in data}})
            pq.write_table(table, self._path(f"{partition}/{name}"), filesystem=self.fs)
            size = self.fs.get_file_info(self._path(f"{partition}/{name}")).size
            stats[partition] = [
                {
                    "fileId": file_id,
                    "path": f"{partition}/{name}",
                    "prevCommit": previous,
                    "numWrites": n,
                    "numDeletes": 0,
                    "numUpdateWrites": updates,
                    "numInserts": incoming.num_rows - updates,
                    "totalWriteBytes": size,
                    "totalWriteErrors": 0,
                    "partitionPath": partition,
                    "fileSizeInBytes": size,
                }
            ]
        metadata = {"partitionToWriteStats": stats, "compacted": False, "extraMetadata": {}, "operationType": "UPSERT"}
        self._put(f".hoodie/{instant}.commit", json.dumps(metadata))  # the atomic publish
        return instant

    def _merge(self, existing: pa.Table, incoming: pa.Table) -> pa.Table:
        combined = pa.concat_tables([existing, incoming]).to_pandas()
        combined = combined.sort_values([self.record_key, self.precombine_field], kind="stable")
        latest = combined.drop_duplicates(self.record_key, keep="last")
        return pa.Table.from_pandas(latest, schema=existing.schema, preserve_index=False)
