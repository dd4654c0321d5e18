# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 03.02 · Replication on a 3-broker KRaft cluster
#
# **You will:**
# - start a real 3-node Kafka cluster (KRaft: every node is broker and controller) and read its topology;
# - choose a **replication factor**, **min.insync.replicas** and producer **acks** that survive a broker crash;
# - SIGKILL the leader in the middle of production and prove that **no acknowledged write is lost**;
# - watch the **ISR** (in-sync replicas) shrink and recover when the broker comes back;
# - see exactly how `acks=1` (or `min.insync.replicas=1`) loses acknowledged writes.
#
# *Needs:* Java and the stack's Kafka jars (`make setup`); the cluster is started here and stopped at the end
# (three JVMs of 256 MB heap, ~150 MB resident each). Kernel: `delab`. About 30 minutes.

# %%
import pandas as pd

from delab import check, stack
from delab.streaming import cluster
from delab.streaming import kafka_basics as kb

ns = stack.namespace("m03_l02")
nodes = cluster.up()  # starts the three nodes in parallel (a few seconds once formatted)
kb.drop_topics(f"{ns.prefix}.", bootstrap=cluster.bootstrap())  # an earlier run's topics: start clean
nodes

# %% [markdown]
# Three JVMs, each a **broker** (stores partitions, serves clients) and a **controller** (one of three voters of
# the Raft quorum that owns the cluster's metadata: which brokers are alive, who leads each partition, who is in
# sync). One controller is active; if it dies the other two elect a new one. Memory of each node:

# %%
cluster.memory_mib()

# %% [markdown]
# ## Replicas, leaders and the ISR
# A topic with **replication factor** (RF) 3 keeps every partition on three brokers. One replica is the
# **leader**: producers and consumers talk to it. The others are **followers** that fetch from the leader. The
# followers that are caught up form, with the leader, the **in-sync replica set (ISR)**; only they may become
# leader, so only data that reached every ISR member is safe from a leader crash.
#
# The producer chooses when a write counts as done (`acks`), and the topic chooses how many in-sync copies an
# `acks=all` write needs (`min.insync.replicas`):
#
# | acks | the leader answers when | lost if the leader dies right after? |
# |---|---|---|
# | `0` | never (fire and forget) | yes, and the producer never knows |
# | `1` | it has appended the write to its own log | yes, if no follower had copied it yet |
# | `all` (`-1`) | every ISR member has it, and the ISR has ≥ `min.insync.replicas` members | no, while a copy lives |
#
# With fewer in-sync replicas than `min.insync.replicas`, an `acks=all` write is refused (`NotEnoughReplicas`).
#
# ### Exercise 1 — a durable topic
# Write `create_orders_topic(name)`: create `name` on the cluster with 3 partitions, each on all three
# brokers, such that an `acks=all` write is acknowledged only once **two** brokers have it — and one broker may
# be down without refusing writes. Use `kb.create_topic(name, partitions=..., replication_factor=...,
# configs={...}, bootstrap=cluster.bootstrap())`.


# %%
### BEGIN SOLUTION
def create_orders_topic(name: str) -> None:
    """RF 3, min.insync.replicas 2: survives one broker down and never acks a single copy."""
    kb.create_topic(
        name, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"}, bootstrap=cluster.bootstrap()
    )


### END SOLUTION


# %%
check.m03.durable_topic(create_orders_topic)

# %%
orders_topic = ns.topic("orders")
create_orders_topic(orders_topic)
cluster.describe(orders_topic)

# %% [markdown]
# Leadership is spread: each broker leads one partition and follows the other two, so the load is shared.
#
# ### Exercise 2 — a producer whose acknowledgements mean something
# Your team's producers share settings tuned for throughput, `cluster.TEAM_PRODUCER_SETTINGS` (shown below):
# one copy acknowledged, no retries, no idempotence. Write `durable_producer_settings`, the `kafka.KafkaProducer`
# keyword arguments that **override** them (bootstrap servers are added for you; the producer is built from
# `{**cluster.TEAM_PRODUCER_SETTINGS, **durable_producer_settings}`), so that **no write the producer was told
# succeeded can be lost** when a leader crashes, the producer keeps retrying through a leader election, and a
# retried batch is never stored twice.
#
# The check creates a 1-partition topic (RF 3, min.insync 2), **freezes both followers** (SIGSTOP: they stay in
# the ISR but copy nothing, like a long GC pause), sends 200 writes with your settings, then **SIGKILLs the
# leader** and thaws the followers: one of them becomes leader with whatever it had copied. Finally it counts the
# acknowledged writes that are not in the topic.

# %%
cluster.TEAM_PRODUCER_SETTINGS

# %%
### BEGIN SOLUTION
durable_producer_settings = {"acks": "all", "retries": 2_147_483_647, "enable_idempotence": True}
### END SOLUTION

# %%
check.m03.no_acked_write_lost(durable_producer_settings)

# %% [markdown]
# ## A broker killed mid-production
# Now the real thing on `orders`: 3000 keyed writes with your settings, and after the first 1000 sends the
# leader of partition 0 is killed with SIGKILL — no clean shutdown, no goodbye to the controller. While it is
# down we also try one write to a topic that demands **3** in-sync copies, and one to it with `acks=1`.

