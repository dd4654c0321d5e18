"""Checks of lab 02.01 (full loads): right answers pass, realistic wrong ones are rejected."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from delab import clients
from delab.checks.m02 import l01_full_loads as checks
from delab.grading import NotSolvedYet, WrongAnswer

pytestmark = pytest.mark.stack


def copy_good(conn, table, frame):
    clean = frame.astype(object).where(frame.notna(), None)
    statement = f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN"
    with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
        for row in clean.itertuples(index=False, name=None):
            copy.write_row(row)


def copy_with_executemany(conn, table, frame):
    clean = frame.astype(object).where(frame.notna(), None)
    marks = ", ".join(["%s"] * len(frame.columns))
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} ({', '.join(frame.columns)}) VALUES ({marks})",
            list(clean.itertuples(index=False, name=None)),
        )


def copy_nan_as_text(conn, table, frame):
    # writes NaN-bearing floats for missing ids: COPY turns them into 'NaN' and the bigint column refuses them
    statement = f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN"
    with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
        for row in frame.astype({"customer_id": float, "product_id": float}).itertuples(index=False, name=None):
            copy.write_row(row)


def copy_pandas_na(conn, table, frame):
    # the frame's rows as they are: pandas' NA for a missing id, which psycopg cannot send
    statement = f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN"
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in frame.itertuples(index=False, name=None):
            copy.write_row(row)


def copy_csv_text(conn, table, frame):
    # a different right answer: the frame as CSV text through copy.write (an empty field is NULL in CSV)
    statement = f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN (FORMAT csv)"
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(frame.to_csv(index=False, header=False))


def copy_without_nulls(conn, table, frame):
    # drops the rows with a missing value instead of loading them as NULL
    copy_good(conn, table, frame.dropna())


def test_copy_accepts_copy():
    checks.copy_load_check(copy_good)


def test_copy_accepts_csv_text():
    checks.copy_load_check(copy_csv_text)


def test_copy_rejects_inserts():
    with pytest.raises(WrongAnswer, match="INSERT statement"):
        checks.copy_load_check(copy_with_executemany)


def test_copy_rejects_nan_and_lost_rows():
    for wrong in (copy_nan_as_text, copy_pandas_na):
        with pytest.raises(WrongAnswer, match="copy_load failed") as failed:
            checks.copy_load_check(wrong)
        assert "None (NULL)" in failed.value.hint
    with pytest.raises(WrongAnswer, match="missing"):
        checks.copy_load_check(copy_without_nulls)


def test_copy_placeholder_is_not_solved():
    def stub(conn, table, frame):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.copy_load_check(stub)
    with pytest.raises(NotSolvedYet):
        checks.copy_load_check(...)


def _parallel(table, frame, workers, size=None):
    size = size or -(-len(frame) // workers)
    slices = [frame.iloc[k * size : (k + 1) * size] for k in range(workers)]

    def load(part):
        with clients.postgres() as conn:
            copy_good(conn, table, part)
            return conn.info.backend_pid, len(part)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(load, slices))


def _one_connection(table, frame, workers):
    # the slices are right, but one connection loads them all, one after the other
    size = -(-len(frame) // workers)
    with clients.postgres() as conn:
        out = []
        for k in range(workers):
            part = frame.iloc[k * size : (k + 1) * size]
            copy_good(conn, table, part)
            out.append((conn.info.backend_pid, len(part)))
        return out


def test_parallel_accepts_one_connection_per_worker():
    checks.parallel_load_check(lambda table, frame, workers: _parallel(table, frame, workers))


def test_parallel_accepts_the_pool_s_iterator():
    # ThreadPoolExecutor.map returned as it is: used to crash on len() of a used-up generator
    checks.parallel_load_check(lambda table, frame, workers: iter(_parallel(table, frame, workers)))


def test_parallel_rejects_shared_connection():
    with pytest.raises(WrongAnswer, match="distinct connection"):
        checks.parallel_load_check(_one_connection)


def test_parallel_rejects_lost_remainder_and_overlap():
    floor = lambda table, frame, workers: _parallel(table, frame, workers, size=len(frame) // workers)  # noqa: E731
    with pytest.raises(WrongAnswer, match="missing"):
        checks.parallel_load_check(floor)

    def overlapping(table, frame, workers):
        size = -(-len(frame) // workers)
        result = _parallel(table, frame, workers)
        with clients.postgres() as conn:  # a retried slice tail
            copy_good(conn, table, frame.iloc[size - 10 : size])
        return result

    with pytest.raises(WrongAnswer, match="loaded twice"):
        checks.parallel_load_check(overlapping)


def test_parallel_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.parallel_load_check(...)


def validate_good(conn, table, frame):
    n, qty, cents, keys, bad, dup = conn.execute(
        f"SELECT count(*), sum(quantity), sum(round(unit_price * 100))::bigint, sum(order_id * 1000 + line_no),"
        f" count(*) FILTER (WHERE quantity <= 0), count(*) - count(DISTINCT (order_id, line_no)) FROM {table}"
    ).fetchone()
    source = (
        int(frame.quantity.sum()),
        int((frame.unit_price * 100).round().sum()),
        int((frame.order_id * 1000 + frame.line_no).sum()),
    )
    return {
        "counts": n == len(frame),
        "checksums": (int(qty), int(cents), int(keys)) == source,
        "constraints": bad == 0 and dup == 0,
    }


def validate_counts_only(conn, table, frame):
    verdict = validate_good(conn, table, frame)
    return {**verdict, "checksums": verdict["counts"]}


def validate_no_duplicate_test(conn, table, frame):
    verdict = validate_good(conn, table, frame)
    bad = conn.execute(f"SELECT count(*) FROM {table} WHERE quantity <= 0").fetchone()[0]
    return {**verdict, "constraints": bad == 0}


def validate_comparing_decimals(conn, table, frame):
    # compares Postgres' numeric sum (a Decimal) with a numpy integer: TypeError, a common first attempt
    n, qty = conn.execute(f"SELECT count(*), sum(quantity) FROM {table}").fetchone()
    return {"counts": n == len(frame), "checksums": qty == frame.quantity.sum(), "constraints": True}


def validate_price_only(conn, table, frame):
    # the checksum covers unit_price only: a changed quantity or key goes unnoticed
    verdict = validate_good(conn, table, frame)
    cents = conn.execute(f"SELECT sum(round(unit_price * 100))::bigint FROM {table}").fetchone()[0]
    return {**verdict, "checksums": int(cents) == int((frame.unit_price * 100).round().sum())}


def validate_quantity_not_negative(conn, table, frame):
    # quantity >= 0 where the text says > 0
    verdict = validate_good(conn, table, frame)
    bad, dup = conn.execute(
        f"SELECT count(*) FILTER (WHERE quantity < 0), count(*) - count(DISTINCT (order_id, line_no)) FROM {table}"
    ).fetchone()
    return {**verdict, "constraints": bad == 0 and dup == 0}


def test_validate_rejects_a_price_only_checksum():
    with pytest.raises(WrongAnswer, match="one quantity grew by one, validate_load says checksums=True"):
        checks.validate_load_check(validate_price_only)


def test_validate_rejects_quantity_zero_allowed():
    with pytest.raises(WrongAnswer, match="quantity of 0, validate_load says constraints=True"):
        checks.validate_load_check(validate_quantity_not_negative)


def test_validate_explains_decimal_comparison():
    with pytest.raises(WrongAnswer, match="validate_load failed with TypeError") as failed:
        checks.validate_load_check(validate_comparing_decimals)
    assert "Decimal" in failed.value.hint


def test_validate_accepts_good_validator():
    checks.validate_load_check(validate_good)


def test_validate_rejects_counts_only():
    with pytest.raises(WrongAnswer, match="checksums=True, expected False"):
        checks.validate_load_check(validate_counts_only)


def test_validate_rejects_missing_duplicate_test_and_bad_shape():
    with pytest.raises(WrongAnswer, match=r"duplicated .* constraints=True, expected False"):
        checks.validate_load_check(validate_no_duplicate_test)
    with pytest.raises(WrongAnswer, match="not a dict"):
        checks.validate_load_check(lambda conn, table, frame: True)
    with pytest.raises(NotSolvedYet):
        checks.validate_load_check(...)
