# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 04.05 · Compaction and maintenance: small files from a streaming writer
#
# **You will:**
# - run a Flink job that streams clicks from Kafka into an Iceberg table, committing at every checkpoint — and see
#   the **small-files problem** it creates;
# - read the table's commits and files from its metadata;
# - **compact** the small files of each partition into one, in one atomic commit, without losing a row;
# - **expire** old snapshots and **remove orphan files** (objects no snapshot references);
# - measure files, sizes, objects in the store and query time before and after.
#
# *Needs:* Kafka, Flink, Postgres (the catalog) and the object store. Kernel: `delab` (the Flink job is submitted
# to the cluster from the Flink environment by `delab.flinksql`). About 30 minutes.

# %%
import time

import pandas as pd

from delab import check, clients, config, flinksql, lakehouse, stack
from delab.lakehouse import engines, ops
from delab.stack import flink
from delab.streaming import flink_jobs

stack.require("kafka", "flink", "postgres", "s3")
JOB_PREFIX = "m04_l05"
print("cancelled leftovers:", flink_jobs.cancel_jobs(JOB_PREFIX))  # an earlier run stopped midway
cat = lakehouse.catalog()
ns = lakehouse.fresh_namespace(cat, "m04_l05")
topic = ops.fresh_topic(stack.namespace("m04_l05").topic("clicks"))
events = ops.clicks(days=2).to_pylist()  # dicts; timestamps become "2026-03-01 00:00:44" in JSON
print(f"{len(events):,} click events to stream into {topic}")

# %% [markdown]
# ## A streaming writer
# Flink's Iceberg sink writes data files continuously but **commits** them — makes them visible in a new snapshot
# — only when a checkpoint completes. Checkpointing every half second gives fresh data within a second, and two
# small files per partition per second. The job below reads the topic until it reaches the last offset we will
# produce (`scan.bounded.mode = specific-offsets`), so it ends by itself; we trickle the events in over ~4 s, as a
# live source would.

# %%
bootstrap = config.kafka().bootstrap_servers
writer_sql = [
    flink.iceberg_catalog_sql("lake"),
    f"""CREATE TEMPORARY TABLE clicks_topic (
          event_id BIGINT, session_id BIGINT, customer_id BIGINT, event_type STRING, product_id BIGINT,
          event_time TIMESTAMP(6)
        ) WITH (
          'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
          'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'specific-offsets',
          'scan.bounded.specific-offsets' = 'partition:0,offset:{len(events)}', 'format' = 'json')""",
    f"""CREATE TABLE IF NOT EXISTS lake.{ns}.clicks (
          event_id BIGINT, session_id BIGINT, customer_id BIGINT, event_type STRING, product_id BIGINT,
          event_time TIMESTAMP(6)
        ) PARTITIONED BY (event_type)""",
    f"INSERT INTO lake.{ns}.clicks SELECT * FROM clicks_topic",
]
started = time.monotonic()
job = flinksql.run(
    writer_sql,
    wait=False,
    settings={
        "pipeline.name": f"{JOB_PREFIX}_clicks_to_iceberg",
        "execution.checkpointing.interval": "500ms",
        "restart-strategy.type": "none",  # a bad record fails the job at once instead of restarting forever
    },
)
ops.trickle_json(topic, events, seconds=4)
print(
    "job",
    job.job_id,
    flink_jobs.wait_for_state(job.job_id, flink_jobs.TERMINAL),
    f"after {time.monotonic() - started:.0f} s",
)
clicks_table = cat.load_table(f"{ns}.clicks")
ops.file_stats(clicks_table)

# %% [markdown]
# Every row arrived — in dozens of files of a few KiB. Parquet files should be tens to hundreds of MiB: each
# file costs an object-store request (or several) to open, a footer to parse, and an entry in a manifest to plan.
# A day of this job would leave ~700 000 files.
#
# ### Exercise 1 — one commit per checkpoint
# Write `added_files_per_commit(table)`: a dict from each snapshot id of the table to the number of **data files
# that snapshot added**. Every snapshot carries a `summary` (`table.snapshots()`, or `table.inspect.snapshots()`)
# with counters written by the committer. A commit that added no file has no such counter at all — and pyiceberg's
# `summary.get(key, default)` then returns None, not your default. The check runs your function on this table and
# on one of its own.


# %%
### BEGIN SOLUTION
def added_files_per_commit(table) -> dict:
    """Snapshot id -> data files added by that commit."""
    # a commit that added nothing has no such key, and pyiceberg's Summary.get then gives None, not the default
    return {s.snapshot_id: int(s.summary.get("added-data-files") or 0) for s in table.snapshots()}


