"""Checks of lab 02.04 (event sourcing and sync): right answers pass, realistic wrong ones are rejected, against
a real ledger captured by Debezium and real Postgres tables."""

from __future__ import annotations

import uuid

import pytest

from delab import clients, datasets, stack
from delab.checks.m02 import l04_sync as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.loading import cdc, sync

pytestmark = pytest.mark.stack
S = "m02_l04"


@pytest.fixture(scope="module")
def ledger_topic():
    stack.require("kafka", "connect", "postgres")
    cdc.cleanup(S)
    products = datasets.shop(seed=7, scale=0.25).products
    movements = sync.stock_movements(products)
    with clients.postgres() as pg:
        pg.execute(f"DROP SCHEMA IF EXISTS {S} CASCADE")
        pg.execute(f"CREATE SCHEMA {S}")
        pg.execute(
            f"CREATE TABLE {S}.movements (movement_id bigserial PRIMARY KEY, product_id int, kind text, quantity int)"
        )
        with pg.cursor().copy(f"COPY {S}.movements (product_id, kind, quantity) FROM STDIN") as copy:
            for row in movements[["product_id", "kind", "quantity"]].itertuples(index=False):
                copy.write_row(row)
        pg.execute(
            f"CREATE TABLE {S}.products (product_id int PRIMARY KEY, name text NOT NULL, category text, "
            "list_price numeric(10, 2) NOT NULL, version int NOT NULL DEFAULT 1)"
        )
        with pg.cursor().copy(f"COPY {S}.products (product_id, name, category, list_price) FROM STDIN") as copy:
            for row in products.itertuples(index=False):
                copy.write_row((row.product_id, row.name, row.category, round(row.list_price, 2)))
    name = f"{S}_test_{uuid.uuid4().hex[:6]}"
    config = cdc.postgres_connector(name, [f"{S}.movements"])
    cdc.register(name, config)
    yield cdc.change_topic(config, f"{S}.movements")
    cdc.remove(name)


def fold(messages, counted_sets=True):
    stock = {}
    for m in messages:
        if m.value is None or m.value["op"] not in ("r", "c"):
            continue
        mv = m.value["after"]
        if counted_sets and mv["kind"] == "counted":
            stock[mv["product_id"]] = mv["quantity"]
        else:
            stock[mv["product_id"]] = stock.get(mv["product_id"], 0) + mv["quantity"]
    return stock


def fold_skipping_counts(messages):
    return fold([m for m in messages if m.value is None or m.value["after"]["kind"] != "counted"])


def test_rebuild_stock(ledger_topic):
    checks.sync_rebuild_stock(fold, ledger_topic)
    with pytest.raises(WrongAnswer, match="products are off") as skipped:
        checks.sync_rebuild_stock(fold_skipping_counts, ledger_topic)
    assert "SETS the level" in skipped.value.hint  # the hint used to say "replay in log order"
    with pytest.raises(WrongAnswer, match=r"a stock-take .* is not a change"):
        checks.sync_rebuild_stock(lambda ms: fold(ms, counted_sets=False), ledger_topic)
    with pytest.raises(WrongAnswer, match="your stock is empty"):
        checks.sync_rebuild_stock(lambda ms: fold([m for m in ms if m.op == "c"]), ledger_topic)
    with pytest.raises(NotSolvedYet):
        checks.sync_rebuild_stock(..., ledger_topic)


def save_versioned(conn, product_id, changes, read_version):
    sets = ", ".join(f"{c} = %s" for c in changes)
    cur = conn.execute(
        f"UPDATE {S}.products SET {sets}, version = version + 1 WHERE product_id = %s AND version = %s",
        [*changes.values(), product_id, read_version],
    )
    return cur.rowcount == 1


def save_last_writer_wins(conn, product_id, changes, read_version):
    sets = ", ".join(f"{c} = %s" for c in changes)
    cur = conn.execute(
        f"UPDATE {S}.products SET {sets}, version = version + 1 WHERE product_id = %s",
        [*changes.values(), product_id],
    )
    return cur.rowcount == 1


def save_without_bump(conn, product_id, changes, read_version):
    sets = ", ".join(f"{c} = %s" for c in changes)
    cur = conn.execute(
        f"UPDATE {S}.products SET {sets} WHERE product_id = %s AND version = %s",
        [*changes.values(), product_id, read_version],
    )
    return cur.rowcount == 1


def save_check_then_act(conn, product_id, changes, read_version):
    # compares the version in Python, then updates by key: right one call at a time, a lost update in a race
    (version,) = conn.execute(f"SELECT version FROM {S}.products WHERE product_id = %s", [product_id]).fetchone() or (
        None,
    )
    if version != read_version:
        return False
    sets = ", ".join(f"{c} = %s" for c in changes)
    conn.execute(
        f"UPDATE {S}.products SET {sets}, version = version + 1 WHERE product_id = %s", [*changes.values(), product_id]
    )
    return True


