# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 04.06 · Metadata and query optimization: catalogs, lineage, governance, DuckDB
#
# **You will:**
# - see what a catalog stores (a pointer per table) and walk an Iceberg table's metadata tree: metadata.json →
#   manifest list → manifests → data files, and the `inspect` tables over it;
# - discover tables by their properties, follow the lineage of snapshots, and audit who wrote what;
# - query the tables with DuckDB and measure predicate pushdown, file skipping, column pruning, vectorized
#   execution and caching — in files and bytes really fetched from the object store.
#
# *Needs:* Postgres (the catalog) and the object store. Kernel: `delab`. About 30 minutes.

# %%

import pandas as pd
import pyarrow as pa
from IPython.display import display
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.transforms import DayTransform

from delab import check, clients, lakehouse, stack
from delab.lakehouse import engines, ops

stack.require("postgres", "s3")
cat = lakehouse.catalog()
ns = lakehouse.fresh_namespace(cat, "m04_l06")
archive = lakehouse.fresh_namespace(cat, "m04_l06_archive")
clicks = ops.clicks(days=7)

by_day = PartitionSpec(PartitionField(source_id=6, field_id=1000, transform=DayTransform(), name="event_day"))
clicks_table = cat.create_table(
    f"{ns}.clicks",
    schema=ops.clicks_schema(),
    partition_spec=by_day,
    properties={"owner": "growth-team", "classification": "pii", "comment": "shop clickstream, one row per event"},
)
for first_day, days in (("2026-03-01", 3), ("2026-03-04", 2), ("2026-03-06", 2)):  # three daily loads
    clicks_table.append(ops.clicks(start=first_day, days=days))
clicks_table.delete("customer_id = 1017")  # an erasure request
old_clicks = cat.create_table(
    f"{archive}.clicks_2025", schema=ops.clicks_schema(), properties={"classification": "pii"}
)
print(cat.list_namespaces(), cat.list_tables(ns), cat.list_tables(archive))

# %% [markdown]
# ## The catalog: a pointer per table
# A catalog maps a table name to its **current metadata file**; everything else is in the object store. Ours is
# pyiceberg's SQL catalog, whose state is one Postgres table — a commit is an atomic `UPDATE` of that pointer.
# Flink's JDBC catalog uses the same table, which is how lab 05's Flink job and pyiceberg shared a table.

# %%
with clients.postgres() as conn:
    pointers = conn.execute(
        "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables "
        "WHERE catalog_name = 'lake' AND table_namespace LIKE 'm04_l06%' ORDER BY 1, 2"
    ).fetchall()
pd.DataFrame(pointers, columns=["namespace", "table", "metadata_location"])

# %% [markdown]
# ## Discovery and governance properties
# Namespaces and tables can be listed; each carries free-form **properties**. Teams put ownership and data
# classification there (`owner`, `classification`), and governance tools — or a simple script — act on them:
# who to ask, which tables hold personal data, what to mask.

# %%
print(cat.load_namespace_properties(ns))
{key: value for key, value in clicks_table.properties.items() if not key.startswith("write.")}

# %% [markdown]
# ### Exercise 1 — find tables by property
# Write `find_tables(cat, **wanted)`: the set of `"namespace.table"` names of every table of the catalog — in
# **any** namespace — whose properties have **all** the given values. `find_tables(cat, classification="pii")`
# must find both clicks tables above.


# %%
### BEGIN SOLUTION
def find_tables(cat, **wanted) -> set:
    """Tables of every namespace whose properties match all of ``wanted``."""
    found = set()
    for namespace in cat.list_namespaces():
        for identifier in cat.list_tables(namespace):
            properties = cat.load_table(identifier).properties
            if all(properties.get(key) == value for key, value in wanted.items()):
                found.add(".".join(identifier))
    return found


### END SOLUTION


# %%
check.m04.find_tables(find_tables)

