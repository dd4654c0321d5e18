# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 05.02 · Data contracts: a specification, tested, versioned and enforced
#
# **You will:**
# - write the contract of the shop's orders — schema, meaning, owner, quality rules and service levels — in an
#   open standard, the **Open Data Contract Standard** (ODCS v3), and test it with **datacontract-cli** against the
#   real Postgres table and the real Kafka topic;
# - tell which changes between two versions of a contract break its consumers, before the new version ships;
# - stop a producer that violates the contract at write time: bad records go to a dead-letter topic, never to the
#   orders topic;
# - see the warehouse side of the same idea: a dbt model whose contract is enforced when it is built.
#
# *Needs:* Kafka and Postgres (started for you). Kernel: `delab`. About 40 minutes.

# %%
import json

import pandas as pd
import yaml
from confluent_kafka import Producer
from jsonschema import Draft7Validator

from delab import check, config, stack
from delab.contracts import dbt_models, odcs

stack.require("kafka", "postgres")
ns = stack.namespace("m05_l02")
orders = odcs.clean_orders()  # 400 orders of the shop, without its injected defects, the newest 5 minutes old
odcs.load_table(orders, ns.schema)  # the warehouse copy: table <schema>.orders in Postgres
orders_topic = ns.topic("orders")
odcs.publish(orders_topic, odcs.as_messages(orders))  # the stream copy: JSON messages on Kafka
print(f"table {ns.schema}.orders and topic {orders_topic}: {len(orders)} orders")
orders.tail(3)

# %% [markdown]
# ## From a schema to a contract
# Lab 05.01's registry guards the **shape** of each message. A data contract is the agreement between the team
# that produces a dataset and the teams that use it, written down where tools can read it:
#
# | part | says | in ODCS |
# |---|---|---|
# | schema | columns, types, keys, allowed values | `properties`: `logicalType`, `required`, `unique`, `enum` |
# | semantics | what a row and each column *mean* | `description`, each property's `description` |
# | owner | who to call when it breaks | `team` (members and their `role`) |
# | quality rules | what must hold on the whole data | `quality`: `rowCount`, `nullValues`, `duplicateValues`, SQL … |
# | service levels | how fresh, fast, available | `slaProperties`: `freshness`, `latency`, `retention` … |
# | servers | where the dataset lives | `servers` (a Postgres schema, a Kafka topic, an S3 path …) |
#
# **Which standard, and why ODCS.** Two open specifications exist: the *Data Contract Specification* (DCS) and
# the *Open Data Contract Standard* (ODCS, a Linux Foundation project, Bitol). datacontract-cli 1.x, the tool
# this lab uses to lint, test, export and diff contracts, is built on ODCS: it still reads DCS files but converts
# them to ODCS with a deprecation warning (support ends with its next major version). So: ODCS v3.2.
#
# The contract does not say *where* this lab's copy lives — that is the `servers` block, which the lab adds:

# %%
print(yaml.safe_dump({"servers": odcs.servers(ns.schema)}, sort_keys=False))

# %% [markdown]
# ### Exercise 1 — write the orders contract
# Write `orders_contract`, the ODCS contract (YAML text) of the orders dataset, with:
# - an `id`, a `version` and the owning `team` (at least one member with `role: owner`), and a `description`
#   (`purpose`, `usage`);
# - one schema object `orders` (`physicalName: orders`) with the six columns of the table above, their types,
#   the key, which columns are required, and the allowed values of `channel` and `status` (see
#   `odcs.CHANNELS`, `odcs.STATUSES`);
# - a quality rule saying the dataset is never empty;
# - service levels: **freshness** — the newest order is at most one hour old (`element: orders.order_ts`) — and
#   **latency** — an order is in the dataset within 5 minutes of being placed.
#
# The check tests your contract with datacontract-cli against the lab's table and topic (both must pass), then
# against copies of the table that a careless producer could write — duplicated orders, orders without a
# customer, an unknown status, a table not refreshed for three hours: your contract must fail each of them.

