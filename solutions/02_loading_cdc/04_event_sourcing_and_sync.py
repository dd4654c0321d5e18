# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 02.04 · Event sourcing and synchronization
#
# **You will:**
# - publish an append-only ledger through Debezium (the *outbox* pattern) and rebuild state from the event log;
# - watch last-writer-wins lose an update, and prevent it with version checks;
# - make a consumer safe under at-least-once delivery: redeliver events on purpose and show the state unchanged;
# - write a reconciliation job that finds and repairs drift between a source and its copy.
#
# *Needs:* Postgres, Kafka and Kafka Connect (started for you). Kernel: `delab`. About 35 minutes.

# %%
import uuid

import pandas as pd

from delab import check, clients, datasets, stack
from delab.loading import cdc, sync

stack.require("kafka", "connect", "postgres")
ns = stack.namespace("m02_l04")
print("removed from an earlier run:", cdc.cleanup(ns.prefix))
run_id = uuid.uuid4().hex[:6]

products = datasets.shop(seed=7, scale=0.25).products
movements = sync.stock_movements(products)
pg = clients.postgres()
pg.execute(f"DROP SCHEMA IF EXISTS {ns.schema} CASCADE")
pg.execute(f"CREATE SCHEMA {ns.schema}")
pg.execute(
    f"""CREATE TABLE {ns.schema}.movements (movement_id bigserial PRIMARY KEY, product_id int NOT NULL,
        kind text NOT NULL CHECK (kind IN ('received', 'sold', 'returned', 'counted')), quantity int NOT NULL)"""
)
with pg.cursor().copy(f"COPY {ns.schema}.movements (product_id, kind, quantity) FROM STDIN") as copy:
    for row in movements[["product_id", "kind", "quantity"]].itertuples(index=False):
        copy.write_row(row)
movements.kind.value_counts()

# %% [markdown]
# ## Event sourcing: state is a fold over events
# In an **event-sourced** design the source of truth is an append-only log of facts — *received 20*, *sold 3*,
# *counted 41* — and the current state (stock per product) is derived by replaying it. You get the full history
# for free, you can rebuild any past state, and a new read model is just another replay.
#
# Here the application writes the facts to a ledger table, and Debezium publishes every new row to Kafka. This is
# the **transactional outbox**: the fact and the business change commit in one database transaction, and CDC
# turns it into an event, so the database and the log never disagree (writing to the database *and* to Kafka from
# the application cannot be atomic). The connector comes from `cdc.postgres_connector`, the helper behind
# lab 03's configuration (own slot, own filtered publication, JSON):

# %%
connector = ns.connector(f"movements_{run_id}")
connector_config = cdc.postgres_connector(connector, [f"{ns.schema}.movements"])
cdc.register(connector, connector_config)
ledger_topic = cdc.change_topic(connector_config, f"{ns.schema}.movements")
events = cdc.wait_for_snapshot(ledger_topic, len(movements))
print(len(events), "events; the first:", events[0].value["after"])

# %% [markdown]
# ### Exercise 1 — rebuild the stock from the log
# Write `rebuild_stock(messages)` returning `{product_id: quantity on hand}` from the ledger's change events
# (each a `cdc.Message`; the movement is `message.value["after"]`). Received and returned add, sold rows carry a
# negative quantity, and a stock-take (`counted`) **sets** the level to what was counted.


# %%
### BEGIN SOLUTION
def rebuild_stock(messages: list[cdc.Message]) -> dict[int, int]:
    """Replay the ledger in log order: deltas add up, a stock-take resets the level."""
    stock: dict[int, int] = {}
    for message in messages:
        if message.value is None or message.value["op"] not in ("r", "c"):
            continue
        movement = message.value["after"]
        product = movement["product_id"]
        if movement["kind"] == "counted":
            stock[product] = movement["quantity"]
        else:
            stock[product] = stock.get(product, 0) + movement["quantity"]
    return stock


### END SOLUTION

# %%
check.m02.sync_rebuild_stock(rebuild_stock, ledger_topic)

# %% [markdown]
# Because the log keeps everything, any **past** state is one replay away — stock as it was after the first 200
# movements, and now. New facts simply extend the log:

