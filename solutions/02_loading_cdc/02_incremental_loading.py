# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 02.02 · Incremental loading: watermarks, merges, SCD 1 and 2
#
# **You will:**
# - extract only what changed since the last run, with a high watermark kept in the database;
# - watch the classic watermark pitfalls happen on real data: equal timestamps, a late-committing transaction,
#   and deletes that are never seen;
# - merge changes into a target with `INSERT … ON CONFLICT` and `MERGE`, so re-runs and replays are harmless;
# - keep history with a slowly changing dimension of type 2, and compare it with type 1.
#
# *Needs:* Postgres (started for you). Kernel: `delab`. About 40 minutes.

# %%
import time

from delab import check, clients, datasets, stack
from delab.loading import incremental

stack.require("postgres")
ns = stack.namespace("m02_l02")  # this lab's Postgres schema: m02_l02
shop = datasets.shop(seed=42, scale=1.0)
pg = clients.postgres()
pg.execute("SET timezone = 'UTC'")
schema = ns.schema
incremental.prepare(pg, schema, shop)  # src_orders (filled), dw_orders (empty), watermarks — re-run safe
pg.execute(f"SELECT * FROM {schema}.src_orders ORDER BY order_id LIMIT 3").fetchall()

# %% [markdown]
# `src_orders` stands for an application's table: every write sets `updated_at` (here through its default,
# `now()`). The shop's few orders stamped a year in the future (an injected defect) are left out: one such row
# would push a max-based watermark past every real change to come — validate timestamps before trusting them.
#
# ## The high-watermark pattern
# An **incremental load** copies only the rows changed since the previous run. The textbook version:
# 1. read the **watermark** saved by the last run (none the first time);
# 2. extract rows with `updated_at > watermark`;
# 3. upsert them into the target, and save `max(updated_at)` as the new watermark — **in the same
#    transaction**, so a crash never saves a watermark for rows that were not loaded (or the reverse).
#
# `incremental.naive_run` does exactly that; the watermark lives in `m02_l02.watermarks`, so it survives a
# restart of the kernel, the scheduler or the machine.

# %%
print("rows extracted:", incremental.naive_run(pg, schema), "· watermark:", incremental.get_watermark(pg, schema))
print("rows extracted by a second run:", incremental.naive_run(pg, schema))
incremental.compare(pg, schema)

# %% [markdown]
# Source and target agree, and the second run found nothing. Now three ways it goes wrong.
#
# ### Pitfall 1 — equal timestamps
# Big extractions are paged: `ORDER BY updated_at LIMIT 500`, then the next page starts after the last
# `updated_at` seen. But marketplace orders are imported in a nightly batch **stamped exactly at midnight**:
# dozens of rows share one timestamp. When a page ends inside such a group, `updated_at > last` skips the rest.

# %%
extracted = incremental.naive_batches(pg, schema, limit=500)
total = pg.execute(f"SELECT count(*) FROM {schema}.src_orders").fetchone()[0]
lost = pg.execute(
    f"SELECT updated_at::time AS at, count(*) FROM {schema}.src_orders WHERE order_id <> ALL(%s) GROUP BY 1",
    (extracted,),
).fetchall()
print(f"paged extraction saw {len(extracted):,} of {total:,} rows; the lost ones, by time of day: {lost}")

# %% [markdown]
# Almost every lost row was stamped at midnight (the others share a second by chance). The cure is a watermark
# that is **unique**: the pair `(updated_at, order_id)` — a *keyset*. Postgres compares row values directly:
# `WHERE (updated_at, order_id) > (%s, %s) ORDER BY updated_at, order_id`, and the index on
# `(updated_at, order_id)` serves it.
#
# ### Exercise 1 — keyset paging
# Write `next_batch(conn, table, after, limit)`: return up to `limit` rows of `table` (all columns, `SELECT *`,
# as tuples: `order_id, customer_id, channel, status, updated_at`) that come strictly after `after` in
# `(updated_at, order_id)` order, sorted that way. `after` is `None` for the first page, then the pair
# `(updated_at, order_id)` of the previous page's last row.


# %%
### BEGIN SOLUTION
def next_batch(conn, table: str, after, limit: int) -> list[tuple]:
    """One page of rows after the (updated_at, order_id) keyset `after`."""
    if after is None:
        return conn.execute(f"SELECT * FROM {table} ORDER BY updated_at, order_id LIMIT %s", (limit,)).fetchall()
    return conn.execute(
        f"SELECT * FROM {table} WHERE (updated_at, order_id) > (%s, %s) ORDER BY updated_at, order_id LIMIT %s",
        (*after, limit),
    ).fetchall()


