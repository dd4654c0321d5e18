# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 02.03 · Log-based change data capture with Debezium
#
# **You will:**
# - register a Debezium Postgres connector through Kafka Connect's REST API: an initial snapshot, then streaming;
# - read the change-event envelope — `before`, `after`, `op`, `source`, `ts_ms` — including deletes and tombstones;
# - read the write-ahead log yourself through a logical replication slot, and compare it with Debezium's events;
# - apply the change stream to a target table and prove that source and target are equal.
#
# *Needs:* Postgres, Kafka and Kafka Connect (started for you). Kernel: `delab`. About 30 minutes.

# %%
import time
import uuid

import pandas as pd

from delab import check, clients, datasets, stack
from delab.loading import cdc

stack.require("kafka", "connect", "postgres")
ns = stack.namespace("m02_l03")
print("removed from an earlier run:", cdc.cleanup(ns.prefix))  # connectors, slots, publications, topics
run_id = uuid.uuid4().hex[:6]  # each run gets fresh topic names: Kafka deletes topics asynchronously

customers = datasets.shop(seed=7, scale=0.25).customers.drop(columns="signup_at").head(200)
datasets.to_postgres({"customers": customers}, schema=ns.schema, primary_keys={"customers": ["customer_id"]})
pg = clients.postgres()
pg.execute(f"SELECT count(*) FROM {ns.schema}.customers").fetchone()

# %% [markdown]
# ## Query-based versus log-based capture
# An **incremental load by timestamp** asks the source `WHERE updated_at > :watermark` on a schedule. It needs
# that column (kept honest by every writer), it sees only the *latest* state of a row between two polls, and it
# never sees a **deleted** row — there is nothing left to select.
#
# **Log-based** capture reads the database's own write-ahead log (WAL), where every committed INSERT, UPDATE and
# DELETE already is, in commit order. PostgreSQL exposes it through **logical decoding**: a *replication slot*
# remembers how far a reader got (and keeps the WAL it has not read yet), and an *output plugin* turns WAL records
# into rows. `pgoutput` is the built-in plugin logical replication uses; a *publication* says which tables it
# sends.
#
# **Debezium** is a Kafka Connect source connector that reads a slot and writes one Kafka event per row change.
# On first start it takes a consistent **snapshot** of the tables (events with `op = r`) and then **streams** from
# the slot's position, so no change falls between the two.
#
# ### Exercise 1 — register a connector
# Write `connector_config` for Kafka Connect: Debezium's Postgres connector (`cdc.CONNECTOR_CLASS`) with the
# connection settings in `cdc.connection_settings()` and plain JSON converters (`cdc.json_converters()`), that
# - decodes with `pgoutput` (`plugin.name`);
# - names its topics after `connector_name` (`topic.prefix`) and captures only `m02_l03.customers`
#   (`table.include.list`);
# - uses its own replication slot (`slot.name`, named `connector_name`) and its own publication
#   `f"{connector_name}_pub"` (`publication.name`), which Debezium creates for the captured table only
#   (`publication.autocreate.mode`);
# - starts with a snapshot of the existing rows, then streams (`snapshot.mode`).
#
# The values to give these properties are in the Debezium PostgreSQL connector's documentation. The check
# registers the connector (`PUT /connectors/<name>/config`) and waits for the snapshot.

# %%
connector_name = ns.connector(f"customers_{run_id}")

### BEGIN SOLUTION
connector_config = {
    "connector.class": cdc.CONNECTOR_CLASS,
    **cdc.connection_settings(),
    **cdc.json_converters(),
    "plugin.name": "pgoutput",
    "topic.prefix": connector_name,
    "table.include.list": "m02_l03.customers",
    "slot.name": connector_name,
    "publication.name": f"{connector_name}_pub",
    "publication.autocreate.mode": "filtered",
    "snapshot.mode": "initial",
}
### END SOLUTION

# %%
check.m02.cdc_connector(connector_name, connector_config)

# %% [markdown]
# The connector runs inside the Connect worker; Connect's REST API shows its state, and Postgres shows the slot
# and the publication it created:

# %%
topic = cdc.change_topic(connector_config, "m02_l03.customers")
print(cdc.connector_status(connector_name)["tasks"])
print(
    pg.execute(
        "SELECT slot_name, plugin, active FROM pg_replication_slots WHERE slot_name = %s", [connector_name]
    ).fetchall()
)
print(
    pg.execute(
        "SELECT pubname, schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", [f"{connector_name}_pub"]
    ).fetchall()
)
snapshot = cdc.wait_for_snapshot(topic, len(customers))
snapshot[0].key, snapshot[0].value

