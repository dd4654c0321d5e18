# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 04.04 · Partitioning: transforms, hidden partitioning and evolution, measured
#
# **You will:**
# - lay out one week of clicks six ways with Iceberg's partition transforms: identity, day, hour, hash bucket and
#   truncate (ranges);
# - query with **hidden partitioning**: filters name the source column, Iceberg finds the partitions;
# - measure pruning — files and bytes a scan plans to read for the same predicate in every layout — and confirm it
#   with DuckDB's `EXPLAIN ANALYZE`;
# - evolve a table's partitioning without rewriting a byte of its data.
#
# *Needs:* Postgres (the catalog) and the object store (the files). Kernel: `delab`. About 30 minutes.

# %%
import matplotlib.pyplot as plt
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.transforms import BucketTransform, DayTransform, HourTransform, IdentityTransform, TruncateTransform

from delab import check, lakehouse, stack
from delab.lakehouse import engines, ops

stack.require("postgres", "s3")
cat = lakehouse.catalog()
ns = lakehouse.fresh_namespace(cat, "m04_l04")  # drops what an earlier run left
clicks_schema = ops.clicks_schema()
clicks = ops.clicks(days=7)  # one week of the shop's clickstream, as Arrow
print(clicks_schema)
print(f"{clicks.num_rows:,} clicks from {clicks['event_time'][0]} to {clicks['event_time'][-1]}")

# %% [markdown]
# ## Partition transforms
# An Iceberg **partition spec** is a list of *transforms* of source columns. The table stores the derived values in
# its metadata (per data file), never as columns the reader must know about:
#
# | transform | example | strategy |
# |---|---|---|
# | `identity` | `event_type` | one partition per value — only for low-cardinality columns |
# | `year`, `month`, `day`, `hour` | `day(event_time)` | time-based: the usual first key of event data |
# | `bucket[N]` | `bucket[8](customer_id)` | hash-based: spreads a high-cardinality key over N partitions |
# | `truncate[W]` | `truncate[10](product_id)` | range-based: 120–129 together, 130–139 together |
#
# Below we write the same week six times, once per layout. `PartitionField` ids start at 1000 by convention;
# `source_id` is the schema field id (`event_time` is 6).

# %%
layouts = {
    "flat": [],
    "by_type": [("event_type", IdentityTransform(), "event_type")],
    "by_day": [("event_time", DayTransform(), "event_day")],
    "by_hour": [("event_time", HourTransform(), "event_hour")],
    "by_product_range": [("product_id", TruncateTransform(10), "product_range")],
    "by_customer_bucket": [("customer_id", BucketTransform(8), "customer_bucket")],
}


def spec_of(fields) -> PartitionSpec:
    return PartitionSpec(
        *[
            PartitionField(
                source_id=clicks_schema.find_field(source).field_id, field_id=1000 + i, transform=transform, name=name
            )
            for i, (source, transform, name) in enumerate(fields)
        ]
    )


tables = {}
for name, fields in layouts.items():
    tables[name] = cat.create_table(f"{ns}.{name}", schema=clicks_schema, partition_spec=spec_of(fields))
    tables[name].append(clicks)
{name: ops.file_stats(table) for name, table in tables.items()}

# %% [markdown]
# One append of the same rows gives 1 file (flat), 4 (one per event type), 7 (days), 168 (hours), ~9 (ranges and
# buckets, plus one for NULLs). `by_hour` already shows the price of a too-fine key: 168 files averaging a few KiB
# each, and more bytes in total (every file repeats its own footer and dictionaries).
#
# ### Exercise 1 — a day-and-bucket layout
# Most queries on clicks ask for a time range, and support staff look up one customer. Write
# `create_daily_bucketed(cat, identifier)`: create (and return) a table with `clicks_schema`, partitioned by the
# **day** of `event_time` and by **8 hash buckets** of `customer_id`.


# %%
### BEGIN SOLUTION
def create_daily_bucketed(cat, identifier):
    """A clicks table partitioned by day(event_time) and bucket[8](customer_id)."""
    spec = PartitionSpec(
        PartitionField(source_id=6, field_id=1000, transform=DayTransform(), name="event_day"),
        PartitionField(source_id=3, field_id=1001, transform=BucketTransform(8), name="customer_bucket"),
    )
    return cat.create_table(identifier, schema=clicks_schema, partition_spec=spec)


