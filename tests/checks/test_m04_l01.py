"""Checks of lab 04.01 (table formats and ACID), against the stack's catalog and object store: the right answer
passes, realistic wrong answers are rejected with a telling message, and the placeholder is not solved yet."""

from __future__ import annotations

import contextlib

import pytest
from pyiceberg.exceptions import CommitFailedException

from delab.checks.m04 import l01_formats as checks
from delab.grading import NotSolvedYet, WrongAnswer

pytestmark = pytest.mark.stack


@pytest.fixture(autouse=True)
def own_namespace(monkeypatch):
    """Scratch tables apart from the notebook's checks, so both can run at once."""
    monkeypatch.setattr(checks, "NAMESPACE", "m04_l01_t")


def todo(*args, **kwargs):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------- e1 upsert


def test_upsert_accepts_solution():
    checks.iceberg_upsert(lambda table, changes: table.upsert(changes, join_cols=["order_id"]))


def test_upsert_rejects_an_append():
    with pytest.raises(WrongAnswer, match="appear twice"):
        checks.iceberg_upsert(lambda table, changes: table.append(changes))


def test_upsert_rejects_a_full_overwrite():
    with pytest.raises(WrongAnswer, match="rest of the table is gone"):
        checks.iceberg_upsert(lambda table, changes: table.overwrite(changes))


def test_upsert_rejects_updates_without_inserts():
    with pytest.raises(WrongAnswer, match="missing"):
        checks.iceberg_upsert(
            lambda table, changes: table.upsert(changes, join_cols=["order_id"], when_not_matched_insert_all=False)
        )


def test_upsert_rejects_copying_only_the_status():
    # used to pass: every change differed from its row in status only
    def upsert_status_only(table, changes):
        import pandas as pd
        import pyarrow as pa

        arrow = table.scan().to_arrow()
        current, new = arrow.to_pandas(), changes.to_pandas()
        matched = current[current.order_id.isin(new.order_id)].copy()
        matched["status"] = matched.order_id.map(new.set_index("order_id").status)
        inserts = new[~new.order_id.isin(current.order_id)]
        rows = pa.Table.from_pandas(pd.concat([matched, inserts]), schema=arrow.schema, preserve_index=False)
        table.upsert(rows, join_cols=["order_id"])

    with pytest.raises(WrongAnswer, match="coupon_code"):
        checks.iceberg_upsert(upsert_status_only)


def test_upsert_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.iceberg_upsert(todo)
    with pytest.raises(NotSolvedYet):
        checks.iceberg_upsert(...)


# ------------------------------------------------------------------------------------------- e2 retry


def retry_solution(table, rows, attempts=3):
    for attempt in range(1, attempts + 1):
        try:
            table.append(rows)
            return attempt
        except CommitFailedException:
            if attempt == attempts:
                raise
            table.refresh()


def test_retry_accepts_solution():
    checks.commit_retry(retry_solution)


def test_retry_rejects_a_retry_without_refresh():
    def no_refresh(table, rows, attempts=3):
        for attempt in range(1, attempts + 1):
            try:
                table.append(rows)
                return attempt
            except CommitFailedException:
                if attempt == attempts:
                    raise

    with pytest.raises(WrongAnswer, match="did not resolve the conflict"):
        checks.commit_retry(no_refresh)


def test_retry_rejects_swallowing_the_conflict():
    def swallow(table, rows, attempts=3):
        with contextlib.suppress(CommitFailedException):
            table.append(rows)
        return 1

    with pytest.raises(WrongAnswer, match="failed commit was dropped"):
        checks.commit_retry(swallow)


def test_retry_rejects_an_overwrite_as_retry():
    def overwrite_on_conflict(table, rows, attempts=3):
        import pyarrow as pa

        known = table.scan().to_arrow()  # the table as this writer last saw it
        try:
            table.append(rows)
        except CommitFailedException:
            table.refresh()
            table.overwrite(pa.concat_tables([known, rows]))  # "my view plus my rows" wins
        return 2

    with pytest.raises(WrongAnswer, match="other writer's rows disappeared"):
        checks.commit_retry(overwrite_on_conflict)


def test_retry_rejects_retrying_for_ever():
    def unbounded(table, rows, attempts=3):
        tries = 0
        while True:
            tries += 1
            try:
                table.append(rows)
                return tries
            except CommitFailedException:
                table.refresh()

    with pytest.raises(WrongAnswer, match="with attempts=1 and a lost race, the function still committed"):
        checks.commit_retry(unbounded)


