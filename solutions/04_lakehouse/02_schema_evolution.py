# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 04.02 · Schema evolution: compatible and breaking changes
#
# **You will:**
# - add, rename, widen and drop columns of an Iceberg table in one metadata-only commit, and see why Iceberg
#   tracks columns by *id* rather than by name;
# - append a batch with a new column to a Delta table with `schema_mode="merge"`;
# - find out which readers still work after each change: a reader pinned to an old snapshot, old reader code on
#   new data (*forward* compatibility) and new reader code on old data (*backward* compatibility);
# - migrate a breaking change (a type that must narrow, a unit that changes) with *expand → backfill → switch
#   readers → contract*.
#
# *Needs:* Postgres and the object store (started for you). Kernel: `delab`. About 35 minutes.

# %%
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import write_deltalake
from pyiceberg.types import LongType

from delab import check, clients, lakehouse, stack
from delab.lakehouse import data, storage

stack.require("postgres", "s3")
catalog = lakehouse.catalog()
ns = lakehouse.fresh_namespace(catalog, "m04_l02")  # re-running starts clean
storage.fresh_delta_namespace("m04_l02")
customers_v1 = data.customers_v1()  # the shop's customers + order_count as a 32-bit int
customers = catalog.create_table(f"{ns}.customers", schema=customers_v1.schema)
customers.append(customers_v1)
v1_snapshot = customers.current_snapshot().snapshot_id
pd.set_option("display.max_colwidth", 130)
print(customers.schema())

# %% [markdown]
# ## Columns have ids
# Every column of an Iceberg schema has a **field id** (the numbers above), written into each Parquet file's
# schema too. Readers match file columns to table columns **by id, not by name**. That is what makes these
# changes metadata-only — no data file is rewritten:
#
# | change | `update_schema()` call | rule |
# |---|---|---|
# | add a column | `add_column("loyalty_points", LongType())` | new id; must be optional (old rows have no value) |
# | rename | `rename_column("segment", "tier")` | same id, new name |
# | widen a type | `update_column("order_count", LongType())` | same id; int→long, float→double, more decimal digits |
# | drop | `delete_column("email")` | the id is retired; files still hold the bytes (lab 03) |
#
# ### Exercise 1 — one schema change
# Write `evolve_customers(table)`: in **one** schema update (`with table.update_schema() as update:` commits
# when the block ends) add an optional long `loyalty_points`, rename `segment` to `tier`, widen `order_count` to
# long and drop `email`.


# %%
### BEGIN SOLUTION
def evolve_customers(table):
    """Add, rename, widen and drop — one metadata commit."""
    with table.update_schema() as update:
        update.add_column("loyalty_points", LongType())
        update.rename_column("segment", "tier")
        update.update_column("order_count", LongType())
        update.delete_column("email")


### END SOLUTION

# %%
check.m04.iceberg_schema_change(evolve_customers)

# %% [markdown]
# Evolve our own table the same way, and let a **new writer** append customers with the new schema:

# %%
evolve_customers(customers)
newcomers = data.loyalty_batch(data.customers_v1(scale=0.3), 500, 20)  # customers 501-520, with loyalty points
newcomers = newcomers.rename_columns(["tier" if c == "segment" else c for c in newcomers.column_names])
v2 = customers.schema().as_arrow()
customers.append(newcomers.select(v2.names).cast(v2))
print(customers.schema())

# %% [markdown]
# ## Who can still read?
# Three readers, each written against one version of the schema:
# - **pinned**: reads the table *as of* the snapshot it was tested on (`scan(snapshot_id=…)`) — a report that
#   must stay reproducible. Time travel uses that snapshot's schema.
# - **old code**: a job written for v1, asking for `segment`, `email` and a 32-bit `order_count` on today's table.
#   Can old readers read new data? That is **forward compatibility**.
# - **new code**: a job written for v2, asking for `tier` and `loyalty_points`, reading *all* rows — including
#   the ones written under v1. Can new readers read old data? That is **backward compatibility**.


# %%
def pinned_reader(table):
    return table.scan(snapshot_id=v1_snapshot, selected_fields=("customer_id", "segment", "order_count")).to_arrow()