### END SOLUTION


# %%
check.m04.daily_bucketed_layout(create_daily_bucketed)

# %%
tables["by_day_and_customer"] = create_daily_bucketed(cat, f"{ns}.by_day_and_customer")
tables["by_day_and_customer"].append(clicks)
ops.file_stats(tables["by_day_and_customer"])

# %% [markdown]
# ## Hidden partitioning
# In Hive-style tables the partition is a column (`dt='2026-03-03'`): writers must fill it, and a reader who
# filters on `event_time` instead of `dt` scans everything. Iceberg keeps the transform in the metadata, so a
# filter on the **source column** is enough — Iceberg applies the transform to the filter's bounds and skips the
# partitions (and, with the per-file min/max statistics, the files) that cannot match. The partition fields
# (`event_day`, `event_hour`) are not columns at all.
#
# ### Exercise 2 — one day, whatever the layout
# Write `one_day`, a row filter (a string such as `"col >= '…'"`, or a pyiceberg expression) that selects the
# clicks of **3 March 2026** — every one of them, and nothing of the 2nd or the 4th. `event_time` has no time zone
# and pyiceberg reads a timestamp literal only in full ISO form, `'2026-01-31T08:00:00'`. The check runs your
# filter on `by_day` and `by_hour` (rows and planned files) and on a few clicks placed at the edges of the day.

# %%
### BEGIN SOLUTION
one_day = "event_time >= '2026-03-03T00:00:00' and event_time < '2026-03-04T00:00:00'"
### END SOLUTION

# %%
check.m04.hidden_partition_filter(one_day, tables)

# %% [markdown]
# ## Pruning, measured
# `table.scan(row_filter=...).plan_files()` is the list of files a reader would open after pruning. For four
# queries we count, in every layout, the files and KiB planned and their share of the table's bytes.

# %%
queries = {
    "one day": one_day,
    "one customer": "customer_id = 1017",
    "checkouts": "event_type = 'checkout'",
    "products 120-129": "product_id >= 120 and product_id <= 129",
}
pruning = ops.pruning_table(tables, queries)
pruning.pivot(index="layout", columns="query", values="planned")

# %%
pruning.pivot(index="query", columns="layout", values="% bytes").plot.bar(
    figsize=(10, 3.5), ylabel="% of the table's bytes planned", rot=0
)
plt.legend(ncol=4, fontsize=8)
plt.show()

# %% [markdown]
# Each transform helps the queries on its own column and no other: the flat table reads everything every time, the
# bucketed one finds a customer in ~1/8 of the bytes but needs everything for a day. `by_hour` prunes a day as well
# as `by_day`, but it reads more bytes for the same rows (small files compress worse).
#
# The plan is what pyiceberg *would* read. An engine that really reads tells the same story: DuckDB's Iceberg
# extension (loaded offline from its PyPI wheel) reports the files it read, and its S3 reader (the httpfs
# extension) the bytes it fetched from the object store — `engines.measure` reads both from `EXPLAIN ANALYZE`.

# %%
duck = engines.duckdb_iceberg()
duck.execute("SET enable_external_file_cache = false")  # measure reads, not DuckDB's cache (lab 06)
day_sql = "SELECT count(*) FROM iceberg_scan('{}') WHERE event_time >= '2026-03-03' AND event_time < '2026-03-04'"
measured = {}
for name in ("flat", "by_day", "by_hour", "by_customer_bucket"):
    reads = engines.measure(duck, day_sql.format(tables[name].metadata_location))
    measured[name] = {
        "files read (EXPLAIN ANALYZE)": reads.data_files,
        "HTTP GET requests": reads.gets,
        "KiB fetched": reads.kib_fetched,
    }
measured

# %% [markdown]
# DuckDB's numbers agree with the plans: one file for `by_day`, 24 for `by_hour`, all of them elsewhere. Bytes
# fetched include the metadata (manifests, Parquet footers); the flat table's single file is not read whole
# because `count(*)` with this filter needs only the `event_time` column (column pruning, lab 06).
#
# ### Exercise 3 — pick the layout
# Write `cheapest`, a dict from each label of `queries` to the name of the layout (a key of `tables`) whose scan
# plans the **fewest bytes** for it — KiB, not the share: the layouts differ in total size. Read them off the
# plans above (or compute them from `pruning`); the check recomputes them.

