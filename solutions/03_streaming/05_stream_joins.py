# ---
# jupyter:
#   kernelspec: {name: delab-flink, display_name: "Python 3 (delab-flink · PyFlink)", language: python}
# ---

# %% [markdown]
# # 03.05 · Stream joins: interval, temporal and stream-table joins, and what they cost in state
#
# **You will:**
# - join two event streams (orders and their payments) with an **interval join** bounded in event time;
# - price order lines with a **temporal join** against a versioned table of price changes: the price valid *when
#   the order was placed*, not the latest one;
# - read how much **state** a regular join and an interval join keep, from the checkpoint statistics of the Flink
#   REST API.
#
# *Needs:* Kafka and Flink (started for you). Kernel: `delab-flink`. About 30 minutes.

# %%
import pandas as pd

from delab import check, config, datasets, stack
from delab.streaming import flink_jobs, joins, windows

stack.require("kafka", "flink")
ns = stack.namespace("m03_l05")
flink_jobs.cancel_jobs(ns.prefix)  # jobs an earlier run of this notebook may have left on the shared cluster
topics = flink_jobs.fresh_topics(
    ns, ["orders", "payments", "order_lines", "prices", "paid", "priced", "regular_out", "interval_out"]
)
shop = datasets.shop(seed=3, scale=0.05)
sent = joins.publish(shop, topics)  # orders, payments, order lines and price changes, each sorted by event time
t_env = flink_jobs.table_environment(f"{ns.prefix} notebook")
bootstrap = config.kafka().bootstrap_servers
for ddl in joins.source_ddl(topics, bootstrap):
    t_env.execute_sql(ddl)
sent

# %% [markdown]
# ## Four streams
# `orders` and `payments` are event streams: each row happened once, at its event time (`order_time`,
# `paid_at`). A payment is made a few seconds to minutes after its order; some fail and are retried up to half an
# hour later. A few sit on the edges: one in the same second as its order, one at 14 min 59 s, one exactly 15
# minutes after, one a second later, and one stamped 30 seconds *before* its order (the payment provider's clock
# is behind the shop's).
# `prices` is different: a **changelog** of each product's price, keyed by `product_id` — a new row
# replaces the product's previous price from `valid_from` on. Each table has a watermark one minute behind its
# latest event time.

# %%
print(joins.source_ddl(topics, bootstrap)[3])
joins.price_changes(shop).query("product_id == 101")

# %% [markdown]
# ## Joining two streams is a state problem
# A join of two **unbounded** streams must remember every row of each side: an order may still meet a payment
# that arrives tomorrow, so Flink keeps both tables in state forever (a *regular* join). An **interval join**
# adds a condition on the two event times — `p.paid_at BETWEEN o.order_time AND o.order_time + INTERVAL '15'
# MINUTE` — so once the watermark has passed an order's time plus 15 minutes, no payment can match it any more and
# Flink drops the order from state. Memory then stays proportional to 15 minutes of traffic, not to history.
#
# ### Exercise 1 — payments within 15 minutes
# Write `paid_sql`: insert into `paid_orders` (created below) each order with each of its payments (failed
# attempts too) made between the order's time and 15 minutes later, bounds included.
#
# *Gotcha:* an interval join keeps both sides' event-time attributes, and a sink accepts only one: select
# `o.order_time` and leave `p.paid_at` out (or `CAST` it to a plain `TIMESTAMP(3)`).

# %%
t_env.execute_sql(
    windows.sink_ddl(
        "paid_orders",
        "order_id BIGINT, order_time TIMESTAMP(3), payment_id BIGINT, amount DOUBLE, status STRING",
        topics["paid"],
        bootstrap,
    )
)

### BEGIN SOLUTION
paid_sql = """
INSERT INTO paid_orders
SELECT o.order_id, o.order_time, p.payment_id, p.amount, p.status
FROM orders AS o
JOIN payments AS p
  ON o.order_id = p.order_id
 AND p.paid_at BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE
"""
### END SOLUTION

# %%
check.m03.interval_join_payments(t_env, paid_sql, topics)

# %% [markdown]
# Which orders found no payment in time? Cancelled orders are never paid, and an order whose time stamp is a year
# in the future (a defect of the source) cannot meet its payment. Payments retried more than 15 minutes after the
# order are left out too, but their order still joined its first, failed attempt.

