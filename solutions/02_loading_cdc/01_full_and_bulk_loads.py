# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 02.01 · Full loads and bulk loading
#
# **You will:**
# - load the shop's order lines into Postgres four ways — one INSERT per row, `executemany`, multi-row `VALUES`
#   and `COPY` — and measure rows per second for each;
# - write a COPY loader and a parallel loader with one connection per worker;
# - plot the throughput of every method and see by how much COPY wins;
# - validate a load: counts, checksums and constraints, so "it ran" becomes "it is right".
#
# *Needs:* Postgres (started for you). Kernel: `delab`. About 30 minutes.

# %%
import matplotlib.pyplot as plt

from delab import check, clients, datasets, stack
from delab.loading import bulk

stack.require("postgres")
ns = stack.namespace("m02_l01")  # this lab's Postgres schema: m02_l01
shop = datasets.shop(seed=42, scale=1.0)
pg = clients.postgres()  # autocommit: every statement outside a `with pg.transaction()` commits on its own
pg.execute(f"CREATE SCHEMA IF NOT EXISTS {ns.schema}")

items = shop.order_items
columns = list(items.columns)
rows = bulk.rows_of(items)  # tuples of plain Python values, None for missing ones
target = f"{ns.schema}.order_items"
bulk.create_table(pg, target, items, primary_key=["order_id", "line_no"])
print(f"{len(rows):,} order lines to load into {target}; first row: {rows[0]}")

# %% [markdown]
# ## A full load, four ways
# A **full load** copies a whole table from source to target: the first load of a new pipeline, a nightly
# snapshot of a small dimension, a rebuild after a bug. What makes it fast is how the rows travel:
#
# | method | what goes over the wire |
# |---|---|
# | one `INSERT` per row (autocommit) | a statement, a round trip **and a commit** (a WAL flush) for every row |
# | `executemany` | one statement, many parameter sets, pipelined by psycopg 3 (no wait per row); one transaction |
# | multi-row `VALUES` | one statement per batch of 1,000 rows: fewer statements to parse and plan |
# | `COPY … FROM STDIN` | one statement, then a stream of rows in COPY format: no per-row parse, plan or round trip |
#
# (The multi-row helper uses psycopg's `RawCursor`, with Postgres' own `$1, $2, …` placeholders: psycopg caches
# its rewrite of `%s` placeholders only for statements of up to 50 parameters, and re-parsing a 5,000-parameter
# statement in Python for every batch would cost more than the server's work — look at
# `bulk.insert_multirow_values`.)
#
# The row-by-row method is so slow that we time it on a **2,000-row sample** (and `executemany` on 10,000) and
# report rows/s: rows/s is a rate, so a sample gives the same figure as the whole table would, to within noise.
# The table is emptied (untimed) before each method, and keeps its primary key throughout: a real target has
# one, and maintaining the index is part of what every method pays.

# %%
empty_target = lambda: pg.execute(f"TRUNCATE {target}")  # noqa: E731 - a one-line "before" step

timings = [
    bulk.timed(
        "INSERT per row", lambda: bulk.insert_row_by_row(pg, target, columns, rows[:2_000]), 2_000, empty_target
    ),
    bulk.timed(
        "executemany", lambda: bulk.insert_executemany(pg, target, columns, rows[:10_000]), 10_000, empty_target
    ),
    bulk.timed(
        "multi-row VALUES", lambda: bulk.insert_multirow_values(pg, target, columns, rows), len(rows), empty_target
    ),
    bulk.timed("COPY", lambda: bulk.copy_rows(pg, target, columns, rows), len(rows), empty_target),
]
bulk.timings_frame(timings)

# %% [markdown]
# ### Exercise 1 — a COPY loader
# Write `copy_load(conn, table, frame)`: stream every row of the DataFrame `frame` into the existing `table`
# (columns named like the frame's) with **one** `COPY … FROM STDIN` on `conn`, and commit. psycopg 3 does it with
# `with conn.cursor().copy("COPY t (a, b) FROM STDIN") as copy:` and `copy.write_row(row)` per row. Mind the
# missing values: pandas has `NaN`/`NA`/`NaT` where Postgres wants `NULL` (Python `None`) — the check loads 5,000
# click events, whose `customer_id` and `product_id` are often missing. Don't use the `bulk` helpers here.