# %%
pg.execute(
    f"INSERT INTO {ns.schema}.movements (product_id, kind, quantity) VALUES (101, 'received', 50), (101, 'sold', -2)"
)
events = cdc.wait_for(ledger_topic, lambda ms: len(ms) >= len(movements) + 2)
pd.DataFrame({"after 200 events": rebuild_stock(events[:200]), "now": rebuild_stock(events)}, dtype="Int64").loc[
    [101, 102, 103]
]

# %% [markdown]
# ## Conflicts: two writers, one row
# Two systems edit the product catalogue — the shop's back office and the headquarters' pricing tool — and a sync
# copies changes between them. Both read product 101 at the same moment, each changes the price, and each writes
# the whole row back. With **last-writer-wins** (LWW) the later write silently replaces the earlier one:

# %%
pg.execute(
    f"""CREATE TABLE {ns.schema}.products (product_id int PRIMARY KEY, name text NOT NULL, category text,
        list_price numeric(10, 2) NOT NULL, version int NOT NULL DEFAULT 1)"""
)
with pg.cursor().copy(f"COPY {ns.schema}.products (product_id, name, category, list_price) FROM STDIN") as copy:
    for row in products.itertuples(index=False):
        copy.write_row((row.product_id, row.name, row.category, round(row.list_price, 2)))

read_sql = f"SELECT name, list_price, version FROM {ns.schema}.products WHERE product_id = 101"
back_office_read = pg.execute(read_sql).fetchone()
pricing_read = pg.execute(read_sql).fetchone()
# the back office renames the product; then the pricing tool, from its older read, raises the price
save_row = f"UPDATE {ns.schema}.products SET name = %s, list_price = %s WHERE product_id = 101"
pg.execute(save_row, ["Book #1 (2nd edition)", back_office_read[1]])
pg.execute(save_row, [pricing_read[0], 39.99])
print("read by both:", back_office_read, " now:", pg.execute(read_sql).fetchone())

# %% [markdown]
# The new name is gone — a **lost update**: the pricing tool wrote back a name it had read before the rename. LWW
# (by arrival order or by a timestamp column) is simple and converges, but it throws away one side's change
# without telling anyone. Clocks make it worse: with timestamps from two machines, "last" may not be last.
#
# The fix is **optimistic concurrency**: every row carries a `version`; a write says which version it was based on
# and succeeds only if the row is still at that version, bumping it. A stale write affects no row, and the writer
# knows it must re-read, merge and try again (or record a conflict for a human).
#
# ### Exercise 2 — a save that cannot lose updates
# Write `save_product(conn, product_id, changes, read_version)` that sets the columns in `changes` (a dict such as
# `{"list_price": 39.99}`) on `m02_l04.products` only if the row is still at `read_version`, increments `version`
# when it does, and returns `True` if the change was saved, `False` if it was stale.


# %%
### BEGIN SOLUTION
def save_product(conn, product_id: int, changes: dict, read_version: int) -> bool:
    """Write `changes` only if nobody saved the row since we read it (version check); bump the version."""
    assignments = ", ".join(f"{column} = %s" for column in changes)
    cursor = conn.execute(
        f"UPDATE m02_l04.products SET {assignments}, version = version + 1 WHERE product_id = %s AND version = %s",
        [*changes.values(), product_id, read_version],
    )
    return cursor.rowcount == 1


### END SOLUTION

# %%
check.m02.sync_save_product(save_product)

# %% [markdown]
# The check replayed the race: the second writer got `False`, re-read, and saved on top of the first writer's
# change. Other strategies, for other data: **merge by field** (each side owns some columns), **CRDTs** (counters
# and sets whose concurrent updates commute), or **a log as the single writer** — which is what event sourcing
# does: the ledger never updates a row, so two writers cannot overwrite each other.
#
# ## Consistency: at-least-once delivery, idempotent apply
# A consumer that commits its offsets *after* processing never loses an event, but if it dies between the two,
# it processes the same events again on restart: **at-least-once**. (Committing *before* processing is
# at-most-once: a crash loses events.) Exactly-once needs the effect and the offset to commit together — or an
# effect that is harmless to repeat. Here a **read model**, `stock_levels`, is kept from the ledger topic by a
# consumer group. Let us crash it on purpose with a naive apply that just adds:

# %%
pg.execute(f"CREATE TABLE {ns.schema}.stock_levels (product_id int PRIMARY KEY, quantity int NOT NULL)")
pg.execute(f"CREATE TABLE {ns.schema}.applied_movements (movement_id bigint PRIMARY KEY)")


