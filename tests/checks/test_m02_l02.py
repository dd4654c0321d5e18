"""Checks of lab 02.02 (incremental loading): right answers pass, realistic wrong ones are rejected."""

from __future__ import annotations

import pytest

from delab.checks.m02 import l02_incremental as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.loading import incremental

pytestmark = pytest.mark.stack


def _page(conn, table, where, params, limit):
    return conn.execute(
        f"SELECT * FROM {table} {where} ORDER BY updated_at, order_id LIMIT %s", (*params, limit)
    ).fetchall()


def keyset_good(conn, table, after, limit):
    if after is None:
        return _page(conn, table, "", (), limit)
    return _page(conn, table, "WHERE (updated_at, order_id) > (%s, %s)", after, limit)


def timestamp_only(conn, table, after, limit):
    if after is None:
        return _page(conn, table, "", (), limit)
    return _page(conn, table, "WHERE updated_at > %s", (after[0],), limit)


def timestamp_inclusive(conn, table, after, limit):
    if after is None:
        return _page(conn, table, "", (), limit)
    return _page(conn, table, "WHERE updated_at >= %s", (after[0],), limit)


def test_keyset_accepts_row_comparison():
    checks.keyset_batches(keyset_good)


def test_keyset_rejects_timestamp_only():
    with pytest.raises(WrongAnswer, match="never returned, all of them sharing"):
        checks.keyset_batches(timestamp_only)


def test_keyset_says_when_rows_are_not_tuples():
    # used to crash on row[-1]: rows as dicts (a dict_row cursor)
    def as_dicts(conn, table, after, limit):
        names = ["order_id", "customer_id", "channel", "status", "updated_at"]
        return [dict(zip(names, row, strict=True)) for row in keyset_good(conn, table, after, limit)]

    with pytest.raises(WrongAnswer, match="expected tuples of every column"):
        checks.keyset_batches(as_dicts)


def test_keyset_rejects_inclusive_and_placeholder():
    with pytest.raises(WrongAnswer, match=r"came back twice|never ended"):
        checks.keyset_batches(timestamp_inclusive)
    with pytest.raises(NotSolvedYet):
        checks.keyset_batches(...)


UPSERT_GOOD = """
INSERT INTO {target} AS t SELECT * FROM {staging}
ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, channel = EXCLUDED.channel,
  status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
WHERE t.updated_at < EXCLUDED.updated_at
"""
MERGE_GOOD = """
MERGE INTO {target} t USING {staging} s ON t.order_id = s.order_id
WHEN MATCHED AND s.updated_at > t.updated_at THEN
  UPDATE SET customer_id = s.customer_id, channel = s.channel, status = s.status, updated_at = s.updated_at
WHEN NOT MATCHED THEN INSERT VALUES (s.order_id, s.customer_id, s.channel, s.status, s.updated_at)
"""


def test_upsert_accepts_on_conflict_and_merge():
    checks.newer_wins_upsert(UPSERT_GOOD)
    checks.newer_wins_upsert(MERGE_GOOD)


def test_upsert_rejects_unconditional_update():
    with pytest.raises(WrongAnswer, match=r"a replay of the first .* went back to an older version"):
        checks.newer_wins_upsert(UPSERT_GOOD.replace("WHERE t.updated_at < EXCLUDED.updated_at", ""))


def test_upsert_rejects_rewriting_an_equal_version():
    with pytest.raises(WrongAnswer, match=r"the same batch a second time rewrote 300 rows"):
        checks.newer_wins_upsert(UPSERT_GOOD.replace("t.updated_at < EXCLUDED", "t.updated_at <= EXCLUDED"))


def test_upsert_rejects_updating_only_status_and_time():
    with pytest.raises(WrongAnswer, match="old customer_id and channel"):
        checks.newer_wins_upsert(
            UPSERT_GOOD.replace("customer_id = EXCLUDED.customer_id, channel = EXCLUDED.channel,", "")
        )
    partial_merge = MERGE_GOOD.replace("customer_id = s.customer_id, channel = s.channel, ", "")
    with pytest.raises(WrongAnswer, match="SET every non-key column"):
        checks.newer_wins_upsert(partial_merge)