V1_COLUMNS = pa.schema(
    [("customer_id", pa.int64()), ("segment", pa.string()), ("email", pa.string()), ("order_count", pa.int32())]
)


def old_code_reader(table):
    return table.scan(selected_fields=tuple(V1_COLUMNS.names)).to_arrow().cast(V1_COLUMNS)


def new_code_reader(table):
    return table.scan(selected_fields=("customer_id", "tier", "loyalty_points", "order_count")).to_arrow()


def attempt(reader, table) -> str:
    """Run a reader; say what it got, or how it broke."""
    try:
        result = reader(table)
    except Exception as error:  # a reader that breaks is the point of this table
        return f"breaks: {type(error).__name__}: {str(error).splitlines()[0][:70]}"
    if isinstance(result, pa.Table):
        return f"{result.num_rows} rows; nulls per column { ({c: result[c].null_count for c in result.column_names}) }"
    return f"works: {result}"


pd.DataFrame(
    {"reader": name, "result": attempt(reader, customers)}
    for name, reader in [("pinned to v1", pinned_reader), ("old code", old_code_reader), ("new code", new_code_reader)]
)

# %% [markdown]
# - The pinned reader still works: a snapshot keeps its schema.
# - Old code breaks on the rename and the drop — renames and drops are **not forward compatible**. Adding a
#   column is (old code never asks for it), and widening is as long as old code accepts the wider type.
# - New code reads every row: v1 rows have `tier` (matched by id, they were written as `segment`) and a null
#   `loyalty_points`. Adds, renames and widenings are **backward compatible** in Iceberg.
#
# Renames are safe only because of ids. Read the same data files **by name**, as plain Parquet readers (and Delta
# tables without *column mapping*) do:

# %%
by_name = pads.dataset(
    [path.removeprefix("s3://") for path in customers.inspect.files().column("file_path").to_pylist()],
    schema=customers.schema().as_arrow(),
    filesystem=clients.s3_filesystem(),
).to_table()
{"rows": by_name.num_rows, "rows with a tier, read by name": by_name.num_rows - by_name["tier"].null_count}

# %% [markdown]
# By name, the 500 v1 rows have no `tier`: their files call it `segment`. Iceberg's id mapping is what made the
# rename free.
#
# ## Delta Lake: schema merge on write
# Delta (without column mapping) matches columns by name, and deltalake's `alter` can *add* columns but not rename
# or drop them. The common evolution is a writer that starts sending a new column. By default the write is
# refused; `schema_mode="merge"` adds the column in the same commit. (deltalake does not widen on merge: an int64
# batch into an int32 column is cast down, and fails once a value does not fit — a widening needs a rewrite.)

# %%
delta_uri = storage.delta_uri(ns, "customers")
write_deltalake(delta_uri, customers_v1.slice(0, 300), storage_options=storage.delta_storage_options())
delta_customers = storage.delta_table(delta_uri)
batch = data.loyalty_batch(customers_v1, 300, 30)
try:
    write_deltalake(delta_customers, batch, mode="append")
    refused = "accepted"
except Exception as error:
    refused = f"{type(error).__name__}: {str(error)[:90]}"
refused

# %% [markdown]
# ### Exercise 2 — append with a new column
# Write `append_batch(table, batch)`: append `batch` (the table's columns plus `loyalty_points`) to the Delta
# `table` so that the column is added and no existing row is lost — one commit.


# %%
### BEGIN SOLUTION
def append_batch(table, batch):
    """Append rows that carry a new column, evolving the table's schema in the same commit."""
    write_deltalake(table, batch, mode="append", schema_mode="merge")


### END SOLUTION

# %%
check.m04.delta_add_column(append_batch)

# %%
append_batch(delta_customers, batch)
v0 = storage.delta_table(delta_uri, version=0).to_pyarrow_table()
now = storage.delta_table(delta_uri).to_pyarrow_table()
{
    "v0 columns": v0.column_names[-2:],
    "now columns": now.column_names[-2:],
    "old rows' loyalty nulls": now["loyalty_points"].null_count,
}

