# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 05.05 · Testing data: unit, property, schema, integration and regression tests
#
# **You will:**
# - climb the data-testing pyramid: many fast unit tests of transformations (with property-based tests where a
#   rule holds for *every* input), schema and data tests in the warehouse, a few integration tests against real
#   services, and regression tests that compare a pipeline's output before and after a change;
# - write a pytest suite for a cleaning step and have it graded by **mutation testing**: planted bugs must make
#   your tests fail;
# - write dbt generic tests and a dbt unit test, run by `dbt build` on the stack's Postgres;
# - diff two outputs of a pipeline by key to see exactly what a change did.
#
# *Needs:* Postgres (started for you). Kernel: `delab`. About 40 minutes.

# %%
import inspect
import uuid

import pandas as pd
import psycopg
import yaml

from delab import check, config, datasets, stack
from delab.checks.m05 import l05_data_testing
from delab.contracts import dbt_models, odcs, order_cleaning

stack.require("postgres")
ns = stack.namespace("m05_l05")
orders = odcs.clean_orders()  # 400 orders of the shop without its injected defects
odcs.load_table(orders, ns.schema)
print(f"table {ns.schema}.orders: {len(orders)} orders")

# %% [markdown]
# ## The pyramid
# | layer | tests | runs on | how many |
# |---|---|---|---|
# | unit | one transformation, tiny hand-made inputs | pandas in memory | hundreds, ms each |
# | property | a rule true for *every* input (idempotence…) | generated inputs (hypothesis) | tens, ~1 s |
# | schema / data | keys, nulls, allowed values, contracts | the warehouse (dbt, lab 05.02) | after each load |
# | integration | the pipeline end to end | a private namespace of the stack | a few, seconds |
# | regression | the output before and after a change | two runs, diffed by key | per change |
#
# The cleaning step under test (`delab.contracts.order_cleaning`):

# %%
print(inspect.getsource(order_cleaning))

# %% [markdown]
# ### Exercise 1 — a test suite that catches bugs
# Write `tests`, the source of a pytest module that imports `order_cleaning` (`from order_cleaning import
# clean_orders, STATUSES`) and tests its rules with tiny DataFrames you build in the tests. Add at least one
# property-based test with **hypothesis** (e.g. the output never has a repeated `order_id`, or cleaning twice
# changes nothing). The check runs your suite on the real module (it must pass) and on copies with one planted
# bug each (it must fail on every one).
#
# Tip: keep hypothesis quick with `@settings(max_examples=30, deadline=None)`.

# %%
### BEGIN SOLUTION
tests = """
import pandas as pd
from hypothesis import given, settings, strategies as st

from order_cleaning import STATUSES, clean_orders

AS_OF = pd.Timestamp("2026-03-10 12:00:00")


def frame(rows):
    return pd.DataFrame(rows, columns=["order_id", "channel", "status", "order_ts"])


def test_a_repeated_order_keeps_its_first_row():
    out = clean_orders(frame([(1, "web", "placed", AS_OF), (1, "app", "shipped", AS_OF)]), AS_OF)
    assert out.to_dict("records") == [{"order_id": 1, "channel": "web", "status": "placed", "order_ts": AS_OF}]


def test_channel_is_trimmed_and_lower_cased():
    out = clean_orders(frame([(1, "  Web ", "placed", AS_OF)]), AS_OF)
    assert list(out.channel) == ["web"]


def test_unknown_statuses_are_dropped():
    out = clean_orders(frame([(1, "web", "pending", AS_OF), (2, "web", "placed", AS_OF)]), AS_OF)
    assert list(out.order_id) == [2]


def test_the_future_is_dropped_but_as_of_itself_is_kept():
    later = AS_OF + pd.Timedelta(seconds=1)
    out = clean_orders(frame([(1, "web", "placed", AS_OF), (2, "web", "placed", later)]), AS_OF)
    assert list(out.order_id) == [1]
    assert list(out.index) == [0]


rows = st.lists(
    st.tuples(
        st.integers(1, 5),
        st.sampled_from(["web", " App", "WEB "]),
        st.sampled_from([*STATUSES, "pending"]),
        st.sampled_from([AS_OF - pd.Timedelta(hours=1), AS_OF, AS_OF + pd.Timedelta(hours=1)]),
    ),
    max_size=12,
)


@settings(max_examples=30, deadline=None)
@given(rows)
def test_properties_no_repeats_and_idempotent(batch):
    once = clean_orders(frame(batch), AS_OF)
    assert once.order_id.is_unique
    assert set(once.status) <= set(STATUSES)
    pd.testing.assert_frame_equal(clean_orders(once, AS_OF), once)
"""
### END SOLUTION

