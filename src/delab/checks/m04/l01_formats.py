"""Checks of lab 04.01 (table formats and ACID): an Iceberg upsert, a commit that survives a concurrent writer, and
a Delta MERGE of change records. Each check builds its own scratch table in the stack's catalog and object store
(namespace ``m04_l01_check``), runs the learner's function on it and compares with a result computed in pandas."""

from __future__ import annotations

import contextlib
from typing import Any

import pandas as pd
import pyarrow as pa

from delab import lakehouse
from delab.grading import WrongAnswer, exercise, learner_code
from delab.lakehouse import data, storage

NAMESPACE = "m04_l01_check"


def scratch_iceberg(
    name: str, rows: pa.Table, properties: dict[str, str] | None = None, namespace: str | None = None
) -> Any:
    """A new Iceberg table ``<namespace>.<name>`` (``m04_l01_check`` by default) holding ``rows``, dropped and
    purged first if it exists."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError

    cat, namespace = lakehouse.catalog(), namespace or NAMESPACE
    with contextlib.suppress(NamespaceAlreadyExistsError):
        cat.create_namespace(namespace)
    identifier = f"{namespace}.{name}"
    with contextlib.suppress(NoSuchTableError):
        cat.drop_table(identifier)  # its files go with the prefix below (a purge warns about erased files)
    storage.delete_under(f"{lakehouse.warehouse()}/{namespace}/{name}")
    table = cat.create_table(identifier, schema=rows.schema, properties=properties or {})
    table.append(rows)
    return cat.load_table(identifier)


def _frame(table: pa.Table, key: list[str]) -> pd.DataFrame:
    return table.to_pandas().sort_values(key, ignore_index=True)


def _diagnose_keyed(got: pd.DataFrame, want: pd.DataFrame, base: pd.DataFrame, changes: pd.DataFrame, key: str):
    """Name the usual upsert/merge mistakes, comparing the table after the learner's write with the expected one."""
    if got[key].duplicated().any():
        dupes = int(got[key].duplicated().sum())
        raise WrongAnswer(
            f"{dupes} {key}s appear twice: the changed rows were added next to the old ones.",
            hint="an append never replaces a row; match the changes to the table on the key.",
        )
    if len(got) <= len(changes) < len(base):
        raise WrongAnswer(
            f"the table holds {len(got)} rows, about as many as the changes: the rest of the table is gone.",
            hint="a full overwrite replaces the whole table; only the matching rows may change.",
        )
    missing = sorted(set(want[key]) - set(got[key]))
    extra = sorted(set(got[key]) - set(want[key]))
    if missing:
        raise WrongAnswer(
            f"{len(missing)} {key}s are missing, e.g. {missing[:3]}.",
            hint="rows of the changes that match nothing in the table must be inserted.",
        )
    if extra:
        raise WrongAnswer(
            f"{len(extra)} {key}s should not be in the table, e.g. {extra[:3]}.",
            hint="look again at which changes remove a row.",
        )
    merged = want.merge(got, on=key, suffixes=("", "_got"))
    for column in want.columns:
        if column == key:
            continue
        left, right = merged[column], merged[f"{column}_got"]
        differs = ~((left == right) | (left.isna() & right.isna()))
        if differs.any():
            sample = merged.loc[differs, key].head(3).tolist()
            raise WrongAnswer(
                f"{int(differs.sum())} rows have an old or wrong {column!r}, e.g. {key} {sample}.",
                hint="rows that match a change must take the change's values.",
            )


# ------------------------------------------------------------------------------------------------ e1 upsert


@learner_code("upsert_orders")
def _run_upsert(fn, table, changes):
    return fn(table, changes)


