# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 02.05 · Error handling: retries, dead letters, validation, alerts — and a crash
#
# **You will:**
# - retry transient failures with exponential backoff (tenacity), and never retry permanent ones;
# - route rows that break validation rules, and poison records, to a dead-letter topic with the reason attached;
# - send an alert to a webhook when the error rate or the consumer lag crosses a threshold;
# - kill Kafka Connect in the middle of a CDC stream, write while it is down, bring it back, and prove that
#   nothing was lost and that the duplicates did no harm.
#
# *Needs:* Postgres, Kafka and Kafka Connect (started for you). Kernel: `delab`. About 35 minutes.

# %%
import json
import time
import uuid

import pandas as pd
import psycopg
import tenacity

from delab import check, clients, datasets, stack
from delab.loading import cdc, errors, sync
from delab.localhttp import Receiver

stack.require("kafka", "connect", "postgres")
ns = stack.namespace("m02_l05")
print("removed from an earlier run:", cdc.cleanup(ns.prefix))
run_id = uuid.uuid4().hex[:6]

pg = clients.postgres()
pg.execute(f"DROP SCHEMA IF EXISTS {ns.schema} CASCADE")
pg.execute(f"CREATE SCHEMA {ns.schema}")
pg.execute(
    f"""CREATE TABLE {ns.schema}.orders_clean (order_id bigint PRIMARY KEY, customer_id bigint NOT NULL,
        order_ts timestamp NOT NULL, channel text NOT NULL, total numeric(12, 2) NOT NULL,
        status text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'paid', 'shipped', 'cancelled')))"""
)
print(f"schema {ns.schema} ready; run {run_id}")

# %% [markdown]
# ## Transient failures: retry, with backoff
# Some failures go away on their own: a lock held by another transaction, a broker leader election, a network
# blip, a rate limit. Retrying them is right. Others never will: a constraint violation, bad credentials, a
# malformed record. Retrying those only delays the inevitable and hammers the system. A good retry policy says
# **what** to retry, **how long to wait** between attempts (exponential backoff with jitter, so that many
# clients do not retry in lockstep) and **when to give up**.
#
# Below, another session holds a lock on an order for a second. Our writer refuses to wait more than 100 ms for a
# lock (`lock_timeout`), so it fails — transiently:

# %%
pg.execute(f"INSERT INTO {ns.schema}.orders_clean VALUES (1, 17, '2026-03-01 14:14', 'web', 385.68)")


def set_status(conn, order_id: int, status: str) -> None:
    """One attempt: update an order's status, waiting at most 100 ms for a row lock."""
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '100ms'")
        conn.execute(f"UPDATE {ns.schema}.orders_clean SET status = %s WHERE order_id = %s", [status, order_id])


with errors.row_locked(f"{ns.schema}.orders_clean", "order_id = 1", seconds=1.0):
    try:
        set_status(pg, 1, "paid")
    except psycopg.errors.LockNotAvailable as error:
        print(f"{type(error).__name__}: {error}")

# %% [markdown]
# ### Exercise 1 — retry what is transient, and only that
# Write `retry_policy`, a `tenacity.retry(...)` decorator that
# - retries only `psycopg.errors.LockNotAvailable` (a CHECK violation, say, must fail at once);
# - waits between attempts with exponential backoff (start around 50 ms, cap it at 0.5 s; add a little jitter);
# - gives up after 2 seconds, re-raising the last error (not tenacity's `RetryError`).
#
# The check applies it to `set_status` and runs the result against locks held for less and for longer than that.

# %%
### BEGIN SOLUTION
retry_policy = tenacity.retry(
    retry=tenacity.retry_if_exception_type(psycopg.errors.LockNotAvailable),
    wait=tenacity.wait_exponential(multiplier=0.05, max=0.5) + tenacity.wait_random(0, 0.05),
    stop=tenacity.stop_after_delay(2),
    reraise=True,
)
### END SOLUTION

# %%
check.m02.errors_retry(retry_policy, set_status)

# %%
set_status_with_retry = retry_policy(set_status)
with errors.row_locked(f"{ns.schema}.orders_clean", "order_id = 1", seconds=1.0):
    set_status_with_retry(pg, 1, "shipped")
