# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 05.03 · Quality KPIs and monitoring: measure, watch, alert, quarantine, replay
#
# **You will:**
# - turn six quality dimensions — completeness, validity, uniqueness, consistency, timeliness, accuracy — into
#   KPIs with **Great Expectations**, run the same suite in Postgres and in DuckDB, and keep the results as a
#   history in Postgres;
# - learn what normal looks like from two weeks of daily batches, and write a drift measure (PSI) and a batch
#   monitor whose thresholds stay quiet on normal noise;
# - watch a live Kafka topic of daily batches with anomalies injected mid-run: alerts go to a webhook, bad
#   batches to a quarantine table, and fixed batches are replayed;
# - look at the KPI dashboard.
#
# *Needs:* Postgres and Kafka (started for you). Kernel: `delab`. About 40 minutes.

# %%
import duckdb
import great_expectations as gx
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import requests

from delab import check, clients, stack
from delab.contracts import monitoring as mon
from delab.contracts import quality
from delab.contracts.registry import recreate_topic
from delab.localhttp import Receiver

stack.require("postgres", "kafka")
ns = stack.namespace("m05_l03")
history_schema = f"{ns.schema}_history"  # the KPI history outlives a reload of the shop's tables
shop = quality.shop()
print(quality.load_postgres(ns.schema, shop))
pg = clients.postgres()
quality.create_history(pg, history_schema)
shop.defects.groupby("kind").size()

# %% [markdown]
# ## Six dimensions, one number each
# A quality **KPI** is the share of rows that pass a rule — 99.2 % of orders have a known customer — measured
# the same way every day so that it can be compared, trended and alerted on. The usual dimensions:
#
# | dimension | the question | on the shop |
# |---|---|---|
# | completeness | is what must be there, there? | a customer's e-mail |
# | validity | does it have the right format / range? | country codes are two upper-case letters |
# | uniqueness | is each entity there once? | `order_id` in `orders` |
# | consistency | do tables agree with each other? | every order's customer exists |
# | timeliness | is the data current — and not from the future? | no order later than the load (`quality.AS_OF`) |
# | accuracy | does it match a trusted reference? | the amount paid equals the order's items total |
#
# The shop's generator injected a known number of defects of each kind (above) — so we know the right answers.
# Consistency and accuracy need other tables; `orders_checked` (built by a join, one row per order) carries
# `customer_known`, `items_total` and `paid_amount`:

# %%
pd.DataFrame(
    pg.execute(f"SELECT * FROM {ns.schema}.orders_checked ORDER BY order_id LIMIT 5").fetchall(),
    columns=["order_id", "customer_id", "customer_known", "items_total", "paid_amount"],
)

# %% [markdown]
# ### Great Expectations
# **Why this framework here:** Great Expectations (GX) 1.24 pushes each expectation down to Postgres as SQL (the
# rows never leave the database), and every result carries the row count and the unexpected count — a KPI's two
# halves. Soda Core 4 would need a data-source package per engine, and pandera's SQL path (through ibis) did
# not run against this DuckDB; both are fine choices elsewhere. An *expectation* is one rule on one column:

# %%
runner = quality.postgres_runner(ns.schema)  # an ephemeral GX context, one batch per table, SQL in Postgres
runner.validate("customers", gx.expectations.ExpectColumnValuesToNotBeNull(column="name"))

# %% [markdown]
# ### Exercise 1 — a KPI suite
# Build `suite`: for each dimension of `quality.DIMENSIONS`, a pair `(table, expectation)` — the table is one of
# `customers`, `orders`, `orders_checked`. The check runs your suite in Postgres: each expectation must flag
# exactly the rows that carry the defect injected for its dimension. Useful expectations:
# `ExpectColumnValuesToNotBeNull`, `ExpectColumnValuesToMatchRegex`, `ExpectColumnValuesToBeUnique`,
# `ExpectColumnValuesToBeInSet`, `ExpectColumnValuesToBeBetween`, `ExpectColumnPairValuesToBeEqual` (its
# `ignore_row_if="either_value_is_missing"` skips orders without a payment).