def test_upsert_rejects_do_nothing_plain_insert_and_bad_shape():
    with pytest.raises(WrongAnswer, match="still hold an older version"):
        checks.newer_wins_upsert("INSERT INTO {target} SELECT * FROM {staging} ON CONFLICT DO NOTHING")
    with pytest.raises(WrongAnswer, match="upsert_sql failed with UniqueViolation"):
        checks.newer_wins_upsert("INSERT INTO {target} SELECT * FROM {staging}")
    with pytest.raises(WrongAnswer, match="placeholders"):
        checks.newer_wins_upsert("INSERT INTO m02_l02.dw_orders SELECT * FROM m02_l02.stage")
    with pytest.raises(NotSolvedYet):
        checks.newer_wins_upsert(...)


def scd2_good(conn, dim, snapshot, as_of):
    with conn.transaction():
        conn.execute(
            f"""CREATE TEMP TABLE changed ON COMMIT DROP AS SELECT s.* FROM {snapshot} s
                LEFT JOIN {dim} d ON d.customer_id = s.customer_id AND d.is_current
                WHERE d.customer_id IS NULL OR (d.country, d.segment) IS DISTINCT FROM (s.country, s.segment)"""
        )
        conn.execute(
            f"UPDATE {dim} d SET valid_to = %s, is_current = false FROM changed c "
            "WHERE d.customer_id = c.customer_id AND d.is_current",
            (as_of,),
        )
        conn.execute(
            f"INSERT INTO {dim} (customer_id, country, segment, valid_from, valid_to, is_current) "
            "SELECT customer_id, country, segment, %s, NULL, true FROM changed",
            (as_of,),
        )


def scd1_overwrite(conn, dim, snapshot, as_of):
    conn.execute(
        f"""MERGE INTO {dim} d USING {snapshot} s ON d.customer_id = s.customer_id
            WHEN MATCHED THEN UPDATE SET country = s.country, segment = s.segment
            WHEN NOT MATCHED THEN INSERT (customer_id, country, segment, valid_from, valid_to, is_current)
              VALUES (s.customer_id, s.country, s.segment, %s, NULL, true)""",
        (as_of,),
    )


def scd2_always_new_version(conn, dim, snapshot, as_of):
    with conn.transaction():
        conn.execute(
            f"UPDATE {dim} d SET valid_to = %s, is_current = false FROM {snapshot} s "
            "WHERE d.customer_id = s.customer_id AND d.is_current",
            (as_of,),
        )
        conn.execute(
            f"INSERT INTO {dim} (customer_id, country, segment, valid_from, valid_to, is_current) "
            f"SELECT customer_id, country, segment, %s, NULL, true FROM {snapshot}",
            (as_of,),
        )


def scd2_without_closing(conn, dim, snapshot, as_of):
    conn.execute(
        f"""INSERT INTO {dim} (customer_id, country, segment, valid_from, valid_to, is_current)
            SELECT s.customer_id, s.country, s.segment, %s, NULL, true FROM {snapshot} s
            LEFT JOIN {dim} d ON d.customer_id = s.customer_id AND d.is_current
            WHERE d.customer_id IS NULL OR (d.country, d.segment) IS DISTINCT FROM (s.country, s.segment)""",
        (as_of,),
    )