@exercise("m04.l01.e1")
def iceberg_upsert(upsert_orders) -> None:
    """Changed orders replace their old rows, new orders are inserted, nothing else moves."""
    orders = data.shop_table("orders")
    base = orders.slice(0, 300)
    updated = orders.slice(40, 30).to_pandas().assign(status="refunded")
    # a few changes also carry a coupon: an upsert that copies only the status (the column the lab's example
    # changes) leaves those rows with their old coupon
    updated.loc[updated.index[:5], "coupon_code"] = "LATE-REFUND"
    new = orders.slice(300, 12).to_pandas()
    changes = pa.Table.from_pandas(pd.concat([updated, new], ignore_index=True), schema=orders.schema)
    table = scratch_iceberg("orders_upsert", base)
    _run_upsert(upsert_orders, table, changes)
    got = _frame(table.catalog.load_table(table.name()).scan().to_arrow(), ["order_id"])
    base_frame, change_frame = base.to_pandas(), changes.to_pandas()
    want = (
        pd.concat([base_frame[~base_frame.order_id.isin(change_frame.order_id)], change_frame])
        .sort_values("order_id", ignore_index=True)
        .astype(base_frame.dtypes.to_dict())
    )
    _diagnose_keyed(got, want, base_frame, change_frame, "order_id")


# ------------------------------------------------------------------------------------- e2 concurrent writers


@learner_code("append_with_retry")
def _run_retry(fn, table, rows, **kwargs):
    return fn(table, rows, **kwargs)


@exercise("m04.l01.e2")
def commit_retry(append_with_retry) -> None:
    """A writer whose table is stale loses the race, refreshes, and lands its rows exactly once."""
    from pyiceberg.exceptions import CommitFailedException

    orders = data.shop_table("orders")
    base, theirs, ours = orders.slice(0, 100), orders.slice(100, 20), orders.slice(120, 25)
    # automatic retries off: the learner's function is the only thing that can resolve the conflict
    table = scratch_iceberg("orders_race", base, {"commit.retry.num-retries": "0"})
    stale = table.catalog.load_table(table.name())
    table.append(theirs)  # the other writer commits first; `stale` still points at the old snapshot
    try:
        tries = _run_retry(append_with_retry, stale, ours)
    except WrongAnswer as wrong:
        if "CommitFailedException" in wrong.message:
            raise WrongAnswer(
                "the commit still failed with CommitFailedException: the retry did not resolve the conflict.",
                hint="retrying from the same stale metadata fails again; load the table's current state first.",
            ) from None
        raise
    except CommitFailedException:  # pragma: no cover - learner_code turns it into WrongAnswer
        raise
    got = table.catalog.load_table(table.name()).scan(selected_fields=("order_id",)).to_arrow().to_pandas()
    counts = got.order_id.value_counts()
    if not set(ours["order_id"].to_pylist()) <= set(got.order_id):
        raise WrongAnswer(
            "the stale writer's rows are not in the table: its failed commit was dropped.",
            hint="a CommitFailedException means nothing was written; the rows must be committed again.",
        )
    if not set(theirs["order_id"].to_pylist()) <= set(got.order_id):
        raise WrongAnswer(
            "the other writer's rows disappeared: the retry replaced the table instead of appending.",
            hint="the retry must add rows on top of the current snapshot.",
        )
    if (counts > 1).any():
        raise WrongAnswer(
            f"{int((counts > 1).sum())} orders were written twice.",
            hint="retry only when the commit failed, and stop after the first success.",
        )
    if len(got) != base.num_rows + theirs.num_rows + ours.num_rows:
        raise WrongAnswer(f"the table has {len(got)} rows, not the base plus both writers' rows.")
    if tries != 2:
        raise WrongAnswer(
            f"append_with_retry returned {tries!r} after one lost race and one commit; expected 2.",
            hint="return how many times the function tried to append.",
        )
    # no conflict at all: exactly one commit, no extra work
    before = len(table.catalog.load_table(table.name()).snapshots())
    fresh = table.catalog.load_table(table.name())
    extra = orders.slice(200, 5)
    tries = _run_retry(append_with_retry, fresh, extra)
    after = table.catalog.load_table(table.name())
    if len(after.snapshots()) != before + 1 or after.scan().to_arrow().num_rows != len(got) + extra.num_rows:
        raise WrongAnswer(
            "without any conflict, the function did not append its rows in exactly one commit.",
            hint="the first attempt should simply append.",
        )
    if tries != 1:
        raise WrongAnswer(f"without any conflict, append_with_retry returned {tries!r}; expected 1.")
    # out of attempts: give up and re-raise, rather than retrying for ever
    stale = table.catalog.load_table(table.name())
    table.catalog.load_table(table.name()).append(orders.slice(205, 5))  # the other writer wins again
    try:
        tries = _run_retry(append_with_retry, stale, orders.slice(210, 5), attempts=1)
    except WrongAnswer as wrong:
        if "CommitFailedException" not in wrong.message:
            raise WrongAnswer(
                f"with attempts=1 and a lost race, {wrong.message}",
                hint="once the attempts are used up, re-raise the CommitFailedException itself.",
            ) from None
    else:
        raise WrongAnswer(
            f"with attempts=1 and a lost race, the function still committed (it returned {tries!r}).",
            hint="count the attempts: after `attempts` failed commits, give up and re-raise the last failure.",
        )


