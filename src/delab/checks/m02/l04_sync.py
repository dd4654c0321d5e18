"""Checks of lab 02.04 (event sourcing and synchronization). Expected stock comes from the ledger table in SQL
(not from the topic the learner folds); the version check is exercised by a real race between two connections;
redelivery is done on purpose; reconciliation is judged against drift the check injects itself, and rows that
were right must not be rewritten (their xmin must not change)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from delab import clients
from delab.grading import WrongAnswer, exercise, learner_code

SCHEMA = "m02_l04"
LEDGER = f"{SCHEMA}.movements"


def _ledger_messages(topic: str):
    from delab.loading import cdc

    with clients.postgres() as conn:
        rows = conn.execute(f"SELECT count(*) FROM {LEDGER}").fetchone()[0]
    try:
        return cdc.wait_for(topic, lambda ms: sum(m.op in ("r", "c") for m in ms) >= rows, timeout=60)
    except TimeoutError as error:
        raise WrongAnswer(str(error), hint="run the cells above: the connector must be registered.") from None


def _expected_stock() -> dict[int, int]:
    from delab.loading import sync

    with clients.postgres() as conn:
        return sync.stock_from_ledger(conn, LEDGER)


@exercise("m02.l04.e1")
def sync_rebuild_stock(rebuild_stock: Callable, topic: str) -> None:
    """Replaying the ledger's events gives the stock the ledger says."""
    messages = _ledger_messages(topic)
    got = learner_code("rebuild_stock")(rebuild_stock)(messages)
    if not isinstance(got, dict):
        raise WrongAnswer(f"expected a dict product_id -> quantity, got {type(got).__name__}.")
    want = _expected_stock()
    if not got:
        raise WrongAnswer(
            "your stock is empty.", hint="most events come from the snapshot (op r): they are movements too."
        )
    missing = sorted(set(want) - set(got))
    if missing:
        raise WrongAnswer(
            f"{len(missing)} products are missing, e.g. {missing[:3]}.",
            hint="the ledger existed before the connector started: its snapshot events (op r) are movements too.",
        )
    wrong = sorted(p for p in want if got[p] != want[p])
    if not wrong:
        return
    # the likely mistakes: a stock-take treated as one more change, or skipped as "not a movement"
    summed: dict[int, int] = {}
    skipped: dict[int, int] = {}
    for m in messages:
        if m.op in ("r", "c"):
            mv = m.value["after"]
            summed[mv["product_id"]] = summed.get(mv["product_id"], 0) + mv["quantity"]
            if mv["kind"] != "counted":
                skipped[mv["product_id"]] = skipped.get(mv["product_id"], 0) + mv["quantity"]
    if all(got[p] == summed.get(p) for p in wrong):
        raise WrongAnswer(
            f"{len(wrong)} products are off, e.g. product {wrong[0]}: {got[wrong[0]]} instead of {want[wrong[0]]}.",
            hint="a stock-take (kind 'counted') is not a change: it states the level at that moment.",
        )
    if all(got[p] == skipped.get(p, 0) for p in wrong):
        raise WrongAnswer(
            f"{len(wrong)} products are off, e.g. product {wrong[0]}: {got[wrong[0]]} instead of {want[wrong[0]]}.",
            hint="a stock-take (kind 'counted') is not skipped: it SETS the level to what was counted (shrinkage).",
        )
    raise WrongAnswer(
        f"{len(wrong)} products are off, e.g. product {wrong[0]}: {got[wrong[0]]} instead of {want[wrong[0]]}.",
        hint="replay the events in log order; received/returned add, sold is already negative.",
    )


# ------------------------------------------------------------------------------------------ conflicts


