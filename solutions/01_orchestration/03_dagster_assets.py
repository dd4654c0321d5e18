# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 01.03 · Dagster: assets, resources, I/O managers, lineage and tests
#
# **You will:**
# - describe a pipeline as *software-defined assets* — the tables it produces — fed by *resources*;
# - write an *I/O manager* that stores every asset as Parquet in the object store;
# - run a *job* built from a *graph* of *ops* for work that is not an asset;
# - read the *lineage* graph to find what a change affects, and guard an asset with an *asset check*;
# - test an asset with `materialize_to_memory`, and prove your test catches bugs.
#
# *Needs:* Postgres and the object store (started for you). Kernel: `delab`. About 40 minutes.

# %%
import io

import dagster as dg
import pandas as pd

from delab import check, clients, datasets, stack
from delab.orchestration import dagster as lab_dagster
from delab.orchestration.dagster import ObjectStore, ShopPostgres

stack.require("postgres", "s3")
shop = datasets.shop(seed=7, scale=0.25)
datasets.to_postgres(
    {
        "orders": shop.orders.drop_duplicates("order_id"),
        "order_items": shop.order_items,
        "products": shop.products,
        "customers": shop.customers,
    },
    schema="m01_l03",
    primary_keys={"orders": ["order_id"], "customers": ["customer_id"]},
)
clients.s3_delete_prefix("m01_l03/")  # a re-run starts from an empty prefix
shop_db = ShopPostgres.from_config()  # the stack's Postgres and object store, as Dagster resources
object_store = ObjectStore.from_config()
instance = lab_dagster.instance()  # where runs are recorded: in memory, logging at INFO

# %% [markdown]
# ## Software-defined assets
# Airflow and Prefect describe *tasks to run*. Dagster starts from the *data*: an **asset** is something your
# pipeline keeps — a table, a file, a model — declared with `@dg.asset` on the function that computes it. The
# function's parameters name the assets it reads, so Dagster knows the dependencies without you wiring them.
# To **materialize** an asset is to run its function and store the result.
#
# The four assets below copy the shop's tables out of Postgres. They ask for a **resource** named `shop_db`:
# a configured client that Dagster hands to every asset (and op) that declares it.


# %%
@dg.asset(group_name="raw")
def orders(shop_db: ShopPostgres) -> pd.DataFrame:
    """Every order (one row per order) from the shop's database."""
    return shop_db.query("SELECT order_id, customer_id, order_ts, status FROM m01_l03.orders")


@dg.asset(group_name="raw")
def order_items(shop_db: ShopPostgres) -> pd.DataFrame:
    """Every order line."""
    return shop_db.query("SELECT order_id, line_no, product_id, quantity, unit_price FROM m01_l03.order_items")


@dg.asset(group_name="raw")
def products(shop_db: ShopPostgres) -> pd.DataFrame:
    """The catalogue: product, name and category."""
    return shop_db.query("SELECT product_id, name, category FROM m01_l03.products")


@dg.asset(group_name="raw")
def customers(shop_db: ShopPostgres) -> pd.DataFrame:
    """Customers, with their country and segment."""
    return shop_db.query("SELECT customer_id, name, email, country, segment FROM m01_l03.customers")


raw = dg.materialize_to_memory(
    [orders, order_items, products, customers], resources={"shop_db": shop_db}, instance=instance
)
raw.success, {name: len(raw.output_for_node(name)) for name in ("orders", "order_items", "products", "customers")}

# %% [markdown]
# ## Resources
# A resource is a class whose **fields are its configuration** and whose methods are what assets call. The same
# asset runs against a laptop's Postgres here and a production database elsewhere: only the resource you pass
# changes (in production its password comes from `dg.EnvVar("...")`, never from code). Here is `ShopPostgres`:

# %%
lab_dagster.show_source(ShopPostgres)