# %%
### BEGIN SOLUTION
def copy_load(conn, table: str, frame) -> None:
    """Load every row of frame into table with a single COPY, in one transaction."""
    clean = frame.astype(object).where(frame.notna(), None)  # NaN / NA / NaT → None → NULL
    statement = f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN"
    with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
        for row in clean.itertuples(index=False, name=None):
            copy.write_row(row)


### END SOLUTION


# %%
check.m02.copy_load_check(copy_load)

# %% [markdown]
# Your loader against the helper's, on the whole table (the difference is the cost of converting the frame):

# %%
timings.append(bulk.timed("COPY (yours)", lambda: copy_load(pg, target, items), len(items), empty_target))
bulk.timings_frame(timings)

# %% [markdown]
# ## Parallel workers
# One connection runs one statement at a time on one server process. To use more of the server, split the rows
# into slices and give each **worker** its own connection: each slice is its own COPY and its own transaction.
# That last point matters: if worker 3 fails, slices 1 and 2 are already committed — a parallel load is only
# restartable if each slice can be redone on its own (here: delete the slice's keys, or load into a staging
# table and swap it in at the end).
#
# ### Exercise 2 — a parallel loader
# Write `parallel_load(table, frame, workers)`: cut `frame` into `workers` contiguous slices that together hold
# every row exactly once (the last may be a little longer), load each slice in its own thread with its **own**
# connection (`clients.postgres()`) using COPY, and return one `(backend_pid, rows_loaded)` pair per worker
# (`conn.info.backend_pid` is the server process serving that connection). `concurrent.futures.ThreadPoolExecutor`
# is the simplest pool: psycopg releases the GIL while it waits on the network.

# %%
### BEGIN SOLUTION
from concurrent.futures import ThreadPoolExecutor


def parallel_load(table: str, frame, workers: int) -> list[tuple[int, int]]:
    """COPY frame into table with `workers` connections in parallel; one (backend_pid, rows) per worker."""
    size = -(-len(frame) // workers)  # ceiling division: the slices cover every row
    slices = [frame.iloc[k * size : (k + 1) * size] for k in range(workers)]

    def load(part) -> tuple[int, int]:
        with clients.postgres() as conn:
            copy_load(conn, table, part)
            return conn.info.backend_pid, len(part)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(load, slices))


### END SOLUTION


# %%
check.m02.parallel_load_check(parallel_load)

# %% [markdown]
# Now time it with 1, 2 and 4 workers on the whole table, and plot every method. The y axis is logarithmic:
# each grid line is ten times the one below.

# %%
for workers in (1, 2, 4):
    timings.append(
        bulk.timed(
            f"COPY × {workers} workers", lambda w=workers: parallel_load(target, items, w), len(items), empty_target
        )
    )
results = bulk.timings_frame(timings)

fig, ax = plt.subplots(figsize=(9, 3.5))
ax.bar(results.method, results.rows_per_s, color=["#c44e52"] * 3 + ["#4c72b0"] * (len(results) - 3))
ax.set_yscale("log")
ax.set_ylabel("rows per second (log scale)")
ax.set_title(f"Loading {len(items):,} order lines into Postgres")
ax.tick_params(axis="x", rotation=30)
for x, value in enumerate(results.rows_per_s):
    ax.text(x, value, f"{value:,.0f}", ha="center", va="bottom", fontsize=8)
plt.tight_layout()
results

# %% [markdown]
# What to read in it (your numbers differ, the shape does not):
# - **COPY is one to two orders of magnitude faster than row-by-row INSERTs**, and several times faster than
#   the batched ones: no statement is parsed or planned per row, and nothing waits for a reply.
# - Row-by-row in autocommit pays a commit per row; wrapping it in one transaction already helps a lot — try it.
# - **Parallel workers** help when the server has idle cores and the load is big: on a 2-core laptop shared
#   with Kafka and Flink, and 34k rows that COPY in a few hundredths of a second, connection set-up eats the
#   gain. On a real server with a 100-million-row load, 4–8 workers typically scale well until the disk or WAL
#   becomes the limit.
#
# ## Validating a load
# A load that "ran without errors" can still be wrong: a truncated file, a mis-mapped column, a float that lost a
# cent, a duplicated batch. Three cheap tests catch most of it:
# 1. **counts** — rows in the target = rows in the source;
# 2. **checksums** — aggregates of the content agree (sums of each numeric column, money in whole cents so
#    floating point cannot blur a one-cent error; or a hash of every row) — equal counts with different data
#    fail here;
# 3. **constraints** — rules the data must obey (keys unique, quantities positive, foreign keys resolve).
#    Postgres enforces them if you declare them; on a keyless staging table you test them with queries.
#
# ### Exercise 3 — validate a load
# Write `validate_load(conn, table, frame)` for order lines: return a dict with three booleans —
# `"counts"` (same number of rows in `table` as in `frame`), `"checksums"` (the table's content agrees with the
# frame's: at least `quantity`, `unit_price` and the keys) and `"constraints"` (in the table, every `quantity` is
# > 0 and no `(order_id, line_no)` appears twice). The check damages loads on purpose — a lost row, a price off by
# one cent, a negative quantity, a duplicated line — and expects each to be caught by the right test.