# %%
### BEGIN SOLUTION
orders_contract = """
apiVersion: v3.2.0
kind: DataContract
id: urn:datacontract:shop:orders
name: Shop orders
version: 1.0.0
status: active
domain: shop
team:
  name: checkout
  members:
    - username: checkout-oncall
      role: owner
description:
  purpose: Every order placed in the shop, one row (one message) per order.
  usage: Revenue reporting, fulfilment and fraud scoring.
  limitations: Marketplace orders arrive in a nightly batch stamped at midnight.
schema:
  - name: orders
    physicalName: orders
    physicalType: table
    description: One row per order, as placed at checkout.
    properties:
      - name: order_id
        logicalType: integer
        physicalType: bigint
        description: The order's id, assigned at checkout.
        primaryKey: true
        required: true
        unique: true
      - name: customer_id
        logicalType: integer
        physicalType: bigint
        description: The customer who placed the order (customers.customer_id).
        required: true
      - name: order_ts
        logicalType: timestamp
        physicalType: timestamp
        description: When the order was placed, UTC.
        required: true
      - name: channel
        logicalType: string
        physicalType: text
        description: Where the order was placed.
        required: true
        enum: [{value: web}, {value: app}, {value: marketplace}]
      - name: status
        logicalType: string
        physicalType: text
        description: Where the order is in its life.
        required: true
        enum: [{value: placed}, {value: shipped}, {value: delivered}, {value: cancelled}, {value: returned}]
      - name: coupon_code
        logicalType: string
        physicalType: text
        description: The coupon used, if any (since the coupon release).
        required: false
    quality:
      - metric: rowCount
        mustBeGreaterThan: 0
        dimension: completeness
        description: The dataset is never empty.
slaProperties:
  - property: freshness
    value: 1
    unit: h
    element: orders.order_ts
  - property: latency
    value: 5
    unit: m
    element: orders.order_ts
"""
### END SOLUTION

# %%
check.m05.orders_contract(orders_contract, ns.schema, orders_topic)

# %% [markdown]
# Here is what `datacontract test` ran on the warehouse copy — one check per rule of the contract:

# %%
deployed = {**odcs.as_dict(orders_contract), "servers": odcs.servers(ns.schema)}
warehouse_checks = odcs.test(deployed, "warehouse")
print(
    "warehouse:",
    warehouse_checks.attrs["result"],
    " stream:",
    odcs.test(deployed, "stream", topic=orders_topic).attrs["result"],
)
warehouse_checks[["check", "type", "result"]]

# %% [markdown]
# The same contract tests both copies: the table through SQL on Postgres, the topic by consuming it into an
# in-memory DuckDB table. On the command line it is `datacontract test --server warehouse orders.odcs.yaml`
# (credentials in `DATACONTRACT_POSTGRES_USERNAME`/`_PASSWORD`) — a step of the pipeline's CI or of its
# orchestrator, after each load.
#
# ## Versions: what breaks a consumer?
# A contract is versioned like an API. Before a new version ships, compare it with the one consumers rely on.
# datacontract-cli classifies each difference by **who** it hurts:
# - from the **consumer** perspective, a change that *loosens* what consumers may receive is breaking (a new
#   allowed value, a column that may now be null, a removed column, a changed type);
# - from the **producer** perspective, a change that *tightens* what the producer must deliver is breaking (its
#   current data may now fail the contract's tests).

# %%
v1 = odcs.as_dict(orders_contract)
v2 = odcs.as_dict(orders_contract)
v2["version"] = "1.1.0"
status = next(p for p in v2["schema"][0]["properties"] if p["name"] == "status")
status["enum"].append({"value": "on_hold"})
for perspective in ("consumer", "producer"):
    print(perspective, odcs.breaking_verdict(v1, v2, perspective))

# %% [markdown]
# Adding `on_hold` is breaking for consumers (a dashboard with one bar per known status, a `CASE` without `ELSE`)
# and harmless for the producer. Such a gate runs in CI: `datacontract breaking v1.yaml v2.yaml` exits with 1 on a
# breaking change, and the release stops until the consumers are ready (or the version's major number changes).
#
# ### Exercise 2 — predict the verdicts
# `odcs.CHANGES` lists changes to the orders contract. For each one, predict whether datacontract-cli calls it
# breaking **for consumers** and **for the producer**: `{"consumer": True/False, "producer": True/False}`. The
# check asks datacontract-cli itself.