### END SOLUTION


# %%
check.m02.keyset_batches(next_batch)

# %% [markdown]
# ### Pitfall 2 — the late commit
# `now()` in Postgres is the **start** of the transaction, but other sessions see the row only at its
# **commit**. Let two sessions write: `slow` starts first and takes a while (think: a checkout that also calls a
# payment provider), `fast` starts later and commits at once. An incremental run happens in between.

# %%
slow = clients.postgres(autocommit=False)  # its transaction starts with its first statement
fast = clients.postgres()
slow.execute(
    f"INSERT INTO {schema}.src_orders (order_id, customer_id, channel, status) VALUES (1, 17, 'web', 'placed')"
)
time.sleep(0.2)  # the slow transaction is still busy…
fast.execute(
    f"INSERT INTO {schema}.src_orders (order_id, customer_id, channel, status) VALUES (2, 42, 'app', 'placed')"
)
print(
    "run while `slow` is open:",
    incremental.naive_run(pg, schema),
    "row(s); watermark now",
    incremental.get_watermark(pg, schema),
)
slow.commit()
print("run after `slow` committed:", incremental.naive_run(pg, schema), "row(s)")
print(pg.execute(f"SELECT order_id, updated_at FROM {schema}.src_orders WHERE order_id < 3 ORDER BY 1").fetchall())
incremental.compare(pg, schema)

# %% [markdown]
# Order 1 is in the source but **never** reaches the target: its `updated_at` is older than the watermark that
# the run moved past it while it was still uncommitted. No later run will look back. The same happens with
# clock skew between application servers, and with `updated_at` set by application code before a long
# transaction.
#
# Cures, from simplest to most robust:
# - **look back**: extract from `watermark − safety margin` and rely on an idempotent merge to absorb the
#   re-read rows (cheap, but the margin is a guess);
# - **never move the watermark past an open writer**: the upper bound of a run is the start of the oldest
#   transaction still writing (`pg_stat_activity.xact_start` of sessions with a `backend_xid`), and the run
#   takes the half-open range `[watermark, bound)`; the next run starts exactly at `bound`. Postgres shows
#   `xact_start` only for your own role's sessions unless you hold `pg_read_all_stats` — a real deployment needs
#   that grant. (A transaction that has not written anything yet has no `backend_xid`; if it later writes with
#   `updated_at = now()`, its row is still stamped at its start. Timestamps set at write time — a trigger with
#   `clock_timestamp()` — shrink that window.)
# - **read the log instead of the table**: log-based CDC (lab 03, Debezium) sees every committed change in
#   commit order, deletes included.
#
# ### Pitfall 3 — deletes are never seen
# A deleted row has no `updated_at` to compare: the query cannot return what is not there.

# %%
pg.execute(f"DELETE FROM {schema}.src_orders WHERE order_id = 2")
print("run after a delete:", incremental.naive_run(pg, schema), "row(s)")
incremental.compare(pg, schema)

# %% [markdown]
# The target still has order 2. Fixes: **soft deletes** (the application sets `deleted_at`, an update like any
# other), a periodic **key reconciliation** (compare the source's keys with the target's, as `compare` does, and
# delete the extras), or **log-based CDC** (lab 03).
#
# ## Merging changes into the target
# Extracted rows must be *merged*: new keys inserted, existing ones updated. Two tools in Postgres:
#
# ```sql
# INSERT INTO target AS t (…) SELECT … FROM staging
# ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, … ;          -- an "upsert"
#
# MERGE INTO target t USING staging s ON t.order_id = s.order_id              -- SQL standard, Postgres ≥ 15
# WHEN MATCHED AND … THEN UPDATE SET …
# WHEN NOT MATCHED THEN INSERT (…) VALUES (…);
# ```
#
# `ON CONFLICT` needs a unique index on the conflict columns and is safe under concurrency (it never fails with
# a duplicate key). `MERGE` can also `DELETE` and takes several `WHEN` branches, but two concurrent MERGEs can
# both try to insert the same new key. Both refuse a staging batch that holds the same key twice: deduplicate
# first (keep the newest version).
#
# Idempotency has a subtle side: batches get **replayed** (a retried task) or arrive **out of order** (two
# workers). An unconditional update then overwrites a newer row with an older one.
#
# ### Exercise 2 — an upsert where the newer version wins
# Write `upsert_sql`: one statement (a string with the placeholders `{target}` and `{staging}`, filled with
# `str.format`) that merges every row of the staging table into the target (both with the columns of
# `src_orders`; the target has a primary key on `order_id`): new orders are inserted, and an existing order is
# updated — every column, since a newer version replaces the whole row — **only if the staged version is newer**
# (`updated_at` greater).