# %%
paid = flink_jobs.read_frame(topics["paid"])
orders, payments = joins.orders(shop), joins.payments(shop)
unpaid = orders[~orders.order_id.isin(paid.order_id)].merge(shop.orders[["order_id", "status"]].drop_duplicates())
unpaid["paid_after"] = unpaid.order_id.map(payments.groupby("order_id").paid_at.min()) - unpaid.order_time
unpaid["why"] = "paid more than 15 minutes later"
unpaid.loc[unpaid.paid_after < pd.Timedelta(0), "why"] = "paid before the order's time (clocks differ)"
unpaid.loc[unpaid.order_time > payments.paid_at.max(), "why"] = "time stamp in the future"
unpaid.loc[unpaid.status == "cancelled", "why"] = "cancelled: never paid"
unpaid.groupby("why").size().rename("orders without a payment within 15 minutes")

# %% [markdown]
# ## Temporal joins: the price valid at the order's time
# To price an order line you need the product's price **as it was when the order was placed**. A regular join
# with `prices` would give each line the *latest* price — and, since prices keep changing, it would update
# (retract and re-emit) old lines whenever a price changes. A **temporal join** looks the key up in a
# *versioned table* as of the left row's event time:
#
# ```sql
# ... FROM order_lines AS l
# JOIN prices FOR SYSTEM_TIME AS OF l.order_time AS p ON l.product_id = p.product_id
# ```
#
# A versioned table needs a primary key and an event-time attribute (`prices` has both: an `upsert-kafka` table
# with a watermark on `valid_from`). Flink holds each order line until the watermarks of *both* inputs have passed
# its time, then picks the version valid at that time; versions older than the watermark are dropped from state.
# The result is append-only.
#
# ### Exercise 2 — price each order line
# Write `priced_sql`: insert into `priced_lines` every order line with the `price` of its product valid at
# `order_time`.

# %%
t_env.execute_sql(
    windows.sink_ddl(
        "priced_lines",
        "order_id BIGINT, line_no INT, product_id BIGINT, quantity INT, order_time TIMESTAMP(3), price DOUBLE",
        topics["priced"],
        bootstrap,
    )
)

### BEGIN SOLUTION
priced_sql = """
INSERT INTO priced_lines
SELECT l.order_id, l.line_no, l.product_id, l.quantity, l.order_time, p.price
FROM order_lines AS l
JOIN prices FOR SYSTEM_TIME AS OF l.order_time AS p
  ON l.product_id = p.product_id
"""
### END SOLUTION

# %%
check.m03.temporal_join_prices(t_env, priced_sql, topics)

# %% [markdown]
# How much would revenue be off if every line were priced at today's price? *Your turn:* which category's prices
# moved most?

# %%
priced = flink_jobs.read_frame(topics["priced"])
priced["today"] = priced.product_id.map(joins.latest_prices(joins.price_changes(shop)))
pd.Series(
    {
        "revenue at the price of the day": round((priced.quantity * priced.price).sum(), 2),
        "revenue at today's price": round((priced.quantity * priced.today).sum(), 2),
        "lines whose price has changed since": int((priced.price != priced.today).sum()),
    },
    dtype=object,
)

# %% [markdown]
# ### Stream-table joins against a changelog
# Sometimes the latest value *is* what you want — "the customer's current segment". Then a **regular join** of the
# stream with the changelog table is right, but know its cost: Flink keeps both sides in state for ever (every
# order, and every key of the table), and each change of the table re-emits the joined rows, so the sink must
# accept updates (an `upsert-kafka` or a database sink with a primary key). `table.exec.state.ttl` bounds that
# state by dropping keys idle for longer than the TTL — in *processing* time, so a late match is silently lost.
#
# ## What a join keeps in state
# Flink snapshots its state in **checkpoints**; the REST API reports each checkpoint's size
# (`GET /jobs/<id>/checkpoints`). Below, the same orders and payments are read as *unbounded* streams (the jobs
# keep running after the backlog), once with a regular join and once with the interval join, with a checkpoint
# every second. `joins.settle` waits until a job has written every result and a checkpoint taken after that has
# completed; then the job is cancelled.
#
# ### Exercise 3 — read the state size
# The statistics look like this (trimmed):
# ```
# {"counts": {"completed": 4, "in_progress": 0, ...},
#  "latest": {"completed": {"id": 4, "status": "COMPLETED", "state_size": 60664, ...}, "failed": ..., ...},
#  "history": [{"id": 5, "status": "IN_PROGRESS", ...}, {"id": 4, "status": "COMPLETED", ...}, ...],
#  "summary": {...}}
# ```
# Write `state_bytes(stats)`: the state size in bytes of the job's latest **completed** checkpoint, or `None`
# when no checkpoint has completed yet. The check runs it on the live statistics of both jobs.