# %%
check.m05.mutation_tested_suite(tests)

# %% [markdown]
# The planted bugs your suite caught (`delab.mutation` ran it once per bug, in a fresh pytest process):

# %%
[what for what, _, _ in l05_data_testing.MUTANTS]

# %% [markdown]
# Note what the hypothesis test adds: it does not know the right output, only rules every output obeys, and it
# tries inputs you would not write by hand (several repeats at once, all rows dropped, the empty batch).
#
# ## Schema and data tests in the warehouse: dbt
# dbt runs three kinds of tests with `dbt build`:
# - **generic data tests** declared on columns (`unique`, `not_null`, `accepted_values`, `relationships`) — SQL
#   queries over the built table that must return no rows;
# - **singular tests** — your own `SELECT` in `tests/*.sql` returning the bad rows;
# - **unit tests** (dbt ≥ 1.8) — fixed input rows in, expected rows out, for the model's *logic*, before the
#   model is built.
#
# The model under test keeps the orders that count for reporting:

# %%
print(l05_data_testing.REPORTED_SQL)

# %% [markdown]
# ### Exercise 2 — dbt data tests and a unit test
# Write `tests_yaml`, the model YAML of `fct_reported_orders` with generic tests so that `dbt build` fails when
# the data has a repeated `order_id`, an order without `customer_id` or an unknown `status`; and a `unit_tests`
# entry that fails if someone drops the model's `where status <> 'cancelled'`. The check builds the model on good
# orders (everything must pass), on defective copies, and with the filter removed.

# %%
### BEGIN SOLUTION
tests_yaml = """
version: 2
models:
  - name: fct_reported_orders
    config: {materialized: table}
    columns:
      - name: order_id
        data_tests: [unique, not_null]
      - name: customer_id
        data_tests: [not_null]
      - name: status
        data_tests:
          - accepted_values:
              arguments:
                values: [placed, shipped, delivered, returned]
unit_tests:
  - name: cancelled_orders_are_not_reported
    model: fct_reported_orders
    given:
      - input: source('shop', 'orders')
        rows:
          - {order_id: 1, customer_id: 7, order_ts: "2026-03-01 10:00:00", channel: web, status: placed}
          - {order_id: 2, customer_id: 8, order_ts: "2026-03-01 11:00:00", channel: app, status: cancelled}
    expect:
      rows:
        - {order_id: 1, customer_id: 7, status: placed}
"""
### END SOLUTION

# %%
check.m05.dbt_tests(tests_yaml, ns.schema)

# %% [markdown]
# On the lab's own table:

# %%
project = dbt_models.project(
    "orders_tests",
    ns.schema,
    {
        "models/fct_reported_orders.sql": l05_data_testing.REPORTED_SQL,
        "models/fct_reported_orders.yml": yaml.safe_load(tests_yaml),
    },
)
run = dbt_models.build(project, ns.schema, select="fct_reported_orders")
pd.Series(run.statuses, name="status").to_frame()

# %% [markdown]
# ## Integration tests in an isolated namespace
# An integration test runs the real thing — here: load a batch into Postgres, clean it, write the result — in a
# schema of its own, created for the test and dropped after, so tests never see each other's data and can run in
# parallel:


