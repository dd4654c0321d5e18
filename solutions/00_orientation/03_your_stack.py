# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 00.03 · Your stack
#
# **You will** make one real round trip through every service the course uses:
# - publish events to **Apache Kafka** and read them back;
# - query **PostgreSQL**;
# - put and get an object in the **S3-compatible object store**;
# - run a job on the **Apache Flink** cluster that reads Kafka and writes its result back to Kafka;
# - capture a row change with **Debezium** on **Kafka Connect**.
#
# *Needs:* the whole stack — the first cell starts what is not running (about 20 s the first time).
# About 20 minutes.

# %%
import json
import uuid

from delab import check, clients, config, datasets, stack
from delab.loading import cdc

stack.require("kafka", "connect", "postgres", "s3", "flink")
ns = stack.namespace("m00_l03")  # this lab's prefix for topics, tables and object keys
shop = datasets.shop(seed=7, scale=0.25)
run_id = uuid.uuid4().hex[:6]  # fresh topic and connector names on every run: re-running the lab starts clean
cdc.cleanup(ns.prefix)  # what an earlier run left: its connector, replication slot and topics

# %% [markdown]
# `stack.require` returned a table of the services and where they listen — all on 127.0.0.1. `delab stack
# status` in a terminal shows the same, with the web UIs (Flink's dashboard, Connect's REST API).
#
# Some services start **on demand**, the first time a lab asks for them, so they cost no memory until then: the
# **schema registry** (Apicurio Registry with the Confluent-compatible API, its schemas kept in Postgres) that
# module 05 uses, `stack.require("registry")` or `delab stack up registry`. `delab stack status` lists it once it
# runs; `delab doctor` says what it needs (Java 21+).
#
# ## Kafka: events in, events out
# Kafka stores **events** in **topics**, split into **partitions**. A producer sends each event with a **key**;
# events with the same key go to the same partition, where their order is kept.
#
# ### Exercise 1 — publish a session's clicks
# Write `produce_events(topic, events)`: send each event (a dict) to `topic` as JSON (UTF-8 bytes) with the key
# `str(event["session_id"])` (bytes too), using `clients.kafka_producer()`, and make sure they are really sent
# before returning.

# %%
clicks_topic = ns.topic(f"clicks.{run_id}")


### BEGIN SOLUTION
def produce_events(topic: str, events: list[dict]) -> None:
    """Send events as JSON, keyed by session, and wait until the broker has them."""
    producer = clients.kafka_producer()
    for event in events:
        producer.send(topic, key=str(event["session_id"]).encode(), value=json.dumps(event).encode())
    producer.flush()
    producer.close()


### END SOLUTION


# %%
check.m00.produce_events(produce_events, clicks_topic)

# %%
[(key.decode(), json.loads(value)["event_type"]) for key, value in clients.kafka_messages(clicks_topic)][:5]

# %% [markdown]
# ## PostgreSQL
# `datasets.to_postgres` copies DataFrames into tables of a schema (here the lab's own, `m00_l03`).

# %%
datasets.to_postgres(
    {"customers": shop.customers, "orders": shop.orders.drop_duplicates("order_id")},
    schema=ns.schema,
    primary_keys={"customers": ["customer_id"], "orders": ["order_id"]},
)
pg = clients.postgres()
pg.execute(f"SELECT count(*) FROM {ns.schema}.orders").fetchone()

# %% [markdown]
# ### Exercise 2 — orders per country
# Write `orders_per_country_sql` over `m00_l03.orders` and `m00_l03.customers`: columns `country` (upper case)
# and `orders`, most orders first, ties by country. Profile first: are the country codes clean?

# %%
### BEGIN SOLUTION
orders_per_country_sql = """
SELECT upper(c.country) AS country, count(*) AS orders
FROM m00_l03.orders o JOIN m00_l03.customers c USING (customer_id)
GROUP BY 1 ORDER BY orders DESC, country
"""
### END SOLUTION

# %%
check.m00.orders_per_country(orders_per_country_sql)

# %% [markdown]
# ## The object store
# The object store speaks the S3 API, so `boto3` (and pyarrow, DuckDB, Spark, Flink…) use it as they would use
# Amazon S3, with the endpoint pointed at 127.0.0.1. Objects live in a **bucket** under a **key**.
#
# ### Exercise 3 — store a report
# Write `store_report(text)`: put `text` (UTF-8) into the bucket `config.s3().bucket` under a key of this lab's
# prefix — `ns.key(f"reports/{run_id}.csv")` — using `clients.s3()`, and return the key.


# %%
### BEGIN SOLUTION
def store_report(text: str) -> str:
    """Put a report into the object store; return its key."""
    key = ns.key(f"reports/{run_id}.csv")
    clients.s3().put_object(Bucket=config.s3().bucket, Key=key, Body=text.encode())
    return key


### END SOLUTION


# %%
check.m00.object_round_trip(store_report)

# %% [markdown]
# ## Flink: a job on the cluster
# Flink SQL declares tables *over* external systems and runs continuous queries between them. Below, `clicks`
# reads the topic you filled (bounded: it stops at the current end, so the job finishes) and `event_counts`
# writes to another topic as an **upsert** stream: one current count per key. `delab.flinksql.run(statements)`
# submits a job to the stack's Flink cluster (the check does it with your statement) — watch it appear in the
# Flink UI (`delab stack status` prints the address).