# %%
for ddl in joins.source_ddl(topics, bootstrap, suffix="_live", bounded=False):
    t_env.execute_sql(ddl)
columns = "order_id BIGINT, order_time TIMESTAMP(3), payment_id BIGINT, amount DOUBLE, status STRING"
for name in ("regular_out", "interval_out"):
    t_env.execute_sql(windows.sink_ddl(name, columns, topics[name], bootstrap))
t_env.get_config().set("execution.checkpointing.interval", "1 s")

within_15 = joins.interval_expected(orders, payments, pd.Timedelta(0), pd.Timedelta(minutes=15))
select = "SELECT o.order_id, o.order_time, p.payment_id, p.amount, p.status FROM orders_live o JOIN payments_live p"
plans = {
    "regular": (
        f"INSERT INTO regular_out {select} ON o.order_id = p.order_id",
        len(orders.merge(payments)),
    ),
    "interval": (
        f"INSERT INTO interval_out {select} ON o.order_id = p.order_id "
        "AND p.paid_at BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE",
        len(within_15),
    ),
}
job_ids, stats = {}, {}
for name, (sql, rows) in plans.items():
    job_ids[name] = joins.start(t_env, sql, f"{ns.prefix} {name} join")
    stats[name] = joins.settle(job_ids[name], topics[f"{name}_out"], rows)
    flink_jobs.cancel_jobs(ns.prefix)  # an unbounded job never finishes: stop it once its figures are read


# %%
### BEGIN SOLUTION
def state_bytes(stats: dict) -> int | None:
    completed = (stats.get("latest") or {}).get("completed")
    return None if completed is None else completed["state_size"]


### END SOLUTION

# %%
check.m03.join_state_size(state_bytes, job_ids)

# %% [markdown]
# Compare the two jobs: same input, same kind of output, very different memory. The regular join's state grows
# with every order and payment ever seen; the interval join's holds only the last 15 minutes (plus the sources'
# offsets). *Your turn:* re-run the section with `scale=0.2` in the first cell — which number grows?

# %%
pd.DataFrame(
    {
        name: {
            "rows written": plans[name][1],
            "state (bytes)": state_bytes(stats[name]),
            "checkpoints completed": stats[name]["counts"]["completed"],
        }
        for name in plans
    }
).T

# %%
flink_jobs.cancel_jobs(ns.prefix)  # both live jobs were cancelled above; this clears anything left running

# %% [markdown]
# ## Recap
# - A regular join of two streams keeps both sides in state for ever. Bound it in event time (interval join) and
#   the watermark lets Flink drop rows that can no longer match.
# - A temporal join (`FOR SYSTEM_TIME AS OF` the left row's event time) against a versioned table gives the value
#   valid at that time, append-only and reproducible; a regular join with the changelog gives the latest value and
#   updates old results whenever it changes.
# - State shows in every checkpoint: `GET /jobs/<id>/checkpoints` → `latest.completed.state_size`. Watch it grow
#   before it becomes an outage.
#
# **Going further:**
# - *Lookup joins* (`FOR SYSTEM_TIME AS OF` a processing-time attribute) query an external database per row — the
#   JDBC connector with a lookup cache enriches a stream from PostgreSQL without keeping the table in state, at the
#   price of reproducibility.
# - Window joins (`JOIN` two window TVFs on `window_start`/`window_end`) emit once per window, like lab 03.04.
# - The same SQL runs unchanged on a production cluster: the Flink Kubernetes Operator (`FlinkDeployment`,
#   `FlinkSessionJob`) or a managed service (Amazon Managed Service for Apache Flink, Confluent Cloud for Apache
#   Flink, Ververica), with RocksDB state and incremental checkpoints for large joins. Point the labs at one with
#   the `external` profile (`DELAB_STACK=external`, `DELAB_FLINK_URL`, `DELAB_KAFKA_BOOTSTRAP`).