### END SOLUTION


# %%
check.m04.added_files_per_commit(added_files_per_commit, clicks_table)

# %%
commits = pd.Series(added_files_per_commit(clicks_table), name="data files added")
print(f"{len(commits)} commits, {commits.mean():.1f} files each on average")
commits.reset_index(drop=True).plot.bar(figsize=(8, 2.5), xlabel="commit (checkpoint)", ylabel="files added")

# %% [markdown]
# ## What small files cost
# We take the table's figures and time the same query in DuckDB (its file cache off, so every file is really
# fetched from the object store by DuckDB's S3 reader).

# %%
duck = engines.duckdb_iceberg()
duck.execute("SET enable_external_file_cache = false")
query = (
    "SELECT event_type, count(*) AS clicks, count(DISTINCT session_id) AS sessions FROM iceberg_scan('{}') GROUP BY 1"
)


def measure(stage: str, table) -> dict:
    sql = query.format(table.metadata_location)
    figures = ops.maintenance_figures(table)
    figures["DuckDB query ms"] = ops.timed(lambda: duck.sql(sql).fetchall())
    figures["DuckDB GET requests"] = engines.measure(duck, sql).gets  # one or more ranged reads per file
    figures["pyiceberg scan ms"] = ops.timed(lambda: table.scan().to_arrow(), repeat=1)
    return {"stage": stage, **figures}


stages = [measure("after streaming", clicks_table)]
expected_answer = duck.sql(query.format(clicks_table.metadata_location) + " ORDER BY 1").fetchall()
pd.DataFrame(stages).set_index("stage")

# %% [markdown]
# ## Compaction
# Compaction rewrites many small files into a few large ones. The rows do not change, so it must be one atomic
# commit: a reader sees either all the small files or the compacted ones, never both (duplicates) or neither.
#
# Which engine? Iceberg's `rewrite_data_files` action exists in Spark (`CALL system.rewrite_data_files`) and in
# Flink's Java maintenance API (`TableMaintenance` with `RewriteDataFiles`) — neither is reachable from SQL here,
# and pyiceberg 0.12 has no rewrite action. We therefore compact with pyiceberg in **one transaction** that
# deletes the partition's small files and adds the rewritten one (`dynamic_partition_overwrite`). Two honest
# differences from the real action: pyiceberg records the commit as two snapshots, a `delete` and an `append`,
# where the action writes one `replace` snapshot (which tells incremental readers that no row changed — ours
# would re-read the rows), and there is no conflict check against a writer still appending to the same
# partition — run it when the writer is stopped, as here, or on partitions the writer no longer touches.
#
# ### Exercise 2 — compact the partitions that need it
# Write `compact(table, min_files=2)`: rewrite, in **one commit**, every partition (here: one `event_type`) that
# has at least `min_files` data files, into one file per partition. Leave the other partitions' files untouched
# and keep every row. `table.inspect.files()` tells you the files per partition; `table.scan(row_filter=...)`
# reads the rows; `table.dynamic_partition_overwrite(rows)` replaces exactly the partitions present in `rows`.
# The check compacts a table of its own with `min_files=3`, then with the default, then once more.


# %%
### BEGIN SOLUTION
from collections import Counter

from pyiceberg.expressions import In


def compact(table, min_files: int = 2) -> None:
    """One file per crowded partition, in one commit."""
    per_type = Counter(row["partition"]["event_type"] for row in table.inspect.files().to_pylist())
    crowded = [value for value, files in per_type.items() if files >= min_files]
    if not crowded:
        return
    rows = table.scan(row_filter=In("event_type", crowded)).to_arrow().sort_by("event_time")
    table.dynamic_partition_overwrite(rows)


### END SOLUTION


# %%
check.m04.compaction_in_one_commit(compact)

# %%
compact(clicks_table)
clicks_table = cat.load_table(f"{ns}.clicks")
assert duck.sql(query.format(clicks_table.metadata_location) + " ORDER BY 1").fetchall() == expected_answer
stages.append(measure("after compaction", clicks_table))
pd.DataFrame(stages).set_index("stage")

# %% [markdown]
# Fewer files, bigger files, a faster query with the same answer. But the store holds *more* than before: the
# small files are no longer in the current snapshot, yet every older snapshot still references them — that is
# what makes time travel work. Space comes back only when those snapshots go.
#
# ## Expiring snapshots
# Expiring a snapshot removes it from the table's metadata: no time travel to it any more. In Java and Spark the
# action also deletes the files only that snapshot referenced; pyiceberg 0.12's `expire_snapshots()` edits the
# metadata only, so the files stay behind as **orphans** — which is the next step's job.
#
# ### Exercise 3 — keep the last snapshots
# Write `expire_all_but(table, keep)`: expire every snapshot except the `keep` most recent ones (by timestamp), in
# one commit. `table.maintenance.expire_snapshots()` builds the change: `.by_ids([...])` then `.commit()`.


