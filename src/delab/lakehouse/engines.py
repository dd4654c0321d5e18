"""Query engines on the shared lakehouse.

DuckDB with its Iceberg extension, loaded offline from the extension wheels of PyPI, reading the stack's object
store through a filesystem that counts what it reads (files opened, bytes read, read calls) — the honest signal
behind "pruning", "pushdown" and "caching" in module 04::

    from delab.lakehouse import engines
    reads = engines.ObjectStoreReads()
    con = engines.duckdb_iceberg(reads)
    con.sql(f"SELECT count(*) FROM iceberg_scan('{table.metadata_location}')")
    print(reads.files, reads.bytes)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from fsspec.implementations.arrow import ArrowFSWrapper

from delab import clients, config

DUCKDB_EXTENSIONS = ("avro", "iceberg")  # iceberg reads its manifests with avro


@dataclass(frozen=True)
class ReadStats:
    """What a query read from the object store."""

    files: int
    bytes: int
    reads: int


class ObjectStoreReads(ArrowFSWrapper):
    """The stack's object store as an fsspec filesystem for ``s3://`` paths that counts every read.

    DuckDB's own S3 support (the httpfs extension) is not installed here; DuckDB reads through any fsspec
    filesystem registered on its connection instead, which also lets us count what a query really fetched.
    """

    protocol = ("s3",)
    root_marker = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(clients.s3_filesystem(), **kwargs)
        self._lock = threading.Lock()
        self.opened: list[str] = []
        self.bytes = 0
        self.reads = 0

    def reset(self) -> None:
        """Forget what was counted so far (call before the query you want to measure)."""
        with self._lock:
            self.opened, self.bytes, self.reads = [], 0, 0

    @property
    def files(self) -> int:
        """How many distinct objects were opened since the last reset."""
        return len(set(self.opened))

    def data_files(self) -> list[str]:
        """The distinct Parquet files opened since the last reset."""
        return sorted({path for path in self.opened if path.endswith(".parquet")})

    def stats(self) -> ReadStats:
        return ReadStats(self.files, self.bytes, self.reads)

    def _count(self, path: str, nbytes: int | None = None) -> None:
        with self._lock:
            if nbytes is None:
                self.opened.append(path)
            else:
                self.bytes += nbytes
                self.reads += 1

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        handle = super()._open(path, mode, *args, **kwargs)
        if "r" not in mode:
            return handle
        self._count(path)
        return _CountedFile(handle, path, self)


class _CountedFile:
    """A read-only file handle that reports the size of every read to its filesystem."""

    def __init__(self, handle: Any, path: str, owner: ObjectStoreReads) -> None:
        self._handle, self._path, self._owner = handle, path, owner

    def read(self, length: int = -1) -> bytes:
        data = self._handle.read(length)
        self._owner._count(self._path, len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _CountedFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.close()


def _extension_directory() -> str:
    folder = config.state_dir() / "duckdb-extensions"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def duckdb_iceberg(reads: ObjectStoreReads | None = None, database: str = ":memory:") -> Any:
    """A DuckDB connection with the Iceberg extension loaded (offline, from the PyPI extension wheels) and the
    stack's object store readable as ``s3://`` (through ``reads``, a counting filesystem). It runs on one thread
    (see below); with the httpfs extension instead of fsspec, DuckDB could use all cores."""
    import duckdb
    import duckdb_extensions

    con = duckdb.connect(database)
    con.execute(f"SET extension_directory = '{_extension_directory()}'")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    for name in DUCKDB_EXTENSIONS:
        duckdb_extensions.import_extension(name, con=con)
        con.execute(f"LOAD {name}")
    con.register_filesystem(reads if reads is not None else ObjectStoreReads())
    # One thread: with a Python (fsspec) filesystem, DuckDB's worker threads call back into Python while the
    # query's thread may hold the GIL — an intermittent deadlock here (~1 run in 30; duckdb/duckdb#16501).
    con.execute("SET threads = 1")
    return con