def naive_apply(message: cdc.Message) -> None:
    movement = message.value["after"]
    pg.execute(
        f"""INSERT INTO {ns.schema}.stock_levels VALUES (%(product_id)s, %(quantity)s)
            ON CONFLICT (product_id) DO UPDATE SET quantity = CASE WHEN %(kind)s = 'counted' THEN EXCLUDED.quantity
                                ELSE {ns.schema}.stock_levels.quantity + EXCLUDED.quantity END""",
        movement,
    )


group = ns.group(f"stock_levels_{run_id}")
first = sync.deliver(ledger_topic, group, naive_apply, crash_after=600)  # dies before committing its offsets
second = sync.deliver(ledger_topic, group, naive_apply)  # restarts from the last committed offset: the beginning
want = sync.stock_from_ledger(pg, f"{ns.schema}.movements")
got = dict(pg.execute(f"SELECT product_id, quantity FROM {ns.schema}.stock_levels").fetchall())
wrong = sorted(p for p in want if got.get(p) != want[p])
print(
    f"handled {first} + {second} records for {len(events)} events; {len(wrong)} products wrong, e.g. "
    f"{[(p, got.get(p), want[p]) for p in wrong[:3]]} (got, want)"
)

# %% [markdown]
# Every product with movements redelivered after its last stock-take counted them twice. Products whose
# stock-take came later in the log were reset by it: right by luck, not by design.
#
# ### Exercise 3 — an idempotent apply
# Write `apply_movement(conn, message)` that applies one ledger event to `m02_l04.stock_levels` **exactly once in
# effect**: remember each applied `movement_id` in `m02_l04.applied_movements`, and in the **same transaction**
# change the stock only if the movement was not applied before. Tombstones and non-insert events change nothing.


# %%
### BEGIN SOLUTION
def apply_movement(conn, message: cdc.Message) -> None:
    """Apply a movement once: its id is recorded in the same transaction as its effect."""
    if message.value is None or message.value["op"] not in ("r", "c"):
        return
    movement = message.value["after"]
    with conn.transaction():
        first_time = conn.execute(
            "INSERT INTO m02_l04.applied_movements VALUES (%s) ON CONFLICT DO NOTHING", [movement["movement_id"]]
        ).rowcount
        if not first_time:
            return
        conn.execute(
            """INSERT INTO m02_l04.stock_levels VALUES (%(product_id)s, %(quantity)s)
               ON CONFLICT (product_id) DO UPDATE SET quantity = CASE WHEN %(kind)s = 'counted'
                   THEN EXCLUDED.quantity ELSE m02_l04.stock_levels.quantity + EXCLUDED.quantity END""",
            movement,
        )


### END SOLUTION

# %%
check.m02.sync_idempotent_apply(apply_movement, ledger_topic)

# %% [markdown]
# The same crash, with the idempotent apply: the read model equals the ledger's truth, however often records come.

# %%
pg.execute(f"TRUNCATE {ns.schema}.stock_levels, {ns.schema}.applied_movements")
group = ns.group(f"stock_levels_safe_{run_id}")
handled = sync.deliver(ledger_topic, group, lambda m: apply_movement(pg, m), crash_after=600)
handled += sync.deliver(ledger_topic, group, lambda m: apply_movement(pg, m))
got = dict(pg.execute(f"SELECT product_id, quantity FROM {ns.schema}.stock_levels").fetchall())
wrong = [p for p, q in want.items() if got.get(p) != q]
print(f"handled {handled} records for {len(events)} events; products wrong: {len(wrong)}")

# %% [markdown]
# This is the usual shape of "exactly-once" in practice: at-least-once delivery plus an idempotent (or
# deduplicating) effect. The same idea with Kafka transactions or Flink checkpoints comes in module 03.
#
# ## Reconciliation: find and repair drift
# Syncs drift: a bug, a manual fix on one side, a consumer that skipped a poison record. A **reconciliation job**
# compares source and target independently of the sync and repairs the difference. Below, a copy of the catalogue
# has drifted:

# %%
truth = sync.inject_drift(pg, f"{ns.schema}.products", f"{ns.schema}.products_copy", "product_id", seed=1)
pg.execute(f"SELECT count(*) FROM {ns.schema}.products_copy").fetchone()