status = pg.execute(f"SELECT status FROM {ns.schema}.orders_clean WHERE order_id = 1").fetchone()[0]
print(status, set_status_with_retry.statistics)

# %% [markdown]
# ## Validation rules and a dead-letter topic
# A pipeline reads order events from a topic and loads them into `orders_clean`. Some records are wrong: an
# unknown customer, a timestamp after the extract was taken, a negative quantity. A few are **poison**: not even
# JSON. Stopping the pipeline for them would block every good record behind them (the *poison pill* problem);
# dropping them silently loses data. Instead they go to a **dead-letter topic** (DLQ), unchanged, with the
# reason in **headers** (`error.reason`, and where they came from), for someone to inspect, fix and replay.
#
# Duplicates are different: an order delivered twice is not an error — an idempotent load absorbs it.

# %%
events = errors.order_events()
known_customers, as_of = events.known_customers, errors.AS_OF
raw_topic, dlq_topic = ns.topic(f"orders_raw.{run_id}"), ns.topic(f"orders_dlq.{run_id}")
errors.produce(raw_topic, events.records)
print(len(events.records), "records, e.g.", events.records[0][1][:120])

# %% [markdown]
# ### Exercise 2 — validation rules
# Write `validate(order)` returning the list of rules a parsed order (a dict) breaks — an empty list if it is
# valid. The rules:
# - it has `order_id`, `customer_id`, `order_ts`, `channel` and `lines`;
# - `customer_id` is one of `known_customers`;
# - `order_ts` is not later than `as_of` (ISO strings; compare them as timestamps);
# - `channel` is one of `errors.CHANNELS`;
# - it has at least one line, and every line has a positive `quantity` and a non-negative `unit_price`.


# %%
### BEGIN SOLUTION
REQUIRED = ("order_id", "customer_id", "order_ts", "channel", "lines")


def validate(order: dict) -> list[str]:
    """The rules an order breaks (empty if none)."""
    missing = [field for field in REQUIRED if order.get(field) is None]
    if missing:
        return [f"missing {', '.join(missing)}"]
    problems = []
    if order["customer_id"] not in known_customers:
        problems.append(f"unknown customer {order['customer_id']}")
    if pd.Timestamp(order["order_ts"]) > pd.Timestamp(as_of):
        problems.append(f"order_ts {order['order_ts']} is in the future")
    if order["channel"] not in errors.CHANNELS:
        problems.append(f"unknown channel {order['channel']!r}")
    if not order["lines"]:
        problems.append("no lines")
    if any(line["quantity"] <= 0 or line["unit_price"] < 0 for line in order["lines"]):
        problems.append("a line with a non-positive quantity or a negative price")
    return problems


### END SOLUTION

# %%
check.m02.errors_validate(validate, events)

# %% [markdown]
# ### Exercise 3 — route to the table or the dead-letter topic
# Write `route(message, conn, producer, dlq_topic)` for one raw record (`message.key` and `message.value` are
# **bytes**; `message.topic`, `.partition`, `.offset` say where it came from). If the value is a JSON object that
# passes `validate`, upsert it into `m02_l05.orders_clean` (columns `order_id, customer_id, order_ts, channel,
# total` with `total` = Σ quantity × unit_price rounded to cents; a redelivered order must change nothing) and
# return `"clean"`. Otherwise send the **original bytes** (key and value) to `dlq_topic` with the headers
# `error.reason` (what is wrong) and `error.source` (`"<topic>/<partition>/<offset>"`), and return `"dead"`.
# (`producer` is a kafka-python producer: `send(topic, key=..., value=..., headers=[(name, bytes), ...])`.)


# %%
### BEGIN SOLUTION
def route(message, conn, producer, dlq_topic: str) -> str:
    """Load a valid order idempotently, or dead-letter the record with the reason in its headers."""
    try:
        order = json.loads(message.value)
        problems = validate(order) if isinstance(order, dict) else ["not a JSON object"]
    except (ValueError, UnicodeDecodeError) as error:
        problems = [f"not JSON: {error}"]
    if problems:
        headers = [
            ("error.reason", "; ".join(problems).encode()),
            ("error.source", f"{message.topic}/{message.partition}/{message.offset}".encode()),
        ]
        producer.send(dlq_topic, key=message.key, value=message.value, headers=headers)
        return "dead"
    total = round(sum(line["quantity"] * line["unit_price"] for line in order["lines"]), 2)
    conn.execute(
        "INSERT INTO m02_l05.orders_clean (order_id, customer_id, order_ts, channel, total) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING",
        [order["order_id"], order["customer_id"], order["order_ts"], order["channel"], total],
    )
    return "clean"


