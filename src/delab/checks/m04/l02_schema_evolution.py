"""Checks of lab 04.02 (schema evolution): an Iceberg schema change in one commit that keeps field ids, a Delta
append that adds a column, and the expand-and-backfill step of a breaking change. Each check builds its own
scratch table (namespace ``m04_l02_check``), runs the learner's function and inspects the table's metadata and
rows."""

from __future__ import annotations

import pyarrow as pa

from delab.checks.m04.l01_formats import scratch_iceberg
from delab.grading import WrongAnswer, exercise, learner_code
from delab.lakehouse import data, storage

NAMESPACE = "m04_l02_check"


def _scratch_iceberg(name: str, rows: pa.Table):
    return scratch_iceberg(name, rows, namespace=NAMESPACE)


# --------------------------------------------------------------------------------------- e1 Iceberg evolution


@learner_code("evolve_customers")
def _run_evolve(fn, table):
    return fn(table)


@exercise("m04.l02.e1")
def iceberg_schema_change(evolve_customers) -> None:
    """Add, rename, widen and drop in one schema change; renamed and widened columns keep their ids and data."""
    from pyiceberg.types import LongType

    before_rows = data.customers_v1()
    table = _scratch_iceberg("customers_evolve", before_rows)
    old, commits_before = table.schema(), len(table.metadata.metadata_log)
    _run_evolve(evolve_customers, table)
    table = table.catalog.load_table(table.name())
    new = table.schema()
    names = {f.name: f for f in new.fields}
    if new.schema_id == old.schema_id:
        raise WrongAnswer(
            "the table's schema did not change: nothing was committed.",
            hint="a schema update commits when its `with` block ends (or when you call .commit() on it).",
        )
    if "tier" not in names:
        raise WrongAnswer("the table has no column 'tier'.", hint="segment becomes tier.")
    if "segment" in names:
        raise WrongAnswer("'segment' is still a column next to 'tier'.", hint="a rename leaves one column.")
    if names["tier"].field_id != old.find_field("segment").field_id:
        raise WrongAnswer(
            f"'tier' is a new column (field id {names['tier'].field_id}), not segment renamed "
            f"(id {old.find_field('segment').field_id}): every existing customer lost its value.",
            hint="Iceberg tracks columns by id; dropping and adding makes a new, empty column.",
        )
    if "email" in names:
        raise WrongAnswer("'email' is still in the schema.", hint="drop it.")
    if "loyalty_points" not in names:
        raise WrongAnswer("the table has no column 'loyalty_points'.", hint="add it as an optional long.")
    if not isinstance(names["loyalty_points"].field_type, LongType) or names["loyalty_points"].required:
        raise WrongAnswer(
            f"loyalty_points is {'required ' if names['loyalty_points'].required else ''}"
            f"{names['loyalty_points'].field_type}, not an optional long.",
            hint="existing rows have no value for a new column, so it must be optional.",
        )
    count = names.get("order_count")
    if count is None or count.field_id != old.find_field("order_count").field_id:
        raise WrongAnswer(
            "order_count is missing or was re-created: its values are gone.",
            hint="changing a column's type keeps the column (and its id).",
        )
    if not isinstance(count.field_type, LongType):
        raise WrongAnswer(f"order_count is still {count.field_type}.", hint="widen it from int to long.")
    added = len(table.metadata.schemas) - 1
    commits = len(table.metadata.metadata_log) - commits_before
    if added != 1 and commits > 1:
        raise WrongAnswer(
            f"the change made {added} schema versions in {commits} commits: readers could load the table half-changed.",
            hint="put every change in one `with table.update_schema() as update:` block.",
        )
    if added != 1:
        raise WrongAnswer(
            f"the change committed once, but as {added} schema versions (one per update_schema block).",
            hint="one `with table.update_schema() as update:` block holding every change makes one schema version.",
        )
    rows = table.scan().to_arrow().to_pandas().sort_values("customer_id", ignore_index=True)
    want = before_rows.to_pandas().sort_values("customer_id", ignore_index=True)
    if len(rows) != len(want) or (rows["tier"].to_numpy() != want["segment"].to_numpy()).any():
        raise WrongAnswer("existing customers do not read back with their old segment as tier.")


# ----------------------------------------------------------------------------------------- e2 Delta merge


@learner_code("append_batch")
def _run_append(fn, table, batch):
    return fn(table, batch)