# %%
def test_cleaning_pipeline_end_to_end():
    schema = f"{ns.schema}_it_{uuid.uuid4().hex[:8]}"  # a private namespace
    raw = pd.concat([orders.head(50), orders.head(5)], ignore_index=True)  # a retried export: 5 repeats
    raw["channel"] = raw.channel.str.upper()
    try:
        datasets.to_postgres({"raw_orders": raw}, schema)
        with psycopg.connect(config.postgres().dsn) as conn:
            loaded = pd.DataFrame(conn.execute(f"select * from {schema}.raw_orders").fetchall(), columns=raw.columns)
            cleaned = order_cleaning.clean_orders(loaded, pd.Timestamp.now())
            datasets.to_postgres({"orders": cleaned}, schema, conn=conn)
            count, channels = conn.execute(
                f"select count(*), array_agg(distinct channel) from {schema}.orders"
            ).fetchone()
        assert count == 50 and set(channels) <= set(odcs.CHANNELS)
    finally:
        with psycopg.connect(config.postgres().dsn, autocommit=True) as conn:
            conn.execute(f"drop schema if exists {schema} cascade")


test_cleaning_pipeline_end_to_end()
print("integration test passed")

# %% [markdown]
# ## Regression tests: what did the change do?
# A refactoring should not change the output; a fix should change only what it fixes. Run the pipeline before and
# after, and **diff the outputs by key**. Here a colleague "simplified" the cleaning step:


# %%
def clean_orders_v2(frame, as_of):
    """The refactored step: one chained expression."""
    return (
        frame.assign(channel=frame.channel.str.lower())
        .query("status in @order_cleaning.STATUSES and order_ts <= @as_of")
        .drop_duplicates("order_id")
        .reset_index(drop=True)
    )


raw = pd.concat([orders.head(300), orders.head(20).assign(status="pending")], ignore_index=True)
raw["channel"] = raw.channel.where(raw.index % 7 != 0, " " + raw.channel)
before = order_cleaning.clean_orders(raw, pd.Timestamp.now())
after = clean_orders_v2(raw, pd.Timestamp.now())
len(before), len(after)

# %% [markdown]
# ### Exercise 3 — diff two outputs
# Write `diff_outputs(before, after, key)` returning `{"added": [...], "removed": [...], "changed": [...]}`: the
# keys only in `after`, only in `before`, and in both with a different value in some column. Match rows by key,
# not position; two missing values are equal.


# %%
### BEGIN SOLUTION
def diff_outputs(before, after, key):
    """Keys added, removed and changed between two outputs of a pipeline."""
    b, a = before.set_index(key), after.set_index(key)
    common = b.index.intersection(a.index)
    b, a = b.loc[common].sort_index(), a.loc[common].sort_index()[b.columns]
    same = (b == a) | (b.isna() & a.isna())
    return {
        "added": sorted(set(after[key]) - set(before[key])),
        "removed": sorted(set(before[key]) - set(after[key])),
        "changed": sorted(same.index[~same.all(axis=1)]),
    }


### END SOLUTION

# %%
check.m05.regression_diff(diff_outputs)

# %%
report = diff_outputs(before, after, "order_id")
{k: len(v) for k, v in report.items()}, before.set_index("order_id").loc[report["changed"][:3], ["channel"]]

# %% [markdown]
# The "simplification" forgot to trim `channel`: the diff names the changed orders, and a look at them shows why.
# In CI the same diff runs on a fixed input (a *golden* dataset): an empty diff is the regression test; a
# non-empty one is reviewed and, if intended, becomes the new golden output.
#
# ## Recap
# - Many fast unit tests, property tests for rules that hold for every input, data tests where the data lives,
#   a few integration tests in private namespaces, and regression diffs per change.
# - Mutation testing grades tests: a suite that lets a planted bug through would let a real one through too.
# - dbt: generic tests on columns, singular tests in SQL, unit tests on fixed rows — all in `dbt build`.
#
# **Going further:**
# - `mutmut` or `cosmic-ray` plant mutants automatically across a whole package (this lab plants them by hand).
# - `data-diff`-style tools and dbt's `audit_helper` package compare tables across databases; Great Expectations
#   and Soda run data tests outside dbt (lab 05.03).
# - testcontainers starts throw-away Postgres or Kafka containers per test session where a shared stack is not
#   available (a CI runner with Docker).
