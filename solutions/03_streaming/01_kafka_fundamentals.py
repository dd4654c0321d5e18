# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 03.01 · Kafka fundamentals with kafka-python
#
# **You will:**
# - create a partitioned topic and see how the **key** picks the partition — and keeps order per key;
# - watch a **consumer group** rebalance as consumers join and leave;
# - read **committed offsets** and compute **lag**, the number every Kafka dashboard shows first;
# - crash a consumer between processing and committing, and see **duplicates** (commit after) versus
#   **loss** (commit before).
#
# *Needs:* Kafka (started for you). About 30 minutes.

# %%
import json
import uuid

import matplotlib.pyplot as plt
import pandas as pd

from delab import check, config, stack
from delab.checks.m03.l01_kafka import sample_clicks
from delab.streaming import kafka_basics as kb

stack.require("kafka")
ns = stack.namespace("m03_l01")
kb.drop_topics(f"{ns.prefix}.")  # an earlier run's topics: start clean
run_id = uuid.uuid4().hex[:6]
clicks = sample_clicks()  # 240 clickstream events of the shop, in the order they arrived
pd.DataFrame(clicks).head()

# %% [markdown]
# ## Topics, partitions and keys
# A **topic** is split into **partitions**; each partition is an append-only log whose records are numbered by
# **offset**. Partitions are the unit of parallelism (one consumer of a group per partition) and of ordering:
# Kafka keeps order *within* a partition, never across partitions.
#
# The producer picks the partition. With a **key**, it hashes the key (murmur2) modulo the number of partitions,
# so every record with the same key lands in the same partition, in the order it was sent. Without a key,
# records are spread for balance — and the order between two records of one session is lost.

# %%
clicks_topic = kb.create_topic(ns.topic(f"clicks.{run_id}"), partitions=3)
keyless_topic = kb.create_topic(ns.topic(f"clicks_keyless.{run_id}"), partitions=3)

producer = kb.producer(linger_ms=5)
for click in clicks:
    value = json.dumps(click).encode()
    producer.send(clicks_topic, key=str(click["session_id"]).encode(), value=value)
    producer.send(keyless_topic, value=value)
producer.flush()
producer.close()

keyed = kb.json_values(kb.read_topic(clicks_topic))
keyless = kb.json_values(kb.read_topic(keyless_topic))
pd.DataFrame(
    {
        "records per partition (keyed)": keyed.groupby("partition").size(),
        "records per partition (no key)": keyless.groupby("partition").size(),
    }
)

# %% [markdown]
# Both spread the load. The difference is where one **session** goes: count the partitions each session's
# events ended up in.

# %%
pd.DataFrame(
    {
        "keyed": keyed.groupby("session_id")["partition"].nunique().value_counts(),
        "no key": keyless.groupby("session_id")["partition"].nunique().value_counts(),
    }
).rename_axis("partitions per session").fillna(0).astype(int)

# %% [markdown]
# With keys every session lives in exactly one partition, so a consumer reads its events in the order they were
# sent. Without keys a session's `checkout` can sit in another partition than its `page_view` and be read first.
# Here is the start of one session, keyed, in offset order — the order the events *arrived* in (their event
# times can be out of order: lab 03.03 deals with that):

# %%
busiest = keyed["session_id"].value_counts().index[0]
keyed[keyed["session_id"] == busiest][["partition", "offset", "event_id", "event_type", "event_time"]].head(8)

# %% [markdown]
# The rule of thumb: **key by the entity whose events must stay in order** (a session, an order, an account).
# Adding partitions to a topic later changes `hash % partitions`, so existing keys move: choose the partition
# count up front.
#
# ### Exercise 1 — publish clicks keyed by session
# Write `produce_clicks(topic, events)`: send every event (a dict) to `topic` as JSON (UTF-8 bytes), keyed by its
# `session_id` (as text, UTF-8 bytes), in the order given, using `kb.producer()`; make sure every message is
# delivered before returning. The check creates a 3-partition topic, calls your function and reads the topic
# back.


# %%
### BEGIN SOLUTION
def produce_clicks(topic: str, events: list[dict]) -> None:
    """Send events as JSON, keyed by session, and wait until the broker has them all."""
    out = kb.producer()
    for event in events:
        out.send(topic, key=str(event["session_id"]).encode(), value=json.dumps(event).encode())
    out.flush()
    out.close()


