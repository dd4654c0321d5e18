# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 02.06 · Performance and data quality
#
# **You will:**
# - partition the clickstream by day and see the planner skip partitions (pruning) in `EXPLAIN`;
# - choose indexes for a workload — B-tree or BRIN — and measure them with `EXPLAIN ANALYZE`;
# - compare Parquet compression codecs (size, write and read time) and run a query with parallel workers;
# - profile the shop's tables, count rule violations, and flag a day whose load volume is off.
#
# *Needs:* Postgres (started for you). Kernel: `delab`. About 40 minutes.

# %%
from datetime import date, timedelta

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from delab import check, clients, config, datasets, stack
from delab.loading import bulk, performance, quality

stack.require("postgres")
ns = stack.namespace("m02_l06")  # this lab's Postgres schema: m02_l06
shop = datasets.shop(seed=42, scale=1.0)
pg = clients.postgres()
pg.execute(f"CREATE SCHEMA IF NOT EXISTS {ns.schema}")
clicks = shop.clicks
clicks_table = f"{ns.schema}.clicks"
bulk.create_table(pg, clicks_table, clicks, primary_key=["event_id"])  # drops and recreates: re-run safe
bulk.copy_frame(pg, clicks_table, clicks)
pg.execute(f"VACUUM ANALYZE {clicks_table}")
performance.relation_sizes(pg, clicks_table)

# %% [markdown]
# `clicks` holds 139k click events in the order they arrived (by `ingest_time`), with a primary key on
# `event_id`. Every plan in this lab is read with `EXPLAIN (FORMAT JSON)` and parsed by
# `delab.loading.performance` — node types, tables, indexes, milliseconds and buffer blocks — never by scraping
# the text output, whose layout changes between versions.
#
# ## Partitioning
# A **partitioned table** is a parent with no storage of its own and one child table per range (or list, or hash
# bucket) of a **partition key**. Queries that filter on the key read only the partitions that can match
# (**partition pruning**), and old data is dropped a partition at a time (`DROP TABLE` instead of a huge
# `DELETE`). A primary key must include the partition key. Partitions are real tables, so the stack's
# all-tables publication covers them too.
#
# ### Exercise 1 — daily partitions
# Write `create_partitioned_clicks(conn, table, first_day, days)`: create `table` with the columns of
# `m02_l06.clicks` (`event_id bigint, session_id bigint, customer_id bigint, event_type text, product_id bigint,
# event_time timestamp, ingest_time timestamp`), primary key `(event_id, event_time)`, **partitioned by range of
# `event_time`**, with one partition per day for the `days` days from `first_day` (a `date`) — name them
# `<table>_YYYYMMDD` — plus a `DEFAULT` partition (`<table>_default`) for everything else.


# %%
### BEGIN SOLUTION
def create_partitioned_clicks(conn, table: str, first_day: date, days: int) -> None:
    """A clicks table range-partitioned by event_time: one partition per day, plus a default."""
    with conn.transaction():
        conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        conn.execute(
            f"""CREATE TABLE {table} (
                    event_id bigint, session_id bigint, customer_id bigint, event_type text, product_id bigint,
                    event_time timestamp NOT NULL, ingest_time timestamp, PRIMARY KEY (event_id, event_time)
                ) PARTITION BY RANGE (event_time)"""
        )
        for k in range(days):
            day = first_day + timedelta(days=k)
            conn.execute(
                f"CREATE TABLE {table}_{day:%Y%m%d} PARTITION OF {table} "
                f"FOR VALUES FROM ('{day}') TO ('{day + timedelta(days=1)}')"
            )
        conn.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")


### END SOLUTION


# %%
check.m02.daily_partitions(create_partitioned_clicks)

# %% [markdown]
# Build the whole month (28 days from 1 March), load it, and compare the plans of one day's query on the plain
# and the partitioned table. `summary` condenses an analysed plan: its nodes, the tables read, milliseconds and
# the buffer blocks touched.

# %%
partitioned = f"{ns.schema}.clicks_by_day"
create_partitioned_clicks(pg, partitioned, date(2026, 3, 1), 28)
bulk.copy_frame(pg, partitioned, clicks)
pg.execute(f"VACUUM ANALYZE {partitioned}")

one_day = (
    "SELECT event_type, count(*) FROM {t} WHERE event_time >= '2026-03-12' AND event_time < '2026-03-13' GROUP BY 1"
)
pd.DataFrame(
    [
        {"table": t, **performance.summary(performance.explain(pg, one_day.format(t=t), analyze=True))}
        for t in (clicks_table, partitioned)
    ]
)