@exercise("m02.l04.e2")
def sync_save_product(save_product: Callable) -> None:
    """Two writers race on one row: the stale write is refused, retried after a re-read, and nothing is lost."""
    save = learner_code("save_product")(save_product)
    product = random.Random().choice(range(102, 110))
    read = f"SELECT list_price, version FROM {SCHEMA}.products WHERE product_id = %s"
    with clients.postgres() as first, clients.postgres() as second:
        price, version = first.execute(read, [product]).fetchone()
        price = float(price)
        # both sides read (price, version); the first saves
        if save(first, product, {"list_price": round(price + 1, 2)}, version) is not True:
            raise WrongAnswer(
                "a save based on the current version returned something other than True.",
                hint="return whether the UPDATE changed a row (cursor.rowcount).",
            )
        now_price, now_version = first.execute(read, [product]).fetchone()
        if float(now_price) != round(price + 1, 2):
            raise WrongAnswer("the first writer's price was not saved.")
        if now_version != version + 1:
            raise WrongAnswer(
                f"the version is {now_version} after a save of version {version}.",
                hint="a save must bump the version, or a stale writer still matches it.",
            )
        # the second side, from its stale read, saves another price
        stale = save(second, product, {"list_price": round(price + 2, 2)}, version)
        after_price = float(first.execute(read, [product]).fetchone()[0])
        if after_price != round(price + 1, 2):
            raise WrongAnswer(
                "the second writer saved from a stale read and overwrote the first writer's price: a lost update.",
                hint="make the UPDATE match only when the row is still at the version that was read.",
            )
        if stale is not False:
            raise WrongAnswer(
                f"a stale save changed nothing, as it should, but returned {stale!r}: its caller cannot tell that it "
                "must re-read and try again.",
                hint="return False when the UPDATE matched no row (cursor.rowcount == 0).",
            )
        # it re-reads and tries again
        _, fresh_version = second.execute(read, [product]).fetchone()
        if save(second, product, {"list_price": round(price + 2, 2)}, fresh_version) is not True:
            raise WrongAnswer("after re-reading, the second writer's save was refused.")
        if save(first, 999_999, {"list_price": 1.0}, 1) is not False:
            raise WrongAnswer("saving a product that does not exist returned something other than False.")
    _race(save_product, product, read)


def _race(save_product: Callable, product: int, read: str) -> None:
    """Another writer's UPDATE is in flight (its row lock held, not committed yet) when the learner's save runs
    from the same version. A save that compares the version in Python and then updates by key alone (check, then
    act) reads the committed version, waits for the lock, and overwrites; a conditional UPDATE (or SELECT … FOR
    UPDATE) waits, sees the new version, and refuses. The interleaving is forced by the lock, not by timing."""
    with clients.postgres() as other, clients.postgres() as learner, clients.postgres() as watcher:
        price, version = other.execute(read, [product]).fetchone()
        theirs, mine = round(float(price) + 3, 2), round(float(price) + 4, 2)
        outcome: dict[str, Any] = {}

        def save_in_thread() -> None:
            try:
                outcome["returned"] = save_product(learner, product, {"list_price": mine}, version)
            except BaseException as error:  # reported below, in the check's thread
                outcome["error"] = error

        worker = threading.Thread(target=save_in_thread, daemon=True)
        with other.transaction():
            other.execute(
                f"UPDATE {SCHEMA}.products SET list_price = %s, version = version + 1 WHERE product_id = %s",
                [theirs, product],
            )
            worker.start()
            pid, deadline = learner.info.backend_pid, time.monotonic() + 60  # the deadline only ends the wait
            while (
                worker.is_alive()
                and time.monotonic() < deadline
                and not watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [pid]
                ).fetchone()[0]
            ):
                time.sleep(0.02)  # until the learner's save waits for the row lock (or has returned)
        worker.join(timeout=120)
        if worker.is_alive():
            raise WrongAnswer("your save_product never returned once the other writer committed.")
        if isinstance(outcome.get("error"), NotImplementedError):
            raise NotImplementedError
        if "error" in outcome:
            error = outcome["error"]
            raise WrongAnswer(
                f"save_product failed with {type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}",
                hint="run it in a cell of its own to see the whole error.",
            )
        after = float(watcher.execute(read, [product]).fetchone()[0])
        if after == mine:
            raise WrongAnswer(
                "while another writer's save was committing, yours (from the same version) overwrote it: a lost "
                "update. Reading the version, comparing it in Python and then updating by key leaves a gap.",
                hint="let the UPDATE itself check the version (WHERE ... AND version = %s), in one statement.",
            )
        if outcome.get("returned") is not False:
            raise WrongAnswer(
                f"a save that lost the race changed nothing but returned {outcome.get('returned')!r}.",
                hint="return False when the UPDATE matched no row (cursor.rowcount == 0).",
            )


# ------------------------------------------------------------------------------------ idempotent apply


def _stock_levels(conn) -> dict[int, int]:
    return dict(conn.execute(f"SELECT product_id, quantity FROM {SCHEMA}.stock_levels").fetchall())