# %%
pd.DataFrame([{"change": name, "what changes": text} for name, (text, _) in odcs.CHANGES.items()])

# %%
### BEGIN SOLUTION
breaking_predictions = {
    "drop_coupon_code": {"consumer": True, "producer": False},
    "rename_customer_id": {"consumer": True, "producer": True},
    "add_optional_column": {"consumer": False, "producer": True},
    "order_id_to_string": {"consumer": True, "producer": True},
    "customer_id_optional": {"consumer": True, "producer": False},
    "add_status_value": {"consumer": True, "producer": False},
    "remove_status_value": {"consumer": False, "producer": True},
    "describe_better": {"consumer": False, "producer": False},
    "relax_freshness": {"consumer": True, "producer": False},
    "tighten_freshness": {"consumer": False, "producer": True},
}
### END SOLUTION

# %%
check.m05.breaking_predictions(breaking_predictions)

# %% [markdown]
# Renaming a column is a removal plus an addition: breaking both ways. Adding a column breaks the *producer*
# because `datacontract test` now expects it in the data the producer delivers — ship the producer's change first,
# then the contract. On your own contract:

# %%
pd.DataFrame(
    {
        name: {
            p: odcs.breaking_verdict(orders_contract, odcs.changed(orders_contract, name), p)[0]
            for p in ("consumer", "producer")
        }
        for name in odcs.CHANGES
    }
).T

# %% [markdown]
# ## Enforcing the contract at write time
# Tests after the load *report* a violation; by then consumers may have read the bad rows. A producer can refuse
# to write them at all. datacontract-cli exports the contract's schema as a JSON Schema (types, required
# columns, allowed values), which a validator checks in microseconds:

# %%
order_schema = odcs.json_schema(orders_contract)
validator = Draft7Validator(order_schema)
bad = {"order_id": 1, "customer_id": None, "order_ts": "2026-03-01T10:00:00Z", "channel": "web", "status": "pending"}
[error.message for error in validator.iter_errors(bad)]

# %% [markdown]
# ### Exercise 3 — a producer that enforces the contract
# Write `produce_orders(producer, records, topic, dead_letter_topic, schema)`: each record that satisfies the
# JSON Schema `schema` goes to `topic` as JSON (key: its `order_id`); each one that does not goes to
# `dead_letter_topic` — nothing is silently dropped — as the original JSON with a header `contract-violation`
# saying what is wrong (the first error message is enough). Return `(sent, rejected)`, the two counts, after
# flushing the producer. The check sends valid and invalid orders through your function on real topics and reads
# both back.


# %%
### BEGIN SOLUTION
def produce_orders(producer, records, topic, dead_letter_topic, schema):
    """Send contract-valid records to topic and the others, with the reason, to the dead-letter topic."""
    validator = Draft7Validator(schema)
    sent = rejected = 0
    for record in records:
        value = json.dumps(record).encode()
        key = str(record.get("order_id")).encode() if isinstance(record, dict) else None
        errors = list(validator.iter_errors(record))
        if errors:
            producer.produce(dead_letter_topic, value=value, key=key, headers={"contract-violation": errors[0].message})
            rejected += 1
        else:
            producer.produce(topic, value=value, key=key)
            sent += 1
    producer.flush(30)
    return sent, rejected


### END SOLUTION

# %%
check.m05.enforced_producer(produce_orders)

# %% [markdown]
# Run it on the lab's topic with a batch where a client sends a status the contract does not know:

# %%
dead_letters = ns.topic("orders.dead-letter")
for topic in (orders_topic, dead_letters):
    odcs.publish(topic, [])  # empty topics: a re-run starts clean
batch = odcs.as_messages(orders)[:20]
batch[3] = {**batch[3], "status": "pending"}
producer = Producer({"bootstrap.servers": config.kafka().bootstrap_servers})
print("sent, rejected:", produce_orders(producer, batch, orders_topic, dead_letters, order_schema))
print(odcs.read_json_topic(dead_letters))
print("stream test:", odcs.test(deployed, "stream", topic=orders_topic).attrs["result"])