### END SOLUTION

# %%
check.m02.errors_route(route, raw_topic)

# %% [markdown]
# Now the pipeline for real, as a consumer group. Afterwards the DLQ tells you exactly what went wrong, and where
# each record came from:

# %%
pg.execute(f"DELETE FROM {ns.schema}.orders_clean")
producer = clients.kafka_producer(acks="all")
group = ns.group(f"loader_{run_id}")
outcomes: list[str] = []
sync.deliver(raw_topic, group, lambda m: outcomes.append(route(m, pg, producer, dlq_topic)), decode=False)
producer.flush()
dead_letters = cdc.read_topic(dlq_topic, decode=False)
print(pd.Series(outcomes).value_counts().to_dict())
pd.DataFrame(
    [
        {"source": m.headers["error.source"].decode(), "reason": m.headers["error.reason"].decode()[:70]}
        for m in dead_letters
    ]
).head(8)

# %% [markdown]
# ## Alerts: error rate and lag
# A DLQ nobody watches is a slow data loss. Two signals deserve an alert: the **error rate** (dead letters per
# record processed — a spike means an upstream change broke the producer) and the **consumer lag** (records
# written but not yet processed — the pipeline is falling behind or has stopped). `Receiver` is a local HTTP
# endpoint standing in for Slack, PagerDuty or an e-mail gateway.
#
# ### Exercise 4 — alert when a threshold is crossed
# Write `alert_if_unhealthy(metrics, url)` for `metrics = {"processed": int, "failed": int, "lag": int}`: if more
# than 5 % of the processed records failed, or the lag is above 100 records, POST one JSON message to `url` with a
# `"reason"` and the metrics, and return `True`; otherwise send nothing and return `False`. No records processed
# means no error rate (not a division by zero). The `requests` package is installed:
# `requests.post(url, json=message, timeout=5)`.


# %%
### BEGIN SOLUTION
import requests

ERROR_RATE_LIMIT, LAG_LIMIT = 0.05, 100


def alert_if_unhealthy(metrics: dict, url: str) -> bool:
    """POST an alert when the error rate or the lag is over its threshold; say whether one was sent."""
    reasons = []
    rate = metrics["failed"] / metrics["processed"] if metrics["processed"] else 0.0
    if rate > ERROR_RATE_LIMIT:
        reasons.append(f"error rate {rate:.1%} > {ERROR_RATE_LIMIT:.0%}")
    if metrics["lag"] > LAG_LIMIT:
        reasons.append(f"lag {metrics['lag']} > {LAG_LIMIT}")
    if reasons:
        requests.post(url, json={"reason": "; ".join(reasons), **metrics, "error_rate": round(rate, 4)}, timeout=5)
    return bool(reasons)


### END SOLUTION

# %%
check.m02.errors_alert(alert_if_unhealthy)

# %% [markdown]
# With real numbers: the run above, then 150 more orders arriving while the loader is not consuming — its lag is
# read from Kafka (end offsets minus the group's committed offsets):

# %%
with Receiver() as hook:
    metrics = {
        "processed": len(outcomes),
        "failed": outcomes.count("dead"),
        "lag": errors.consumer_lag(group, raw_topic),
    }
    print(metrics, "alert:", alert_if_unhealthy(metrics, hook.url))
    errors.produce(raw_topic, events.records[:150])
    metrics["lag"] = errors.consumer_lag(group, raw_topic)
    print(metrics, "alert:", alert_if_unhealthy(metrics, hook.url))
    print(hook.wait_for(1))

