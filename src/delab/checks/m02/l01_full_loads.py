"""Checks of lab 02.01 (full loads and bulk loading): a COPY loader, a parallel loader and a post-load validator.

They run the learner's functions against the stack's Postgres (schema ``m02_l01``, tables ``check_*``), read the
result back and compare it with the shop data regenerated from its seed. The COPY check watches the statements
the learner's code sends through a real connection whose cursors count them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg

from delab import clients, datasets
from delab.grading import WrongAnswer, exercise, learner_code
from delab.loading import bulk

SCHEMA = "m02_l01"


class _CountingCursor(psycopg.Cursor):
    """A real cursor that remembers which statements went through it (COPY or not)."""

    def _note(self, query) -> None:
        text = query.as_string(self.connection) if hasattr(query, "as_string") else query
        text = text.decode() if isinstance(text, bytes) else str(text)
        self.connection.delab_statements.append(text.strip().split(None, 1)[0].upper() if text.strip() else "")

    def execute(self, query, params=None, **kwargs):
        self._note(query)
        return super().execute(query, params, **kwargs)

    def executemany(self, query, params_seq, **kwargs):
        self._note(query)
        return super().executemany(query, params_seq, **kwargs)

    def copy(self, statement, params=None, **kwargs):
        self._note(statement)
        return super().copy(statement, params, **kwargs)


def _counting_connection():
    conn = clients.postgres(cursor_factory=_CountingCursor)
    conn.delab_statements = []
    return conn


def _guarded_connection():
    """A connection that gives up after 10 s waiting for a lock, instead of hanging behind a leaked transaction."""
    return clients.postgres(options="-c lock_timeout=10s")


def _read(conn, table: str, order_by: list[str]) -> pd.DataFrame:
    cur = conn.execute(f"SELECT * FROM {table} ORDER BY {', '.join(order_by)}")
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def _differences(got: pd.DataFrame, want: pd.DataFrame, key: list[str]) -> str | None:
    """None when ``got`` holds exactly the rows of ``want`` (any order), else what differs, in words."""
    if len(got) != len(want):
        missing = len(want) - len(got)
        what = "missing" if missing > 0 else "too many"
        return f"the table holds {len(got):,} rows, the frame {len(want):,} ({abs(missing):,} {what})"
    want = want.sort_values(key, ignore_index=True)
    got = got.sort_values(key, ignore_index=True)
    for column in want.columns:
        a, b = got[column].astype(object), want[column].astype(object)
        a_null, b_null = a.isna().to_numpy(), b.isna().to_numpy()
        if (a_null != b_null).any():
            return f"column {column} has NULLs where the frame has values (or the other way round)"
        kind = want[column].dtype.kind
        if kind == "f":
            same = np.isclose(a[~a_null].astype(float), b[~b_null].astype(float), atol=1e-9)
        elif kind in "iu":  # a column with NULLs comes back from the database as floats
            same = a[~a_null].astype("int64").to_numpy() == b[~b_null].astype("int64").to_numpy()
        elif kind == "M":
            same = pd.to_datetime(a[~a_null]).to_numpy() == pd.to_datetime(b[~b_null]).to_numpy()
        else:
            same = a[~a_null].astype(str).to_numpy() == b[~b_null].astype(str).to_numpy()
        if not np.all(same):
            return f"column {column} holds different values than the frame"
    return None


# ------------------------------------------------------------------------------------------------------ COPY


# what psycopg says when a row still holds a pandas missing value (NA, NaT) or NaN goes to an integer column
_PANDAS_MISSING = ("natype", "nattype", '"nan"')


@learner_code("copy_load")
def _run_copy(fn, conn, table, frame):
    return fn(conn, table, frame)


@exercise("m02.l01.e1")
def copy_load_check(copy_load) -> None:
    """copy_load streams the whole frame with COPY — NULLs, timestamps and text intact — and sends no INSERT."""
    clicks = datasets.cached(seed=42, scale=1.0).clicks.head(5_000)
    table = f"{SCHEMA}.check_copy_clicks"
    with clients.postgres() as setup:
        setup.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        bulk.create_table(setup, table, clicks, primary_key=["event_id"])
    with _counting_connection() as conn:
        try:
            _run_copy(copy_load, conn, table, clicks)
        except WrongAnswer as failed:
            if not any(missing in failed.message.lower() for missing in _PANDAS_MISSING):
                raise
            raise WrongAnswer(
                failed.message,
                hint="pandas marks missing values with NA/NaN/NaT, which Postgres cannot take: turn them into None "
                "(NULL) before write_row.",
            ) from None
        sent = list(conn.delab_statements)
    if "INSERT" in sent:
        raise WrongAnswer(
            f"copy_load sent {sent.count('INSERT')} INSERT statement(s).",
            hint="the point is one COPY … FROM STDIN that streams every row: cursor.copy(...) and write_row.",
        )
    if "COPY" not in sent:
        raise WrongAnswer(
            "copy_load did not send a COPY statement through the connection it was given.",
            hint="use the `conn` argument: with conn.cursor().copy('COPY … FROM STDIN') as copy: …",
        )
    with clients.postgres() as conn:
        got = _read(conn, table, ["event_id"])
    problem = _differences(got, clicks, ["event_id"])
    if problem:
        raise WrongAnswer(
            f"after copy_load, {problem}.",
            hint="send every row, with None for missing values (pandas' NA/NaN are not NULL), and commit.",
        )


# -------------------------------------------------------------------------------------------------- parallel


@learner_code("parallel_load")
def _run_parallel(fn, table, frame, workers):
    return fn(table, frame, workers)


@exercise("m02.l01.e2")
def parallel_load_check(parallel_load) -> None:
    """parallel_load splits the frame over N workers, each on its own connection, and loads every row once."""
    items = datasets.cached(seed=42, scale=1.0).order_items.head(12_347)  # not a multiple of the worker count
    table = f"{SCHEMA}.check_parallel_items"
    for workers in (3, 4):
        try:
            with _guarded_connection() as setup:
                setup.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                # no key on purpose: a slice loaded twice must show up as duplicates, not as an error
                bulk.create_table(setup, table, items)
        except psycopg.errors.LockNotAvailable:
            raise WrongAnswer(
                f"{table} is locked by a transaction that never ended (an earlier run of parallel_load?).",
                hint="share no connection between threads, and let each worker's `with` block commit and close. "
                "Restart the kernel to drop leaked connections.",
            ) from None
        result = _run_parallel(parallel_load, table, items, workers)
        try:
            result = list(result)  # pool.map(...) returned as it is: an iterator, read once
            pids = [int(pid) for pid, _ in result]
            counts = [int(rows) for _, rows in result]
        except (TypeError, ValueError):
            raise WrongAnswer(
                f"parallel_load returned {type(result).__name__}, not a list of (backend_pid, rows) pairs.",
                hint="each worker returns conn.info.backend_pid and the number of rows it loaded.",
            ) from None
        if len(result) != workers:
            raise WrongAnswer(
                f"with workers={workers}, parallel_load reported {len(result)} worker(s).",
                hint="one (backend_pid, rows) pair per worker: cut the frame into `workers` slices.",
            )
        if len(set(pids)) != workers:
            raise WrongAnswer(
                f"with workers={workers}, the workers used {len(set(pids))} distinct connection(s).",
                hint="a psycopg connection runs one statement at a time: open one connection per worker.",
            )
        try:
            with _guarded_connection() as conn:
                got = _read(conn, table, ["order_id", "line_no"])
        except psycopg.errors.LockNotAvailable:
            raise WrongAnswer(
                "parallel_load returned while a worker's transaction was still open.",
                hint="each worker commits (leave `with conn.transaction()` or commit) before it returns.",
            ) from None
        duplicated = int(got.duplicated(["order_id", "line_no"]).sum())
        if duplicated:
            raise WrongAnswer(
                f"with workers={workers}, {duplicated:,} rows were loaded twice.",
                hint="the slices must not overlap: each row belongs to exactly one worker.",
            )
        problem = _differences(got, items, ["order_id", "line_no"])
        if problem:
            raise WrongAnswer(
                f"with workers={workers}, {problem}.",
                hint="len(frame) is rarely a multiple of the worker count: the last slice takes the remainder.",
            )
        if sum(counts) != len(items):
            raise WrongAnswer(
                f"the workers report {sum(counts):,} rows in total, but {len(items):,} were to be loaded.",
                hint="report the number of rows each worker actually wrote.",
            )


# ------------------------------------------------------------------------------------------------ validation


@learner_code("validate_load")
def _run_validate_guarded(fn, conn, table, frame):
    return fn(conn, table, frame)


def _run_validate(fn, conn, table, frame):
    try:
        return _run_validate_guarded(fn, conn, table, frame)
    except WrongAnswer as failed:
        # Decimal == numpy.int64 raises "argument must be an integer"; Decimal - float "unsupported operand"
        if "TypeError" not in failed.message or not (
            "Decimal" in failed.message or "must be an integer" in failed.message
        ):
            raise
        raise WrongAnswer(
            failed.message,
            hint="Postgres returns sum() of integers as numeric, a Python Decimal, which does not mix with numpy or "
            "float values: convert with int(...) (or float(...)) before comparing.",
        ) from None


def _load_plain(conn, table: str, frame: pd.DataFrame) -> None:
    bulk.create_table(conn, table, frame)
    # no key (the validator must find duplicates itself); REPLICA IDENTITY FULL because the database has a
    # publication FOR ALL TABLES, which refuses UPDATE and DELETE on a table with neither key nor identity
    conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    bulk.copy_rows(conn, table, list(frame.columns), bulk.rows_of(frame))


def _verdict(result, case: str) -> dict[str, bool]:
    if not isinstance(result, dict) or not {"counts", "checksums", "constraints"} <= set(result):
        raise WrongAnswer(
            f"validate_load returned {result!r} ({case}), not a dict with the keys counts, checksums, constraints.",
            hint='return {"counts": …, "checksums": …, "constraints": …}, each True when that test passed.',
        )
    return {k: bool(result[k]) for k in ("counts", "checksums", "constraints")}


@exercise("m02.l01.e3")
def validate_load_check(validate_load) -> None:
    """validate_load catches a lost row, a changed value and a broken constraint — and passes a good load."""
    items = datasets.cached(seed=42, scale=1.0).order_items
    clean = items[items.quantity > 0].head(4_000).reset_index(drop=True)
    table = f"{SCHEMA}.check_validate_items"
    cases = []
    with clients.postgres() as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")

        _load_plain(conn, table, clean)
        cases.append(("a faithful load", clean, {"counts": True, "checksums": True, "constraints": True}))
        got = _verdict(_run_validate(validate_load, conn, table, clean), cases[-1][0])
        _compare(got, cases[-1])

        conn.execute(f"DELETE FROM {table} WHERE (order_id, line_no) = (%s, %s)", tuple(clean.iloc[1234, :2]))
        case = ("a load that lost one row", clean, {"counts": False})
        _compare(_verdict(_run_validate(validate_load, conn, table, clean), case[0]), case)

        _load_plain(conn, table, clean)
        conn.execute(
            f"UPDATE {table} SET unit_price = unit_price + 0.01 WHERE (order_id, line_no) = (%s, %s)",
            tuple(clean.iloc[2345, :2]),
        )
        case = ("a load where one unit_price changed by one cent", clean, {"counts": True, "checksums": False})
        _compare(_verdict(_run_validate(validate_load, conn, table, clean), case[0]), case)

        # the text asks the checksums to cover quantity and the keys too: a price-only checksum misses these
        for column, change, what in (
            ("quantity", "quantity + 1", "one quantity grew by one"),
            ("line_no", "line_no + 50", "one line_no changed (order lines re-numbered)"),
        ):
            _load_plain(conn, table, clean)
            conn.execute(
                f"UPDATE {table} SET {column} = {change} WHERE (order_id, line_no) = (%s, %s)",
                tuple(clean.iloc[3456, :2]),
            )
            case = (f"a load where {what}", clean, {"counts": True, "checksums": False, "constraints": True})
            _compare(_verdict(_run_validate(validate_load, conn, table, clean), case[0]), case)
        zero = clean.copy()
        zero.loc[99, "quantity"] = 0
        _load_plain(conn, table, zero)
        case = ("a faithful load of a frame with a quantity of 0", zero, {"counts": True, "constraints": False})
        _compare(_verdict(_run_validate(validate_load, conn, table, zero), case[0]), case)
        negative = clean.copy()
        negative.loc[321, "quantity"] = -negative.loc[321, "quantity"]
        _load_plain(conn, table, negative)
        case = ("a faithful load of a frame with a negative quantity", negative, {"counts": True, "constraints": False})
        _compare(_verdict(_run_validate(validate_load, conn, table, negative), case[0]), case)

        duplicate = pd.concat([clean, clean.iloc[[777]]], ignore_index=True)
        _load_plain(conn, table, duplicate)
        case = (
            "a faithful load of a frame with a duplicated (order_id, line_no)",
            duplicate,
            {"counts": True, "constraints": False},
        )
        _compare(_verdict(_run_validate(validate_load, conn, table, duplicate), case[0]), case)


_HINTS = {
    "counts": "compare count(*) in the table with len(frame).",
    "checksums": "equal counts do not mean equal data: compare column sums (money in whole cents, to avoid float "
    "rounding) computed on both sides.",
    "constraints": "test the rules the data must obey: quantity > 0 and (order_id, line_no) unique.",
}


def _compare(got: dict[str, bool], case) -> None:
    name, _, want = case
    for key, expected in want.items():
        if got[key] != expected:
            raise WrongAnswer(
                f"for {name}, validate_load says {key}={got[key]}, expected {expected}.", hint=_HINTS[key]
            )
