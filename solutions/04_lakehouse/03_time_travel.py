# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 04.03 · Time travel, rollback, audit — and erasing a customer for good
#
# **You will:**
# - list a table's snapshots (Iceberg) and versions (Delta) and read the table as it was at a snapshot or a time;
# - undo a bad write with a rollback (Iceberg) and a restore (Delta), and see what each leaves in the history;
# - use the snapshot log as an audit trail: who changed what, when, with which job;
# - erase one customer's data for good — delete, expire snapshots, remove orphan files — and prove it: not in the
#   current table, not by time travel, and not in any file left in the object store.
#
# *Needs:* Postgres and the object store (started for you). Kernel: `delab`. About 35 minutes.

# %%
import datetime as dt
import time

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from delab import check, clients, lakehouse, stack
from delab.lakehouse import compliance, data, storage

stack.require("postgres", "s3")
catalog = lakehouse.catalog()
ns = lakehouse.fresh_namespace(catalog, "m04_l03")  # re-running starts clean
storage.fresh_delta_namespace("m04_l03")
customer_orders = data.customer_orders()  # orders with the customer's name and email copied in
pd.set_option("display.max_colwidth", 100)
exact_ids = {pa.int64(): pd.Int64Dtype()}.get  # to_pandas(types_mapper=...): a null parent keeps ids integers

# %% [markdown]
# ## Snapshots are versions
# Every commit makes a **snapshot**: the complete list of data files of the table at that moment. Old snapshots
# stay until they are *expired*, so any of them can be read again — that is **time travel**. Load a week of
# orders one day at a time, each commit tagged with the job that made it (`snapshot_properties` end up in the
# snapshot's summary):

# %%
orders = catalog.create_table(f"{ns}.customer_orders", schema=customer_orders.schema)
day = pc.cast(customer_orders["order_ts"], pa.date32())
for offset in range(5):
    today = dt.date(2026, 3, 1) + dt.timedelta(days=offset)
    orders.append(
        customer_orders.filter(pc.equal(day, pa.scalar(today, pa.date32()))),
        snapshot_properties={"job": "daily_orders_load", "business-date": today.isoformat()},
    )
    time.sleep(0.05)  # commits a few ms apart, so that "as of a time" has room between them
snapshots = orders.inspect.snapshots().to_pandas(types_mapper=exact_ids)
snapshots[["committed_at", "snapshot_id", "parent_id", "operation"]]

# %% [markdown]
# Read by snapshot id, or ask which snapshot was current at a time (`table.snapshot_as_of_timestamp(ms)` takes
# milliseconds since the epoch, UTC):

# %%
second = orders.snapshots()[1]
{
    "rows now": orders.scan().count(),
    "rows at the 2nd snapshot": orders.scan(snapshot_id=second.snapshot_id).count(),
    "snapshot current 1 ms after it": orders.snapshot_as_of_timestamp(second.timestamp_ms + 1).snapshot_id
    == second.snapshot_id,
}

# %% [markdown]
# ### Exercise 1 — read the table as of a time
# Write `read_as_of(table, when)`: return the rows (a pyarrow Table) of the Iceberg `table` as they were at
# `when`, a timezone-aware `datetime` — that is, from the last snapshot committed at or before `when`.


# %%
### BEGIN SOLUTION
def read_as_of(table, when):
    """The table's rows as of a point in time."""
    snapshot = table.snapshot_as_of_timestamp(int(when.timestamp() * 1000))
    return table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()


### END SOLUTION

# %%
check.m04.as_of_read(read_as_of)

# %% [markdown]
# ## A bad write, and how to undo it
# A "fix-up" job with a bug overwrites the whole table with the 2nd of March only, marking those orders lost:

# %%
march_2 = customer_orders.filter(pc.equal(day, pa.scalar(dt.date(2026, 3, 2), pa.date32())))
orders.overwrite(
    march_2.set_column(march_2.schema.get_field_index("status"), "status", pa.array(["lost"] * march_2.num_rows)),
    snapshot_properties={"job": "fixup_statuses", "ticket": "OPS-1234"},
)
orders.scan().count(), pc.value_counts(orders.scan(selected_fields=("status",)).to_arrow()["status"]).to_pylist()

# %% [markdown]
# No data was destroyed: the overwrite made new snapshots — two of them, in fact: pyiceberg commits an overwrite
# as a *delete* snapshot followed by an *append* snapshot, both tagged with the job:

# %%
latest = orders.inspect.snapshots().to_pandas(types_mapper=exact_ids).tail(3)
latest.assign(job=latest.summary.map(lambda p: dict(p).get("job")))[["snapshot_id", "parent_id", "operation", "job"]]

