# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 07.05 · What would this plan cost? A cost model from the plan, measured usage, tags and a budget gate
#
# **You will:**
# - price an OpenTofu plan from its JSON (`tofu show -json`): every resource's sizing attributes — partitions,
#   replicas, retention, storage — times a dated price table of a public cloud;
# - measure what the running stack really stores (Kafka log bytes per topic, Postgres relation sizes, bytes in a
#   bucket) and turn the figures into right-sizing decisions;
# - enforce a tagging policy on the plan, and write the budget gate that stops a plan whose monthly bill is over a
#   limit — the two checks a platform team puts in front of `tofu apply`.
#
# *Needs:* Kafka, Postgres and the object store (started for you). Kernel: `delab`. About 35 minutes.
# Builds on labs 07.01 (plans and modules) and 07.04 (sizes per environment).
#
# **Honest up front:** the stack on this machine costs nothing. What this lab prices is *the same plan* as if its
# resources ran on managed cloud services, with list prices read from one provider's public pricing pages. The
# model is deliberately small; a real bill has more meters (data in/out, requests, instance hours).

# %%
import json

from delab import check, clients, config, iac, stack
from delab.iac import cost

stack.require("kafka", "postgres", "s3")
PREFIX = stack.namespace("m07_l05").prefix  # topics m07_l05.*, table m07_l05.events, objects under m07_l05/
work = config.lab_dir("m07_l05")
DAY_MS = 86_400_000

# %% [markdown]
# ## A price table with its source and its date
# Prices change, differ by region and by offering. A cost model you can trust keeps them in **data**, not in
# code, each with where it was read and when: `datasets/prices/cloud_prices.csv`.

# %%
for row in cost.price_sources():
    print(f"{row['item']:<26} ${row['usd']:>7} per {row['unit']:<15} {row['service']} ({row['region']}), "
          f"read {row['read_on']}")  # fmt: skip
PRICES = cost.load_prices()
GB_PER_PARTITION_DAY = cost.GB_PER_PARTITION_DAY  # the model's traffic assumption; measured further down

# %% [markdown]
# The two Kafka prices come from two offerings of the same page: partition-hours from the serverless offering
# (its price includes the replicas), storage from provisioned brokers, where **every replica is a full copy on a
# broker's disk**. A topic retains what it receives during its retention period:
#
# $$\text{retained GB} = \text{partitions} \times \text{GB per partition per day} \times \text{retention days}$$
# $$\text{monthly} = \text{partitions} \times 730\,\text{h} \times p_{\text{partition-hour}} +
#   \text{retained GB} \times \text{replication factor} \times p_{\text{GB-month}}$$
#
# ## The platform, planned
# Three topics from the project's `kafka_topics` module, plus the lake bucket and the database's storage. The
# stack has no OpenTofu provider for buckets or managed databases (docs/iac.md), so those two are `terraform_data`
# **stand-ins** that carry what the cloud resource would: its size (`gb`) and its `tags` — on AWS they would be an
# `aws_s3_bucket` (priced by the bytes stored in it) and an `aws_db_instance` (`allocated_storage`).

# %%
TAGS = {"owner": "data-platform", "cost_center": "cc-4711", "environment": "prod"}


def platform_tf(topics: dict, lake_gb: int, db_gb: int) -> str:
    """The platform's main.tf: topics through the project's module, stand-ins for the bucket and the database."""
    topic_lines = "\n".join(
        f"    {name} = {{ partitions = {p}, retention_ms = {days * DAY_MS} }}" for name, (p, days) in topics.items()
    )
    tags = "{ " + ", ".join(f'{k} = "{v}"' for k, v in TAGS.items()) + " }"
    return f"""
module "topics" {{
  source = "{iac.module_source("kafka_topics")}"
  prefix = "{PREFIX}"
  topics = {{
{topic_lines}
  }}
}}

resource "terraform_data" "lake_bucket" {{ # stand-in: an object-store bucket of lake_gb GB
  input = {{ kind = "object_storage", gb = {lake_gb}, tags = {tags} }}
}}

resource "terraform_data" "app_db_storage" {{ # stand-in: a managed Postgres's allocated storage
  input = {{ kind = "postgres_storage", gb = {db_gb}, tags = {{ owner = "data-platform", environment = "prod" }} }}
}}
"""


