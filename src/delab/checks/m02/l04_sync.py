"""Checks of lab 02.04 (event sourcing and synchronization). Expected stock comes from the ledger table in SQL
(not from the topic the learner folds); the version check is exercised by a real race between two connections;
redelivery is done on purpose; reconciliation is judged against drift the check injects itself, and rows that
were right must not be rewritten (their xmin must not change)."""

from __future__ import annotations

import random
from collections.abc import Callable

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
    # the likely mistake: a stock-take treated as one more change
    summed: dict[int, int] = {}
    for m in messages:
        if m.op in ("r", "c"):
            mv = m.value["after"]
            summed[mv["product_id"]] = summed.get(mv["product_id"], 0) + mv["quantity"]
    if all(got[p] == summed.get(p) for p in wrong):
        raise WrongAnswer(
            f"{len(wrong)} products are off, e.g. product {wrong[0]}: {got[wrong[0]]} instead of {want[wrong[0]]}.",
            hint="a stock-take (kind 'counted') is not a change: it states the level at that moment.",
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
        if stale is not False or after_price != round(price + 1, 2):
            raise WrongAnswer(
                "the second writer saved from a stale read and overwrote the first writer's price: a lost update"
                + (f" (and returned {stale!r})." if after_price == round(price + 1, 2) else "."),
                hint="make the UPDATE match only when the row is still at the version that was read.",
            )
        # it re-reads and tries again
        _, fresh_version = second.execute(read, [product]).fetchone()
        if save(second, product, {"list_price": round(price + 2, 2)}, fresh_version) is not True:
            raise WrongAnswer("after re-reading, the second writer's save was refused.")
        if save(first, 999_999, {"list_price": 1.0}, 1) is not False:
            raise WrongAnswer("saving a product that does not exist returned something other than False.")


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


# ------------------------------------------------------------------------------------------ reconcile


def _all_have_nulls(conn, table: str, keys: list[int]) -> bool:
    """Whether every one of these rows of ``table`` has a NULL in some column."""
    query = f"SELECT count(*) FROM {table} t WHERE product_id = ANY(%s) AND NOT (t IS NOT NULL)"
    return conn.execute(query, [keys]).fetchone()[0] == len(keys)


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
            got = {int(k) for k in report[kind]}
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