# %% [markdown]
# ### Exercise 4 — reconcile
# Write `reconcile(conn)` that compares `m02_l04.products` (the source) with `m02_l04.products_copy` (the target),
# returns `{"missing": {...}, "extra": {...}, "different": {...}}` — sets of `product_id` missing from the
# target, present only in the target, and present in both with any column different — and **repairs** the target
# so it equals the source, touching only the rows that were wrong (no full reload: on a big table that is what
# you cannot afford, and it rewrites rows that were fine). Mind NULLs: `IS DISTINCT FROM` compares them.


# %%
### BEGIN SOLUTION
def reconcile(conn) -> dict[str, set[int]]:
    """Find missing, extra and different rows of the copy, then repair exactly those."""
    source, target = "m02_l04.products", "m02_l04.products_copy"
    rows = conn.execute(
        f"""SELECT coalesce(s.product_id, t.product_id),
                   CASE WHEN t.product_id IS NULL THEN 'missing' WHEN s.product_id IS NULL THEN 'extra'
                        ELSE 'different' END
            FROM {source} s FULL JOIN {target} t USING (product_id)
            WHERE s.product_id IS NULL OR t.product_id IS NULL OR s IS DISTINCT FROM t"""
    ).fetchall()
    report: dict[str, set[int]] = {"missing": set(), "extra": set(), "different": set()}
    for product_id, problem in rows:
        report[problem].add(product_id)
    with conn.transaction():
        conn.execute(f"DELETE FROM {target} WHERE product_id = ANY(%s)", [list(report["extra"])])
        conn.execute(
            f"""INSERT INTO {target} SELECT * FROM {source} WHERE product_id = ANY(%s)
                ON CONFLICT (product_id) DO UPDATE SET name = EXCLUDED.name, category = EXCLUDED.category,
                    list_price = EXCLUDED.list_price, version = EXCLUDED.version""",
            [list(report["missing"] | report["different"])],
        )
    return report


### END SOLUTION

# %%
check.m02.sync_reconcile(reconcile)

# %% [markdown]
# On big tables, reconcilers compare **checksums** first — per key range or hash bucket — and only look at the rows
# of buckets whose checksums differ. Here is the bucket view of a freshly drifted copy:

# %%
truth = sync.inject_drift(pg, f"{ns.schema}.products", f"{ns.schema}.products_copy", "product_id", seed=2)
bucket_sql = """SELECT product_id % 8 AS bucket, count(*) AS rows, md5(string_agg(t::text, '|' ORDER BY product_id))
                FROM {} t GROUP BY 1"""
buckets = pd.DataFrame(
    pg.execute(bucket_sql.format(f"{ns.schema}.products")).fetchall(), columns=["bucket", "rows", "md5"]
)
copy_buckets = pd.DataFrame(
    pg.execute(bucket_sql.format(f"{ns.schema}.products_copy")).fetchall(), columns=["bucket", "rows", "md5"]
)
compared = buckets.merge(copy_buckets, on="bucket", how="outer", suffixes=("_source", "_copy"))
compared.assign(differs=compared.md5_source != compared.md5_copy)[["bucket", "rows_source", "rows_copy", "differs"]]

# %%
report = reconcile(pg)
print({k: sorted(v) for k, v in report.items()}, "— injected:", {k: sorted(v) for k, v in truth.items()})
cdc.remove(connector)
pg.close()

# %% [markdown]
# ## Recap
# - Event sourcing keeps facts, not state; state is a replay in log order, and a fact like a stock-take makes
#   the order matter. The outbox pattern plus CDC publishes those facts without a dual write.
# - Last-writer-wins converges but loses updates silently; version checks turn a lost update into a visible,
#   retryable conflict.
# - At-least-once delivery is the honest default; make the effect idempotent (dedupe by event id in the same
#   transaction) and redelivery is harmless.
# - Reconciliation compares source and target independently of the sync, reports missing, extra and different
#   rows, and repairs just those.
#
# **Going further**
# - **Debezium's outbox event router** (an SMT) routes outbox rows to per-aggregate topics with the event id in a
#   header — the standard shape of the pattern; Debezium Server does the same without Kafka Connect.
# - Event stores (EventStoreDB, Kafka with compacted snapshot topics), bidirectional replication with conflict
#   handlers (pglogical, AWS DMS, Oracle GoldenGate), and data-diff tools that checksum key ranges across
#   databases.
# - On managed services (MSK Connect, Confluent Cloud, RDS), the same connector config and consumers run with
#   `DELAB_STACK=external` (`delab info`).