# %% [markdown]
# The orders topic still passes its contract test; the bad order waits in the dead-letter topic with its reason,
# for a person or a repair job to fix and replay (module 02's dead-letter queues). The registry of lab 05.01 does
# the same for the *shape* of messages (`JSONSerializer` validates); the contract adds the rules a schema
# language cannot say and the owner to call.
#
# ## The warehouse side: dbt model contracts
# A dbt model is a `SELECT`; with `contract: {enforced: true}` in its YAML, dbt first checks that the query
# returns exactly the declared columns with the declared types, and creates the table with the declared
# constraints — before any row is written. Without it, the YAML is documentation. Here is the model `fct_orders`
# on the warehouse copy of the orders, with a YAML that documents but does not enforce; it builds, and so does a
# version whose query turned `customer_id` into text:

# %%
print(dbt_models.MODEL_SQL)
documented_only = """
version: 2
models:
  - name: fct_orders
    description: One row per order, for reporting.
    columns:
      - {name: order_id, data_type: bigint}
      - {name: customer_id, data_type: bigint}
"""
project = dbt_models.orders_project(ns.schema, yaml.safe_load(documented_only))
print("as written:", dbt_models.build(project, ns.schema).success)
print("customer_id as text:", dbt_models.build(project, ns.schema, sql=dbt_models.DRIFTED_SQL).success)

# %% [markdown]
# ### Exercise 4 — enforce the model's contract
# Write `fct_orders_yaml`, the model YAML of `fct_orders` (the five columns of the query above) so that dbt
# builds the model as written, and **refuses** to build it when its query changes a column's type, lets an order
# through without a customer, or repeats an `order_id`. Use dbt's model contracts: `config: {contract:
# {enforced: true}}`, a `data_type` per column (Postgres names) and `constraints`.

# %%
### BEGIN SOLUTION
fct_orders_yaml = """
version: 2
models:
  - name: fct_orders
    description: One row per order, for reporting.
    config:
      materialized: table
      contract: {enforced: true}
    columns:
      - name: order_id
        data_type: bigint
        constraints: [{type: not_null}, {type: primary_key}]
      - name: customer_id
        data_type: bigint
        constraints: [{type: not_null}]
      - {name: order_ts, data_type: timestamp}
      - {name: channel, data_type: text}
      - {name: status, data_type: text}
"""
### END SOLUTION

# %%
check.m05.dbt_model_contract(fct_orders_yaml, ns.schema)

# %% [markdown]
# The drifted query, against your enforced contract:

# %%
project = dbt_models.orders_project(ns.schema, yaml.safe_load(fct_orders_yaml))
print("as written:", dbt_models.build(project, ns.schema).success)
drifted = dbt_models.build(project, ns.schema, sql=dbt_models.DRIFTED_SQL)
print("customer_id as text:", drifted.success)
print(next(m for m in drifted.messages if "mismatch" in m))

# %% [markdown]
# dbt compared the query's columns with the contract and stopped before creating the table: the table consumers
# query keeps its shape, like the orders topic behind the validating producer. ODCS and dbt meet:
# `datacontract export --format dbt-models` writes such a YAML from a contract, `datacontract import --format dbt`
# reads one.
#
# ## Recap
# - A contract = schema + semantics + owner + quality rules + service levels + where the data lives; ODCS writes
#   it in YAML that tools can test.
# - `datacontract test` checks the real table and the real topic against the same contract.
# - Breaking is relative: loosening breaks consumers, tightening breaks the producer; a CI gate compares versions
#   before one ships.
# - Enforce at write time (a validating producer with a dead-letter route; dbt's enforced model contracts), and
#   test after the load for what only the whole dataset shows (uniqueness, freshness).
#
# **Going further:**
# - Publish contracts to a catalog (Entropy Data, DataHub, Collibra) with `datacontract publish`, and their test
#   results alongside; the same contract can be tested on Snowflake, BigQuery, Databricks or S3 by adding a server.
# - Confluent's *data contracts* put rules (CEL expressions, field-level encryption, migration rules) next to the
#   schema in the registry, enforced by the serializers.
# - dbt's model versions (`versions:` with `latest_version`) let a breaking model change ship as v2 while v1 stays
#   for its consumers; `dbt build --select state:modified` with `--defer` is the CI gate.
