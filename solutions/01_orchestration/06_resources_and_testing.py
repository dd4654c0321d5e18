# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 01.06 · Resources and testing
#
# **You will:**
# - run pipeline steps in parallel with Dagster, and cap how many hit a shared resource at once;
# - measure peak memory, and cut it by processing a large file in chunks;
# - write a test suite for a transformation — and prove it catches bugs, by mutation testing.
#
# *Needs:* Postgres (started for you). Kernel: `delab`. About 25 minutes.

# %%

import pandas as pd

from delab import check, config, datasets, stack
from delab.orchestration import measure, warehouse_jobs

stack.require("postgres")
shop = datasets.shop(seed=7, scale=0.25)
datasets.to_postgres(
    {"orders": shop.orders.drop_duplicates("order_id")}, schema="m01_l06", primary_keys={"orders": ["order_id"]}
)
workdir = config.lab_dir("m01_l06")

# %% [markdown]
# ## Parallel execution and concurrency limits
# `warehouse_jobs.export_days` fans out one `export_day` step per day; each holds a Postgres connection for a
# moment, as a heavy warehouse query would. Dagster's **in-process executor** runs steps one after another. The
# **multiprocess executor** runs up to `max_concurrent` steps in parallel processes — compute allocation: on a
# 2-core laptop more processes than cores buys little. Shared resources need their own cap: a warehouse that
# accepts two concurrent queries, an API with a rate limit. Dagster caps steps **by tag**
# (`tag_concurrency_limits`); Airflow does it with **pools**, Prefect with concurrency limits.

# %%
serial_ok, serial_exports, serial_seconds = warehouse_jobs.run(
    {"execution": {"config": {"in_process": {}}}}, str(workdir / "dagster")
)
print(f"in-process: {serial_seconds:.1f} s, at most {warehouse_jobs.max_overlap(serial_exports)} export at a time")

# %% [markdown]
# ### Exercise 1 — parallel, but at most two on the warehouse
# Write `run_config` for the multiprocess executor: up to 4 steps at once, but at most 2 steps tagged
# `resource=warehouse` at the same time. Start the processes with the `forkserver` method preloading `dagster`
# and `delab.orchestration.warehouse_jobs`, so each step does not pay for importing Dagster again.

# %%
### BEGIN SOLUTION
run_config = {
    "execution": {
        "config": {
            "multiprocess": {
                "max_concurrent": 4,
                "tag_concurrency_limits": [{"key": "resource", "value": "warehouse", "limit": 2}],
                "start_method": {"forkserver": {"preload_modules": ["dagster", "delab.orchestration.warehouse_jobs"]}},
            }
        }
    }
}
### END SOLUTION

# %%
check.m01.concurrency_config(run_config)

# %%
ok, exports, seconds = warehouse_jobs.last_run  # what the check just ran
print(
    f"multiprocess: {seconds:.1f} s, at most {warehouse_jobs.max_overlap(exports)} exports at a time, "
    f"{len({e['pid'] for e in exports})} processes"
)

# %% [markdown]
# Parallel is not automatically faster: each process pays for its start-up, which can exceed the work of a short
# step. Parallelism pays when steps are long or wait on I/O. Measure before you allocate more compute.
#
# ## Memory
# A step that loads a whole file needs memory for all of it (and pandas needs several times the file size).
# Reading in **chunks** and keeping only running totals bounds memory by the chunk size. `measure.cost` runs a
# function in a fresh child process and reports its time and peak memory growth. The file below has about 400,000
# order lines:

# %%
big_csv = workdir / "order_lines.csv"
if not big_csv.exists():
    big = datasets.shop(seed=11, scale=12)
    big.order_items.merge(big.products[["product_id", "category"]], on="product_id").to_csv(big_csv, index=False)
print(f"{big_csv.stat().st_size / 1e6:.0f} MB")


def whole_file_revenue(path: str) -> pd.Series:
    lines = pd.read_csv(path)
    lines = lines[lines.quantity > 0]
    return lines.assign(revenue=lines.quantity * lines.unit_price).groupby("category").revenue.sum().round(2)


whole = measure.cost(whole_file_revenue, str(big_csv))
print(f"whole file: {whole.seconds:.1f} s, peak memory +{whole.peak_mb:.0f} MB")

# %% [markdown]
# ### Exercise 2 — the same answer in a fraction of the memory
# Write `chunked_revenue(path)` returning the same Series (revenue per category, positive quantities only,
# rounded to 2 decimals) while reading the CSV in chunks (`pd.read_csv(path, chunksize=...)`) and keeping only
# per-category running sums. It must use less than half the memory of `whole_file_revenue`.