# %% [markdown]
# The plain table is read whole (a sequential scan over every block); the partitioned one reads one small
# partition. Pruning also works when the value is only known at execution time (a parameter, `now()`), where
# the plan shows `Subplans Removed` instead.
#
# ## Indexing: B-tree vs BRIN
# Two queries run all day against `clicks`: *one hour of clicks by arrival time* and *one customer's clicks*.
# Without an index, both scan the whole table:

# %%
queries = [
    ("hour", performance.HOUR_QUERY.format(table=clicks_table), ("2026-03-20 09:00", "2026-03-20 10:00")),
    ("customer", performance.CUSTOMER_QUERY.format(table=clicks_table), (77,)),
]


def measure(label: str) -> pd.DataFrame:
    """Run every workload query with EXPLAIN ANALYZE and summarise its plan."""
    return pd.DataFrame(
        [
            {"indexes": label, "query": name, **performance.summary(performance.explain(pg, sql, params, analyze=True))}
            for name, sql, params in queries
        ]
    )


runs = [measure("none")]
runs[-1]

# %% [markdown]
# A **B-tree** stores one entry per row, sorted: it finds a key or a range in a few page reads, whatever the
# physical order of the table — at the price of size (about as big as the column data itself) and write cost.
# A **BRIN** (block range index) stores only the minimum and maximum of each range of 128 blocks: tiny and
# cheap to maintain, but useful only when the column's values follow the physical row order, so that most
# block ranges can be ruled out. `pg_stats.correlation` measures exactly that (1 = perfectly ordered):

# %%
pg.execute(
    "SELECT attname, round(correlation::numeric, 3) FROM pg_stats WHERE schemaname = %s AND tablename = 'clicks' "
    "ORDER BY abs(correlation) DESC",
    (ns.schema,),
).fetchall()

# %% [markdown]
# `ingest_time` (and `event_id`) grow with the insertion order; `customer_id` is scattered. Try a B-tree on
# `ingest_time`, then replace it with a BRIN, and compare time, blocks read and size:

# %%
pg.execute(f"CREATE INDEX clicks_ingest_btree ON {clicks_table} (ingest_time)")
pg.execute(f"ANALYZE {clicks_table}")
runs.append(measure("B-tree(ingest_time)"))
btree_kb = performance.relation_sizes(pg, clicks_table).set_index("relation").kB["clicks_ingest_btree"]
pg.execute("DROP INDEX m02_l06.clicks_ingest_btree")
pg.execute(f"CREATE INDEX clicks_ingest_brin ON {clicks_table} USING brin (ingest_time)")
pg.execute(f"ANALYZE {clicks_table}")
runs.append(measure("BRIN(ingest_time)"))
brin_kb = performance.relation_sizes(pg, clicks_table).set_index("relation").kB["clicks_ingest_brin"]
pg.execute("DROP INDEX m02_l06.clicks_ingest_brin")
print(f"B-tree on ingest_time: {btree_kb:,} kB · BRIN on ingest_time: {brin_kb:,} kB")
pd.concat(runs, ignore_index=True)

# %% [markdown]
# The B-tree answers the hour query in a handful of blocks; the BRIN reads more blocks (whole 128-block ranges,
# re-checking each row) but is over a hundred times smaller. Neither helps the customer query.
#
# ### Exercise 2 — indexes for the workload
# Write `index_statements`: a list of `CREATE INDEX` statements (name the table `{table}`; the check fills in a
# fresh copy of `clicks`) such that **both** workload queries (`performance.HOUR_QUERY` and
# `performance.CUSTOMER_QUERY`) read their rows through one of your indexes, touching less than a quarter of
# the table's blocks, while **all your indexes together take no more space than the primary key's index**.

# %%
### BEGIN SOLUTION
index_statements = [
    "CREATE INDEX ON {table} USING brin (ingest_time)",  # ordered by arrival: a few kB serve the range scans
    "CREATE INDEX ON {table} (customer_id)",  # scattered: needs a B-tree (deduplicated, so small)
]
### END SOLUTION

# %%
check.m02.workload_indexes(index_statements)

# %%
for statement in index_statements:
    pg.execute(statement.format(table=clicks_table))
pg.execute(f"ANALYZE {clicks_table}")
runs.append(measure("your indexes"))
display(performance.relation_sizes(pg, clicks_table))
pd.concat(runs, ignore_index=True)

# %% [markdown]
# Indexes are not free at load time: every row loaded updates every index. For a big bulk load into an empty
# table, create the indexes after loading (one sorted build instead of millions of insertions).
#
# ## Compression: Parquet codecs
# Files in a lake are written once and read many times, so the codec is a trade between size, write speed and
# read speed. Parquet compresses column by column (after dictionary and run-length encoding, which already
# shrink repetitive columns like `event_type`). The same 139k clicks with each codec, and as CSV for scale:

# %%
codecs = performance.parquet_codecs(
    clicks, config.lab_dir("m02_l06"), ["none", "snappy", "lz4", "zstd", "zstd:9", "gzip:6"]
)
codecs

# %% [markdown]
# Typical reading: Parquet without any codec is already less than half the size of the CSV (types and encodings);
# snappy and lz4 are fast with a moderate ratio; zstd compresses better at a similar read speed (a common
# default for warehouse files today; a higher level buys a little more); gzip compresses well but reads slower
# (and at pyarrow's default level it is very slow to write). On your machine the timings are
# small and noisy — look at the ratios.
#
# ## Parallel processing
# Postgres can split a scan across **parallel workers** (`Gather` node in the plan) when a table is large
# enough. Here is one aggregation with parallel query off and with two workers:

# %%
parallel_runs = []
aggregate = f"SELECT event_type, count(*), avg(event_id) FROM {clicks_table} GROUP BY 1"
for workers in (0, 2):
    pg.execute(f"SET max_parallel_workers_per_gather = {workers}")
    plan = performance.explain(pg, aggregate, analyze=True)
    parallel_runs.append({"max_parallel_workers_per_gather": workers, **performance.summary(plan)})
pg.execute("RESET max_parallel_workers_per_gather")
pd.DataFrame(parallel_runs)

# %% [markdown]
# Read `workers` (launched) and `ms`. On this small table and a busy 2-core machine the parallel plan is often
# no faster: each worker is a process to start, its partial results must be gathered and merged, and fewer
# workers than planned are launched when the server's pool (`max_parallel_workers`) is busy. On a server with
# idle cores and a table of gigabytes the gain approaches the number of workers. The same idea — split the data,
# work on the parts at once, combine — is what DuckDB's threads, Spark's tasks and the parallel loads of lab 01
# do.
#
# ## Data quality: profile first
# A **profile** summarises each column: type, missing values, distinct values, range. It is the cheapest way to
# find what rules the data needs:

# %%
quality.profile(shop.customers)

# %% [markdown]
# Already visible: some e-mails are missing, and the largest country code is in lower case. Load the shop's
# orders, lines and customers (as delivered, defects included) to write rules against them:

# %%
datasets.to_postgres(
    {"orders": shop.orders, "order_items": shop.order_items, "customers": shop.customers},
    schema=f"{ns.schema}_shop",  # a schema of its own: to_postgres replaces the whole schema
    primary_keys={"customers": ["customer_id"], "order_items": ["order_id", "line_no"]},
)

# %% [markdown]
# ### Exercise 3 — quality rules
# Write `quality_sql`: one query (naming the tables `{schema}.orders`, `{schema}.order_items`,
# `{schema}.customers`) that returns one row `(rule, violations)` per rule:
#
# | rule | a violation is |
# |---|---|
# | `unknown_customer` | an order whose `customer_id` is not in `customers` |
# | `duplicate_order` | an `order_id` that appears more than once (count each such order once) |
# | `negative_quantity` | an order line with `quantity <= 0` |
# | `missing_email` | a customer without an e-mail |
# | `future_timestamp` | an order with `order_ts` after now |
# | `lowercase_country` | a customer whose `country` is not in upper case |

# %%
### BEGIN SOLUTION
quality_sql = """
SELECT 'unknown_customer', count(*) FROM {schema}.orders o
 WHERE NOT EXISTS (SELECT 1 FROM {schema}.customers c WHERE c.customer_id = o.customer_id)
UNION ALL
SELECT 'duplicate_order', count(*) FROM (
  SELECT order_id FROM {schema}.orders GROUP BY order_id HAVING count(*) > 1) d
UNION ALL
SELECT 'negative_quantity', count(*) FROM {schema}.order_items WHERE quantity <= 0
UNION ALL
SELECT 'missing_email', count(*) FROM {schema}.customers WHERE email IS NULL
UNION ALL
SELECT 'future_timestamp', count(*) FROM {schema}.orders WHERE order_ts > now()
UNION ALL
SELECT 'lowercase_country', count(*) FROM {schema}.customers WHERE country <> upper(country)
"""
### END SOLUTION

# %%
check.m02.quality_rules(quality_sql)

# %%
pg.execute(quality_sql.format(schema=f"{ns.schema}_shop")).fetchall()