# %% [markdown]
# ## The metadata tree
# A table's state is a tree of immutable files:
# 1. **metadata.json** — schemas, partition specs, properties, the list of snapshots and the current one;
# 2. each snapshot's **manifest list** (`snap-*.avro`) — one row per manifest, with partition ranges;
# 3. **manifests** (`*-m0.avro`) — one row per data file: its partition, row count, size, column min/max;
# 4. the **data files** (Parquet).
#
# Planning a query reads 1 → 2 → 3 and opens only the data files whose partition and statistics can match.

# %%
metadata = ops.metadata_json(clicks_table.metadata_location)  # the file itself, fetched from the object store
print(sorted(metadata))
print("current snapshot:", metadata["current-snapshot-id"], "· snapshots:", len(metadata["snapshots"]))
current = clicks_table.current_snapshot()
print("its manifest list:", current.manifest_list.rsplit("/", 1)[-1])
clicks_table.inspect.manifests().to_pandas()[
    ["path", "added_data_files_count", "existing_data_files_count", "deleted_data_files_count"]
]

# %% [markdown]
# The `inspect` tables are these files as Arrow tables: `snapshots`, `history`, `manifests`, `files`, `entries`,
# `partitions`, `refs`, `metadata_log_entries`. Per data file, and per partition:

# %%
files = clicks_table.inspect.files().to_pandas()
files["file"] = files.file_path.str.rsplit("/", n=1).str[-1]
display(files[["file", "partition", "record_count", "file_size_in_bytes"]].head(3))
clicks_table.inspect.partitions().to_pandas()[["partition", "record_count", "file_count"]]

# %% [markdown]
# ## Lineage of snapshots
# Every commit makes a snapshot with a **parent** and a **summary** (operation, files and rows added/removed, and
# any property the writer adds). The chain of parents is the table's lineage — what time travel and incremental
# readers follow.

# %%
snapshots = clicks_table.inspect.snapshots().to_pandas()
snapshots["added rows"] = snapshots.summary.map(lambda s: dict(s).get("added-records"))
snapshots["deleted rows"] = snapshots.summary.map(lambda s: dict(s).get("deleted-records"))
snapshots[["committed_at", "snapshot_id", "parent_id", "operation", "added rows", "deleted rows"]]

# %% [markdown]
# After a **rollback**, history and lineage part ways: the abandoned snapshot stays in the table (until it
# expires) and in `history`, but the new current snapshot's parents skip it.
#
# ### Exercise 2 — the current lineage
# Write `ancestry(table)`: the list of snapshot ids from the **current** snapshot back to the first, following
# `parent_snapshot_id` (`table.current_snapshot()`, `table.snapshot_by_id(id)`). The check runs it on a table
# right after a rollback, then again after one more append.


# %%
### BEGIN SOLUTION
def ancestry(table) -> list:
    """Current snapshot id, its parent, its parent's parent, ... (newest first)."""
    out = []
    snapshot = table.current_snapshot()
    while snapshot is not None:
        out.append(snapshot.snapshot_id)
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return out


### END SOLUTION


# %%
check.m04.snapshot_ancestry(ancestry)

# %% [markdown]
# The check's table is still there: three appends, a rollback to the second, one more append. `history` lists
# every snapshot that was ever current, in order; its `is_current_ancestor` column marks the lineage.

# %%
probe = cat.load_table(f"{ns}.check_lineage")
print("lineage:", ancestry(probe))
probe.inspect.history().to_pandas()

# %% [markdown]
# ## Auditing who wrote what
# Table properties say who *owns* a table. Who *wrote* each change belongs with the change: writers can add their
# own keys to a snapshot's summary (Spark and Flink add their application id; here we add a user and a job). Since
# snapshots are immutable and the catalog commit is atomic, the summaries form an audit trail — until the
# snapshots expire, so an audit that must last years copies them out (e.g. into a log table).
#
# ### Exercise 3 — an audited append
# Write `audited_append(table, rows, user)`: append `rows` in **one** snapshot whose summary has `written-by` set to
# `user`. (`table.append` takes `snapshot_properties`.)