# %%
### BEGIN SOLUTION
upsert_sql = """
INSERT INTO {target} AS t (order_id, customer_id, channel, status, updated_at)
SELECT order_id, customer_id, channel, status, updated_at FROM {staging}
ON CONFLICT (order_id) DO UPDATE
SET customer_id = EXCLUDED.customer_id, channel = EXCLUDED.channel, status = EXCLUDED.status,
    updated_at = EXCLUDED.updated_at
WHERE t.updated_at < EXCLUDED.updated_at
"""
### END SOLUTION

# %%
check.m02.newer_wins_upsert(upsert_sql)

# %% [markdown]
# The same with `MERGE` — run it twice and watch the second run change nothing. `cmd_tuples` is the number of
# rows the statement inserted or updated.

# %%
pg.execute(f"CREATE TABLE IF NOT EXISTS {schema}.dw_orders_merge (LIKE {schema}.dw_orders INCLUDING ALL)")
merge_sql = f"""
MERGE INTO {schema}.dw_orders_merge t
USING {schema}.src_orders s ON t.order_id = s.order_id
WHEN MATCHED AND s.updated_at > t.updated_at THEN
    UPDATE SET customer_id = s.customer_id, channel = s.channel, status = s.status, updated_at = s.updated_at
WHEN NOT MATCHED THEN
    INSERT (order_id, customer_id, channel, status, updated_at)
    VALUES (s.order_id, s.customer_id, s.channel, s.status, s.updated_at)
"""
for attempt in (1, 2):
    cursor = pg.execute(merge_sql)
    print(f"MERGE run {attempt}: {cursor.rowcount:,} rows inserted or updated")

# %% [markdown]
# ## Slowly changing dimensions
# Orders are facts; customers are a **dimension** whose attributes change (a customer moves country). Type 1
# overwrites — the dimension shows only the present, and last year's revenue "moves" to the new country.
# **Type 2** keeps history: each change closes the current version (`valid_to`, `is_current = false`) and adds
# a new one valid from the change, so facts join to the version valid at their time:
#
# | customer_id | country | valid_from | valid_to | is_current |
# |---|---|---|---|---|
# | 17 | DE | 2026-03-01 | 2026-03-15 | false |
# | 17 | FR | 2026-03-15 | NULL | true |
#
# ### Exercise 3 — an SCD type 2 load
# Write `scd2_load(conn, dim, snapshot, as_of)`. `snapshot` is a table of the customers as they are now
# (`customer_id`, `country`, `segment`); `dim` has the columns `customer_id, country, segment, valid_from,
# valid_to, is_current` (plus a generated `version_id` you leave alone); `as_of` is the snapshot's time.
# For every customer whose `country` or `segment` differs from their current version — or who has none yet —
# close the current version at `as_of` and add a new current one valid from `as_of` (`valid_to` NULL). Customers
# that did not change are left alone, so loading the same snapshot twice adds nothing. Do it in one transaction.
# (`IS DISTINCT FROM` compares values that may be NULL.)


# %%
### BEGIN SOLUTION
def scd2_load(conn, dim: str, snapshot: str, as_of) -> None:
    """Close changed current versions at as_of and insert new current versions for changed or new customers."""
    changed = f"""
        SELECT s.customer_id, s.country, s.segment FROM {snapshot} s
        LEFT JOIN {dim} d ON d.customer_id = s.customer_id AND d.is_current
        WHERE d.customer_id IS NULL OR (d.country, d.segment) IS DISTINCT FROM (s.country, s.segment)"""
    with conn.transaction():
        conn.execute(f"CREATE TEMP TABLE scd2_changed ON COMMIT DROP AS {changed}")
        conn.execute(
            f"""MERGE INTO {dim} d USING scd2_changed c ON d.customer_id = c.customer_id AND d.is_current
                WHEN MATCHED THEN UPDATE SET valid_to = %s, is_current = false""",
            (as_of,),
        )
        conn.execute(
            f"""INSERT INTO {dim} (customer_id, country, segment, valid_from, valid_to, is_current)
                SELECT customer_id, country, segment, %s, NULL, true FROM scd2_changed""",
            (as_of,),
        )


### END SOLUTION


# %%
check.m02.scd2_history(scd2_load)