# %% [markdown]
# Run it after every load and keep the numbers: a rule whose count jumps is as informative as one that fails.
#
# ## Monitoring load volumes
# Rules look inside rows; **volume monitoring** looks at how many rows arrive. A daily job that suddenly loads
# half the usual rows (a truncated file, a source outage) or twice as many (a re-run that appended) breaks
# nothing visibly — every row is valid — yet every report built on it is wrong.
#
# Let's run a month of daily loads for real: each day's orders are COPYed into `m02_l06.orders_loaded` and the
# run is written to `m02_l06.load_log`. Two days go wrong, the way they do in production.

# %%
orders = shop.orders.drop_duplicates("order_id")
orders = orders[orders.order_ts < pd.Timestamp("2026-03-29")]
loaded_table = f"{ns.schema}.orders_loaded"
bulk.create_table(pg, loaded_table, orders)  # insert-only (a re-run appends): no key on purpose
quality.create_load_log(pg, ns.schema)
for day, day_orders in orders.groupby(orders.order_ts.dt.date):
    if day == date(2026, 3, 17):
        day_orders = day_orders.head(len(day_orders) // 2)  # the extract file was cut in half
    runs_of_day = 2 if day == date(2026, 3, 23) else 1  # a retry that appended instead of replacing
    for _ in range(runs_of_day):
        bulk.copy_frame(pg, loaded_table, day_orders)
        pg.execute(f"INSERT INTO {ns.schema}.load_log (day, rows_loaded) VALUES (%s, %s)", (day, len(day_orders)))
volumes = quality.daily_volumes(pg, ns.schema)
volumes.describe()

# %% [markdown]
# ### Exercise 4 — flag anomalous load volumes
# Write `flag_volume_anomalies(daily)`: `daily` is a Series of rows loaded per day (indexed by date); return the
# days whose volume is anomalous. Use a **robust z-score**: with the median $m$ and the median absolute
# deviation $\mathrm{MAD} = \mathrm{median}(|x - m|)$, the modified z-score of a day is
# $0.6745\,(x - m)/\mathrm{MAD}$; flag the days where its absolute value exceeds **5** (a loose threshold,
# because volumes swing with the weekday). Why not mean and standard deviation? Try it: the doubled day inflates
# the standard deviation so much that the truncated day looks normal.


# %%
### BEGIN SOLUTION
def flag_volume_anomalies(daily: pd.Series) -> list:
    """Days whose robust (median/MAD) z-score of the load volume exceeds 5 in absolute value."""
    median = daily.median()
    mad = (daily - median).abs().median()
    robust_z = 0.6745 * (daily - median) / mad
    return list(daily.index[robust_z.abs() > 5])


### END SOLUTION


# %%
check.m02.volume_anomalies(flag_volume_anomalies)

# %%
flagged = flag_volume_anomalies(volumes)
naive_z = (volumes - volumes.mean()) / volumes.std()
fig, ax = plt.subplots(figsize=(10, 3.2))
ax.bar(volumes.index, volumes.values, color=["#c44e52" if d in flagged else "#4c72b0" for d in volumes.index])
ax.axhline(volumes.median(), color="grey", linestyle="--", label="median")
ax.set_ylabel("rows loaded")
ax.set_title("Daily load volumes — flagged days in red")
ax.legend()
plt.tight_layout()
print("flagged (median/MAD):", flagged)
print("flagged by |mean/std z| > 3:", list(volumes.index[naive_z.abs() > 3]))

# %%
pg.close()

# %% [markdown]
# ## Recap
# - Partition big tables by the column queries filter on (usually time); the plan shows the pruning, and old
#   partitions are dropped whole.
# - B-tree for selective lookups on any column; BRIN for range scans on columns in physical order, at a tiny
#   fraction of the size. Check with `EXPLAIN (ANALYZE, BUFFERS)` — and read it as JSON in code.
# - Parquet codecs trade size for speed (zstd is a good default); parallel workers help large scans when cores
#   are idle.
# - Profile, then encode rules; monitor volumes with robust statistics (median/MAD), which outliers cannot
#   drag.
#
# **Going further:**
# - Cloud warehouses do the same under other names: BigQuery partitioning and clustering, Snowflake micro-
#   partitions with clustering keys (pruning shown in the query profile), Redshift sort keys and zone maps
#   (BRIN's cousin). Managed Postgres (RDS, Cloud SQL) runs this lab unchanged under the `external` profile
#   (`DELAB_STACK=external`, `DELAB_POSTGRES_*`); `pg_partman` automates creating and dropping partitions.
# - Quality rules and volume monitors as a service: Great Expectations or Soda checks in the pipeline
#   (module 05), and data-observability tools that learn seasonal baselines per weekday.