def save_locking_the_row(conn, product_id, changes, read_version):
    # check, then act, but with the row locked in between: right
    with conn.transaction():
        row = conn.execute(
            f"SELECT version FROM {S}.products WHERE product_id = %s FOR UPDATE", [product_id]
        ).fetchone()
        if row is None or row[0] != read_version:
            return False
        sets = ", ".join(f"{c} = %s" for c in changes)
        conn.execute(
            f"UPDATE {S}.products SET {sets}, version = version + 1 WHERE product_id = %s",
            [*changes.values(), product_id],
        )
    return True


def save_returning_rowcount(conn, product_id, changes, read_version):
    sets = ", ".join(f"{c} = %s" for c in changes)
    return conn.execute(
        f"UPDATE {S}.products SET {sets}, version = version + 1 WHERE product_id = %s AND version = %s",
        [*changes.values(), product_id, read_version],
    ).rowcount


def save_always_true(conn, product_id, changes, read_version):
    save_versioned(conn, product_id, changes, read_version)
    return True


def test_save_product(ledger_topic):
    checks.sync_save_product(save_versioned)
    checks.sync_save_product(save_locking_the_row)
    with pytest.raises(WrongAnswer, match="lost update"):
        checks.sync_save_product(save_last_writer_wins)
    with pytest.raises(WrongAnswer, match="must bump the version"):
        checks.sync_save_product(save_without_bump)
    with pytest.raises(WrongAnswer, match="Reading the version, comparing it in Python"):
        checks.sync_save_product(save_check_then_act)  # used to pass: the check's writers took turns
    with pytest.raises(WrongAnswer, match="other than True"):
        checks.sync_save_product(save_returning_rowcount)
    with pytest.raises(WrongAnswer, match="changed nothing, as it should, but returned True"):
        checks.sync_save_product(save_always_true)  # used to be told it overwrote the first writer's price


UPSERT = f"""INSERT INTO {S}.stock_levels VALUES (%(product_id)s, %(quantity)s) ON CONFLICT (product_id) DO UPDATE
    SET quantity = CASE WHEN %(kind)s = 'counted' THEN EXCLUDED.quantity
                        ELSE {S}.stock_levels.quantity + EXCLUDED.quantity END"""


def apply_once(conn, message):
    if message.value is None or message.op not in ("r", "c"):
        return
    mv = message.value["after"]
    with conn.transaction():
        if conn.execute(
            f"INSERT INTO {S}.applied_movements VALUES (%s) ON CONFLICT DO NOTHING", [mv["movement_id"]]
        ).rowcount:
            conn.execute(UPSERT, mv)


def apply_naive(conn, message):
    if message.value is not None and message.op in ("r", "c"):
        conn.execute(UPSERT, message.value["after"])


def apply_dedup_by_product(conn, message):
    mv = message.value["after"]
    with conn.transaction():
        if conn.execute(
            f"INSERT INTO {S}.applied_movements VALUES (%s) ON CONFLICT DO NOTHING", [mv["product_id"]]
        ).rowcount:
            conn.execute(UPSERT, mv)


SEEN_IN_MEMORY: set[int] = set()


def apply_dedup_in_memory(conn, message):
    # dedupes in the consumer's memory: right until the consumer restarts, and nothing is in applied_movements
    if message.value is None or message.value["op"] not in ("r", "c"):
        return
    mv = message.value["after"]
    if mv["movement_id"] not in SEEN_IN_MEMORY:
        SEEN_IN_MEMORY.add(mv["movement_id"])
        conn.execute(UPSERT, mv)


def apply_in_two_statements(conn, message):
    # records the movement, then changes the stock, each committed on its own (autocommit): no transaction
    if message.value is None or message.op not in ("r", "c"):
        return
    mv = message.value["after"]
    if conn.execute(
        f"INSERT INTO {S}.applied_movements VALUES (%s) ON CONFLICT DO NOTHING", [mv["movement_id"]]
    ).rowcount:
        conn.execute(UPSERT, mv)


def apply_then_record(conn, message):
    # the other order, still without a transaction: a crash after the stock change applies it twice
    if message.value is None or message.op not in ("r", "c"):
        return
    mv = message.value["after"]
    if conn.execute(f"SELECT 1 FROM {S}.applied_movements WHERE movement_id = %s", [mv["movement_id"]]).fetchone():
        return
    conn.execute(UPSERT, mv)
    conn.execute(f"INSERT INTO {S}.applied_movements VALUES (%s)", [mv["movement_id"]])