# %% [markdown]
# ## The change-event envelope
# Each event's **key** is the row's primary key; its **value** is the envelope: `op` (`r` snapshot read,
# `c` create, `u` update, `d` delete), `before` and `after` (the row), `source` (connector, database, table,
# transaction id, the WAL position `lsn`, whether it came from the snapshot, when it was committed: `ts_ms`), and
# `ts_ms` at the top (when Debezium processed it). Now change a row three times:

# %%
pg.execute(f"INSERT INTO {ns.schema}.customers VALUES (9001, 'Grace Hopper', 'grace@example.org', 'US', 'consumer')")
pg.execute(f"UPDATE {ns.schema}.customers SET segment = 'business' WHERE customer_id = 9001")
pg.execute(f"DELETE FROM {ns.schema}.customers WHERE customer_id = 9001")
messages = cdc.wait_for(topic, lambda ms: any(m.key == {"customer_id": 9001} and m.value is None for m in ms))
pd.DataFrame(
    [
        {
            "offset": m.offset,
            "key": m.key,
            "op": m.op,
            "before": m.value and m.value["before"],
            "after": m.value and m.value["after"],
            "lsn": m.value and m.value["source"]["lsn"],
            "latency ms": m.value and m.value["ts_ms"] - m.value["source"]["ts_ms"],
        }
        for m in messages[-4:]
    ]
)

# %% [markdown]
# Four events for three statements:
# - the update has `before = null`: by default Postgres logs only the new row (and the key of a deleted row), so
#   Debezium cannot know the old values. `ALTER TABLE ... REPLICA IDENTITY FULL` makes it log the whole old row.
# - the delete carries the old row in `before` (only its key here) and `after = null`;
# - the last record has the key and **no value at all**: a **tombstone**. On a compacted topic Kafka keeps only
#   the latest record per key and finally drops keys whose latest record is a tombstone — so a deleted row
#   disappears from the topic too (`tombstones.on.delete=false` turns them off).
#
# `latency ms` is how long after the commit Debezium had the change. With `REPLICA IDENTITY FULL`, an update
# shows both sides:

# %%
pg.execute(f"ALTER TABLE {ns.schema}.customers REPLICA IDENTITY FULL")
pg.execute(f"UPDATE {ns.schema}.customers SET country = 'IE', segment = 'business' WHERE customer_id = 7")
update = cdc.wait_for(topic, lambda ms: any(m.op == "u" and m.key == {"customer_id": 7} for m in ms))[-1]
update.value["before"], update.value["after"]

# %% [markdown]
# ### Exercise 2 — read an event
# Write `describe_change(message)` returning `(kind, customer_id)` for any record of the topic (a `cdc.Message`
# with `.key` and `.value` decoded from JSON, `.value` being `None` for a tombstone). `kind` is one of
# `"snapshot"`, `"insert"`, `"update"`, `"delete"`, `"tombstone"`.


# %%
### BEGIN SOLUTION
def describe_change(message: cdc.Message) -> tuple[str, int]:
    """What a change record says happened, and to which customer."""
    if message.value is None:
        return "tombstone", message.key["customer_id"]
    kinds = {"r": "snapshot", "c": "insert", "u": "update", "d": "delete"}
    row = message.value["after"] if message.value["op"] != "d" else message.value["before"]
    return kinds[message.value["op"]], row["customer_id"]


### END SOLUTION


# %%
check.m02.cdc_describe_change(describe_change, topic)

# %%
pd.Series([describe_change(m)[0] for m in cdc.read_topic(topic)]).value_counts()

# %% [markdown]
# ## The WAL without Debezium
# Logical decoding is a plain Postgres feature. `test_decoding`, an output plugin shipped with Postgres as an
# example, prints each change as a line of text, which SQL can read: `pg_logical_slot_peek_changes` shows what a
# slot holds, `pg_logical_slot_get_changes` also consumes it (the slot moves on and Postgres may recycle that WAL).
# (Debezium's `pgoutput` speaks a binary protocol on a replication connection instead; the content is the same.)
# A **temporary** slot disappears with the session that created it, so this one cannot hold WAL forever.

# %%
wal_slot = f"{ns.prefix}_wal_{run_id}"
cdc.create_wal_slot(pg, wal_slot, "test_decoding")  # pg_create_logical_replication_slot(name, plugin, temporary)
with pg.transaction():  # one transaction: one BEGIN ... COMMIT in the log
    pg.execute(f"INSERT INTO {ns.schema}.customers VALUES (9002, 'Edsger O''Neil', NULL, 'NL', 'consumer')")
    pg.execute(f"UPDATE {ns.schema}.customers SET email = 'edsger@example.org' WHERE customer_id = 9002")