### END SOLUTION


# %%
check.m03.keyed_clicks(produce_clicks)

# %% [markdown]
# ## Consumer groups and rebalancing
# Consumers that share a `group_id` split a topic's partitions between them: each partition is read by exactly
# one member. When a member joins or leaves, the group **rebalances**: the group coordinator (a broker) revokes
# the partitions and hands them out again. Below, four consumers of one group join a 3-partition topic one after
# another, then leave. Each runs in its own thread, as it would in its own process.

# %%
group = ns.group(f"readers.{run_id}")
log = kb.AssignmentLog()
members: dict[str, kb.GroupMember] = {}
steps = []


def step(label: str) -> None:
    steps.append({"step": label, **kb.wait_balanced(list(members.values()), partitions=3)})


for name in ["A", "B", "C", "D"]:
    members[name] = kb.GroupMember(clicks_topic, group, name, log)
    step(f"{name} joins")
for name in ["D", "C", "B"]:
    members.pop(name).leave()
    step(f"{name} leaves")
pd.DataFrame(steps).set_index("step").fillna("–")

# %% [markdown]
# A fourth consumer on a 3-partition topic gets **nothing**: the partition count caps a group's parallelism.
# The rebalance log shows each member giving back its partitions (`revoked`) and receiving new ones
# (`assigned`). With the classic *eager* protocol every member stops during a rebalance; the *cooperative*
# protocol and Kafka 4's new consumer protocol (KIP-848) move only the partitions that change hands.

# %%
log.frame().tail(12)

# %% [markdown]
# ## Committed offsets and lag
# A group remembers how far it got by **committing offsets** to the broker (the internal `__consumer_offsets`
# topic): the committed offset of a partition is the *next* offset the group will read. The members above
# committed after each batch, so member A — the last one left — has read everything and its lag is zero. Now A
# leaves, more clicks arrive, and nobody reads them:

# %%
kb.wait_caught_up(group, clicks_topic)
members.pop("A").leave()
producer = kb.producer()
for click in clicks[:150]:
    producer.send(clicks_topic, key=str(click["session_id"]).encode(), value=json.dumps(click).encode())
producer.flush()
producer.close()
behind = kb.lag_table(group, clicks_topic)
behind

# %% [markdown]
# **Lag** = log-end offset − committed offset, per partition. It is *the* health number of a consumer: growing
# lag means the consumers cannot keep up (or are down). A new member picks up from the committed offsets — not
# from the beginning, not from the end — and the lag drains:

# %%
catcher = kb.GroupMember(clicks_topic, group, "E")
caught_up = kb.wait_caught_up(group, clicks_topic)
catcher.leave()
fig, ax = plt.subplots(figsize=(6, 2.5))
pd.DataFrame(
    {
        "while nobody reads": behind.set_index("partition")["lag"],
        "after E caught up": caught_up.set_index("partition")["lag"],
    }
).plot.bar(ax=ax)
ax.set_ylabel("lag (records)")
ax.set_title("consumer lag per partition")
plt.show()
print(f"E read {len(catcher.read)} records; the lag was {int(behind['lag'].sum())}")

# %% [markdown]
# ### Exercise 2 — compute the lag yourself
# Write `lag_by_partition(group, topic)` returning `{partition: lag}` for every partition of `topic`. Get the
# log-end offsets with a `KafkaConsumer`'s `end_offsets([...TopicPartition...])` (no group needed:
# `kafka.KafkaConsumer(bootstrap_servers=bootstrap)`) and the group's committed offsets with
# `kb.admin().list_group_offsets({group: None})[group]` (a dict `TopicPartition → OffsetAndMetadata` covering
# every topic the group has committed on). A partition the group has never committed on has no entry: the group
# would read it from its start, so count its lag from offset 0 (the `lag` column above does the same). Close what
# you open.

# %%
bootstrap = config.kafka().bootstrap_servers