# %%
counts_topic = ns.topic(f"event_counts.{run_id}")
bootstrap = config.kafka().bootstrap_servers
flink_ddl = [
    f"""CREATE TABLE clicks (event_id BIGINT, session_id BIGINT, event_type STRING, event_time STRING) WITH (
        'connector' = 'kafka', 'topic' = '{clicks_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset', 'format' = 'json')""",
    f"""CREATE TABLE event_counts (event_type STRING, events BIGINT, PRIMARY KEY (event_type) NOT ENFORCED)
        WITH ('connector' = 'upsert-kafka', 'topic' = '{counts_topic}',
              'properties.bootstrap.servers' = '{bootstrap}', 'key.format' = 'json', 'value.format' = 'json')""",
]

# %% [markdown]
# ### Exercise 4 — count events per type
# Write `count_sql`, the job's statement: insert into `event_counts` the number of `clicks` per `event_type`.

# %%
### BEGIN SOLUTION
count_sql = "INSERT INTO event_counts SELECT event_type, COUNT(*) AS events FROM clicks GROUP BY event_type"
### END SOLUTION

# %%
check.m00.flink_counts(count_sql, flink_ddl, clicks_topic, counts_topic)

# %% [markdown]
# ## Debezium: the database as a stream of changes
# Kafka Connect runs **connectors**; Debezium's Postgres connector reads the database's write-ahead log through a
# logical replication slot and publishes every INSERT, UPDATE and DELETE as an event. A connector is registered
# through Connect's REST API. `REPLICA IDENTITY FULL` makes Postgres log the whole old row, so update events carry
# a `before` image.

# %%
pg.execute(f"ALTER TABLE {ns.schema}.customers REPLICA IDENTITY FULL")
connector = ns.connector(f"customers_{run_id}")  # Connect remembers a name's offsets even after a delete
clients.connect_put(
    connector,
    {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "database.hostname": config.postgres().host,
        "database.port": str(config.postgres().port),
        "database.user": config.postgres().user,
        "database.password": config.postgres().password,
        "database.dbname": config.postgres().database,
        "topic.prefix": connector,
        "table.include.list": f"{ns.schema}.customers",
        "slot.name": connector,
        "publication.name": "dbz_publication",
        "publication.autocreate.mode": "disabled",
        "snapshot.mode": "no_data",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
    },
)
changes_topic = f"{connector}.{ns.schema}.customers"
new_email = f"ada.{run_id}@example.org"
pg.execute(f"UPDATE {ns.schema}.customers SET email = %s, segment = 'business' WHERE customer_id = 1", (new_email,))


def latest_update(topic: str) -> dict:
    """The newest update event of the topic (waiting a little for Debezium to publish it)."""
    import time

    for _ in range(30):
        events = [json.loads(v) for _, v in clients.kafka_messages(topic, timeout=5) if v is not None]
        updates = [e for e in events if e["op"] == "u" and e["after"]["email"] == new_email]
        if updates:
            return updates[-1]
        time.sleep(1)
    raise RuntimeError(f"no update event on {topic}: is the connector running? (delab stack logs connect)")


update_event = latest_update(changes_topic)
{k: update_event[k] for k in ("op", "ts_ms")}, update_event["source"]["table"]

# %% [markdown]
# The **envelope**: `op` is `c` (create), `u` (update), `d` (delete) or `r` (read, during a snapshot); `before`
# and `after` are the row before and after; `source` says where and when (LSN, transaction, table).
#
# ### Exercise 5 — what changed?
# Write `changed_columns(event)`: return `{column: (old, new)}` for every column whose value differs between
# `before` and `after`.


# %%
### BEGIN SOLUTION
def changed_columns(event: dict) -> dict:
    """The columns an update changed, with their old and new values."""
    before, after = event["before"], event["after"]
    return {column: (before[column], after[column]) for column in after if before[column] != after[column]}


### END SOLUTION


# %%
check.m00.changed_columns(changed_columns, update_event)

# %% [markdown]
# Clean up after yourself: a connector left running keeps its replication slot, and a slot makes Postgres keep
# every write-ahead-log segment the connector has not read yet — a classic way to fill a database's disk.

# %%
cdc.remove(connector)  # deletes the connector through the REST API, then drops its replication slot
pg.close()

# %% [markdown]
# ## Recap
# - Kafka keeps events in partitioned topics; the key chooses the partition and so the order.
# - Postgres, the object store and Kafka are reached through small clients built from `delab.config` — one
#   place for endpoints and credentials.
# - Flink runs SQL continuously between systems; an upsert sink keeps one current row per key.
# - Debezium turns the write-ahead log into change events with `before`, `after` and `op`.
#
# **Going further:** point the same notebook at managed services — Amazon MSK or Confluent Cloud, RDS, S3, a
# Flink cluster on Kubernetes — by setting `DELAB_STACK=external` and the `DELAB_*` endpoints (see
# `delab info`). The modules that follow build on each of these services.