# %% [markdown]
# ## Fault injection: Kafka Connect killed mid-stream
# Now a CDC stream: Debezium captures `payments`, and a consumer keeps `payments_copy` equal to it with an
# idempotent upsert (lab 03). We write, then **kill the Connect worker** (SIGKILL: no clean shutdown, no final
# offset commit), write more while it is down, and bring it back.
#
# What should happen: Connect stores the connector's position (the last LSN it *committed*, flushed every second
# here) in Kafka; the replication slot keeps every change after the position Debezium *confirmed*. On restart the
# connector resumes from its stored offset, so nothing written while it was down is lost — but changes it had
# already sent after its last offset flush are sent **again**. Debezium delivers **at least once**.
#
# `stack.disrupt("connect")` waits until no other notebook is using Connect, lets us kill it, and starts it again
# when the block ends.

# %%
payments = datasets.shop(seed=7, scale=0.25).payments.head(700)
pg.execute(
    f"""CREATE TABLE {ns.schema}.payments (payment_id bigint PRIMARY KEY, order_id bigint NOT NULL,
        amount numeric(12, 2) NOT NULL, status text NOT NULL)"""
)
pg.execute(f"CREATE TABLE {ns.schema}.payments_copy (LIKE {ns.schema}.payments INCLUDING ALL)")


def write_payments(rows: pd.DataFrame) -> None:
    with pg.cursor().copy(f"COPY {ns.schema}.payments (payment_id, order_id, amount, status) FROM STDIN") as copy:
        for row in rows[["payment_id", "order_id", "amount", "status"]].itertuples(index=False):
            copy.write_row(row)


def apply_payment(message: cdc.Message) -> None:
    """The downstream copy: upsert or delete by key, so a repeated event changes nothing."""
    if message.value is None:
        return
    if message.value["op"] == "d":
        pg.execute(f"DELETE FROM {ns.schema}.payments_copy WHERE payment_id = %s", [message.key["payment_id"]])
        return
    row = message.value["after"]
    pg.execute(
        f"""INSERT INTO {ns.schema}.payments_copy VALUES (%(payment_id)s, %(order_id)s, %(amount)s, %(status)s)
            ON CONFLICT (payment_id) DO UPDATE SET order_id = EXCLUDED.order_id, amount = EXCLUDED.amount,
            status = EXCLUDED.status""",
        row,
    )


write_payments(payments.iloc[:300])
connector = ns.connector(f"payments_{run_id}")
connector_config = cdc.postgres_connector(connector, [f"{ns.schema}.payments"], **{"decimal.handling.mode": "string"})
cdc.register(connector, connector_config)
payments_topic = cdc.change_topic(connector_config, f"{ns.schema}.payments")
cdc.wait_for_snapshot(payments_topic, 300)
copy_group = ns.group(f"payments_copy_{run_id}")
print("applied", sync.deliver(payments_topic, copy_group, apply_payment))

# %%
started = time.monotonic()
write_payments(payments.iloc[300:500])
pg.execute(f"UPDATE {ns.schema}.payments SET status = 'refunded' WHERE payment_id % 7 = 0")
last_id = int(payments.payment_id.iloc[499])
cdc.wait_for(payments_topic, lambda ms: any(m.key == {"payment_id": last_id} for m in ms))
cdc.wait_offsets_committed(connector)  # a crash before Connect's first offset flush would mean a new snapshot
with stack.disrupt("connect"):
    killed_at = time.monotonic()
    pid = stack.kill("connect")  # the moment its events are out: the last second's offsets are not flushed yet
    print(f"killed Connect (pid {pid}); writing while it is down")
    write_payments(payments.iloc[500:700])
    pg.execute(f"UPDATE {ns.schema}.payments SET amount = amount + 1 WHERE payment_id % 11 = 0")
    pg.execute(f"DELETE FROM {ns.schema}.payments WHERE payment_id % 13 = 0")
    first_id = int(payments.payment_id.iloc[0])
    pg.execute(f"UPDATE {ns.schema}.payments SET status = 'last-write' WHERE payment_id = %s", [first_id])