# %%
### BEGIN SOLUTION
def chunked_revenue(path: str) -> pd.Series:
    """Revenue per category from a CSV read 50,000 lines at a time."""
    totals = pd.Series(dtype=float)
    for chunk in pd.read_csv(path, chunksize=50_000, usecols=["category", "quantity", "unit_price"]):
        chunk = chunk[chunk.quantity > 0]
        partial = (chunk.quantity * chunk.unit_price).groupby(chunk.category).sum()
        totals = totals.add(partial, fill_value=0)
    return totals.round(2).sort_index()


### END SOLUTION


# %%
check.m01.chunked_revenue(chunked_revenue, big_csv)

# %%
chunked = measure.cost(chunked_revenue, str(big_csv))
pd.DataFrame(
    {"seconds": [whole.seconds, chunked.seconds], "peak MB": [whole.peak_mb, chunked.peak_mb]},
    index=["whole file", "chunked"],
).round(1)

# %% [markdown]
# ## Testing pipelines
# Pipelines deserve the tests other code gets:
# - **unit tests** of each transformation on tiny, hand-made inputs where you know the answer;
# - **integration tests** of a whole pipeline against a real database (this course's `tests/airflow/` run the
#   labs' DAGs against the stack's Postgres);
# - **data-quality tests** on real outputs (no duplicate keys, no negative revenue, every day present);
# - **pipeline validation**: definitions load, no cycles, every job has an owner and a retry policy.
#
# A test suite is only as good as the bugs it catches. **Mutation testing** plants bugs in the code and checks
# that some test fails for each. Here is the transformation to test:

# %%
import inspect

from delab.orchestration import revenue_rules

print(inspect.getsource(revenue_rules))

# %% [markdown]
# ### Exercise 3 — a test suite that catches bugs
# Write `tests` — the source of a pytest module that does `from revenue_rules import daily_revenue` and tests
# it on small DataFrames you build (orders: `order_id`, `order_ts`, `status`; items: `order_id`, `quantity`,
# `unit_price`). The check runs it against the real module (it must pass) and against four mutants, each
# breaking one rule of the docstring (each must make a test fail).

# %%
### BEGIN SOLUTION
tests = """
import pandas as pd

from revenue_rules import daily_revenue


def orders(*rows):
    return pd.DataFrame(rows, columns=["order_id", "order_ts", "status"]).astype({"order_ts": "datetime64[ns]"})


def items(*rows):
    return pd.DataFrame(rows, columns=["order_id", "quantity", "unit_price"])


def revenue_of(result, day):
    return result.set_index("day").revenue.get(day, 0.0)


def test_a_line_earns_quantity_times_price():
    result = daily_revenue(orders((1, "2026-03-01 10:00", "delivered")), items((1, 3, 2.5)))
    assert revenue_of(result, "2026-03-01") == 7.5


def test_cancelled_orders_earn_nothing():
    result = daily_revenue(orders((1, "2026-03-01 10:00", "delivered"), (2, "2026-03-01 11:00", "cancelled")),
                           items((1, 1, 10.0), (2, 1, 99.0)))
    assert revenue_of(result, "2026-03-01") == 10.0


def test_non_positive_quantities_are_left_out():
    result = daily_revenue(orders((1, "2026-03-01 10:00", "delivered")), items((1, 2, 5.0), (1, -1, 5.0)))
    assert revenue_of(result, "2026-03-01") == 10.0


def test_repeated_order_rows_count_once():
    result = daily_revenue(orders((1, "2026-03-01 10:00", "shipped"), (1, "2026-03-01 10:00", "shipped")),
                           items((1, 1, 4.0)))
    assert revenue_of(result, "2026-03-01") == 4.0


def test_days_are_calendar_days_in_order():
    result = daily_revenue(orders((1, "2026-03-02 00:00", "delivered"), (2, "2026-03-01 23:59", "delivered")),
                           items((1, 1, 1.0), (2, 1, 2.0)))
    assert list(result.day) == ["2026-03-01", "2026-03-02"]
"""
### END SOLUTION

# %%
check.m01.mutation_tested_suite(tests)

# %% [markdown]
# ## Recap
# - Parallelism is compute allocation: match processes to cores and work; cap shared resources by tag or pool.
# - Measure peak memory; stream large inputs in chunks and keep only aggregates.
# - Test transformations on tiny inputs; test pipelines against real services; test data on real outputs.
# - Mutation testing tells you whether your tests would notice a bug.
#
# **Going further:** Dagster+ and Kubernetes run each step in its own pod with CPU and memory requests
# (`dagster-k8s/config` tags); Airflow's KubernetesExecutor does the same per task, and pools cap shared
# systems. `mutmut` runs mutation testing over a whole code base.