def test_idempotent_apply(ledger_topic):
    checks.sync_idempotent_apply(apply_once, ledger_topic)
    # both used to pass: nothing ever failed between the two writes
    with pytest.raises(WrongAnswer, match="crash at the write to stock_levels") as verdict:
        checks.sync_idempotent_apply(apply_in_two_statements, ledger_topic)
    assert "ONE transaction" in verdict.value.hint
    with pytest.raises(WrongAnswer, match="crash at the write to applied_movements"):
        checks.sync_idempotent_apply(apply_then_record, ledger_topic)
    with pytest.raises(WrongAnswer, match="delivered again"):
        checks.sync_idempotent_apply(apply_naive, ledger_topic)
    with pytest.raises(WrongAnswer, match="after one delivery of every event"):
        checks.sync_idempotent_apply(apply_dedup_by_product, ledger_topic)
    SEEN_IN_MEMORY.clear()
    with pytest.raises(WrongAnswer, match="applied_movements holds 0 movement ids"):
        checks.sync_idempotent_apply(apply_dedup_in_memory, ledger_topic)


def reconcile_good(conn):
    rows = conn.execute(
        f"""SELECT coalesce(s.product_id, t.product_id), CASE WHEN t.product_id IS NULL THEN 'missing'
                   WHEN s.product_id IS NULL THEN 'extra' ELSE 'different' END
            FROM {S}.products s FULL JOIN {S}.products_copy t USING (product_id)
            WHERE s.product_id IS NULL OR t.product_id IS NULL OR s IS DISTINCT FROM t"""
    ).fetchall()
    report = {"missing": set(), "extra": set(), "different": set()}
    for key, kind in rows:
        report[kind].add(key)
    conn.execute(f"DELETE FROM {S}.products_copy WHERE product_id = ANY(%s)", [list(report["extra"])])
    conn.execute(f"DELETE FROM {S}.products_copy WHERE product_id = ANY(%s)", [list(report["different"])])
    conn.execute(
        f"INSERT INTO {S}.products_copy SELECT * FROM {S}.products WHERE product_id = ANY(%s)",
        [list(report["missing"] | report["different"])],
    )
    return report


def reconcile_keys_only(conn):
    src = {k for (k,) in conn.execute(f"SELECT product_id FROM {S}.products").fetchall()}
    dst = {k for (k,) in conn.execute(f"SELECT product_id FROM {S}.products_copy").fetchall()}
    conn.execute(f"DELETE FROM {S}.products_copy WHERE product_id = ANY(%s)", [list(dst - src)])
    conn.execute(
        f"INSERT INTO {S}.products_copy SELECT * FROM {S}.products WHERE product_id = ANY(%s)", [list(src - dst)]
    )
    return {"missing": src - dst, "extra": dst - src, "different": set()}


def reconcile_not_equal(conn):
    # compares column by column with `<>`: a column that became NULL on one side is not seen
    src = {k for (k,) in conn.execute(f"SELECT product_id FROM {S}.products").fetchall()}
    dst = {k for (k,) in conn.execute(f"SELECT product_id FROM {S}.products_copy").fetchall()}
    different = {
        k
        for (k,) in conn.execute(
            f"""SELECT product_id FROM {S}.products s JOIN {S}.products_copy t USING (product_id)
                WHERE s.name <> t.name OR s.category <> t.category OR s.list_price <> t.list_price
                   OR s.version <> t.version"""
        )
    }
    return {"missing": src - dst, "extra": dst - src, "different": different}


def reconcile_report_then_reload(conn):
    rows = conn.execute(
        f"""SELECT coalesce(s.product_id, t.product_id), CASE WHEN t.product_id IS NULL THEN 'missing'
                   WHEN s.product_id IS NULL THEN 'extra' ELSE 'different' END
            FROM {S}.products s FULL JOIN {S}.products_copy t USING (product_id)
            WHERE s.product_id IS NULL OR t.product_id IS NULL OR s IS DISTINCT FROM t"""
    ).fetchall()
    report = {"missing": set(), "extra": set(), "different": set()}
    for key, kind in rows:
        report[kind].add(key)
    conn.execute(f"TRUNCATE {S}.products_copy")
    conn.execute(f"INSERT INTO {S}.products_copy SELECT * FROM {S}.products")
    return report


def reconcile_with_rows(conn):
    # returns the rows of fetchall() (1-tuples) instead of ids: used to crash in int()
    reconcile_good(conn)
    rows = conn.execute(f"SELECT product_id FROM {S}.products WHERE false").fetchall()
    return {"missing": [(101,)], "extra": rows, "different": rows}


def test_reconcile(ledger_topic):
    checks.sync_reconcile(reconcile_good)
    with pytest.raises(WrongAnswer, match=r"set of product ids, you returned \[\(101,\)\]"):
        checks.sync_reconcile(reconcile_with_rows)
    with pytest.raises(WrongAnswer, match="different should be"):
        checks.sync_reconcile(reconcile_keys_only)
    with pytest.raises(WrongAnswer, match="different should be") as failed:
        checks.sync_reconcile(reconcile_not_equal)
    assert "IS DISTINCT FROM" in failed.value.hint
    with pytest.raises(WrongAnswer, match=r"rewrote .* rows that were already right"):
        checks.sync_reconcile(reconcile_report_then_reload)
    with pytest.raises(NotSolvedYet):
        checks.sync_reconcile(...)