TOPICS = {"orders": (6, 7), "clicks": (12, 3), "audit": (1, 30)}  # short name: (partitions, retention days)
root = iac.write_root(work / "platform", platform_tf(TOPICS, lake_gb=300, db_gb=100), providers=("kafka",))
tofu = iac.Tofu(root)
tofu.init()
plan = tofu.plan()
topic = next(c for c in plan.json["resource_changes"] if c["type"] == "kafka_topic")
print(topic["address"], topic["change"]["actions"])
print(json.dumps({k: topic["change"]["after"][k] for k in ("name", "partitions", "replication_factor", "config")}))

# %% [markdown]
# Everything the model needs is in `resource_changes`: each resource's `address`, `type`, `change.actions` and
# `change.after` — its values once the plan is applied (`null` when the plan deletes it). Note the types:
# `partitions` is a number, but everything under `config` is a **string**, and `retention.ms` is in milliseconds.
#
# ### Exercise 1 — the cost model
# Write `monthly_cost(plan_json, prices, gb_per_partition_day)` returning `{address: USD per month}` for every
# `kafka_topic` and every `terraform_data` stand-in **as it will be after the plan** (the formula above; a
# stand-in costs `gb` × the price named `<kind>_gb_month`). Resources the plan deletes cost nothing after it.
# The check grades it on real plans: one that grows, adds and deletes resources, one with three replicas.


# %%
### BEGIN SOLUTION
def monthly_cost(plan_json, prices, gb_per_partition_day):
    """{address: monthly USD} of the priced resources as they will be after the plan."""
    costs = {}
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"]
        if after is None:  # being deleted: nothing left to pay for
            continue
        if change["type"] == "kafka_topic":
            partitions = after["partitions"]
            days = float(after["config"]["retention.ms"]) / DAY_MS
            retained_gb = partitions * gb_per_partition_day * days
            costs[change["address"]] = (
                partitions * 730 * prices["kafka_partition_hour"]
                + retained_gb * after["replication_factor"] * prices["kafka_storage_gb_month"]
            )
        elif change["type"] == "terraform_data":
            stand_in = after["input"]
            costs[change["address"]] = stand_in["gb"] * prices[f"{stand_in['kind']}_gb_month"]
    return costs


### END SOLUTION

# %%
check.m07.cost_model_check(monthly_cost)

# %%
costs = monthly_cost(plan.json, PRICES, GB_PER_PARTITION_DAY)
for address, usd in sorted(costs.items(), key=lambda item: -item[1]):
    print(f"{address:<45} ${usd:>9,.2f}/month")
print(f"{'total':<45} ${sum(costs.values()):>9,.2f}/month")

# %% [markdown]
# ## Measured usage: what the stack really stores
# The model *assumed* 2 GB per partition per day. Apply the plan (real topics on the stack) and measure instead.
# The broker reports the bytes of every partition's log (the DescribeLogDirs admin call, what
# `kafka-log-dirs.sh` prints). Send an hour of the `orders` traffic — scaled down: 6,000 events of 1 KB — and
# nothing to `clicks`.

# %%
tofu.apply(plan)
producer = clients.kafka_producer()
for i in range(6_000):
    producer.send(f"{PREFIX}.orders", key=str(i).encode(), value=b"o" * 1_000)
producer.flush()
producer.close()
log_bytes = cost.kafka_log_bytes(PREFIX + ".")
print(log_bytes)

# %% [markdown]
# If that was one hour of traffic, a day of `orders` is 24 times its bytes; per partition, divided by 6. Price
# the topics with the **measured** rate instead of the assumed one:

# %%
measured_gb_per_partition_day = log_bytes[f"{PREFIX}.orders"] * 24 / TOPICS["orders"][0] / 1e9
print(f"measured: {measured_gb_per_partition_day:.4f} GB per partition per day, assumed {GB_PER_PARTITION_DAY}: "
      f"{GB_PER_PARTITION_DAY / measured_gb_per_partition_day:.0f}x too much")  # fmt: skip
remeasured = monthly_cost(plan.json, PRICES, measured_gb_per_partition_day)
for address in sorted(a for a in costs if "kafka_topic" in a):
    print(f"{address:<45} assumed ${costs[address]:>8,.2f}  measured ${remeasured[address]:>8,.2f}")

# %% [markdown]
# Two right-sizing findings. The storage line shrinks to almost nothing with the measured rate: the assumption
# overpriced it by the factor printed above — measure before you buy storage. And `clicks` received **nothing**,
# yet its 12 partitions bill partition-hours every hour. Fewer partitions would be cheaper, but Kafka cannot remove
# partitions from a topic: the plan says so — a replacement, the topic and its data deleted (lab 07.01's guard):