# %% [markdown]
# Why two statements? A type 2 change touches **two** rows per customer (close the old, insert the new), while
# `MERGE` acts at most once per target row and each source row picks one branch. The usual tricks are the one
# above (find the changes once, close with `MERGE`/`UPDATE`, then insert) or a `MERGE` whose source is the union of
# the changes with a null key for the inserts.
#
# ## Putting it together: a run that survives late commits
# ### Exercise 4 — a late-commit-safe incremental run
# Write `run_increment(conn, schema)` for the tables `prepare` made (`{schema}.src_orders`,
# `{schema}.dw_orders`, `{schema}.watermarks`, pipeline name `'orders'`). In **one transaction**:
# 1. read the watermark (`incremental.get_watermark(conn, schema)`; `None` the first time);
# 2. compute the run's upper bound: `now()`, or the `xact_start` of the oldest other transaction in this
#    database that is writing (`pg_stat_activity` rows with `backend_xid IS NOT NULL`), whichever is earlier;
# 3. upsert the source rows with `watermark <= updated_at < bound` into `dw_orders` (`incremental.upsert_rows`
#    takes rows in `src_orders`' column order) — rows at exactly the bound belong to the next run;
# 4. save the bound as the new watermark (`incremental.set_watermark`).
#
# The check calls it from a fresh connection each time, with a transaction that commits late, an update and
# a run with nothing to do (which must rewrite no target row).


# %%
### BEGIN SOLUTION
def run_increment(conn, schema: str) -> int:
    """Load [watermark, bound) into dw_orders and persist bound, where bound never passes an open writer."""
    with conn.transaction():
        watermark = incremental.get_watermark(conn, schema)
        (bound,) = conn.execute(
            """SELECT least(now(), min(xact_start)) FROM pg_stat_activity
               WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"""
        ).fetchone()
        rows = conn.execute(
            f"""SELECT order_id, customer_id, channel, status, updated_at FROM {schema}.src_orders
                WHERE (%(wm)s::timestamptz IS NULL OR updated_at >= %(wm)s) AND updated_at < %(bound)s""",
            {"wm": watermark, "bound": bound},
        ).fetchall()
        incremental.upsert_rows(conn, schema, rows)
        if watermark is None or bound > watermark:
            incremental.set_watermark(conn, schema, bound)
    return len(rows)


### END SOLUTION


# %%
check.m02.late_commit_safe_run(run_increment)

# %% [markdown]
# Replay the late commit against your run (in a fresh copy of the tables):

# %%
incremental.prepare(pg, schema, shop)
print("first run:", run_increment(pg, schema), "rows")
slow = clients.postgres(autocommit=False)
slow.execute(
    f"INSERT INTO {schema}.src_orders (order_id, customer_id, channel, status) VALUES (1, 17, 'web', 'placed')"
)
time.sleep(0.2)
fast.execute(
    f"INSERT INTO {schema}.src_orders (order_id, customer_id, channel, status) VALUES (2, 42, 'app', 'placed')"
)
print("run while `slow` is open:", run_increment(pg, schema), "rows — the bound waits for `slow`")
slow.commit()
print("run after `slow` committed:", run_increment(pg, schema), "rows")
print("a run with nothing new:", run_increment(pg, schema), "rows; watermark", incremental.get_watermark(pg, schema))
incremental.compare(pg, schema)

# %%
for conn in (slow, fast, pg):
    conn.close()

# %% [markdown]
# ## Recap
# - A high watermark turns a full load into an incremental one; keep it in the target database and save it in
#   the same transaction as the rows.
# - Timestamp watermarks break on ties (use a keyset), on late commits (bound each run by the oldest open writer,
#   or look back and merge idempotently) and on deletes (soft deletes, reconciliation, or log-based CDC).
# - `INSERT … ON CONFLICT` and `MERGE` make loads re-runnable; a "newer wins" condition makes them safe against
#   replays and out-of-order batches.
# - SCD type 1 overwrites, type 2 versions each change with `valid_from`/`valid_to`/`is_current`.
#
# **Going further:**
# - Cloud warehouses run the same patterns at scale: `MERGE` in Snowflake, BigQuery, Redshift and Databricks;
#   dbt's incremental models (`is_incremental()`, `unique_key`, `incremental_strategy='merge'`) and snapshots
#   (SCD type 2 with `dbt_valid_from`/`dbt_valid_to`) generate it for you.
# - On managed Postgres (RDS, Cloud SQL, Azure) everything here works unchanged; point the lab at one with the
#   `external` profile (`DELAB_STACK=external` and the `DELAB_POSTGRES_*` variables). Grant
#   `pg_read_all_stats` to the pipeline's role so it sees other roles' open transactions.
# - Lab 03 replaces the watermark with the database's own change log (Debezium), which sees deletes and commit
#   order.