def scd2_variant(find=None, close=None):
    """The right load with one piece replaced by a common mistake."""

    def load(conn, dim, snapshot, as_of):
        changed = (
            f"SELECT s.* FROM {snapshot} s LEFT JOIN {dim} d ON d.customer_id = s.customer_id AND d.is_current "
            "WHERE d.customer_id IS NULL OR (d.country, d.segment) IS DISTINCT FROM (s.country, s.segment)"
        )
        with conn.transaction():
            conn.execute(f"CREATE TEMP TABLE changed ON COMMIT DROP AS {find or changed}".format(s=snapshot, d=dim))
            conn.execute(
                f"UPDATE {dim} d SET valid_to = %s, is_current = false FROM changed c "
                f"WHERE d.customer_id = c.customer_id {'AND d.is_current' if close is None else close}",
                (as_of,),
            )
            conn.execute(
                f"INSERT INTO {dim} (customer_id, country, segment, valid_from, valid_to, is_current) "
                "SELECT customer_id, country, segment, %s, NULL, true FROM changed",
                (as_of,),
            )

    return load


def test_scd2_rejects_not_equal_instead_of_is_distinct_from():
    not_equal = (
        "SELECT s.* FROM {s} s LEFT JOIN {d} d ON d.customer_id = s.customer_id AND d.is_current "
        "WHERE d.customer_id IS NULL OR d.country <> s.country OR d.segment <> s.segment"
    )
    with pytest.raises(WrongAnswer, match="to or from NULL"):
        checks.scd2_history(scd2_variant(find=not_equal))


def test_scd2_rejects_closing_versions_that_are_not_current():
    with pytest.raises(WrongAnswer, match="already closed got a later valid_to"):
        checks.scd2_history(scd2_variant(close=""))


def test_scd2_accepts_close_then_insert():
    checks.scd2_history(scd2_good)


def test_scd2_rejects_overwrite_and_unconditional_versions():
    with pytest.raises(WrongAnswer, match="keeps history"):
        checks.scd2_history(scd1_overwrite)
    with pytest.raises(WrongAnswer, match="did not change gets no new version"):
        checks.scd2_history(scd2_always_new_version)


def test_scd2_rejects_unclosed_versions_and_placeholder():
    with pytest.raises(WrongAnswer, match="more than one current version"):
        checks.scd2_history(scd2_without_closing)

    def stub(conn, dim, snapshot, as_of):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.scd2_history(stub)


BOUND_SQL = """SELECT least(now(), min(xact_start)) FROM pg_stat_activity
               WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"""
RANGE_SQL = """SELECT order_id, customer_id, channel, status, updated_at FROM {schema}.src_orders
               WHERE (%(wm)s::timestamptz IS NULL OR updated_at >= %(wm)s) AND updated_at < %(bound)s"""


def run_good(conn, schema):
    with conn.transaction():
        watermark = incremental.get_watermark(conn, schema)
        (bound,) = conn.execute(BOUND_SQL).fetchone()
        rows = conn.execute(RANGE_SQL.format(schema=schema), {"wm": watermark, "bound": bound}).fetchall()
        incremental.upsert_rows(conn, schema, rows)
        if watermark is None or bound > watermark:
            incremental.set_watermark(conn, schema, bound)


def run_full_reload_without_state(conn, schema):
    rows = conn.execute(f"SELECT * FROM {schema}.src_orders").fetchall()
    incremental.upsert_rows(conn, schema, rows)


def run_closed_range(conn, schema):
    # `<=` at both ends: the row at the watermark is taken again by every run
    with conn.transaction():
        watermark = incremental.get_watermark(conn, schema)
        (bound,) = conn.execute(BOUND_SQL).fetchone()
        rows = conn.execute(
            RANGE_SQL.format(schema=schema).replace("updated_at < %(bound)s", "updated_at <= %(bound)s"),
            {"wm": watermark, "bound": bound},
        ).fetchall()
        incremental.upsert_rows(conn, schema, rows)
        latest = max((r[-1] for r in rows), default=watermark)
        if latest is not None:
            incremental.set_watermark(conn, schema, latest)