# %%
tofu_small = iac.Tofu(iac.write_root(work / "platform", platform_tf({**TOPICS, "clicks": (3, 3)}, 300, 100)))
print({a: act for a, act in tofu_small.plan().actions.items() if act != ["no-op"]})
_ = iac.write_root(work / "platform", platform_tf(TOPICS, lake_gb=300, db_gb=100))  # back to what is applied

# %% [markdown]
# **Postgres:** a managed database bills its *allocated* storage. Fill a table, delete 90 % of it and measure:
# the space is not given back until the table is rewritten (`VACUUM FULL`, which locks it), and a cloud's
# allocated storage never shrinks even then — size the allocation from the measured working set, not the peak.

# %%
with clients.postgres() as pg:
    pg.execute(f"CREATE SCHEMA IF NOT EXISTS {PREFIX}")
    pg.execute(f"DROP TABLE IF EXISTS {PREFIX}.events")
    pg.execute(f"CREATE TABLE {PREFIX}.events (id bigint PRIMARY KEY, payload text)")
    pg.execute(f"INSERT INTO {PREFIX}.events SELECT i, repeat('x', 200) FROM generate_series(1, 50000) i")
    sizes = {"filled": cost.postgres_sizes(pg, [f"{PREFIX}.events"])[f"{PREFIX}.events"]}
    pg.execute(f"DELETE FROM {PREFIX}.events WHERE id % 10 <> 0")
    pg.execute(f"VACUUM {PREFIX}.events")
    sizes["90% deleted + VACUUM"] = cost.postgres_sizes(pg, [f"{PREFIX}.events"])[f"{PREFIX}.events"]
    pg.execute(f"VACUUM FULL {PREFIX}.events")
    sizes["VACUUM FULL"] = cost.postgres_sizes(pg, [f"{PREFIX}.events"])[f"{PREFIX}.events"]
print({step: f"{size / 1e6:.2f} MB" for step, size in sizes.items()})

# %% [markdown]
# **Object store:** compaction rewrites many small files into a few large ones — and until the old snapshots
# expire, a table format such as Iceberg keeps *both* (time travel needs the old files). Done by hand here with
# plain objects (lab 04.05 compacts a real Iceberg table): 40 small files, the compacted file beside them, then
# the old files expired.

# %%
s3, bucket, raw = clients.s3(), config.s3().bucket, f"{PREFIX}/lake/"
clients.s3_delete_prefix(raw)
parts = [(json.dumps({"order": i, "note": "x" * 400}) + "\n").encode() * 25 for i in range(40)]
for i, body in enumerate(parts):
    s3.put_object(Bucket=bucket, Key=f"{raw}data/part-{i:03}.json", Body=body)
bucket_sizes = {"40 small files": cost.bucket_bytes(s3, bucket, raw)}
s3.put_object(Bucket=bucket, Key=f"{raw}data/compacted-000.json", Body=b"".join(parts))
bucket_sizes["compacted, old kept"] = cost.bucket_bytes(s3, bucket, raw)
for i in range(len(parts)):
    s3.delete_object(Bucket=bucket, Key=f"{raw}data/part-{i:03}.json")
bucket_sizes["old expired"] = cost.bucket_bytes(s3, bucket, raw)
for step, (objects, size) in bucket_sizes.items():
    print(f"{step:<22} {objects:>3} objects {size / 1e3:>7.1f} kB")

# %% [markdown]
# The bill follows the middle line until snapshots expire: schedule the expiry with the compaction. (Fewer objects
# also mean fewer GET requests per query — a meter this model leaves out.)
#
# ## Tags: who pays for what
# A bill is only useful if each line has an owner. Teams agree on **required tags** — here `owner`,
# `cost_center` and `environment` — and check them on every plan, before anything is created. Kafka topics and
# Postgres objects cannot carry tags (their owner is told by the name's prefix); the cloud resources — our
# stand-ins, `input.tags` — can.
#
# ### Exercise 2 — a tagging policy
# Write `untagged(plan_json, required)`: the sorted addresses of the taggable resources (`terraform_data`, tags
# in `input.tags`) that, **after the plan**, miss a required tag or leave it empty. Resources being deleted are
# not judged.