def _compare(got: dict, want: dict, when: str, hint: str) -> None:
    wrong = sorted(p for p in set(want) | set(got) if got.get(p) != want.get(p))
    if wrong:
        p = wrong[0]
        raise WrongAnswer(
            f"{when}, {len(wrong)} products are off, e.g. product {p}: {got.get(p)} instead of {want.get(p)}.",
            hint=hint,
        )


@exercise("m02.l04.e3")
def sync_idempotent_apply(apply_movement: Callable, topic: str) -> None:
    """Every event applied, then redelivered (some twice), leaves the read model equal to the ledger."""
    apply = learner_code("apply_movement")(apply_movement)
    messages = _ledger_messages(topic)
    want = _expected_stock()
    with clients.postgres() as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.stock_levels (product_id int PRIMARY KEY, quantity int)")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.applied_movements (movement_id bigint PRIMARY KEY)")
        conn.execute(f"TRUNCATE {SCHEMA}.stock_levels, {SCHEMA}.applied_movements")
        for message in messages:
            apply(conn, message)
        _compare(
            _stock_levels(conn),
            want,
            "after one delivery of every event",
            "received/returned/sold add their quantity, a stock-take sets it; apply each movement once.",
        )
        rng = random.Random(7)
        redelivered = messages[rng.randrange(len(messages) // 2) :] + rng.sample(messages, len(messages) // 5)
        for message in redelivered:  # a consumer restarted from an old offset, and a few random duplicates
            apply(conn, message)
        _compare(
            _stock_levels(conn),
            want,
            f"after {len(redelivered)} events were delivered again",
            "remember which movement_ids were applied, in the same transaction as the stock change, and skip those.",
        )
        movements = {m.value["after"]["movement_id"] for m in messages if m.op in ("r", "c")}
        recorded = {row[0] for row in conn.execute(f"SELECT movement_id FROM {SCHEMA}.applied_movements")}
        if recorded != movements:
            raise WrongAnswer(
                f"{SCHEMA}.applied_movements holds {len(recorded)} movement ids after {len(movements)} movements "
                "were applied.",
                hint="record every applied movement_id in that table: memory in the consumer (a Python set) is gone "
                "when it restarts, and the table can commit together with the stock change.",
            )
        for table in ("stock_levels", "applied_movements"):
            _crash_while_applying(apply_movement, conn, messages, want, table)


def _crash_while_applying(apply_movement: Callable, conn, messages: list, want: dict, table: str) -> None:
    """The consumer dies while it applies one movement — at its write to ``table`` — and the movement is delivered
    again after the restart. In one transaction nothing of the first attempt stays, and the second applies it;
    in two (autocommit statements), the half that was written makes the retry skip it or apply it twice. The crash
    is a trigger that raises once, so it hits the same statement on every run."""
    counted_later: set[int] = set()
    victim = None
    for message in reversed(messages):  # the last change of a product that no stock-take follows
        if message.value is None or message.op not in ("r", "c"):
            continue
        movement = message.value["after"]
        if movement["kind"] == "counted":
            counted_later.add(movement["product_id"])
        elif movement["product_id"] not in counted_later and movement["quantity"]:
            victim = message
            break
    if victim is None:
        return
    movement = victim.value["after"]
    product, movement_id = movement["product_id"], movement["movement_id"]
    # back to the state before that movement (only changes follow it, so the order does not matter)
    conn.execute(f"DELETE FROM {SCHEMA}.applied_movements WHERE movement_id = %s", [movement_id])
    conn.execute(
        f"UPDATE {SCHEMA}.stock_levels SET quantity = quantity - %s WHERE product_id = %s",
        [movement["quantity"], product],
    )
    column, value = ("product_id", product) if table == "stock_levels" else ("movement_id", movement_id)
    conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {SCHEMA}.check_crash")
    conn.execute(f"SELECT setval('{SCHEMA}.check_crash', 1, false)")  # nextval is not rolled back: it fires once
    conn.execute(
        f"""CREATE OR REPLACE FUNCTION {SCHEMA}.check_crash() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.{column} = {int(value)} AND nextval('{SCHEMA}.check_crash') = 1 THEN
                RAISE EXCEPTION 'the consumer crashed here (simulated by the check)';
            END IF;
            RETURN NEW;
        END $$"""
    )
    conn.execute(f"DROP TRIGGER IF EXISTS check_crash ON {SCHEMA}.{table}")
    conn.execute(
        f"CREATE TRIGGER check_crash BEFORE INSERT OR UPDATE ON {SCHEMA}.{table} "
        f"FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.check_crash()"
    )
    try:
        try:
            apply_movement(conn, victim)  # the crash: an error is expected here
        except NotImplementedError:
            raise
        except Exception:
            if conn.info.transaction_status != 0:  # a learner's transaction left open by the error
                conn.rollback()
    finally:  # nothing of the simulated crash stays in the learner's schema
        conn.execute(f"DROP TRIGGER IF EXISTS check_crash ON {SCHEMA}.{table}")
        conn.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.check_crash()")
        conn.execute(f"DROP SEQUENCE IF EXISTS {SCHEMA}.check_crash")
    learner_code("apply_movement")(apply_movement)(conn, victim)  # redelivered after the restart
    _compare(
        _stock_levels(conn),
        want,
        f"after a crash at the write to {table} while movement {movement_id} was applied, and its redelivery",
        "record the movement_id and change the stock in ONE transaction (with conn.transaction(): ...), so a crash "
        "leaves neither.",
    )


# ------------------------------------------------------------------------------------------ reconcile


def _all_have_nulls(conn, table: str, keys: list[int]) -> bool:
    """Whether every one of these rows of ``table`` has a NULL in some column."""
    query = f"SELECT count(*) FROM {table} t WHERE product_id = ANY(%s) AND NOT (t IS NOT NULL)"
    return conn.execute(query, [keys]).fetchone()[0] == len(keys)


def _ids(values, what: str) -> set[int]:
    """A learner's collection of product ids as ints, or a one-line verdict (rows of fetchall() are tuples)."""
    try:
        return {int(value) for value in values}
    except (TypeError, ValueError):
        sample = list(values)[:3] if isinstance(values, set | frozenset | list | tuple) else values
        raise WrongAnswer(
            f"{what} should be a set of product ids, you returned {sample!r}.",
            hint="rows from fetchall() are tuples: take each row's first value, {row[0] for row in rows}.",
        ) from None


@exercise("m02.l04.e4")
def sync_reconcile(reconcile: Callable) -> None:
    """Drift is reported exactly (missing, extra, different) and repaired without rewriting rows that were right."""
    from delab.loading import sync

    source, target = f"{SCHEMA}.products", f"{SCHEMA}.products_copy"
    with clients.postgres() as conn:
        truth = sync.inject_drift(conn, source, target, "product_id", seed=random.Random().randrange(10_000))
        before = dict(conn.execute(f"SELECT product_id, xmin::text FROM {target}").fetchall())
        report = learner_code("reconcile")(reconcile)(conn)
        if not isinstance(report, dict) or not {"missing", "extra", "different"} <= set(report):
            raise WrongAnswer(f"expected a dict with missing, extra and different, got {report!r}.")
        for kind in ("missing", "extra", "different"):
            got = _ids(report[kind], kind)
            if got != truth[kind]:
                missed = sorted(truth[kind] - got)
                if kind == "different" and got and missed and _all_have_nulls(conn, target, missed):
                    raise WrongAnswer(
                        f"different should be {sorted(truth[kind])}, you found {sorted(got)}.",
                        hint="a column that became NULL in the target: NULL <> 'x' is NULL, not true — compare with "
                        "IS DISTINCT FROM.",
                    )
                hint = {
                    "different": "compare every column of rows present on both sides, not just the keys.",
                    "missing": "missing rows are in the source and not in the target.",
                    "extra": "extra rows are in the target and not in the source.",
                }[kind]
                raise WrongAnswer(f"{kind} should be {sorted(truth[kind])}, you found {sorted(got)}.", hint=hint)
        diff = conn.execute(
            f"SELECT count(*) FROM ((TABLE {source} EXCEPT TABLE {target}) UNION ALL "
            f"(TABLE {target} EXCEPT TABLE {source})) d"
        ).fetchone()[0]
        if diff:
            raise WrongAnswer(
                f"after your repair {diff} rows still differ between source and target.",
                hint="delete the extra rows, insert the missing ones and overwrite the different ones.",
            )
        after = dict(conn.execute(f"SELECT product_id, xmin::text FROM {target}").fetchall())
        untouched = set(before) - truth["different"] - truth["extra"]
        rewritten = sorted(k for k in untouched if after.get(k) != before[k])
        if rewritten:
            raise WrongAnswer(
                f"the repair rewrote {len(rewritten)} rows that were already right.",
                hint="repair only the rows the comparison found; a full reload does not scale.",
            )