# %% [markdown]
# A **rollback** makes an earlier snapshot current again — `table.manage_snapshots().rollback_to_snapshot(id)
# .commit()` (it must be an ancestor of the current one; `set_current_snapshot(id)` accepts any snapshot). It
# writes no data files; the bad snapshots stay in the history, no longer current.
#
# ### Exercise 2 — undo a job
# Write `undo_job(table, job)`: the latest snapshots of `table` were written by `job` (their summary has
# `summary["job"] == job`) — how many varies from one run of a job to the next. Make the snapshot just before
# them current again. `table.current_snapshot()`, `table.snapshot_by_id(id)`, a snapshot's `parent_snapshot_id`
# and `summary` are what you need.


# %%
### BEGIN SOLUTION
def undo_job(table, job):
    """Roll back past every consecutive latest snapshot written by ``job``."""
    snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.summary.get("job") == job:
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    table.manage_snapshots().rollback_to_snapshot(snapshot.snapshot_id).commit()


### END SOLUTION

# %%
check.m04.rollback_bad_write(undo_job)

# %%
undo_job(orders, "fixup_statuses")
orders.scan().count(), orders.inspect.history().to_pandas(types_mapper=exact_ids)

# %% [markdown]
# `is_current_ancestor` is `False` for the two bad snapshots: they are still there for the record (and for time
# travel), but no longer part of the table's current lineage.
#
# **Delta Lake** does it the other way round: `DeltaTable.restore(version)` writes a *new* version whose files are
# those of the old one. History only grows — the restore itself is a commit you can see:

# %%
delta_uri = storage.delta_uri(ns, "customer_orders")
options = storage.delta_storage_options()
write_deltalake(delta_uri, customer_orders.slice(0, 400), storage_options=options)
write_deltalake(delta_uri, customer_orders.slice(400, 400), mode="append", storage_options=options)
write_deltalake(delta_uri, customer_orders.slice(0, 10), mode="overwrite", storage_options=options)  # the bad one
delta_orders = storage.delta_table(delta_uri)
delta_orders.restore(1)
print(
    f"rows now: {delta_orders.to_pyarrow_table().num_rows}, "
    f"rows at version 1: {storage.delta_table(delta_uri, version=1).to_pyarrow_table().num_rows}"
)
pd.DataFrame(delta_orders.history())[["version", "operation", "operationParameters"]]

# %% [markdown]
# ## The snapshot log as an audit trail
# Each snapshot records when it was committed, what operation it was, what changed (files and rows added and
# removed) and the properties the writer attached — here the job and a ticket. That is an audit trail of the
# table's *data*; the catalog's pointer history (`metadata_log_entries`) records every metadata change:

# %%
audit = orders.inspect.snapshots().to_pandas()
audit["job"] = audit.summary.map(lambda s: dict(s).get("job"))
audit["ticket"] = audit.summary.map(lambda s: dict(s).get("ticket"))
audit["rows added"] = audit.summary.map(lambda s: dict(s).get("added-records"))
audit["rows deleted"] = audit.summary.map(lambda s: dict(s).get("deleted-records"))
audit[["committed_at", "operation", "job", "ticket", "rows added", "rows deleted"]]

# %% [markdown]
# The trail is only as long as the snapshots you keep. Retention is a policy decision: regulators may want seven
# years of history, while privacy law wants some data gone within a month. Which brings us to erasure.
#
# ## Erasing a customer for good
# A customer asks to be forgotten (GDPR article 17). `DELETE` alone is not enough in a lakehouse:
#
# 1. **delete** their rows — a new snapshot without them; but older snapshots still list the old files, so time
#    travel still shows the customer;
# 2. **expire** the older snapshots — the metadata forgets them; but their data files are still in the object
#    store, readable by anyone with access to the bucket;
# 3. **remove orphan files** — delete every object under the table's location that no remaining metadata
#    references.
#
# Watch each step on our table, counting the customer's rows in the current table, in all snapshots, and in the
# raw Parquet files stored under the table's location (`compliance.rows_in_stored_files` reads every one):

# %%
customer = int(pd.Series(orders.scan(selected_fields=("customer_id",)).to_arrow()["customer_id"]).mode()[0])


def exposure(table, step: str) -> dict:
    table = catalog.load_table(table.name())
    in_snapshots = sum(
        pc.sum(pc.equal(table.scan(snapshot_id=s.snapshot_id).to_arrow()["customer_id"], customer)).as_py() or 0
        for s in table.snapshots()
    )
    return {
        "step": step,
        "current rows": table.scan(row_filter=f"customer_id == {customer}").count(),
        "rows via time travel": in_snapshots,
        "stored files holding them": len(compliance.rows_in_stored_files(table.location(), "customer_id", customer)),
        "snapshots": len(table.snapshots()),
    }


steps = [exposure(orders, "before")]
orders.delete(f"customer_id == {customer}", snapshot_properties={"job": "gdpr_erasure"})
steps.append(exposure(orders, "1. delete"))
pd.DataFrame(steps)