# %% [markdown]
# ### Exercise 1 — two assets of your own
# - `order_lines(orders, order_items, products)` — one row per line of a **non-cancelled** order with a
#   **positive quantity**, with the columns `order_id`, `customer_id`, `day` (the order's timestamp floored to
#   midnight), `category`, `quantity`, `unit_price` and `revenue` (= `quantity * unit_price`);
# - `daily_revenue(order_lines)` — one row per `day` and `category`, with `orders` (distinct orders) and
#   `revenue` (rounded to cents), sorted by day then category.


# %%
@dg.asset(group_name="marts")
### BEGIN SOLUTION
def order_lines(orders: pd.DataFrame, order_items: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    """Lines of non-cancelled orders with a positive quantity, with day, category and revenue."""
    live = orders[orders.status != "cancelled"]
    lines = order_items[order_items.quantity > 0].merge(live, on="order_id").merge(products, on="product_id")
    lines = lines.assign(day=lines.order_ts.dt.floor("D"), revenue=lines.quantity * lines.unit_price.astype(float))
    return lines[["order_id", "customer_id", "day", "category", "quantity", "unit_price", "revenue"]]


### END SOLUTION


@dg.asset(group_name="marts")
### BEGIN SOLUTION
def daily_revenue(order_lines: pd.DataFrame) -> pd.DataFrame:
    """Distinct orders and revenue per day and category."""
    per_day = order_lines.groupby(["day", "category"], as_index=False).agg(
        orders=("order_id", "nunique"), revenue=("revenue", "sum")
    )
    return per_day.assign(revenue=per_day.revenue.round(2)).sort_values(["day", "category"], ignore_index=True)


### END SOLUTION


# %%
check.m01.revenue_assets(order_lines, daily_revenue)

# %% [markdown]
# Materialize the six assets in memory and look at the result: revenue per day, stacked by category. (A few
# orders of this extract are stamped a year ahead — a defect left for the data-quality module — so the plot
# shows March 2026 only.)

# %%
shop_assets = [orders, order_items, products, customers, order_lines, daily_revenue]
result = dg.materialize_to_memory(shop_assets, resources={"shop_db": shop_db}, instance=instance)
revenue = result.output_for_node("daily_revenue")
march = revenue[revenue.day < "2026-04-01"].pivot(index="day", columns="category", values="revenue")
ax = march.plot.area(figsize=(9, 3), title="revenue per day and category, March 2026")

# %% [markdown]
# ## I/O managers
# An asset function *returns* its data; an **I/O manager** decides where that data lives. Dagster calls its
# `handle_output(context, obj)` after an asset runs, and its `load_input(context)` when a downstream asset needs
# the value. `materialize_to_memory` used an in-memory one; the default writes pickles to a local folder.
# Swap in another and the very same assets write to your lake — no change to their code.
#
# ### Exercise 2 — Parquet in the object store
# Complete `S3ParquetIOManager`. It uses the `ObjectStore` resource (`store.put_bytes(key, data)` returns the
# object's `s3://` URI, `store.get_bytes(key)` reads it back) and stores each asset at
# `<prefix>/<the asset key's path joined by "/">.parquet` — `daily_revenue` at `m01_l03/daily_revenue.parquet`,
# an asset with key `["finance", "daily"]` at `m01_l03/finance/daily.parquet`:
# - `handle_output` writes the DataFrame as Parquet (without its index) and records two pieces of output
#   metadata: `rows` (the row count) and `uri` (where it went) — `context.add_output_metadata({...})`;
# - `load_input` reads the upstream asset back (`context.asset_key` is the key of the asset being loaded).
#
# Then set `resources`, the dict of resources the shop's assets run with: the Postgres resource under the name
# the assets ask for, and your I/O manager, wired to `object_store`, as the **default** I/O manager of every
# asset (Dagster uses the one under a reserved resource name — look it up).


# %%
class S3ParquetIOManager(dg.ConfigurableIOManager):
    """Stores every asset, a DataFrame, as Parquet in the object store: <prefix>/<asset key path>.parquet."""

    store: dg.ResourceDependency[ObjectStore]
    prefix: str = "m01_l03"

    ### BEGIN SOLUTION
    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        """Write one asset's value as Parquet and record its row count and URI."""
        key = f"{self.prefix}/{'/'.join(context.asset_key.path)}.parquet"
        buffer = io.BytesIO()
        obj.to_parquet(buffer, index=False)
        uri = self.store.put_bytes(key, buffer.getvalue())
        context.add_output_metadata({"rows": len(obj), "uri": uri})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        """Read an upstream asset's value back from the object store."""
        key = f"{self.prefix}/{'/'.join(context.asset_key.path)}.parquet"
        return pd.read_parquet(io.BytesIO(self.store.get_bytes(key)))

    ### END SOLUTION


### BEGIN SOLUTION
resources = {"shop_db": shop_db, "io_manager": S3ParquetIOManager(store=object_store)}
### END SOLUTION

# %%
check.m01.parquet_io_manager(resources)

# %% [markdown]
# Now materialize the shop for real, with your I/O manager as the default: every asset lands in the object
# store, and each materialization records the metadata you attached.

# %%
stored = dg.materialize(shop_assets, resources=resources, instance=instance)
pd.DataFrame(
    {"asset": m.asset_key.to_user_string(), "rows": m.metadata["rows"].value, "uri": m.metadata["uri"].value}
    for m in (event.materialization for event in stored.get_asset_materialization_events())
)

# %% [markdown]
# ## Ops, graphs and jobs
# Not everything is an asset: exporting a file for a partner, sending a report, cleaning up old objects are
# *actions*. Dagster's original building block covers them: an **op** is a step with inputs, outputs and
# config; a **graph** wires ops together by passing outputs to inputs; a **job** is a graph bound to its
# resources and default config — the thing you run, schedule or trigger.
#
# This job exports the customer list for a CRM partner with the e-mail addresses pseudonymised (a salted hash),
# as CSV in the object store. The salt is op config, set per run.

# %%
import hashlib


class PseudonymiseConfig(dg.Config):
    salt: str = "change-me"


@dg.op
def load_customers(shop_db: ShopPostgres) -> pd.DataFrame:
    return shop_db.query("SELECT customer_id, email, country, segment FROM m01_l03.customers")


@dg.op
def pseudonymise(config: PseudonymiseConfig, customers: pd.DataFrame) -> pd.DataFrame:
    digest = customers.email.fillna("").map(lambda e: hashlib.sha256(f"{config.salt}:{e}".encode()).hexdigest()[:16])
    return customers.drop(columns="email").assign(email_hash=digest)


@dg.op
def upload_csv(context: dg.OpExecutionContext, object_store: ObjectStore, customers: pd.DataFrame) -> str:
    uri = object_store.put_bytes("m01_l03/exports/customers.csv", customers.to_csv(index=False).encode())
    context.log.info(f"exported {len(customers)} customers to {uri}")
    return uri


@dg.graph
def customer_export():
    upload_csv(pseudonymise(load_customers()))


export_job = customer_export.to_job(
    name="customer_export", resource_defs={"shop_db": shop_db, "object_store": object_store}
)
run = export_job.execute_in_process(
    run_config={"ops": {"pseudonymise": {"config": {"salt": "2026-03"}}}}, instance=instance
)
run.success, run.output_for_node("upload_csv")

# %% [markdown]
# ## Lineage
# A `dg.Definitions` object is everything Dagster knows about a code location: assets, checks, jobs, resources.
# Its **asset graph** is the lineage — what reads what — and it answers *impact analysis*: if this table changes,
# what must be rebuilt or re-checked? Two more assets read the shop's marts:


# %%
@dg.asset(group_name="reports")
def revenue_trend(daily_revenue: pd.DataFrame) -> pd.DataFrame:
    """Total revenue per day with its 7-day rolling mean."""
    per_day = daily_revenue.groupby("day", as_index=False).revenue.sum()
    return per_day.assign(rolling_7d=per_day.revenue.rolling(7, min_periods=1).mean().round(2))


@dg.asset(group_name="reports")
def top_customers(order_lines: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """The ten customers with the most revenue."""
    per_customer = order_lines.groupby("customer_id", as_index=False).revenue.sum()
    return per_customer.merge(customers, on="customer_id").nlargest(10, "revenue")


defs = dg.Definitions(assets=[*shop_assets, revenue_trend, top_customers], jobs=[export_job], resources=resources)
ax = lab_dagster.draw_lineage(defs)
# %% [markdown]
# `defs.resolve_asset_graph()` returns the graph; `graph.get(key)` gives a node, with its `parent_keys`
# (upstream) and `child_keys` (downstream). Keys are `dg.AssetKey`s: `dg.AssetKey("orders")`, and
# `key.to_user_string()` gives back `"orders"`.

# %%
graph = defs.resolve_asset_graph()
node = graph.get(dg.AssetKey("order_lines"))
node.parent_keys, node.child_keys

# %% [markdown]
# ### Exercise 3 — impact analysis
# Write `impacted_assets(defs, changed)`: the set of names (strings) of every asset downstream of the asset
# named `changed` — its children, their children, and so on — not including `changed` itself.


# %%
### BEGIN SOLUTION
def impacted_assets(defs: dg.Definitions, changed: str) -> set[str]:
    """Every asset downstream of `changed`, transitively, by name."""
    graph = defs.resolve_asset_graph()
    seen: set[dg.AssetKey] = set()
    frontier = [dg.AssetKey.from_user_string(changed)]
    while frontier:
        for child in graph.get(frontier.pop()).child_keys:
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return {key.to_user_string() for key in seen}


### END SOLUTION

# %%
check.m01.asset_impact_analysis(impacted_assets, defs)

# %% [markdown]
# A new product category would ripple through all of these:

# %%
ax = lab_dagster.draw_lineage(defs, highlight=impacted_assets(defs, "products"))

# %% [markdown]
# ## Asset checks
# An **asset check** is a data-quality test attached to an asset: it runs right after the asset materializes,
# and its result (passed or not, with metadata) is stored next to the materialization — in the UI you see which
# version of a table passed which check. With `blocking=True`, a failing check stops downstream assets from
# being built on bad data.
#
# ### Exercise 4 — guard `daily_revenue`
# Write the check's body: it **passes** only if no (`day`, `category`) pair appears twice, no `revenue` is
# negative and every `orders` count is at least 1; its metadata reports `duplicates`, `negative_revenue` and
# `empty_rows` (the number of rows with orders < 1), as integers.


# %%
@dg.asset_check(asset=daily_revenue, blocking=True)
### BEGIN SOLUTION
def daily_revenue_is_sane(daily_revenue: pd.DataFrame) -> dg.AssetCheckResult:
    """One row per day and category, no negative revenue, no row without orders."""
    duplicates = int(daily_revenue.duplicated(["day", "category"]).sum())
    negative = int((daily_revenue.revenue < 0).sum())
    empty = int((daily_revenue.orders < 1).sum())
    return dg.AssetCheckResult(
        passed=duplicates == 0 and negative == 0 and empty == 0,
        metadata={"duplicates": duplicates, "negative_revenue": negative, "empty_rows": empty},
    )


### END SOLUTION


# %%
check.m01.revenue_asset_check(daily_revenue_is_sane)

# %% [markdown]
# Materialize `daily_revenue` with its check. The upstream assets are already in the object store, so the run
# only selects what it needs and the I/O manager loads `order_lines` from there.

# %%
checked = dg.materialize(
    [*shop_assets, daily_revenue_is_sane], selection=[daily_revenue.key], resources=resources, instance=instance
)
[
    (e.asset_check_key.name, e.passed, {k: v.value for k, v in e.metadata.items()})
    for e in checked.get_asset_check_evaluations()
]

# %% [markdown]
# ## Testing assets
# Assets are functions, so test them like functions: hand them a tiny input you can check by eye, run them, and
# compare with the answer you worked out. `dg.materialize_to_memory(assets)` runs a selection in-process with an
# in-memory I/O manager; a stand-in upstream asset (`@dg.asset(name="order_lines")` returning a hand-made
# DataFrame) replaces the real one. Resources can be swapped the same way, for a test database.
#
# ### Exercise 5 — a test that catches bugs
# Write `test_daily_revenue(daily_revenue_asset)`: build a fake `order_lines` asset of a few rows, materialize it
# with `daily_revenue_asset` using `dg.materialize_to_memory`, and `assert` the exact result. The asset under test
# is a parameter so the check can hand your test **broken** versions of `daily_revenue`: it must pass on the right
# one and fail on each broken one. Think about what could go wrong: two lines of one order, a line with a
# quantity above 1, two days…


# %%
### BEGIN SOLUTION
def test_daily_revenue(daily_revenue_asset: dg.AssetsDefinition) -> None:
    """daily_revenue counts distinct orders and sums line revenue per day and category."""

    @dg.asset(name="order_lines")
    def fake_order_lines() -> pd.DataFrame:
        # order 1 has two books lines; books sell on both days; one line has a quantity of 3
        return pd.DataFrame(
            {
                "order_id": [1, 1, 2, 3, 4],
                "customer_id": [7, 7, 8, 7, 9],
                "day": pd.to_datetime(["2026-03-01", "2026-03-01", "2026-03-01", "2026-03-02", "2026-03-02"]),
                "category": ["books", "books", "books", "books", "toys"],
                "quantity": [1, 2, 1, 3, 1],
                "unit_price": [10.0, 5.0, 2.5, 1.3333, 4.0],
                "revenue": [10.0, 10.0, 2.5, 3.9999, 4.0],
            }
        )

    result = dg.materialize_to_memory([fake_order_lines, daily_revenue_asset])
    assert result.success
    got = result.output_for_node("daily_revenue")
    assert got.day.dt.strftime("%Y-%m-%d").tolist() == ["2026-03-01", "2026-03-02", "2026-03-02"]
    assert got.category.tolist() == ["books", "books", "toys"]
    assert got.orders.tolist() == [2, 1, 1]
    assert got.revenue.tolist() == [22.5, 4.0, 4.0]


### END SOLUTION

# %%
check.m01.daily_revenue_test(test_daily_revenue)

# %% [markdown]
# Your test is a plain function: pytest runs it as it is — save it in a `tests/` folder and hand it the asset
# with a fixture (`@pytest.fixture def daily_revenue_asset(): return daily_revenue`). The check just did what
# *mutation testing* tools do: it broke the code on purpose and made sure a test noticed.

# %% [markdown]
# ## Recap
# - An asset is a data product plus the function that builds it; parameters declare its upstream assets.
# - Resources carry configuration and clients; swapping them changes where assets run, not what they do.
# - I/O managers decide where asset values live — here Parquet in the object store — and load them back.
# - Ops, graphs and jobs run actions that are not assets, with per-run config.
# - The asset graph is your lineage: impact analysis is a walk downstream.
# - Asset checks guard data quality next to each materialization; tests run assets on hand-made inputs with
#   `materialize_to_memory`, and a good test fails on the bugs you fear.
#
# **Going further:** save the definitions in a file and run `dagster dev -f defs.py --host 127.0.0.1` to browse
# the asset graph, materialize from the UI and see check results over time (`DAGSTER_HOME` keeps the history).
# **Dagster+** is the hosted control plane, with branch deployments per pull request. On **Kubernetes**, the
# `dagster` Helm chart runs the webserver and daemon and, with the `K8sRunLauncher` (`dagster-k8s`), starts
# every run as a Kubernetes job; `dagster-aws` brings S3 I/O managers and `dagster-deltalake`/`dagster-iceberg`
# write assets as lakehouse tables. Schedules and sensors that materialize assets on time or on events come in
# lab 05.