pg.execute(f"DELETE FROM {ns.schema}.customers WHERE customer_id = 9002")


def wal_lines(slot: str, table_prefix: str, wanted: int, timeout: float = 20.0) -> list[tuple[str, str, str]]:
    """(lsn, xid, text) of the slot's changes to our tables, with their transactions' BEGIN/COMMIT lines."""
    deadline = time.monotonic() + timeout
    while True:  # the WAL is flushed a moment after a commit (synchronous_commit is off in this stack)
        rows = pg.execute(
            "SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_changes(%s, NULL, NULL)", [slot]
        ).fetchall()
        ours = {xid for _, xid, data in rows if data.startswith(f"table {table_prefix}")}
        lines = [row for row in rows if row[1] in ours]
        if sum(data.startswith("table") for _, _, data in lines) >= wanted or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


wal = wal_lines(wal_slot, f"{ns.schema}.", wanted=3)
for lsn, xid, data in wal:
    print(lsn, xid, data)

# %% [markdown]
# One line per change, framed by the transaction's `BEGIN`/`COMMIT`, each value printed as an SQL literal with
# its type: `name[text]:'Edsger O''Neil'` (a quote inside a string is doubled), `email[text]:null`. Because the
# table now has `REPLICA IDENTITY FULL`, the update lists the old row after `old-key:` (leaving out its NULL
# columns) and the delete lists the whole old row.
#
# ### Exercise 3 — parse the WAL
# Write `parse_wal_line(line)`: for a `table ...` line return
# `{"table": "m02_l03.customers", "op": "INSERT" | "UPDATE" | "DELETE", "before": {...} | None, "after": {...} |
# None}` with each column's value as a Python string (unquoted, `''` turned back into `'`) or `None` for `null`.
# An INSERT fills `after`; a DELETE fills `before`; an UPDATE fills `after`, and `before` too when the line has an
# `old-key:` part (then the new row follows `new-tuple:`). Return `None` for `BEGIN` and `COMMIT` lines.


# %%
### BEGIN SOLUTION
import re


def parse_wal_line(line: str) -> dict | None:
    """A test_decoding line as a Debezium-like change: table, op, before, after."""
    if not line.startswith("table "):
        return None
    column = re.compile(r"(\w+)\[[^\]]+\]:('(?:[^']|'')*'|\S+)")  # name[type]:'quoted text' or name[type]:bare

    def columns(text: str) -> dict:
        values = {}
        for name, literal in column.findall(text):
            if literal == "null":
                values[name] = None
            elif literal.startswith("'"):
                values[name] = literal[1:-1].replace("''", "'")
            else:
                values[name] = literal
        return values

    table, op, rest = line[len("table ") :].split(": ", 2)
    before = after = None
    if op == "DELETE":
        before = columns(rest)
    elif rest.startswith("old-key: "):
        old, new = rest[len("old-key: ") :].split(" new-tuple: ", 1)
        before, after = columns(old), columns(new)
    else:
        after = columns(rest)
    return {"table": table, "op": op, "before": before, "after": after}


### END SOLUTION


# %%
check.m02.cdc_parse_wal(parse_wal_line, [data for _, _, data in wal])

# %% [markdown]
# Debezium saw the same three changes through its own slot. Side by side:

# %%
from_wal = [parse_wal_line(data) for _, _, data in wal]
from_debezium = cdc.wait_for(topic, lambda ms: any(m.key == {"customer_id": 9002} and m.value is None for m in ms))
pd.DataFrame(
    {
        "WAL (test_decoding)": [(c["op"], (c["after"] or c["before"])["customer_id"]) for c in from_wal if c],
        "Debezium": [describe_change(m) for m in from_debezium if m.key == {"customer_id": 9002} and m.value][:3],
    }
)

# %% [markdown]
# The WAL gives you the raw facts — every transaction, in commit order — but reading it yourself means tracking
# your position, decoding types, snapshotting existing rows consistently and restarting safely after a crash.
# Debezium does all of that, stores its position as Kafka Connect offsets, and hands the rest of the world a
# Kafka topic. We are done with the test_decoding slot: consume it away and drop it.