# %%
### BEGIN SOLUTION
def audited_append(table, rows, user: str) -> None:
    """Append rows; the new snapshot records who wrote them."""
    table.append(rows, snapshot_properties={"written-by": user, "job": "m04_l06 notebook"})


### END SOLUTION


# %%
check.m04.audited_append(audited_append)

# %%
audited_append(clicks_table, ops.clicks(start="2026-03-08", days=1), "ada")
audit = clicks_table.inspect.snapshots().to_pandas()
audit["written-by"] = audit.summary.map(lambda s: dict(s).get("written-by", "(not recorded)"))
audit[["committed_at", "snapshot_id", "operation", "written-by"]]

# %% [markdown]
# ## Query optimization, measured with DuckDB
# DuckDB's Iceberg extension (loaded offline from its PyPI wheel) reads the tables straight from the object
# store with DuckDB's own S3 reader (the httpfs extension, with all of DuckDB's threads). `engines.measure` runs a
# query under `EXPLAIN ANALYZE` and reads two things off the profile: the data files the Iceberg scan read, and
# httpfs's HTTP statistics (bytes received, GET requests). DuckDB's file cache stays off until the caching
# section, so every number below is a real read.

# %%
duck = engines.duckdb_iceberg()
duck.execute("SET enable_external_file_cache = false")
table_ref = f"iceberg_scan('{clicks_table.metadata_location}')"


def measured(sql: str, label: str) -> dict:
    reads = engines.measure(duck, sql)
    return {
        "query": label,
        "data files read": reads.data_files,
        "GET requests": reads.gets,
        "KiB fetched": reads.kib_fetched,
        "ms": ops.timed(lambda: duck.sql(sql).fetchall()),
    }


# %% [markdown]
# ### Predicate pushdown and file skipping
# DuckDB hands the `WHERE` clause to the scan; the Iceberg extension prunes files with the partition values and
# column statistics of the manifests, and the Parquet reader skips row groups with their min/max. A function
# around the column (`strftime(event_time, …)`) hides it from both. (A bare `count(*)` reads no data file at all:
# the manifests already hold every file's row count.)

# %%
pushdown = pd.DataFrame(
    [
        measured(f"SELECT count(*) FROM {table_ref}", "no filter"),
        measured(
            f"SELECT count(*) FROM {table_ref} WHERE event_time >= '2026-03-03' AND event_time < '2026-03-04'",
            "event_time in one day",
        ),
        measured(
            f"SELECT count(*) FROM {table_ref} WHERE strftime(event_time, '%Y-%m-%d') = '2026-03-03'",
            "strftime(event_time) = one day",
        ),
    ]
).set_index("query")
profile = duck.sql(
    f"EXPLAIN ANALYZE SELECT count(*) FROM {table_ref} WHERE event_time >= '2026-03-03' AND event_time < '2026-03-04'"
).fetchall()[0][1]
print("\n".join(line for line in profile.splitlines() if "Filters" in line or "Files Read" in line or ">=" in line))
pushdown

# %% [markdown]
# ### Column pruning
# Parquet stores each column apart, so a query fetches only the columns it uses (plus footers).

# %%
columns = pd.DataFrame(
    [
        measured(f"SELECT * FROM {table_ref}", "SELECT * (6 columns)"),
        measured(f"SELECT event_type, event_time FROM {table_ref}", "2 columns"),
        measured(f"SELECT event_type FROM {table_ref}", "1 column"),
    ]
).set_index("query")
columns

# %% [markdown]
# ### Vectorized execution
# DuckDB runs each operator over vectors of ~2 048 values of one column at a time, in tight compiled loops. The
# same aggregation in a Python loop, one row at a time, over the **same** in-memory data — both on one thread
# (we set DuckDB's `threads` to 1 for this comparison), so the gap is vectorization alone:

# %%
in_memory = pa.concat_tables([clicks_table.scan().to_arrow()] * 8)  # ~370 000 rows, in memory for both
duck.register("clicks_in_memory", in_memory)


