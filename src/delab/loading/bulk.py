"""Bulk loading into Postgres (lab 02.01): four ways to send rows, a parallel COPY, and a stopwatch.

Every loader takes a psycopg 3 connection, a qualified table name and rows as tuples of plain Python values
(``rows_of(frame)`` makes them from a DataFrame), so the methods differ only in how rows travel to the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
import psycopg
from psycopg import sql

_PG_TYPES = {"i": "bigint", "u": "bigint", "f": "double precision", "b": "boolean", "M": "timestamp"}


def pg_type(series: pd.Series) -> str:
    """The Postgres column type used for a pandas column (integers → bigint, floats → double precision …)."""
    if str(series.dtype) in {"Int64", "Int32"}:
        return "bigint"
    return _PG_TYPES.get(getattr(series.dtype, "kind", "O"), "text")


def _qualified(table: str) -> sql.Composed:
    return sql.SQL(".").join(sql.Identifier(part) for part in table.split("."))


def create_table(conn, table: str, frame: pd.DataFrame, primary_key: Sequence[str] | None = None) -> None:
    """Drop and create ``table`` (``schema.name``) with the columns of ``frame`` and an optional primary key."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(pg_type(frame[c]))) for c in frame.columns
    )
    key = (
        sql.SQL(", PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, primary_key)))
        if primary_key
        else sql.SQL("")
    )
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_qualified(table)))
    conn.execute(sql.SQL("CREATE TABLE {} ({}{})").format(_qualified(table), columns, key))


def rows_of(frame: pd.DataFrame) -> list[tuple]:
    """The rows of ``frame`` as tuples of Python values, with None where pandas has NaN/NA/NaT."""
    return list(frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None))


def _insert_sql(table: str, columns: Sequence[str], n_rows: int = 1) -> sql.Composed:
    one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(columns)))
    return sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
        _qualified(table), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join([one] * n_rows)
    )


def insert_row_by_row(conn, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """One INSERT statement — and, on an autocommit connection, one commit — per row."""
    query = _insert_sql(table, columns)
    for row in rows:
        conn.execute(query, row)


def insert_executemany(conn, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """``cursor.executemany``: psycopg 3 pipelines the statements (no round trip per row), in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_insert_sql(table, columns), rows)


def _numbered_values_sql(table: str, columns: Sequence[str], n_rows: int) -> sql.Composed:
    width = len(columns)
    groups = ", ".join("(" + ", ".join(f"${row * width + k + 1}" for k in range(width)) + ")" for row in range(n_rows))
    return sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
        _qualified(table), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(groups)
    )


def insert_multirow_values(
    conn, table: str, columns: Sequence[str], rows: Sequence[tuple], batch_size: int = 1000
) -> None:
    """``INSERT … VALUES (…), (…), …`` with ``batch_size`` rows per statement, in one transaction.

    Uses a ``RawCursor`` (Postgres' own ``$1, $2 …`` placeholders): psycopg caches its ``%s`` → ``$n`` rewrite
    only for statements with at most 50 parameters, and re-parsing a 5,000-parameter statement in Python for
    every batch would cost more than the server's work.
    """
    full = _numbered_values_sql(table, columns, batch_size)
    with conn.transaction(), psycopg.RawCursor(conn) as cur:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            query = full if len(batch) == batch_size else _numbered_values_sql(table, columns, len(batch))
            cur.execute(query, [value for row in batch for value in row])


def copy_rows(conn, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """``COPY … FROM STDIN``: one statement, rows streamed in the COPY protocol, in one transaction."""
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        _qualified(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for row in rows:
            copy.write_row(row)


def chunks(rows: Sequence[tuple], n: int) -> list[Sequence[tuple]]:
    """``rows`` cut into ``n`` contiguous slices of nearly equal size (none empty when len(rows) ≥ n)."""
    size, extra = divmod(len(rows), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        out.append(rows[start:end])
        start = end
    return out


def parallel_copy(connect: Callable, table: str, columns: Sequence[str], rows: Sequence[tuple], workers: int) -> None:
    """COPY ``rows`` with ``workers`` threads, each on its own connection (``connect()``) and its own slice."""

    def work(part: Sequence[tuple]) -> None:
        with connect() as conn:
            copy_rows(conn, table, columns, part)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, chunks(rows, workers)))


@dataclass(frozen=True)
class Timing:
    method: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def timed(method: str, load: Callable[[], None], rows: int, before: Callable[[], None] | None = None) -> Timing:
    """Run ``before()`` (untimed: e.g. empty the table), then time ``load()`` that writes ``rows`` rows."""
    if before is not None:
        before()
    start = time.perf_counter()
    load()
    return Timing(method, rows, time.perf_counter() - start)


def timings_frame(timings: Sequence[Timing]) -> pd.DataFrame:
    """A table of timings with rows/s and the speed-up over the slowest method."""
    frame = pd.DataFrame(
        {
            "method": [t.method for t in timings],
            "rows": [t.rows for t in timings],
            "seconds": [round(t.seconds, 3) for t in timings],
            "rows_per_s": [round(t.rows_per_second) for t in timings],
        }
    )
    frame["vs_slowest"] = (frame.rows_per_s / frame.rows_per_s.min()).round(1)
    return frame


def copy_frame(conn, table: str, frame: pd.DataFrame) -> None:
    """COPY a whole DataFrame through pandas' CSV writer — the fastest path for wide frames with timestamps.

    Missing values become empty unquoted fields, which COPY's CSV format reads as NULL.
    """
    import io

    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="", date_format="%Y-%m-%d %H:%M:%S.%f")
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        _qualified(table), sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    )
    with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.write(buffer.getvalue())