back_at = time.monotonic()  # disrupt() started Connect again and waited until its REST API answered
errors.wait_running(connector)
running_at = time.monotonic()
# The change made while Connect was down arrives as an update ("u") when the connector resumes its stream, or as
# a snapshot read ("r") when the restarted task takes a new snapshot (seen here after a kill): at-least-once both ways.
cdc.wait_for(
    payments_topic,
    lambda ms: any(m.op in ("u", "r") and m.value["after"]["status"] == "last-write" for m in ms),
    timeout=90,
)
caught_up_at = time.monotonic()
print("applied", sync.deliver(payments_topic, copy_group, apply_payment))
pd.Series(
    {
        "Connect down, then restarted (s)": back_at - killed_at,
        "connector task running again (s)": running_at - back_at,
        "changes made while down on the topic (s)": caught_up_at - running_at,
    }
).round(1)

# %% [markdown]
# ### Exercise 5 — audit the delivery
# Write `audit_delivery(messages, source_ids)` over every record of the topic (`cdc.Message`s) and the set of
# `payment_id`s the source table *ever* had (`source_ids`). Return `{"missing": ..., "duplicates": ...}`:
# `missing` is the set of source ids with no change event at all; `duplicates` is how many change records
# (tombstones aside) repeat one already seen — the same change is the same **(source LSN, key, op)**: an update
# of the same row later is a new change, not a duplicate.


# %%
### BEGIN SOLUTION
def audit_delivery(messages: list[cdc.Message], source_ids: set[int]) -> dict:
    """Source rows with no event, and change records delivered more than once."""
    seen: set[tuple] = set()
    duplicates = 0
    captured: set[int] = set()
    for message in messages:
        if message.value is None:
            continue
        change = (message.value["source"]["lsn"], message.key["payment_id"], message.value["op"])
        duplicates += change in seen
        seen.add(change)
        captured.add(message.key["payment_id"])
    return {"missing": set(source_ids) - captured, "duplicates": duplicates}


### END SOLUTION

# %%
ever_written = set(payments.payment_id.astype(int))
check.m02.errors_audit(audit_delivery, payments_topic, ever_written)

# %% [markdown]
# The proof, in two parts:
# - **no loss** — every payment ever written has change events, and the copy equals the source (symmetric
#   difference empty), including the rows written, updated and deleted while Connect was dead;
# - **duplicates removed by an idempotent apply** — the topic may hold the same change twice (counted by
#   distinct (LSN, key, op)); applying them again was harmless because the copy upserts by key.

# %%
report = audit_delivery(cdc.read_topic(payments_topic), ever_written)
source, target = f"{ns.schema}.payments", f"{ns.schema}.payments_copy"
differ = pg.execute(
    f"SELECT count(*) FROM ((TABLE {source} EXCEPT TABLE {target}) UNION ALL (TABLE {target} EXCEPT TABLE {source})) d"
).fetchone()[0]
print(
    f"missing: {sorted(report['missing'])}; duplicate change records: {report['duplicates']}; "
    f"rows differing between source and copy: {differ}"
)

# %%
cdc.remove(connector)
producer.close()
pg.close()

# %% [markdown]
# ## Recap
# - Retry transient failures (locks, timeouts, leader elections) with exponential backoff, jitter and a limit;
#   fail fast on permanent ones.
# - Validate at the boundary; route what fails — and poison records — to a dead-letter topic with the original
#   bytes and the reason in headers, so the pipeline keeps flowing and nothing is lost silently.
# - Alert on rates and lag, not on single errors.
# - A crashed Connect worker loses nothing (the slot and the stored offsets carry the position) but re-sends
#   what it had not committed: at-least-once. An idempotent apply makes those duplicates harmless; counting
#   distinct (LSN, key, op) shows how many there were.
#
# **Going further**
# - Kafka Connect's own error handling for sink connectors: `errors.tolerance=all`,
#   `errors.deadletterqueue.topic.name` and `errors.deadletterqueue.context.headers.enable=true` add the
#   exception to the headers, as you did by hand. Source connectors log and skip (`errors.log.enable`).
# - Debezium Server and managed Connect (MSK Connect, Confluent Cloud) restart failed tasks for you; alert on
#   the connector's status and on the replication slot's retained WAL
#   (`pg_current_wal_lsn() - confirmed_flush_lsn` in `pg_replication_slots`). With `DELAB_STACK=external`
#   these notebooks run against such clusters (`delab info`) — but fault injection needs the native profile.
# - Exactly-once source connectors (KIP-618, `exactly.once.support=required` on the worker) remove the
#   duplicates for connectors that support it.