# %%
E = gx.expectations
### BEGIN SOLUTION
suite = {
    "completeness": ("customers", E.ExpectColumnValuesToNotBeNull(column="email")),
    "validity": ("customers", E.ExpectColumnValuesToMatchRegex(column="country", regex="^[A-Z]{2}$")),
    "uniqueness": ("orders", E.ExpectColumnValuesToBeUnique(column="order_id")),
    "consistency": ("orders_checked", E.ExpectColumnValuesToBeInSet(column="customer_known", value_set=[True])),
    "timeliness": ("orders", E.ExpectColumnValuesToBeBetween(column="order_ts", max_value=quality.AS_OF)),
    "accuracy": (
        "orders_checked",
        E.ExpectColumnPairValuesToBeEqual(
            column_A="items_total", column_B="paid_amount", ignore_row_if="either_value_is_missing"
        ),
    ),
}
### END SOLUTION

# %%
check.m05.kpi_suite(suite)

# %% [markdown]
# The same suite on DuckDB. GX 1.24 reaches SQL engines through SQLAlchemy, and DuckDB's dialect
# (`duckdb-engine`) is not in this project's lock: here DuckDB builds the tables (the join included) and GX
# validates them through its pandas data source. Both engines must agree — and their KPIs go into the history.

# %%
duck = duckdb.connect()
quality.load_duckdb(duck, shop)
full_load = pd.concat([quality.run_suite(runner, suite), quality.run_suite(quality.duckdb_runner(duck), suite)])
quality.record(pg, history_schema, "full-load", quality.AS_OF.date(), full_load)
full_load.pivot(index="dimension", columns="engine", values="kpi")

# %% [markdown]
# ## Monitoring: what does normal look like?
# KPIs on one load are a snapshot. **Monitoring** watches the same numbers on every batch, and alerts when one
# is off. The shop's orders arrive as one batch per day (landing at 02:00 the next morning). The first two weeks
# are known to be normal: they are the **baseline** — rows per day, how fresh a batch is when it lands, its
# columns, and the distribution of order amounts.

# %%
batches = mon.daily_batches(shop)
baseline = mon.Baseline.learn([batches[d] for d in range(mon.BASELINE_DAYS)])
normal = pd.DataFrame(
    {
        "rows": [len(b) for b in batches.values()],
        "freshness lag (h)": [mon.freshness_lag_hours(b) for b in batches.values()],
    }
)
print("median rows per day:", baseline.median_rows, "· amount deciles:", np.round(baseline.edges, 1))
normal.describe().loc[["mean", "min", "max"]]

# %% [markdown]
# Even normal days move: volume swings by ±25 % (weekends, chance). A threshold inside that swing fires every
# week and is soon ignored — **alert fatigue**. Distributions need a measure too. The **population stability
# index** cuts the baseline into bins at its own deciles (10 % of baseline rows in each), and compares each
# bin's share in a batch $a_i$ with the baseline's $e_i$:
#
# $$\mathrm{PSI} = \sum_i (a_i - e_i)\,\ln\frac{a_i}{e_i}$$
#
# Rules of thumb: below 0.1 no change, 0.1–0.25 a moderate shift, above 0.25 a significant one. (The
# Kolmogorov–Smirnov test is the other usual choice — but with thousands of rows its p-value calls tiny,
# harmless differences "significant"; judge its statistic D, an effect size, rather than p < 0.05.)
#
# ### Exercise 2 — the population stability index
# Write `psi(expected, actual)` for two arrays of values: ten bins at the deciles of `expected`, values outside
# the baseline's range counted in the first or last bin, shares rather than counts, and each share floored at a
# small epsilon (`1e-4`) so that an empty bin does not make `ln(0)`.


