"""Checks of lab 04.02 (schema evolution), against the stack's catalog and object store: the right answer passes,
realistic wrong answers are rejected with a telling message, and the placeholder is not solved yet."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import write_deltalake
from pyiceberg.types import LongType, StringType

from delab.checks.m04 import l02_schema_evolution as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.lakehouse import storage

pytestmark = pytest.mark.stack


@pytest.fixture(autouse=True)
def own_namespace(monkeypatch):
    """Scratch tables apart from the notebook's checks, so both can run at once."""
    monkeypatch.setattr(checks, "NAMESPACE", "m04_l02_t")


def todo(*args, **kwargs):
    raise NotImplementedError


# ------------------------------------------------------------------------------------------ e1 evolution


def evolve(table, rename=True, one_commit=True, required=False):
    def changes(update):
        update.add_column("loyalty_points", LongType(), required=required)
        if rename:
            update.rename_column("segment", "tier")
        else:
            update.delete_column("segment")
            update.add_column("tier", StringType())
        update.update_column("order_count", LongType())
        update.delete_column("email")

    if one_commit:
        with table.update_schema(allow_incompatible_changes=required) as update:
            changes(update)
    else:
        with table.update_schema() as update:
            update.add_column("loyalty_points", LongType())
        with table.update_schema() as update:
            update.rename_column("segment", "tier")
        with table.update_schema() as update:
            update.update_column("order_count", LongType())
        with table.update_schema() as update:
            update.delete_column("email")


def test_evolution_accepts_solution():
    checks.iceberg_schema_change(evolve)


def test_evolution_rejects_drop_and_add_instead_of_rename():
    with pytest.raises(WrongAnswer, match="not segment renamed"):
        checks.iceberg_schema_change(lambda table: evolve(table, rename=False))


def test_evolution_rejects_several_commits():
    with pytest.raises(WrongAnswer, match="4 schema versions in 4 commits"):
        checks.iceberg_schema_change(lambda table: evolve(table, one_commit=False))


def test_evolution_rejects_one_transaction_of_several_updates():
    def four_updates(table):
        with table.transaction() as transaction:
            with transaction.update_schema() as update:
                update.add_column("loyalty_points", LongType())
            with transaction.update_schema() as update:
                update.rename_column("segment", "tier")
            with transaction.update_schema() as update:
                update.update_column("order_count", LongType())
            with transaction.update_schema() as update:
                update.delete_column("email")

    with pytest.raises(WrongAnswer, match="committed once, but as 4 schema versions"):
        checks.iceberg_schema_change(four_updates)


def test_evolution_rejects_a_required_new_column():
    with pytest.raises(WrongAnswer, match="not an optional long"):
        checks.iceberg_schema_change(lambda table: evolve(table, required=True))


def test_evolution_rejects_an_update_that_is_never_committed():
    def uncommitted(table):
        update = table.update_schema()  # no `with`, no .commit()
        update.add_column("loyalty_points", LongType())
        update.rename_column("segment", "tier")

    with pytest.raises(WrongAnswer, match="nothing was committed"):
        checks.iceberg_schema_change(uncommitted)


def test_evolution_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.iceberg_schema_change(todo)


# ------------------------------------------------------------------------------------------ e2 Delta merge


def test_delta_accepts_solution():
    checks.delta_add_column(lambda table, batch: write_deltalake(table, batch, mode="append", schema_mode="merge"))


def test_delta_rejects_a_plain_append():
    with pytest.raises(WrongAnswer, match="Delta refused the batch"):
        checks.delta_add_column(lambda table, batch: write_deltalake(table, batch, mode="append"))


def test_delta_rejects_an_overwrite_with_the_new_schema():
    with pytest.raises(WrongAnswer, match="existing customers are gone"):
        checks.delta_add_column(
            lambda table, batch: write_deltalake(table, batch, mode="overwrite", schema_mode="overwrite")
        )