# %%
strict_topic = kb.create_topic(
    ns.topic("strict"), 1, replication_factor=3, configs={"min.insync.replicas": "3"}, bootstrap=cluster.bootstrap()
)


def probe_strict_topic() -> dict:
    return {
        "acks=all, min.insync=3": cluster.try_write(strict_topic, {"acks": "all"}),
        "acks=1, min.insync=3": cluster.try_write(strict_topic, {"acks": 1}),
    }


crash = cluster.kill_leader_while_producing(
    orders_topic, {**cluster.TEAM_PRODUCER_SETTINGS, **durable_producer_settings}, while_down=probe_strict_topic
)
pd.DataFrame(crash.timeline, columns=["seconds", "event"])

# %%
pd.DataFrame([crash.row()]).set_index("acks")

# %% [markdown]
# Every acknowledged write was read back. The producer saw the leader vanish, refreshed its metadata, waited
# for the controller to fence the dead broker (`broker.session.timeout.ms`, 3 s here) and elect new leaders from
# the ISR, and retried — the idempotent producer's sequence numbers let the new leader drop any batch it
# already had, so nothing is stored twice either.
#
# While the broker was down, the topic needing 3 in-sync copies refused `acks=all` writes — availability traded
# for durability — but accepted `acks=1`, which ignores `min.insync.replicas`:

# %%
crash.while_down

# %% [markdown]
# The ISR before, during and after the outage. The killed node left every ISR and gave up its leadership;
# restarted, it fetched what it had missed from the new leaders and rejoined every ISR (it stays a follower:
# leadership moves back only with the next preferred-leader election, every 5 minutes by default).

# %%
pd.concat(crash.snapshots, names=["moment"]).droplevel(1).set_index("partition", append=True)

# %% [markdown]
# ### Exercise 3 — spot under-replicated partitions
# `UnderReplicatedPartitions` is the first broker metric to alert on. Write `under_replicated(frame)`: given a
# `cluster.describe(...)` frame, return the list of partitions whose ISR is missing at least one replica.
# The check runs it on the snapshots above, and on a topic with another replication factor.


# %%
### BEGIN SOLUTION
def under_replicated(frame: pd.DataFrame) -> list[int]:
    """Partitions with fewer in-sync replicas than replicas."""
    return [int(row.partition) for row in frame.itertuples() if set(row.isr) != set(row.replicas)]


### END SOLUTION


# %%
check.m03.under_replicated_partitions(under_replicated, crash.snapshots["broker down"], crash.snapshots["recovered"])

# %% [markdown]
# ## What acks=1 risks
# Same trap as in exercise 2, now with `acks=1`: the followers stall, the leader acknowledges each write as soon
# as it is in its own log, then it crashes. The new leader never had those writes, and when the old one returns
# it **truncates** its log to match the new leader — the writes are gone everywhere, although the producer was
# told they succeeded.

# %%
fragile_topic = kb.create_topic(ns.topic("fragile"), 1, 3, {"min.insync.replicas": "2"}, bootstrap=cluster.bootstrap())
fragile = cluster.acks_under_failover(fragile_topic, {"acks": 1, "enable_idempotence": False})
pd.DataFrame([fragile.row(), crash.row()], index=["acks=1, leader crash", "your settings, leader crash"])

# %% [markdown]
# `min.insync.replicas=1` has the same hole from the other side: when followers fall behind (a slow disk, a
# network blip) the ISR shrinks to the leader alone and `acks=all` is then satisfied by that single copy — so a
# crash of that leader loses acknowledged writes just like `acks=1` (or, with `unclean.leader.election.enable`,
# an out-of-sync replica is elected and the cluster silently rewinds). RF 3 + `min.insync.replicas=2` +
# `acks=all` is the usual production default: one broker may fail or be restarted without losing or refusing
# writes.
#
# ## Stop the cluster
# Three JVMs are not free on a laptop; their data stays under the stack's folder for the next run
# (`cluster.reset()` deletes it).

# %%
cluster.down()
cluster.nodes()

# %% [markdown]
# ## Recap
# - RF copies of each partition; the leader serves, followers fetch; the ISR are the caught-up replicas.
# - `acks=all` + `min.insync.replicas=2` + RF 3: an acknowledged write exists on two brokers; one broker may be
#   down without refusing writes; idempotence keeps retries from duplicating.
# - A crashed broker leaves the ISR within the session timeout, leaders move, and it rejoins after catching up.
# - `acks=1`, or `min.insync.replicas=1` with a shrunken ISR, acknowledges writes a single crash can erase.
#
# **Going further**
# - Managed Kafka (Amazon MSK, Confluent Cloud, Aiven) runs RF 3 across availability zones with
#   `broker.rack`-aware replica placement; point this notebook's client code at one with `DELAB_STACK=external`
#   and `DELAB_KAFKA_CLUSTER_BOOTSTRAP` (faults, of course, are theirs to inject).
# - Kafka 4's **eligible leader replicas** (KIP-966) keep a clean leader candidate when the ISR shrinks below
#   `min.insync.replicas`; `kafka-topics.sh --describe --under-replicated-partitions` lists what exercise 3 found.
# - The docker profile runs the same cluster: `docker compose -f infra/docker/compose.yaml -p delab --profile
#   kafka-cluster up -d` (or `cluster.up()` with `DELAB_STACK=docker`).