# %%
pg.execute("SELECT pg_drop_replication_slot(%s)", [wal_slot])
print(
    "test_decoding slots left:",
    pg.execute(
        "SELECT count(*) FROM pg_replication_slots WHERE plugin = 'test_decoding' AND slot_name = %s", [wal_slot]
    ).fetchone()[0],
)

# %% [markdown]
# ## Real-time sync: apply the stream to a target
# A replica of `customers` is kept in step by a consumer that applies each event. It must cope with every kind of
# record, keep the order of each key's changes (one partition here, so offset order), and survive seeing an event
# twice: Kafka consumers resume from their last *committed* offset, so after a crash some events come again.
# That makes the apply an **upsert by key** (and a delete by key) — applying an event twice leaves the same row.
#
# ### Exercise 4 — apply a change
# Write `apply_change(conn, message)` that applies one record of the topic to `m02_l03.customers_replica` (same
# columns as the source): snapshot reads, inserts and updates leave the row equal to `after`; a delete removes
# the row; a tombstone changes nothing. Applying the same record twice must be harmless.

# %%
pg.execute(f"CREATE TABLE IF NOT EXISTS {ns.schema}.customers_replica (LIKE {ns.schema}.customers INCLUDING ALL)")
pg.execute(f"TRUNCATE {ns.schema}.customers_replica")


### BEGIN SOLUTION
def apply_change(conn, message: cdc.Message) -> None:
    """Apply one Debezium record to the replica: upsert by key, delete by key, ignore tombstones."""
    if message.value is None:
        return
    if message.value["op"] == "d":
        conn.execute("DELETE FROM m02_l03.customers_replica WHERE customer_id = %s", [message.key["customer_id"]])
        return
    row = message.value["after"]
    columns = list(row)
    conn.execute(
        f"INSERT INTO m02_l03.customers_replica ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT (customer_id) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "customer_id"),
        [row[c] for c in columns],
    )


### END SOLUTION


# %%
check.m02.cdc_apply_change(apply_change, topic)

# %% [markdown]
# The check replayed the whole topic into the replica, changed the source again while the connector ran, applied
# the new events, then replayed everything once more. The proof that source and target are equal is a symmetric
# difference — rows in one and not in the other — which must be empty:

# %%
source, replica = f"{ns.schema}.customers", f"{ns.schema}.customers_replica"
difference = f"""
(SELECT 'only in source' AS side, * FROM {source} EXCEPT SELECT 'only in source', * FROM {replica})
UNION ALL
(SELECT 'only in replica', * FROM {replica} EXCEPT SELECT 'only in replica', * FROM {source})
"""
source_rows = pg.execute(f"SELECT count(*) FROM {ns.schema}.customers").fetchone()[0]
print(f"{source_rows} rows in the source; rows that differ: {pg.execute(difference).fetchall()}")

# %% [markdown]
# ## Clean up
# A connector you no longer need should go, and so should its slot: an abandoned slot keeps every WAL segment
# from its position on, until the disk fills. `cdc.remove` deletes the connector, waits until the slot is no longer
# active and drops it, then drops the publication. (The topics stay; the next run's first cell removes them.)

# %%
cdc.remove(connector_name)
pg.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'm02\\_l03%%'").fetchone()

# %%
pg.close()

# %% [markdown]
# ## Recap
# - Log-based CDC reads the committed changes from the WAL through a replication slot: every insert, update and
#   delete, in commit order, with no `updated_at` column and no polling query on the source.
# - Debezium snapshots the table first, then streams; each event carries `before`, `after`, `op`, `source` (with
#   the LSN) and `ts_ms`; a delete is followed by a tombstone for compacted topics.
# - `REPLICA IDENTITY FULL` puts the old row in updates and deletes.
# - A replica stays equal to its source when every event is applied as an idempotent upsert or delete by key.
# - Every slot must be dropped when its reader goes, or it holds WAL.
#
# **Going further**
# - **Debezium Server** runs the same connector without Kafka Connect and sends events to Kinesis, Pub/Sub,
#   Redis, HTTP or Kafka; **Debezium's embedded engine** runs it inside a Java application.
# - Managed Kafka Connect — Amazon MSK Connect, Confluent Cloud's managed Debezium connector — takes the same
#   JSON config; on RDS or Aurora set `rds.logical_replication = 1` and grant `rds_replication`. Point these
#   notebooks at such clusters with `DELAB_STACK=external` and the `DELAB_*` endpoints (`delab info`).
# - Other sinks of the same stream: a JDBC sink connector upserting into a warehouse, Flink CDC, or Iceberg's
#   Kafka Connect sink (module 04).