# %%
### BEGIN SOLUTION
def psi(expected, actual, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``actual`` against ``expected``, bins at the deciles of ``expected``."""
    expected, actual = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    e = np.histogram(np.clip(expected, edges[0], edges[-1]), edges)[0] / len(expected)
    a = np.histogram(np.clip(actual, edges[0], edges[-1]), edges)[0] / len(actual)
    e, a = np.maximum(e, eps), np.maximum(a, eps)
    return float(np.sum((a - e) * np.log(a / e)))


### END SOLUTION


# %%
check.m05.psi(psi)

# %% [markdown]
# ### Exercise 3 — a batch monitor
# Write `check_batch(batch, baseline)` returning the set of alerts a batch deserves, among `"volume"`,
# `"freshness"`, `"schema"` and `"drift"` (an empty set for a good batch). Pick thresholds that never fire on
# normal days and always fire on real trouble. The check runs your monitor over the last two weeks of two
# different shops, into which four anomalies were injected: a partial extract, yesterday's file re-sent, an
# upstream release that renamed a column, and amounts sent in cents. Two traps: freshness is measured against
# the batch's own `loaded_at` (these batches are replayed long after they landed), and a batch whose columns
# changed must give a `"schema"` alert, not crash the monitor.


# %%
### BEGIN SOLUTION
def check_batch(batch: pd.DataFrame, baseline: mon.Baseline) -> set[str]:
    """The alerts a daily batch deserves, judged against what normal looked like."""
    alerts = set()
    if set(batch.columns) != set(baseline.columns):
        alerts.add("schema")
    if not 0.5 <= len(batch) / baseline.median_rows <= 2.0:
        alerts.add("volume")
    if {"order_ts", "loaded_at"} <= set(batch.columns) and mon.freshness_lag_hours(batch) > 12:
        alerts.add("freshness")
    if "amount" in batch and psi(baseline.amounts, batch["amount"]) > 0.25:
        alerts.add("drift")
    return alerts


### END SOLUTION


# %%
check.m05.batch_monitor(check_batch)

# %% [markdown]
# ## The live run: Kafka, a webhook, a quarantine
# Now the real thing. An upstream producer sends the four weeks day after day to a Kafka topic — with the four
# anomalies injected mid-run — each batch closed by an end-of-batch marker. The monitor consumes the topic as it
# is written; for every batch it records per-batch KPIs in the history, checks it, and then either loads it
# (`accepted_orders`) or holds it in `quarantine` and posts an alert to the on-call webhook (a local receiver
# standing in for Slack or PagerDuty).

# %%
topic = ns.topic("orders_daily")
recreate_topic(topic)
mon.create_tables(pg, ns.schema)
run = mon.inject_anomalies(batches)
known_customers = set(shop.customers.customer_id)
webhook = Receiver()

producer = mon.produce_run(topic, run)
for day, batch in mon.consume_batches(topic, ns.group("monitor"), expected=len(run)):
    measured_for = (mon.START + pd.Timedelta(days=day)).date()
    kpis = mon.batch_kpis(batch, known_customers)
    results = pd.DataFrame(
        [
            {"engine": "stream", "dimension": k, "table": "orders", "rows": len(batch), "unexpected": None, "kpi": v}
            for k, v in kpis.items()
        ]
    )
    quality.record(pg, history_schema, "daily", measured_for, results)
    alerts = check_batch(batch, baseline)
    if alerts:
        mon.quarantine(pg, ns.schema, day, batch, sorted(alerts))
        requests.post(webhook.url, json={"batch_day": day, "alerts": sorted(alerts), "rows": len(batch)}, timeout=5)
    else:
        mon.accept(pg, ns.schema, day, batch)
producer.join()
pd.DataFrame(webhook.wait_for(len(mon.ANOMALIES), timeout=5))

# %% [markdown]
# Four alerts, one per injected anomaly, and none on the 24 normal days. What is held back:

# %%
held = mon.quarantined(pg, ns.schema)
pd.DataFrame([{"day": d, "reasons": r, "rows": len(f), "columns": ", ".join(f.columns)} for d, (r, f) in held.items()])

# %% [markdown]
# ## The dashboard
# The KPI history in Postgres now holds the full-load KPIs per engine and one row per day and dimension from
# the stream. A dashboard is a query on it (Grafana or Superset would run the same SQL):

# %%
kpi_history = quality.history(pg, history_schema)
daily = kpi_history[kpi_history.engine == "stream"].pivot(index="measured_for", columns="dimension", values="kpi")
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [2, 1]})
daily.plot(ax=left, marker=".", ylim=(0.95, 1.002), title="KPIs per daily batch (stream)")
for day, (reasons, _) in held.items():
    left.axvline(mon.START.date() + pd.Timedelta(days=day), color="red", alpha=0.3)
    left.annotate(",".join(reasons), (mon.START.date() + pd.Timedelta(days=day), 0.952), rotation=90, fontsize=8)
full = kpi_history[kpi_history.run_id == "full-load"].pivot(index="dimension", columns="engine", values="kpi")
full.plot.barh(ax=right, xlim=(0.98, 1.0), title="full load: KPI per engine")
plt.tight_layout()

# %% [markdown]
# Red lines mark the quarantined days. Only the renamed column moves a row-level KPI (completeness falls to 0:
# the required `amount` is missing from every row); duplicates and unknown customers are rare and spread out,
# and the partial extract, the stale file and the amounts in cents leave every KPI at its usual level. That is
# why monitoring watches **volume, freshness, schema and distributions** as well — the failures that break
# pipelines are often whole-batch ones, which row-level KPIs do not see.
#
# ## Fix and replay
# Each quarantined batch gets the fix its alert calls for, and goes through the *same* monitor again before it
# is loaded — a replay never bypasses the checks:
# - `schema`: the upstream renamed `amount` → map it back (and agree a contract with them: lab 05.02);
# - `drift`: amounts in cents → divide by 100;
# - `volume` and `freshness`: the file is wrong or incomplete → re-extract the day from the source.


# %%
def fix(day: int, reasons: list[str], rows: pd.DataFrame) -> pd.DataFrame:
    if "schema" in reasons:
        return rows.rename(columns={"total_amount": "amount"})
    if "drift" in reasons:
        return rows.assign(amount=rows.amount / 100)
    return batches[day]  # re-extracted from the source system


replayed = []
for day, (reasons, rows) in mon.quarantined(pg, ns.schema).items():
    fixed = fix(day, reasons, rows)
    still = check_batch(fixed, baseline)
    if not still:
        mon.accept(pg, ns.schema, day, fixed)
    replayed.append({"day": day, "was": reasons, "after the fix": sorted(still) or "accepted"})
loaded = pg.execute(f"SELECT count(DISTINCT batch_day), count(*) FROM {ns.schema}.accepted_orders").fetchone()
in_quarantine = pg.execute(f"SELECT count(*) FROM {ns.schema}.quarantine").fetchone()[0]
print(
    f"days loaded: {loaded[0]}, rows: {loaded[1]} (source: {sum(len(b) for b in batches.values())}), "
    f"still in quarantine: {in_quarantine}"
)
pd.DataFrame(replayed)

# %%
webhook.stop()
duck.close()
pg.close()

# %% [markdown]
# ## Recap
# - A KPI is the share of rows passing one rule, measured the same way every run; six dimensions cover most of
#   what "quality" means. A framework (here Great Expectations) runs the rules where the data lives and reports
#   counts you can keep as history.
# - Monitoring compares each batch with a baseline learned from normal days: volume, freshness (against the
#   batch's own load time), schema and distribution (PSI). Thresholds go outside normal noise, or nobody
#   reads the alerts.
# - A bad batch is quarantined, not dropped or loaded: alert, fix, replay through the same checks.
#
# **Going further:**
# - GX Checkpoints with Actions (Slack, e-mail) and Data Docs (an HTML report of every run); GX Cloud.
# - Soda Core's checks language and Soda's anomaly detection; Elementary for dbt; Monte Carlo, Bigeye,
#   Datafold as managed observability; evidently (installed in this kernel) for drift reports on ML features.
# - Streaming-native monitors: per-minute windows in Flink (lab 03.04) computing the same metrics continuously,
#   or Kafka consumer lag and record age as freshness.
# - Seasonal baselines (one per weekday), and learned thresholds (quantiles of the metric's own history)
#   instead of fixed ones.