def test_retry_rejects_not_returning_the_attempts():
    def no_count(table, rows, attempts=3):
        retry_solution(table, rows, attempts)

    with pytest.raises(WrongAnswer, match="returned None after one lost race"):
        checks.commit_retry(no_count)


def test_retry_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.commit_retry(todo)


# ------------------------------------------------------------------------------------------ e3 Delta MERGE


def merge_solution(table, changes, delete=True, except_op=True):
    merger = table.merge(changes, "s.payment_id = t.payment_id", source_alias="s", target_alias="t")
    if delete:
        merger = merger.when_matched_delete(predicate="s.op = 'delete'")
    except_cols = ["op"] if except_op else None
    return (
        merger.when_matched_update_all(predicate="s.op = 'upsert'", except_cols=except_cols)
        .when_not_matched_insert_all(predicate="s.op = 'upsert'", except_cols=except_cols)
        .execute()
    )


def test_merge_accepts_solution():
    checks.delta_cdc_merge(merge_solution)


def test_merge_rejects_updating_only_the_status():
    # used to pass: every upsert of a known payment differed in status only
    def status_only(table, changes):
        return (
            table.merge(changes, "s.payment_id = t.payment_id", source_alias="s", target_alias="t")
            .when_matched_delete(predicate="s.op = 'delete'")
            .when_matched_update(updates={"status": "s.status"}, predicate="s.op = 'upsert'")
            .when_not_matched_insert_all(predicate="s.op = 'upsert'", except_cols=["op"])
            .execute()
        )

    with pytest.raises(WrongAnswer, match="old or wrong 'amount'"):
        checks.delta_cdc_merge(status_only)


def test_merge_rejects_ignoring_deletes():
    with pytest.raises(WrongAnswer, match="marked 'delete' are still in the table"):
        checks.delta_cdc_merge(lambda table, changes: merge_solution(table, changes, delete=False))


def test_merge_rejects_inserting_unmatched_deletes():
    def insert_everything(table, changes):
        return (
            table.merge(changes, "s.payment_id = t.payment_id", "s", "t")
            .when_matched_delete(predicate="s.op = 'delete'")
            .when_matched_update_all(except_cols=["op"])
            .when_not_matched_insert_all(except_cols=["op"])
            .execute()
        )

    with pytest.raises(WrongAnswer, match="'delete' records of payments the table never had were inserted"):
        checks.delta_cdc_merge(insert_everything)


def test_merge_rejects_the_update_clause_before_the_delete():
    def update_first(table, changes):
        return (
            table.merge(changes, "s.payment_id = t.payment_id", "s", "t")
            .when_matched_update_all(except_cols=["op"])
            .when_matched_delete(predicate="s.op = 'delete'")
            .when_not_matched_insert_all(predicate="s.op = 'upsert'", except_cols=["op"])
            .execute()
        )

    with pytest.raises(WrongAnswer, match="marked 'delete' are still in the table"):
        checks.delta_cdc_merge(update_first)


def test_merge_rejects_writing_the_op_column():
    with pytest.raises(WrongAnswer, match="'op' column"):
        checks.delta_cdc_merge(_merge_with_op)


def _merge_with_op(table, changes):
    return (
        table.merge(changes, "s.payment_id = t.payment_id", "s", "t", merge_schema=True)
        .when_matched_delete(predicate="s.op = 'delete'")
        .when_matched_update_all(predicate="s.op = 'upsert'")
        .when_not_matched_insert_all(predicate="s.op = 'upsert'")
        .execute()
    )


def test_merge_rejects_delete_then_append_in_two_commits():
    import pyarrow.compute as pc
    from deltalake import write_deltalake

    def two_steps(table, changes):
        ids = ", ".join(str(i) for i in changes["payment_id"].to_pylist())
        table.delete(f"payment_id IN ({ids})")
        upserts = changes.filter(pc.equal(changes["op"], "upsert")).drop_columns(["op"])
        write_deltalake(table, upserts, mode="append")

    with pytest.raises(WrongAnswer, match="2 commits"):
        checks.delta_cdc_merge(two_steps)


def test_merge_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.delta_cdc_merge(todo)