# %%
### BEGIN SOLUTION
def untagged(plan_json, required):
    """Addresses of taggable resources lacking a required tag (or with an empty one) after the plan."""
    flagged = []
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"]
        if change["type"] != "terraform_data" or after is None:
            continue
        tags = (after.get("input") or {}).get("tags") or {}
        if any(not str(tags.get(key) or "").strip() for key in required):
            flagged.append(change["address"])
    return sorted(flagged)


### END SOLUTION

# %%
check.m07.tagging_policy_check(untagged)
print("untagged in our platform:", untagged(plan.json, cost.REQUIRED_TAGS))

# %% [markdown]
# The database storage misses its `cost_center`: in a pipeline this plan would stop here until someone adds it.
#
# ## A budget gate
# The last gate before `apply`: price the plan and **fail** it when the platform would cost more per month than
# its budget. A budget caps the *bill* — the total after apply. Comparing only what a plan *adds* lets a series
# of small changes grow the bill past any limit, each one passing on its own.
#
# ### Exercise 3 — the gate
# Write `budget_gate(plan_json, limit_usd)`: price the plan with your `monthly_cost` (with `PRICES` and
# `GB_PER_PARTITION_DAY`), raise `cost.OverBudget` (with a message saying the total and the limit) when the total
# after the plan is over the limit, and otherwise return that total.


# %%
### BEGIN SOLUTION
def budget_gate(plan_json, limit_usd):
    """The monthly total after the plan; OverBudget when it is over the limit."""
    total = sum(monthly_cost(plan_json, PRICES, GB_PER_PARTITION_DAY).values())
    if total > limit_usd:
        raise cost.OverBudget(f"the plan makes the platform cost ${total:,.2f}/month, over ${limit_usd:,.2f}")
    return total


### END SOLUTION

# %%
check.m07.budget_gate_check(budget_gate)

# %% [markdown]
# A request arrives: keep `clicks` for 30 days instead of 3. Plan it and put it through the gate with a budget of
# $100 a month. The change alone is under that budget; the bill it leads to is not:

# %%
BUDGET = 100.0
iac.write_root(work / "platform", platform_tf({**TOPICS, "clicks": (12, 30)}, 300, 100))
request = tofu.plan()
today = sum(cost.current_monthly_cost(request.json, PRICES).values())
after = sum(monthly_cost(request.json, PRICES, GB_PER_PARTITION_DAY).values())
print(f"today ${today:,.2f}/month; this plan adds ${after - today:,.2f}, making it ${after:,.2f}")
try:
    budget_gate(request.json, BUDGET)
    print("within budget: apply")
except cost.OverBudget as refused:
    print("refused:", refused)
_ = iac.write_root(work / "platform", platform_tf(TOPICS, lake_gb=300, db_gb=100))  # the request is not applied

# %% [markdown]
# ## Clean up
# Destroy the topics (a re-run starts from nothing) and remove the table and the objects.

# %%
tofu.destroy()
with clients.postgres() as pg:
    pg.execute(f"DROP SCHEMA IF EXISTS {PREFIX} CASCADE")
print("objects removed:", clients.s3_delete_prefix(raw), "| topics left:", cost.kafka_log_bytes(PREFIX + "."))

# %% [markdown]
# ## Recap
# - A plan's JSON holds every resource's sizes after apply: a cost model reads `change.after` (nothing for a
#   deleted resource), converts units (`retention.ms` is a string of milliseconds) and counts every replica.
# - Prices live in data with their source and date; the model's *usage* assumptions are checked against what the
#   running system measures — here the assumed traffic was far off, and an idle topic paid for 12 partitions.
# - Right-sizing has constraints: Kafka partitions only grow (fewer means a new topic), deleted rows are not
#   freed until a rewrite, compaction doubles storage until snapshots expire.
# - Tags and budgets are policies on the plan, run before apply: required tags with real values, and a gate on
#   the total monthly cost after the plan — never on the change alone.
#
# **Going further:** Infracost prices Terraform/OpenTofu plans against a maintained price database (and comments
# on pull requests); cloud budgets and cost-allocation tags (AWS Budgets, GCP billing budgets) alert on the real
# bill; **scheduling** (dev environments destroyed at night — a `tofu destroy` job, or scaling to zero),
# **spot/preemptible** capacity for stateless workers (Flink task managers, batch jobs; never a broker holding
# the only replica) and **reserved capacity / savings plans** for the steady base (brokers, databases running all
# year, typically 30–60 % off on-demand) are the next levers — each is a line in this model's price table.
