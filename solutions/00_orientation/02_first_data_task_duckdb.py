# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 00.02 · A first data task with DuckDB
#
# **You will:**
# - load the shop's Parquet files into DuckDB, an in-process analytical database;
# - profile the data and find the defects a real extract has;
# - write a grouped query and a windowed query;
# - write a table as Parquet partitioned by day — the layout data lakes are made of.
#
# *Needs:* nothing but this notebook. About 20 minutes.

# %%
import duckdb

from delab import check, config, datasets

shop = datasets.shop(seed=7, scale=0.25)
workdir = config.lab_dir("m00_l02")  # this lab's own folder under .delab/; re-running the lab reuses it
raw_files = shop.write(workdir / "raw", fmt="parquet")
sorted(path.name for path in raw_files.values())

# %% [markdown]
# ## Load
# DuckDB reads Parquet directly. `CREATE OR REPLACE TABLE ... AS SELECT * FROM read_parquet(...)` copies a file
# into a table; running it again replaces the table, so this cell is safe to re-run.

# %%
con = duckdb.connect()  # an in-memory database, private to this notebook
for table, path in raw_files.items():
    con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_parquet('{path.as_posix()}')")
con.sql("SELECT table_name, estimated_size AS rows FROM duckdb_tables() ORDER BY table_name")

# %% [markdown]
# ## Profile
# Before trusting a table, profile it. `SUMMARIZE` gives, per column, the type, min, max, distinct count and
# the share of NULLs. Look at `quantity` in `order_items`: what is its minimum?

# %%
con.sql("SUMMARIZE order_items")

# %% [markdown]
# Profiles show odd values; keys need a second look. Every order should belong to a customer — a *foreign key*
# the extract does not enforce.
#
# ### Exercise 1 — orphan orders
# Write `orphan_orders_sql`: a query returning **one number**, the count of rows of `orders` whose `customer_id`
# matches no row of `customers`. The check also runs your query on a copy of the shop with other data, so it
# must compute the count from the tables.

# %%
### BEGIN SOLUTION
orphan_orders_sql = """
SELECT count(*) AS orphan_orders
FROM orders AS o
WHERE NOT EXISTS (SELECT 1 FROM customers AS c WHERE c.customer_id = o.customer_id)
"""
### END SOLUTION

# %%
check.m00.orphan_orders(con, orphan_orders_sql)

# %% [markdown]
# Profiling found three defects in `orders`: orphan customers, a few rows repeated verbatim, and timestamps
# a year in the future (the extract ends in March 2026). A common answer is a *clean view* that later queries
# use instead of the raw table:

# %%
con.execute("""
CREATE OR REPLACE VIEW orders_clean AS
SELECT DISTINCT o.*
FROM orders AS o
JOIN customers AS c USING (customer_id)
WHERE o.order_ts < TIMESTAMP '2026-04-01'
""")
con.sql("SELECT (SELECT count(*) FROM orders) AS raw_rows, (SELECT count(*) FROM orders_clean) AS clean_rows")

# %% [markdown]
# ## Grouped queries
# `GROUP BY` folds rows into one row per group, and aggregate functions (`sum`, `count`, `avg`) summarise each
# group.
#
# ### Exercise 2 — revenue per category
# Write `revenue_by_category_sql`, returning the columns `category` and `revenue`, largest revenue first.
# A line's revenue is `quantity * unit_price`. Count only orders of `orders_clean` that were not cancelled, and
# leave out order lines whose quantity is not positive.

# %%
### BEGIN SOLUTION
revenue_by_category_sql = """
SELECT p.category, round(sum(i.quantity * i.unit_price), 2) AS revenue
FROM order_items AS i
JOIN orders_clean AS o USING (order_id)
JOIN products AS p USING (product_id)
WHERE o.status <> 'cancelled' AND i.quantity > 0
GROUP BY p.category
ORDER BY revenue DESC
"""
### END SOLUTION

# %%
check.m00.revenue_by_category(con, revenue_by_category_sql)

# %% [markdown]
# ## Window functions
# A window function computes over rows *related* to the current row without folding them: the `OVER` clause says
# which rows (`PARTITION BY`) and in what order (`ORDER BY`). `ROW_NUMBER()` numbers rows, `LAG(x)` reads `x` from
# the previous row.
#
# ### Exercise 3 — each customer's order history
# Write `order_sequence_sql` over `orders_clean`, one row per order, with the columns `customer_id`, `order_id`,
# `order_ts`, `order_seq` (1 for a customer's first order, 2 for the second… in time order, ties broken by
# `order_id`) and `hours_since_prev` (hours since the same customer's previous order, rounded to 2 decimals;
# NULL for a first order). Hint: `epoch(an_interval)` gives seconds.

# %%
### BEGIN SOLUTION
order_sequence_sql = """
SELECT customer_id, order_id, order_ts,
       row_number() OVER w AS order_seq,
       round(epoch(order_ts - lag(order_ts) OVER w) / 3600, 2) AS hours_since_prev
FROM orders_clean
WINDOW w AS (PARTITION BY customer_id ORDER BY order_ts, order_id)
"""
### END SOLUTION

# %%
check.m00.order_sequence(con, order_sequence_sql)

# %% [markdown]
# How regular are returning customers? The distribution of `hours_since_prev` tells a marketing team when to
# send a reminder:

# %%
gaps = con.sql(f"SELECT hours_since_prev / 24 AS days FROM ({order_sequence_sql}) WHERE order_seq > 1").df()
gaps.days.plot.hist(bins=40, title="days between a customer's orders")
# %% [markdown]
# ## Partitioned Parquet
# Data lakes store a table as many Parquet files, grouped in folders named `column=value` (*hive partitioning*).
# A query that filters on that column only opens the matching folders.
#
# ### Exercise 4 — orders by day
# Write `copy_sql`: a DuckDB `COPY` statement that writes `orders_clean`, with an extra column
# `order_date` (the day of `order_ts`), to the folder `orders_by_day` below as Parquet, partitioned by
# `order_date`. The check runs your statement into an empty folder, then reads the files back.

# %%
orders_by_day = workdir / "orders_by_day"
### BEGIN SOLUTION
copy_sql = f"""
COPY (SELECT *, CAST(order_ts AS DATE) AS order_date FROM orders_clean)
TO '{orders_by_day.as_posix()}' (FORMAT parquet, PARTITION_BY (order_date), OVERWRITE_OR_IGNORE)
"""
### END SOLUTION

# %%
check.m00.partitioned_orders(con, copy_sql, orders_by_day)

# %% [markdown]
# Reading one day now touches one folder. DuckDB's `EXPLAIN ANALYZE` shows how many files the scan opened:

# %%
one_day = f"""
SELECT count(*) FROM read_parquet('{orders_by_day.as_posix()}/**/*.parquet', hive_partitioning = true)
WHERE order_date = DATE '2026-03-14'
"""
print(con.sql("EXPLAIN ANALYZE " + one_day).df().iloc[0, 1][:1500])

# %% [markdown]
# ## Recap
# - DuckDB reads and writes Parquet directly; `SUMMARIZE` is a one-line profile.
# - Real extracts have orphans, duplicates and impossible values: find them, then build a clean view.
# - `GROUP BY` folds rows; window functions (`OVER`) compute across rows without folding them.
# - Partitioning by a column lets readers skip whole folders.
#
# **Going further:** module 04 stores tables like this one in Apache Iceberg on an object store, where the
# partition layout is hidden from the reader and can change without rewriting data. DuckDB itself can query
# a cloud bucket (`httpfs`) or a warehouse such as MotherDuck with the same SQL.