# %%
### BEGIN SOLUTION
cheapest = {
    "one day": "by_day",
    "one customer": "by_customer_bucket",
    "checkouts": "by_type",
    "products 120-129": "by_product_range",
}
### END SOLUTION

# %%
check.m04.cheapest_layouts(cheapest, tables, queries)

# %% [markdown]
# ## Partition evolution
# Traffic grows and a day becomes too big a unit: you want hourly partitions **from now on**. Rewriting a year of
# data to change its layout is what Hive would need. In Iceberg the spec is versioned: a new spec id applies to new
# writes, old files keep the spec they were written with (each data file records its `spec_id`), and a scan plans
# each file with its own spec — the same filter prunes both.
#
# ### Exercise 4 — evolve without rewriting
# Write `evolve_to_hourly(table)`: change the partitioning of a table partitioned by `day(event_time)` (field name
# `event_day`) to `hour(event_time)` only — in one metadata commit, without touching the data files.
# `table.update_spec()` is a context manager with `add_field(source, transform, name)` and `remove_field(name)`.


# %%
### BEGIN SOLUTION
def evolve_to_hourly(table) -> None:
    """Switch new writes from day to hour partitions; existing files keep their spec."""
    with table.update_spec() as update:
        update.remove_field("event_day")
        update.add_field("event_time", HourTransform(), "event_hour")


### END SOLUTION


# %%
check.m04.evolution_without_rewrite(evolve_to_hourly)

# %% [markdown]
# Now on a table of our own: the first week written by day, evolved, then two more days written.

# %%
evolving = cat.create_table(f"{ns}.evolving", schema=clicks_schema, partition_spec=spec_of(layouts["by_day"]))
evolving.append(clicks)
evolve_to_hourly(evolving)
evolving.append(ops.clicks(start="2026-03-08", days=2))
files = evolving.inspect.files().to_pandas()
files["partition"] = files["partition"].astype(str)
print(files.groupby("spec_id").agg(files=("file_path", "count"), rows=("record_count", "sum")))
files.groupby("spec_id").head(2)[["spec_id", "partition", "record_count", "file_size_in_bytes"]]

# %%
for label, predicate in {
    "a day before the change": one_day,
    "a day after it": "event_time >= '2026-03-09T00:00:00' and event_time < '2026-03-10T00:00:00'",
    "an hour after it": "event_time >= '2026-03-09T10:00:00' and event_time < '2026-03-09T11:00:00'",
}.items():
    plan = ops.scan_plan(evolving, predicate)
    print(f"{label:<24} {plan.files:>3} of {plan.total_files} files, {100 * plan.share_of_bytes:5.1f}% of the bytes")

# %% [markdown]
# ## Recap
# - Transforms pick the strategy: time (`day`, `hour`) for event data, `bucket[N]` for lookups on a
#   high-cardinality key, `truncate[W]` for ranges, `identity` only for a handful of values.
# - Hidden partitioning: queries filter the source column; partition values live in the metadata.
# - Pruning is measurable — files and bytes planned (`plan_files`) or read (`EXPLAIN ANALYZE`, bytes fetched) —
#   and every layout helps only the predicates on its own columns; too fine a key makes small files.
# - Evolution is a metadata change: old files keep their spec, new files get the new one, scans handle both.
#
# ## Going further
# - Sort orders (`write.sort-order`, pyiceberg `update_sort_order`) cluster rows *within* files so min/max
#   statistics prune inside a partition too; Z-order in Spark's `rewrite_data_files` does it for several columns.
# - Spark, Trino and Flink honour the same specs: `ALTER TABLE ... ADD PARTITION FIELD bucket(16, id)` in Spark
#   SQL is the same evolution. On AWS, Athena and Glue read these tables from the Glue catalog — with the
#   `external` profile (`docs/environments.md`) the catalog helper points at your own catalog and bucket.
# - Delta Lake's equivalent of hidden partitioning is *generated columns*; its liquid clustering replaces
#   fixed partitions for large tables.