def row_at_a_time() -> dict:
    """What a row-oriented engine does: one record at a time, one interpreted step per value."""
    counts = {}
    for row in in_memory.to_pylist():
        if row["customer_id"] is not None:
            counts[row["event_type"]] = counts.get(row["event_type"], 0) + 1
    return counts


vector_sql = "SELECT event_type, count(customer_id) FROM clicks_in_memory GROUP BY 1"
duck.execute("SET threads = 1")
assert dict(duck.sql(vector_sql).fetchall()) == row_at_a_time()
vectorized = pd.DataFrame(
    [
        {"engine": "DuckDB (vectorized)", "ms": ops.timed(lambda: duck.sql(vector_sql).fetchall())},
        {"engine": "Python loop (row at a time)", "ms": ops.timed(row_at_a_time, repeat=1)},
    ]
).set_index("engine")
vectorized

# %% [markdown]
# ### Caching
# DuckDB keeps the bytes it fetched from remote files in memory (`enable_external_file_cache`, on by default) and
# checks that a file did not change before reusing them. Iceberg files are immutable, so a repeated query — or a
# dashboard refreshing — fetches almost nothing.

# %%
duck.execute("RESET threads")  # back to one thread per core
duck.execute("SET enable_external_file_cache = true")
caching = []
for run in ("first run", "second run", "third run"):
    reads = engines.measure(duck, f"SELECT event_type, count(*) FROM {table_ref} GROUP BY 1")
    caching.append({"run": run, "GET requests": reads.gets, "KiB fetched": reads.kib_fetched, "ms": reads.ms})
duck.execute("SET enable_external_file_cache = false")
pd.DataFrame(caching).set_index("run")

# %% [markdown]
# ### Exercise 4 — a query that skips files
# Write `checkouts_sql`: a DuckDB query over `iceberg_scan('{table}')` (keep the `{table}` slot: the check fills it
# with the clicks table's metadata location) that returns one row per day — the day and its number of
# `checkout` events — for **3 and 4 March 2026**, and reads only those days' data files. The check runs it on
# the clicks table and on a small table of its own, with clicks at the edges of those days.

# %%
### BEGIN SOLUTION
checkouts_sql = """
SELECT CAST(event_time AS DATE) AS day, count(*) AS checkouts
FROM iceberg_scan('{table}')
WHERE event_time >= TIMESTAMP '2026-03-03' AND event_time < TIMESTAMP '2026-03-05' AND event_type = 'checkout'
GROUP BY 1 ORDER BY 1
"""
### END SOLUTION

# %%
check.m04.pruned_checkout_query(checkouts_sql, clicks_table)

# %% [markdown]
# ## Recap
# - The catalog holds one pointer per table; the table is a tree of immutable files that the `inspect` tables
#   expose: snapshots, history, manifests, files, partitions.
# - Properties make tables discoverable and governable (owner, classification); snapshot summaries carry the
#   lineage (parent ids, operation, counts) and an audit of who wrote what.
# - DuckDB prunes files with the manifests, skips row groups with Parquet statistics, reads only the columns it
#   needs, runs vectorized, and caches remote bytes — each visible in files and bytes fetched, if you filter on
#   the column itself.
#
# ## Going further
# - Catalogs as services: the Iceberg **REST** catalog protocol (Apache Polaris, Lakekeeper, Nessie, Unity
#   Catalog, AWS Glue and S3 Tables all speak it) adds access control, credential vending and multi-engine
#   commits; pyiceberg's `RestCatalog` and DuckDB's `ATTACH ... (TYPE iceberg)` talk to it. With the `external`
#   profile, `lakehouse.catalog()` can point at such a service.
# - Governance at scale: column masks and row filters (Unity Catalog, Lake Formation, Polaris policies),
#   lineage events with OpenLineage (module 05).
# - Puffin files add table statistics (NDV sketches) that cost-based optimizers in Trino and Spark use.