@exercise("m04.l02.e2")
def delta_add_column(append_batch) -> None:
    """A batch with a new column lands in one commit; old rows read the new column as null."""
    from deltalake import write_deltalake

    customers = data.customers_v1()
    uri = storage.delta_uri(NAMESPACE, "customers_merge")
    storage.delete_under(uri)
    old = customers.slice(0, 200)
    write_deltalake(uri, old, storage_options=storage.delta_storage_options())
    table = storage.delta_table(uri)
    version = table.version()
    batch = data.loyalty_batch(customers, 200, 40)
    try:
        _run_append(append_batch, table, batch)
    except WrongAnswer as wrong:
        if "SchemaMismatch" in wrong.message:
            raise WrongAnswer(
                "Delta refused the batch: it has a column the table does not know.",
                hint="a Delta writer adds new columns only when asked to merge the schemas.",
            ) from None
        if "Kernel error" in wrong.message or "credentials" in wrong.message.lower():
            raise WrongAnswer(
                f"{wrong.message} — deltalake could not reach the object store.",
                hint="writing to the DeltaTable itself reuses its storage options; a bare s3:// URI needs "
                "storage_options=storage.delta_storage_options().",
            ) from None
        raise
    after = storage.delta_table(uri)
    got = after.to_pyarrow_table().to_pandas()
    if "loyalty_points" not in got.columns:
        raise WrongAnswer("the table has no loyalty_points column.", hint="keep the new column: evolve the table.")
    old_ids, new_ids = set(old["customer_id"].to_pylist()), set(batch["customer_id"].to_pylist())
    if not old_ids <= set(got.customer_id):
        raise WrongAnswer(
            f"{len(old_ids - set(got.customer_id))} existing customers are gone: the table was replaced.",
            hint="append to the table; an overwrite with a new schema drops the old rows.",
        )
    if not new_ids <= set(got.customer_id) or len(got) != len(old_ids) + len(new_ids):
        raise WrongAnswer(f"the table has {len(got)} rows, expected {len(old_ids) + len(new_ids)}.")
    olds = got[got.customer_id.isin(old_ids)]
    news = got[got.customer_id.isin(new_ids)].sort_values("customer_id")
    if olds.loyalty_points.notna().any():
        raise WrongAnswer("old customers got loyalty points they never had.", hint="old rows read it as null.")
    want = batch.to_pandas().sort_values("customer_id")
    if (news.loyalty_points.to_numpy() != want.loyalty_points.to_numpy()).any():
        raise WrongAnswer("the new customers' loyalty_points differ from the batch.")
    if after.version() != version + 1:
        raise WrongAnswer(
            f"the append took {after.version() - version} commits instead of one.",
            hint="one write can add the column and the rows together.",
        )


# ------------------------------------------------------------------------------- e3 expand and backfill


@learner_code("expand_and_backfill")
def _run_expand(fn, table):
    return fn(table)


@exercise("m04.l02.e3")
def expand_and_backfill_cents(expand_and_backfill) -> None:
    """amount_cents added and filled for every row (rounded), amount kept for readers not yet switched."""
    from pyiceberg.types import LongType

    payments = data.shop_table("payments").slice(0, 400)
    table = _scratch_iceberg("payments_migrate", payments)
    try:
        _run_expand(expand_and_backfill, table)
    except WrongAnswer as wrong:
        if "Cannot change column type" in wrong.message:
            raise WrongAnswer(
                "Iceberg refused to change amount from double to long in place.",
                hint="only widening is allowed (int→long, float→double, decimal precision up); "
                "a breaking change goes into a new column.",
            ) from None
        if "truncated converting to int" in wrong.message:
            raise WrongAnswer(
                wrong.message,
                hint="amount × 100 is a float such as 1998.9999…; Arrow refuses to drop the fraction silently.",
            ) from None
        if "Mismatch in fields" in wrong.message:
            raise WrongAnswer(
                f"{wrong.message} the rows you wrote do not match the table's schema (see the comparison above).",
                hint="after the expand step the table has a long amount_cents: the column you write must be one.",
            ) from None
        raise
    table = table.catalog.load_table(table.name())
    schema = table.schema()
    names = [f.name for f in schema.fields]
    if "amount" not in names:
        raise WrongAnswer(
            "amount is gone: every reader that has not switched to amount_cents breaks now.",
            hint="expand first, contract (drop) only after all readers moved.",
        )
    if "amount_cents" not in names:
        raise WrongAnswer("the table has no amount_cents column.")
    if not isinstance(schema.find_field("amount_cents").field_type, LongType):
        raise WrongAnswer(f"amount_cents is {schema.find_field('amount_cents').field_type}, not long.")
    got = table.scan().to_arrow().to_pandas().sort_values("payment_id", ignore_index=True)
    want = payments.to_pandas().sort_values("payment_id", ignore_index=True)
    if len(got) != len(want) or set(got.payment_id) != set(want.payment_id):
        raise WrongAnswer(
            f"the table has {len(got)} rows for {got.payment_id.nunique()} payments, expected {len(want)}.",
            hint="a backfill rewrites the existing rows; appending them again duplicates every payment.",
        )
    if got.amount_cents.isna().any():
        raise WrongAnswer(
            f"{int(got.amount_cents.isna().sum())} rows have no amount_cents.",
            hint="a new column is empty for existing rows until you backfill it.",
        )
    if (got.amount.to_numpy() != want.amount.to_numpy()).any():
        raise WrongAnswer("the old amount column changed.", hint="readers of amount must see the same values.")
    cents = (want.amount * 100).round().astype("int64")
    wrong = int((got.amount_cents.to_numpy() != cents.to_numpy()).sum())
    if wrong:
        truncated = (want.amount * 100).astype("int64")
        if (got.amount_cents.to_numpy() == truncated.to_numpy()).all():
            raise WrongAnswer(
                f"{wrong} rows are one cent short: 19.99 * 100 is 1998.9999… in floating point.",
                hint="round before converting to an integer.",
            )
        raise WrongAnswer(f"{wrong} rows have a wrong amount_cents.", hint="cents = amount × 100, rounded.")