def test_delta_rejects_dropping_the_new_column():
    with pytest.raises(WrongAnswer, match="no loyalty_points column"):
        checks.delta_add_column(
            lambda table, batch: write_deltalake(table, batch.drop_columns(["loyalty_points"]), mode="append")
        )


def test_delta_accepts_the_uri_with_storage_options():
    checks.delta_add_column(
        lambda table, batch: write_deltalake(
            table.table_uri, batch, mode="append", schema_mode="merge", storage_options=storage.delta_storage_options()
        )
    )


def test_delta_rejects_the_uri_without_storage_options(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(name, raising=False)  # as in a learner's kernel: only storage_options reach the store
    with pytest.raises(WrongAnswer, match="could not reach the object store"):
        checks.delta_add_column(
            lambda table, batch: write_deltalake(table.table_uri, batch, mode="append", schema_mode="merge")
        )


def test_delta_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.delta_add_column(todo)


# ------------------------------------------------------------------------------------ e3 expand and backfill


def backfill(table, rounding=True, drop_old=False, append=False):
    with table.update_schema() as update:
        update.add_column("amount_cents", LongType())
    rows = table.scan().to_arrow()
    scaled = pc.multiply(rows["amount"], 100)
    cents = pc.cast(pc.round(scaled) if rounding else pc.trunc(scaled), pa.int64())
    rows = rows.set_column(rows.schema.get_field_index("amount_cents"), "amount_cents", cents)
    if append:
        table.append(rows)
    else:
        table.overwrite(rows)
    if drop_old:
        with table.update_schema() as update:
            update.delete_column("amount")


def test_backfill_accepts_solution():
    checks.expand_and_backfill_cents(backfill)


def test_backfill_rejects_a_type_change_in_place():
    def in_place(table):
        with table.update_schema() as update:
            update.update_column("amount", LongType())

    with pytest.raises(WrongAnswer, match="refused to change amount"):
        checks.expand_and_backfill_cents(in_place)


def test_backfill_rejects_truncation():
    with pytest.raises(WrongAnswer, match="one cent short"):
        checks.expand_and_backfill_cents(lambda table: backfill(table, rounding=False))


def test_backfill_rejects_a_cast_without_rounding_in_one_line():
    def cast_only(table):
        with table.update_schema() as update:
            update.add_column("amount_cents", LongType())
        rows = table.scan().to_arrow()
        cents = pc.multiply(rows["amount"], 100).cast(pa.int64())  # Arrow refuses to truncate
        table.overwrite(rows.set_column(rows.schema.get_field_index("amount_cents"), "amount_cents", cents))

    with pytest.raises(WrongAnswer, match="truncated converting to int64") as verdict:
        checks.expand_and_backfill_cents(cast_only)
    assert "refuses to drop the fraction" in verdict.value.hint


def test_backfill_rejects_float_cents():
    def float_cents(table):
        with table.update_schema() as update:
            update.add_column("amount_cents", LongType())
        rows = table.scan().to_arrow()
        cents = pc.round(pc.multiply(rows["amount"], 100))
        table.overwrite(rows.set_column(rows.schema.get_field_index("amount_cents"), "amount_cents", cents))

    with pytest.raises(WrongAnswer, match="do not match the table's schema"):
        checks.expand_and_backfill_cents(float_cents)


def test_backfill_rejects_dropping_the_old_column_now():
    with pytest.raises(WrongAnswer, match="amount is gone"):
        checks.expand_and_backfill_cents(lambda table: backfill(table, drop_old=True))


def test_backfill_rejects_appending_the_backfilled_rows():
    with pytest.raises(WrongAnswer, match="duplicates every payment"):
        checks.expand_and_backfill_cents(lambda table: backfill(table, append=True))


def test_backfill_rejects_a_column_without_backfill():
    def expand_only(table):
        with table.update_schema() as update:
            update.add_column("amount_cents", LongType())

    with pytest.raises(WrongAnswer, match="no amount_cents"):
        checks.expand_and_backfill_cents(expand_only)


def test_backfill_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.expand_and_backfill_cents(todo)