# %%
### BEGIN SOLUTION
def expire_all_but(table, keep: int) -> None:
    """Expire every snapshot but the newest ``keep``."""
    newest_first = sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)
    old = [s.snapshot_id for s in newest_first[keep:]]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()


### END SOLUTION


# %%
check.m04.expire_all_but(expire_all_but)

# %%
expire_all_but(clicks_table, keep=1)
clicks_table = cat.load_table(f"{ns}.clicks")
print([(s.snapshot_id, s.summary.operation.value) for s in clicks_table.snapshots()])

# %% [markdown]
# ## Orphan files
# An **orphan** is an object under the table's location that no metadata references: files of expired snapshots
# (with pyiceberg), files of a writer that crashed before it committed, metadata files that fell off the
# metadata log. What the table still references: the metadata files of its log (`inspect.metadata_log_entries()`,
# which includes the current one), each live snapshot's manifest list, every manifest of a live snapshot
# (`inspect.all_manifests()`) and every data or delete file they list (`inspect.all_files()`).
#
# ### Exercise 4 — find the orphans
# Write `find_orphans(table)`: the set of `s3://` URIs under the table's location that the table no longer
# references. `ops.table_objects(table)` lists every object there. Then we delete them.
# (Production tools delete only orphans older than a grace period, e.g. 3 days: a writer's files are
# unreferenced until it commits.)


# %%
### BEGIN SOLUTION
def find_orphans(table) -> set:
    """Objects under the table's location that no metadata references."""
    referenced = set(table.inspect.metadata_log_entries()["file"].to_pylist())
    referenced |= {s.manifest_list for s in table.snapshots()}
    referenced |= set(table.inspect.all_manifests()["path"].to_pylist())
    referenced |= set(table.inspect.all_files()["file_path"].to_pylist())
    return set(ops.table_objects(table)) - referenced


### END SOLUTION


# %%
check.m04.orphan_files(find_orphans)

# %%
orphans = find_orphans(clicks_table)
store = clients.s3()
for uri in sorted(orphans):
    store.delete_object(Bucket=config.s3().bucket, Key=uri.split("/", 3)[3])
print(f"deleted {len(orphans)} orphans")
clicks_table = cat.load_table(f"{ns}.clicks")
assert duck.sql(query.format(clicks_table.metadata_location) + " ORDER BY 1").fetchall() == expected_answer
stages.append(measure("after expiry + orphans", clicks_table))
before_after = pd.DataFrame(stages).set_index("stage")
print(flink_jobs.cancel_jobs(JOB_PREFIX) or "no job of this lab left running")
before_after

# %% [markdown]
# Read the table top to bottom: compaction cut the files and the query time; expiry plus orphan removal gave the
# space back, down to one snapshot's worth of objects. The answer of the query never changed.
#
# ## Recap
# - A streaming writer commits per checkpoint: latency in seconds means files in kilobytes. Choose the checkpoint
#   interval for the freshness you need, and plan compaction from day one.
# - Compaction = rewrite the small files of a partition into large ones **in one commit** (rows unchanged).
# - Snapshots keep old files alive; expiring them ends time travel to them; only then can the files go.
# - Orphans are what no metadata references; find them by difference, delete them after a grace period.
#
# ## Going further
# - Spark: `CALL lake.system.rewrite_data_files(table => 'm04_l05.clicks', options => map('min-input-files','2'))`,
#   `expire_snapshots`, `remove_orphan_files`, `rewrite_manifests` — the full set of maintenance procedures, with
#   conflict detection and the `replace` operation.
# - Flink: Iceberg's `TableMaintenance` API runs compaction and expiry inside (or next to) the streaming job;
#   `write.target-file-size-bytes` and the sink's `write-parallelism` shape the files it writes.
# - Managed services do this for you: AWS Glue's table optimizers (compaction, snapshot retention, orphan
#   deletion), S3 Tables, Snowflake/Polaris-managed Iceberg, Databricks' predictive optimization for Delta
#   (`OPTIMIZE`, `VACUUM`). With the `external` profile the same notebook points at such a catalog and bucket.
# - Table properties drive the automatic parts: `history.expire.max-snapshot-age-ms`,
#   `write.metadata.delete-after-commit.enabled`, `write.metadata.previous-versions-max`.