# %% [markdown]
# Expiring uses `table.maintenance.expire_snapshots()` with `.by_ids([...])` or `.older_than(datetime)`, then
# `.commit()`. pyiceberg only removes the snapshots from the metadata; it deletes no file. **Orphan files** are
# the objects under `table.location()` that no remaining metadata points at. What the metadata points at:
# the current metadata file and the earlier ones in its log (`table.metadata_location`,
# `table.inspect.metadata_log_entries()["file"]`), each snapshot's manifest list (`snapshot.manifest_list`), the
# manifests (`table.inspect.all_manifests()["path"]`) and the data and delete files they list
# (`table.inspect.all_files()["file_path"]`). (Spark's `expire_snapshots` and `remove_orphan_files` procedures do
# both steps for you; they keep orphans younger than a few days by default, because a running writer's new files
# look like orphans until it commits — delete them at once here only because nobody else writes to this table.)
#
# ### Exercise 3 — erase a customer
# Write `erase_customer(table, customer_id)`: delete the customer's rows, expire every snapshot except the
# current one, and delete every orphan object under the table's location. At hand: `storage.objects_under(
# table.location())` lists the keys stored there, `storage.s3_key(uri)` turns an `s3://` URI into a key, and
# `clients.s3().delete_objects(Bucket=..., Delete={"Objects": [{"Key": key}, ...]})` deletes up to 1000 keys
# (the bucket is the part of `table.location()` right after `s3://`). Orphans include the manifests and manifest
# lists of the snapshots you expired, not only data files.


# %%
### BEGIN SOLUTION
def erase_customer(table, customer_id):
    """Delete a customer's rows, forget old snapshots, and delete the files no metadata references."""
    table.delete(f"customer_id == {customer_id}")
    current = table.current_snapshot().snapshot_id
    older = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current]
    if older:
        table.maintenance.expire_snapshots().by_ids(older).commit()
    referenced = {table.metadata_location, *table.inspect.metadata_log_entries()["file"].to_pylist()}
    referenced |= {snapshot.manifest_list for snapshot in table.snapshots()}
    referenced |= set(table.inspect.all_manifests()["path"].to_pylist())
    referenced |= set(table.inspect.all_files()["file_path"].to_pylist())
    referenced = {storage.s3_key(uri) for uri in referenced}
    orphans = [key for key in storage.objects_under(table.location()) if key not in referenced]
    s3, bucket = clients.s3(), table.location().split("/")[2]
    for start in range(0, len(orphans), 1000):
        batch = orphans[start : start + 1000]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch]})


### END SOLUTION

# %%
check.m04.customer_erased(erase_customer)

# %%
erase_customer(orders, customer)
steps.append(exposure(orders, "2+3. expire, remove orphans"))
pd.DataFrame(steps)

# %% [markdown]
# All zeros: the customer is gone from the table, from its history and from the object store. The price: time
# travel before the erasure is gone too (one snapshot left). In practice you expire on a schedule (say, snapshots
# older than 7 days), so an erasure request is complete within a week — write that into your retention policy.
#
# Two more places personal data hides:
# - **column statistics** in manifests hold min/max values of each data file's columns (a name or an email can be
#   a bound); for personal columns, turn them off with the table property
#   `write.metadata.metrics.column.<name> = "none"`, or keep such columns out of analytical tables;
# - **Delta Lake**: `delete` then `vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)` —
#   the same steps, shown below. Delta's log has the same statistics problem: the `_delta_log/*.json` commits
#   keep the min/max of every file they added until log retention (`delta.logRetentionDuration`, 30 days by
#   default) removes them after a checkpoint.

# %%
delta_orders = storage.delta_table(delta_uri)
delta_steps = [("before", compliance.rows_in_stored_files(delta_uri, "customer_id", customer))]
delta_orders.delete(f"customer_id = {customer}")
delta_steps.append(("delete", compliance.rows_in_stored_files(delta_uri, "customer_id", customer)))
delta_orders.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
delta_steps.append(("vacuum", compliance.rows_in_stored_files(delta_uri, "customer_id", customer)))
pd.DataFrame([{"step": step, "stored files holding the customer": len(hits)} for step, hits in delta_steps])

# %% [markdown]
# ## Recap
# - Every commit is a snapshot (Iceberg) or a version (Delta); reading as of a snapshot or a time is time travel.
# - Iceberg rolls back by moving the current-snapshot pointer; Delta restores by committing a new version.
# - The snapshot log (operation, row counts, writer properties) is an audit trail — as long as you keep it.
# - Erasure = delete + expire snapshots + remove orphan files (Delta: delete + vacuum), proven on the raw files.
#
# **Going further:** Spark runs the same maintenance as SQL procedures (`CALL catalog.system.expire_snapshots`,
# `remove_orphan_files`, `rollback_to_snapshot`), and Iceberg *tags* (`manage_snapshots().create_tag`) keep a
# snapshot — a month-end close — beyond expiry. Managed catalogs (AWS Glue with S3 Tables, Polaris, Unity Catalog)
# run expiry and orphan cleanup for you, and S3 object versioning or backups must be part of an erasure plan too.
# The `external` profile points these labs at a real bucket.