def run_open_lower_bound(conn, schema):
    # the right bound, but `updated_at > watermark`: the late row, stamped exactly at the held bound, is skipped
    with conn.transaction():
        watermark = incremental.get_watermark(conn, schema)
        (bound,) = conn.execute(BOUND_SQL).fetchone()
        rows = conn.execute(
            RANGE_SQL.format(schema=schema).replace("updated_at >= %(wm)s", "updated_at > %(wm)s"),
            {"wm": watermark, "bound": bound},
        ).fetchall()
        incremental.upsert_rows(conn, schema, rows)
        incremental.set_watermark(conn, schema, bound)


def test_run_accepts_bounded_half_open_runs():
    checks.late_commit_safe_run(run_good)


def test_run_rejects_naive_max_watermark():
    with pytest.raises(WrongAnswer, match=r"order 1 .* never reached the target"):
        checks.late_commit_safe_run(lambda conn, schema: incremental.naive_run(conn, schema))


def test_run_rejects_open_lower_bound():
    # Another session's open write transaction (a notebook running next to the tests) rightly holds the bound
    # further back, and then this answer does not lose order 1 on that attempt: the check must reject it on at
    # least one of three attempts, and say why.
    verdicts = []
    for _ in range(3):
        try:
            checks.late_commit_safe_run(run_open_lower_bound)
        except WrongAnswer as wrong:
            verdicts.append(wrong.message)
            break
    assert verdicts and "stamped exactly at that watermark" in verdicts[0]


def test_run_rejects_stateless_reload_and_rewrites():
    with pytest.raises(WrongAnswer, match="has no row for the pipeline"):
        checks.late_commit_safe_run(run_full_reload_without_state)
    with pytest.raises(WrongAnswer, match="stamped exactly at a run's upper bound"):
        checks.late_commit_safe_run(run_closed_range)
    with pytest.raises(NotSolvedYet):
        checks.late_commit_safe_run(...)


def run_without_transaction(conn, schema):
    watermark = incremental.get_watermark(conn, schema)
    (bound,) = conn.execute(BOUND_SQL).fetchone()
    rows = conn.execute(RANGE_SQL.format(schema=schema), {"wm": watermark, "bound": bound}).fetchall()
    incremental.upsert_rows(conn, schema, rows)
    incremental.set_watermark(conn, schema, bound)


def run_watermark_first_without_transaction(conn, schema):
    watermark = incremental.get_watermark(conn, schema)
    (bound,) = conn.execute(BOUND_SQL).fetchone()
    incremental.set_watermark(conn, schema, bound)
    rows = conn.execute(RANGE_SQL.format(schema=schema), {"wm": watermark, "bound": bound}).fetchall()
    incremental.upsert_rows(conn, schema, rows)


def run_bound_inclusive(conn, schema):
    # the text's half-open range closed at the top: the row stamped at the bound is taken by two runs
    with conn.transaction():
        watermark = incremental.get_watermark(conn, schema)
        (bound,) = conn.execute(BOUND_SQL).fetchone()
        rows = conn.execute(
            RANGE_SQL.format(schema=schema).replace("updated_at < %(bound)s", "updated_at <= %(bound)s"),
            {"wm": watermark, "bound": bound},
        ).fetchall()
        incremental.upsert_rows(conn, schema, rows)
        if watermark is None or bound > watermark:
            incremental.set_watermark(conn, schema, bound)


def test_run_rejects_writes_outside_one_transaction():
    with pytest.raises(WrongAnswer, match=r"saving the watermark failed, the run still left .* rows loaded"):
        checks.late_commit_safe_run(run_without_transaction)
    with pytest.raises(WrongAnswer, match="loading the rows failed, the run still left the watermark saved"):
        checks.late_commit_safe_run(run_watermark_first_without_transaction)


def test_run_rejects_an_inclusive_upper_bound():
    # as for the open lower bound: a writer elsewhere can hold the bound back on one attempt
    verdicts = []
    for _ in range(3):
        try:
            checks.late_commit_safe_run(run_bound_inclusive)
        except WrongAnswer as wrong:
            verdicts.append(wrong.message)
            break
    assert verdicts and "stamped exactly at a run's upper bound" in verdicts[0]