### BEGIN SOLUTION
def lag_by_partition(group: str, topic: str) -> dict[int, int]:
    """Log-end offset minus committed offset, per partition."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    admin = kb.admin()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        committed = admin.list_group_offsets({group: None})[group]
    finally:
        consumer.close()
        admin.close()
    return {tp.partition: ends[tp] - committed[tp].offset if tp in committed else ends[tp] for tp in partitions}


### END SOLUTION


# %%
check.m03.consumer_lag(lag_by_partition)

# %% [markdown]
# ## Delivery semantics: when to commit
# Processing a record and committing its offset are two separate steps, and a consumer can die between them.
# What happens then depends on the order:
#
# | order | a crash between the two steps | guarantee |
# |---|---|---|
# | commit, then process | the committed records were never processed: **lost** | at-most-once |
# | process, then commit | the processed records are delivered again: **duplicates** | at-least-once |
#
# `kb.run_with_crash(handle_batch, topic, group, crash_after=15)` makes this concrete: a topic holds messages
# `0 … 39`; a consumer reads batches of 10 and hands each batch to `handle_batch(consumer, records, process)`;
# right after the 15th message is processed the process "dies" (a `SimulatedCrash`, and the consumer is closed
# without committing). A second consumer of the same group then resumes from the committed offsets. Here is
# commit-then-process:

# %%
crash_topic = kb.create_topic(ns.topic(f"numbers.{run_id}"), partitions=1)
kb.fill_numbered(crash_topic, 40)
print(kb.commit_then_process.__doc__)
at_most_once = kb.run_with_crash(kb.commit_then_process, crash_topic, ns.group(f"amo.{run_id}"), crash_after=15)
print(at_most_once.row())
print("never processed:", sorted(i for i in range(at_most_once.messages) if at_most_once.processed[i] == 0))

# %% [markdown]
# The second batch (10–19) was committed, then the process died after handling 10–14: 15–19 are gone for good.
#
# ### Exercise 3 — at-least-once
# Write `handle_batch(consumer, records, process)` so that a crash never loses a message: process every record
# of the batch with `process(record)`, and commit (`consumer.commit()` commits the positions the last poll
# reached) only when the whole batch is done. Do not catch the crash — it stands for the process dying. The check
# is stricter than the demo above: it crashes your consumer *while* it processes a message, whose work dies with
# the process.


# %%
### BEGIN SOLUTION
def handle_batch(consumer, records: list, process) -> None:
    """At-least-once: process the batch, then commit its offsets."""
    for record in records:
        process(record)
    consumer.commit()


### END SOLUTION


# %%
check.m03.at_least_once(handle_batch)

# %% [markdown]
# Side by side, on the same 40 messages and the same crash:

# %%
at_least = kb.run_with_crash(handle_batch, crash_topic, ns.group(f"alo.{run_id}"), crash_after=15)
pd.DataFrame([at_most_once.row(), at_least.row()]).set_index("strategy")

# %% [markdown]
# At-least-once turns a crash into **duplicates** — the part of the batch processed before the crash (10–14) is
# processed again. Duplicates are harmless when processing is **idempotent** (an upsert keyed by the record, a
# write that records the offset it came from); the exactly-once alternatives — Kafka transactions and
# checkpointed engines — are in labs 03.06 and 03.07. Committing after every record shrinks the window to one
# duplicate, at the cost of one commit round trip per record.
#
# ## Recap
# - The key chooses the partition; order is kept per partition, so key by the entity that needs order.
# - A group shares partitions among its members; joins and leaves trigger a rebalance; extra members idle.
# - The committed offset is the next record a group reads; lag = end offset − committed offset.
# - Commit before processing → at-most-once (loss on a crash); commit after → at-least-once (duplicates).
#
# **Going further**
# - The same code runs against **Amazon MSK**, **Confluent Cloud** or **Aiven**: set `DELAB_STACK=external` and
#   `DELAB_KAFKA_BOOTSTRAP` (plus the SASL/TLS settings your provider gives you) — `kb.*` takes `bootstrap=` too.
# - Kafka 4's consumer group protocol (KIP-848, `group.protocol=consumer` in the Java and librdkafka clients)
#   moves assignment to the broker and makes rebalances incremental; static membership (`group.instance.id`)
#   avoids rebalances on restarts.
# - Watch lag in production with `kafka-consumer-groups.sh --describe`, Burrow or your provider's metrics.