# --------------------------------------------------------------------------------------------- e3 Delta MERGE


def scratch_delta(name: str, rows: pa.Table) -> Any:
    """A new Delta table ``delta/m04_l01_check/<name>`` on the object store holding ``rows``."""
    from deltalake import write_deltalake

    uri = storage.delta_uri(NAMESPACE, name)
    storage.delete_under(uri)
    write_deltalake(uri, rows, storage_options=storage.delta_storage_options())
    return storage.delta_table(uri)


@learner_code("merge_changes")
def _run_merge(fn, table, changes):
    return fn(table, changes)


@exercise("m04.l01.e3")
def delta_cdc_merge(merge_changes) -> None:
    """One MERGE applies updates, inserts and deletes of change records to a Delta table."""
    payments = data.shop_table("payments")
    base = payments.slice(0, 200)
    new = payments.slice(200, 10).to_pandas().assign(op="upsert")
    gone = payments.slice(210, 3).to_pandas().assign(op="delete")  # deletes of rows the table never had
    # two refunds are partial (a new amount too): a merge that copies only the status leaves their old amount
    feed = data.payment_changes(base).to_pandas()
    partial = feed.index[(feed.op == "upsert")][:2]
    feed.loc[partial, "amount"] = (feed.loc[partial, "amount"] / 2).round(2)
    changes = pa.concat_tables(
        [
            pa.Table.from_pandas(feed, preserve_index=False),
            pa.Table.from_pandas(pd.concat([new, gone]), preserve_index=False),
        ],
        promote_options="default",
    )
    table = scratch_delta("payments_merge", base)
    version = table.version()
    _run_merge(merge_changes, table, changes)
    after = storage.delta_table(table.table_uri)
    got_arrow = after.to_pyarrow_table()
    if "op" in got_arrow.column_names:
        raise WrongAnswer(
            "the table gained an 'op' column: the change type was written as data.",
            hint="the merge should copy every column except the change type.",
        )
    got = _frame(got_arrow, ["payment_id"])
    base_frame, change_frame = base.to_pandas(), changes.to_pandas()
    upserts = change_frame[change_frame.op == "upsert"].drop(columns="op")
    deletes = set(change_frame.loc[change_frame.op == "delete", "payment_id"])
    deleted, unknown = deletes & set(base_frame.payment_id), deletes - set(base_frame.payment_id)
    if deleted <= set(got.payment_id):
        raise WrongAnswer(
            f"the {len(deleted)} payments marked 'delete' are still in the table.",
            hint="a matched change can delete its target row too; when several clauses match a row, the first "
            "one whose predicate holds wins.",
        )
    if unknown & set(got.payment_id):
        raise WrongAnswer(
            f"{len(unknown & set(got.payment_id))} 'delete' records of payments the table never had were inserted.",
            hint="a change that matches nothing is inserted only when it is an upsert.",
        )
    keep = base_frame[~base_frame.payment_id.isin(change_frame.payment_id)]
    want = pd.concat([keep, upserts]).sort_values("payment_id", ignore_index=True)
    _diagnose_keyed(got, want, base_frame, upserts, "payment_id")
    if after.version() != version + 1:
        raise WrongAnswer(
            f"the changes took {after.version() - version} commits: readers could see the table half-changed.",
            hint="one MERGE statement does updates, inserts and deletes in a single commit.",
        )