# %%
### BEGIN SOLUTION
def validate_load(conn, table: str, frame) -> dict[str, bool]:
    """Counts, content checksums and constraints of a loaded order-lines table, compared with its source frame."""
    n_rows, quantity, cents, keys, bad_quantity, duplicates = conn.execute(
        f"""SELECT count(*), coalesce(sum(quantity), 0), coalesce(sum(round(unit_price * 100)), 0)::bigint,
                   coalesce(sum(order_id * 1000 + line_no), 0),
                   count(*) FILTER (WHERE quantity <= 0),
                   count(*) - count(DISTINCT (order_id, line_no))
            FROM {table}"""
    ).fetchone()
    source = (
        int(frame.quantity.sum()),
        int((frame.unit_price * 100).round().sum()),
        int((frame.order_id * 1000 + frame.line_no).sum()),
    )
    return {
        "counts": n_rows == len(frame),
        "checksums": (int(quantity), int(cents), int(keys)) == source,
        "constraints": bad_quantity == 0 and duplicates == 0,
    }


### END SOLUTION


# %%
check.m02.validate_load_check(validate_load)

# %% [markdown]
# Run it on our real load. The shop's generator injected defects, so expect a verdict you have to act on:

# %%
empty_target()
copy_load(pg, target, items)
validate_load(pg, target, items)

# %% [markdown]
# Counts and checksums agree — the load is faithful — but some quantities are negative: the defect was in the
# source. A validator's job is to say *which* kind of problem you have: a broken load is re-run, bad source data
# is quarantined and reported upstream.
#
# Declared constraints do the same job inside the database. The shop's `orders` contain duplicated orders; load
# them into a keyless staging table (insert-only, so the publication the stack keeps for Debezium does not get in
# the way), then try to promote it to a proper table with a primary key:

# %%
orders_staging = f"{ns.schema}.orders_staging"
bulk.create_table(pg, orders_staging, shop.orders)
copy_load(pg, orders_staging, shop.orders)
try:
    pg.execute(f"ALTER TABLE {orders_staging} ADD PRIMARY KEY (order_id)")
except Exception as error:  # psycopg.errors.UniqueViolation
    print(type(error).__name__, "—", str(error).splitlines()[0])
pg.execute(
    f"SELECT order_id, count(*) FROM {orders_staging} GROUP BY order_id HAVING count(*) > 1 ORDER BY order_id LIMIT 5"
).fetchall()

# %%
pg.close()

# %% [markdown]
# ## Recap
# - A full load's speed is decided by round trips and per-statement work: COPY ≫ multi-row VALUES ≈
#   executemany (pipelined) ≫ one INSERT (and one commit) per row.
# - Parallel loading needs one connection per worker and slices that cover every row exactly once; it pays off
#   when the server has spare cores and the load is large, and every slice must be restartable on its own.
# - Validate every load: counts, content checksums, constraints. Each failure points to a different fix.
#
# **Going further:**
# - Managed Postgres (Amazon RDS/Aurora, Cloud SQL, Azure) accepts the same `COPY … FROM STDIN`; RDS and Aurora
#   add `aws_s3.table_import_from_s3` to COPY straight from S3. Point the lab at one with the `external` profile
#   (`DELAB_STACK=external` and the `DELAB_POSTGRES_HOST`/`_PORT`/`_USER`/`_PASSWORD`/`_DATABASE` variables).
# - Cloud warehouses have their own bulk loaders that read files from object storage in parallel: Snowflake
#   `COPY INTO`, BigQuery load jobs, Redshift `COPY … FROM 's3://…'`, Databricks `COPY INTO`. The lesson
#   carries over: stage files, load them in one set-based command, then validate.
# - For very large loads into Postgres: load into an unlogged or index-free staging table, build the indexes
#   afterwards, and `ANALYZE` the table before anyone queries it.