# %% [markdown]
# ## A breaking change: expand, backfill, switch, contract
# Finance wants payment amounts as integer **cents** instead of a floating-point `amount` in currency units.
# That is a type *narrowing* (double → long) **and** a change of meaning — no format lets you do it in place, and
# doing it in place would break every reader at once. The safe migration has four steps, each deployable alone:
#
# 1. **expand**: add the new column `amount_cents` next to the old one;
# 2. **backfill**: fill it for every existing row (writers now write both columns);
# 3. **switch readers** to the new column, one by one, while the old one still works;
# 4. **contract**: drop the old column once nothing reads it.

# %%
payments = catalog.create_table(f"{ns}.payments", schema=data.shop_table("payments").schema)
payments.append(data.shop_table("payments"))
try:
    with payments.update_schema() as update:
        update.update_column("amount", LongType())
except Exception as error:
    in_place = f"{type(error).__name__}: {error}"
in_place

# %% [markdown]
# ### Exercise 3 — expand and backfill
# Write `expand_and_backfill(table)`: add a long column `amount_cents` to the Iceberg payments `table`, then
# rewrite the table's rows with `amount_cents = amount × 100`, rounded to a whole cent, in one `table.overwrite(...)`.
# Keep `amount` as it is: readers have not switched yet.


# %%
### BEGIN SOLUTION
def expand_and_backfill(table):
    """Step 1 and 2 of expand/contract: a new column, filled for every row."""
    with table.update_schema() as update:
        update.add_column("amount_cents", LongType())
    rows = table.scan().to_arrow()
    cents = pc.cast(pc.round(pc.multiply(rows["amount"], 100)), pa.int64())
    table.overwrite(rows.set_column(rows.schema.get_field_index("amount_cents"), "amount_cents", cents))


### END SOLUTION

# %%
check.m04.expand_and_backfill_cents(expand_and_backfill)

# %% [markdown]
# Run the migration on our table. Between steps, an old reader (sums `amount`) and a new reader (sums
# `amount_cents`) run side by side; after the contract step only the pinned snapshot still has `amount`:

# %%
before_migration = payments.current_snapshot().snapshot_id


def old_total(table, snapshot_id=None):
    return round(
        pc.sum(table.scan(selected_fields=("amount",), snapshot_id=snapshot_id).to_arrow()["amount"]).as_py(), 2
    )


def new_total(table):
    return pc.sum(table.scan(selected_fields=("amount_cents",)).to_arrow()["amount_cents"]).as_py() / 100


expand_and_backfill(payments)
steps = [
    {
        "step": "expand + backfill",
        "old reader": attempt(old_total, payments),
        "new reader": attempt(new_total, payments),
    }
]
with payments.update_schema() as update:  # contract, after every reader has switched
    update.delete_column("amount")
steps.append(
    {
        "step": "contract (drop amount)",
        "old reader": attempt(old_total, payments),
        "new reader": attempt(new_total, payments),
    }
)
steps.append({"step": "old reader pinned before the migration", "old reader": old_total(payments, before_migration)})
pd.DataFrame(steps)

# %% [markdown]
# ## Recap
# - Iceberg evolves schemas in metadata only; columns are matched by id, so add, rename, widen and drop never
#   rewrite data, and a rename does not lose values.
# - Backward compatible (new readers, old data): add optional, rename (with ids), widen. Forward compatible (old
#   readers, new data): add; renames and drops break old code.
# - Delta adds columns on write with `schema_mode="merge"`; renames and drops need column mapping.
# - Breaking changes go through expand → backfill → switch readers → contract; snapshots taken before still read.
#
# **Going further:** Spark with Iceberg runs the same changes as SQL (`ALTER TABLE … RENAME COLUMN`), and Delta's
# column mapping (`delta.columnMapping.mode = 'name'`) enables renames and drops in Spark/Databricks. Unity
# Catalog, Polaris and Glue keep the schema history with the table, and a schema registry (module 05) enforces
# compatibility rules on event streams the same way. With the `external` profile of `delab.config` the same code
# runs against a real bucket and catalog.
