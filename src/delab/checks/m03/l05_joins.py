"""Checks of lab 03.05 (stream joins in Flink SQL): e1 and e2 run the learner's INSERT as a job on the stack's
cluster and compare what it wrote to Kafka with an independent pandas model (``delab.streaming.joins``) of the
join over the very messages of the source topics; e3 runs the learner's state-size reader on the live checkpoint
statistics of the lab's two jobs, read again from the REST API."""

from __future__ import annotations

import copy

import pandas as pd

from delab.checks.m03._flinksql import _insert_into
from delab.grading import WrongAnswer, exercise, learner_code

JOB_PREFIX = "m03_l05"
WINDOW = pd.Timedelta(minutes=15)


def _run(t_env, sql: str, topic: str, exercise_name: str, known: dict[str, WrongAnswer]) -> pd.DataFrame:
    from delab.streaming import flink_jobs

    since = flink_jobs.end_offsets(topic)
    try:
        flink_jobs.run_insert(t_env, sql, f"{JOB_PREFIX} {exercise_name}")
    except Exception as error:  # Flink refused the SQL or the job failed: say why in one line
        text = flink_jobs.flink_error(error)
        for marker, verdict in known.items():
            if marker.lower() in text.lower():
                raise verdict from None
        raise WrongAnswer(
            f"Flink could not run your INSERT: {text}",
            hint="run the statement with t_env.execute_sql(...) in a cell of its own to see the whole error.",
        ) from None
    return pd.DataFrame([row for row in flink_jobs.read_json(topic, since) if row is not None])


def _frame(topic: str, *times: str) -> pd.DataFrame:
    from delab.streaming import flink_jobs

    frame = pd.DataFrame(flink_jobs.read_json(topic))
    for column in times:
        frame[column] = pd.to_datetime(frame[column])
    return frame


def _columns(frame: pd.DataFrame, want: list[str], source: str) -> None:
    if len(frame) == 0:
        raise WrongAnswer("the job wrote nothing to the sink topic.", hint=f"does your SELECT read {source}?")
    missing = [c for c in want if c not in frame.columns or frame[c].isna().all()]
    if missing:
        raise WrongAnswer(f"the sink rows lack {missing}.", hint="select the columns in the sink table's order.")


def _minutes(delta: pd.Timedelta) -> str:
    if pd.Timedelta(0) <= delta < pd.Timedelta(hours=1):
        minutes, seconds = divmod(int(delta.total_seconds()), 60)
        return f"{minutes} min {seconds:02d} s"
    return f"{delta / pd.Timedelta(minutes=1):,.1f} minutes"


@exercise("m03.l05.e1")
def interval_join_payments(t_env, paid_sql, topics: dict) -> None:
    """Each order joined with its payments made within 15 minutes after it (an interval join)."""
    from delab.streaming import joins

    _insert_into(paid_sql, "paid_orders")
    got = _run(t_env, paid_sql, topics["paid"], "e1 interval join", {})
    _columns(got, ["order_id", "order_time", "payment_id", "amount", "status"], "orders and payments")
    orders = _frame(topics["orders"], "order_time")
    payments = _frame(topics["payments"], "paid_at")
    if got.duplicated("payment_id").any():
        raise WrongAnswer(
            f"{int(got.duplicated('payment_id').sum())} payments were joined to more than one order row.",
            hint="each payment belongs to one order: join ON o.order_id = p.order_id.",
        )
    seen = got.merge(payments, on="payment_id", suffixes=("", "_paid"))
    if (seen.order_id != seen.order_id_paid).any():
        raise WrongAnswer(
            f"{int((seen.order_id != seen.order_id_paid).sum())} rows join a payment to another order.",
            hint="the join needs the key condition o.order_id = p.order_id as well as the time bounds.",
        )
    want = joins.interval_expected(orders, payments, pd.Timedelta(0), WINDOW)
    delay = seen.paid_at - pd.to_datetime(seen.order_time)
    extra = seen[~seen.payment_id.isin(want.payment_id)]
    if len(extra):
        gaps = delay[extra.index]
        early, late = gaps[gaps < pd.Timedelta(0)], gaps[gaps > WINDOW]
        if len(late) and (len(early) or late.max() > pd.Timedelta(days=1)):
            raise WrongAnswer(
                f"{len(extra)} joined payments fall outside the 15 minutes after their order ({len(early)} before it, "
                f"{len(late)} later, one {late.max()} after): your join has no time bound — a regular join keeps "
                "every order and payment in state for ever.",
                hint="bound p.paid_at between the order's time and 15 minutes later in the join condition.",
            )
        if len(early):
            raise WrongAnswer(
                f"{len(early)} joined payments were made before their order.",
                hint="the lower bound is the order's time itself.",
            )
        raise WrongAnswer(
            f"{len(extra)} joined payments came more than 15 minutes after their order (up to {_minutes(late.max())}).",
            hint="check the upper bound of the interval: 15 minutes after o.order_time.",
        )
    missing = want[~want.payment_id.isin(got.payment_id)]
    if len(missing) and (missing.status == "failed").all() and (want.status == "failed").sum() == len(missing):
        raise WrongAnswer(
            f"the {len(missing)} failed payment attempts are missing.",
            hint="every attempt made within the 15 minutes is joined, whatever its status.",
        )
    on_bound = (missing.paid_at == missing.order_time) | (missing.paid_at == missing.order_time + WINDOW)
    if len(missing) and on_bound.all():
        raise WrongAnswer(
            f"{len(missing)} payments made exactly at a bound of the window (at the order's time or 15 minutes "
            "after) are missing.",
            hint="both bounds are included: p.paid_at >= … AND p.paid_at <= … (BETWEEN includes them too).",
        )
    if len(missing):
        kept = _minutes(delay.max()) if len(delay) else "none"
        raise WrongAnswer(
            f"{len(missing)} of {len(want)} payments made within 15 minutes of their order are missing "
            f"(the latest you kept came {kept} after its order).",
            hint="the window runs from o.order_time to o.order_time + INTERVAL '15' MINUTE, bounds included.",
        )


REGULAR = WrongAnswer(
    "a regular join against the prices changelog updates each order line whenever its product's price changes "
    "(and retracts the old row): the append-only sink cannot take that, and the result would be the latest price.",
    hint="join the version valid at the order's time: JOIN prices FOR SYSTEM_TIME AS OF <the order line's time>.",
)
PROCESSING = WrongAnswer(
    "that is a processing-time lookup: the price would be whatever the table holds when the row happens to be "
    "processed, which is not reproducible and not the price at the order's time (Flink refuses it on a Kafka table).",
    hint="FOR SYSTEM_TIME AS OF the order line's event-time column, not PROCTIME().",
)


@exercise("m03.l05.e2")
def temporal_join_prices(t_env, priced_sql, topics: dict) -> None:
    """Each order line priced with the version of its product's price valid at the order's time (temporal join)."""
    from delab.streaming import joins

    _insert_into(priced_sql, "priced_lines")
    known = {
        "consuming update": REGULAR,
        "proctime": PROCESSING,
        "processing-time temporal join": PROCESSING,
        "processing time temporal join": PROCESSING,
    }
    got = _run(t_env, priced_sql, topics["priced"], "e2 temporal join", known)
    _columns(got, ["order_id", "line_no", "product_id", "order_time", "price"], "order_lines and prices")
    if "PROCTIME" in priced_sql.upper():
        raise PROCESSING
    lines = _frame(topics["order_lines"], "order_time")
    prices = _frame(topics["prices"], "valid_from")
    want = joins.temporal_expected(lines, prices)
    keys = ["order_id", "line_no"]
    if got.duplicated(keys).any():
        raise WrongAnswer(
            f"{int(got.duplicated(keys).sum())} order lines appear more than once: they met several price versions.",
            hint="a temporal join picks ONE version per row: FOR SYSTEM_TIME AS OF the line's time.",
        )
    merged = want.merge(got, on=keys, how="outer", suffixes=("", "_got"), indicator=True)
    if (merged._merge == "right_only").any() or (merged._merge == "left_only").any():
        raise WrongAnswer(
            f"you wrote {len(got)} order lines, expected {len(want)}.",
            hint="an inner temporal join ON the product id keeps every line whose product has a price by then.",
        )
    wrong = merged[(merged.price - merged.price_got).abs() > 0.005]
    if len(wrong) and ((wrong.price * wrong.quantity - wrong.price_got).abs() <= 0.01).all():
        raise WrongAnswer(
            f"{len(wrong)} lines carry the line's total (price × quantity), not the product's price.",
            hint="price is the unit price of the product at the order's time.",
        )
    if len(wrong):
        latest = wrong.product_id.map(joins.latest_prices(prices))
        if ((latest - wrong.price_got).abs() <= 0.005).all():
            raise WrongAnswer(
                f"{len(wrong)} lines carry their product's latest price, not the one valid when they were ordered.",
                hint="FOR SYSTEM_TIME AS OF the order line's time.",
            )
        raise WrongAnswer(
            f"{len(wrong)} of {len(want)} lines have another price than the one valid at the order's time.",
            hint="join ON the product id, FOR SYSTEM_TIME AS OF the line's order_time.",
        )


def _reader_on(state_bytes, stats: dict, what: str):
    return learner_code(f"state_bytes on {what}")(state_bytes)(copy.deepcopy(stats))


def _summary(history: list[dict], like: dict) -> dict:
    """The ``summary`` block recomputed over the completed checkpoints of ``history`` (min, max, avg …)."""
    done = [c for c in history if c.get("status") == "COMPLETED"]
    summary = copy.deepcopy(like)
    for metric in ("state_size", "checkpointed_size"):
        values = [c.get(metric, 0) for c in done] or [0]
        summary[metric] = {"min": min(values), "max": max(values), "avg": sum(values) // len(values)}
    return summary


def _newer_smaller(stats: dict) -> dict:
    """The statistics after one more checkpoint completed, with less state (expired rows dropped) and written
    incrementally (RocksDB): its ``checkpointed_size`` is only what changed since the previous one."""
    newer = copy.deepcopy(stats)
    last = copy.deepcopy(newer["latest"]["completed"])
    last.update(
        id=last["id"] + 1,
        trigger_timestamp=last["trigger_timestamp"] + 1000,
        state_size=last["state_size"] * 3 // 4,
        checkpointed_size=max(last["state_size"] // 5, 1),
    )
    newer["latest"]["completed"] = last
    newer["history"] = [{**last, "className": "completed"}, *newer.get("history", [])]
    counts = newer.setdefault("counts", {})
    counts.update(total=counts.get("total", 0) + 1, completed=counts.get("completed", 0) + 1)
    newer["summary"] = _summary(newer["history"], newer.get("summary") or {})
    return newer


def _before_first_checkpoint(stats: dict) -> dict:
    """The statistics of a job whose first checkpoint has not completed: as the REST API gives them then."""
    fresh = copy.deepcopy(stats)
    fresh["counts"] = {key: 0 for key in (fresh.get("counts") or {"completed": 0})}
    fresh["latest"] = {"completed": None, "savepoint": None, "failed": None, "restored": None}
    fresh["history"] = []
    fresh["summary"] = _summary([], fresh.get("summary") or {})
    return fresh


@exercise("m03.l05.e3")
def join_state_size(state_bytes, job_ids: dict) -> None:
    """Reads a job's state size from its checkpoint statistics (REST API), for every job of the lab."""
    from delab.streaming import joins

    if not callable(state_bytes):
        raise WrongAnswer("state_bytes should be a function of the checkpoint statistics (a dict).")
    if not job_ids:
        raise WrongAnswer("job_ids is empty: run the two jobs of this section first.")
    for name, job_id in job_ids.items():
        stats = joins.checkpoints(job_id)
        want = joins.state_size(stats)
        got = _reader_on(state_bytes, stats, f"the {name} job's statistics")
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if not isinstance(got, int) or isinstance(got, bool):
            raise WrongAnswer(
                f"for the {name} job you returned {got!r} ({type(got).__name__}), not a number of bytes.",
                hint="the latest completed checkpoint's entry has a field with the state size in bytes.",
            )
        history = [c.get("state_size", 0) for c in stats.get("history", []) if c.get("status") == "COMPLETED"]
        if got != want:
            if len(history) > 1 and got == sum(history):
                raise WrongAnswer(
                    f"for the {name} job you added up {len(history)} checkpoints ({got:,} bytes).",
                    hint="each checkpoint is a full snapshot of the state: take the latest completed one only.",
                )
            if want and got in (round(want / 1024), round(want / 1024, 1), want // 1024):
                raise WrongAnswer(f"for the {name} job you returned kilobytes ({got}); return bytes ({want:,}).")
            raise WrongAnswer(
                f"for the {name} job you read {got:,} bytes; its latest completed checkpoint holds {want:,}.",
                hint="stats['latest']['completed'] describes the latest completed checkpoint.",
            )
    stats = joins.checkpoints(next(iter(job_ids.values())))
    # a moment later, a newer checkpoint is in progress (its size only partly known)
    running = copy.deepcopy(stats)
    pending = {**(running.get("history") or [{}])[0], "status": "IN_PROGRESS", "state_size": 0}
    pending["id"] = pending.get("id", 0) + 1
    running["history"] = [pending, *running.get("history", [])]
    running.setdefault("counts", {})["in_progress"] = 1
    if _reader_on(state_bytes, running, "statistics with a checkpoint in progress") != joins.state_size(running):
        raise WrongAnswer(
            "with a newer checkpoint still in progress your function does not return the latest COMPLETED one.",
            hint="history lists every checkpoint, newest first, whatever its status.",
        )
    # later still, a newer checkpoint completed with less state, written incrementally
    newer = _newer_smaller(stats) if joins.state_size(stats) is not None else stats
    got, want = _reader_on(state_bytes, newer, "statistics with a newer checkpoint"), joins.state_size(newer)
    if got != want:
        latest = newer["latest"]["completed"]
        if got == latest["checkpointed_size"]:
            raise WrongAnswer(
                "you read checkpointed_size: what the checkpoint wrote, which with incremental checkpoints (RocksDB) "
                "is only the change since the previous one.",
                hint="the size of the whole state is another field of the same entry.",
            )
        raise WrongAnswer(
            f"after a newer checkpoint completed with {want:,} bytes of state you returned {got!r}.",
            hint="read the latest completed checkpoint, not a summary over all of them or an earlier one.",
        )
    # and before the first checkpoint has completed: there is no size to read yet
    fresh = _before_first_checkpoint(stats)
    try:
        empty = state_bytes(fresh)
    except Exception as error:  # the reader must cope with a job that has not checkpointed yet
        raise WrongAnswer(
            f"before the first checkpoint completes your function fails ({type(error).__name__}: {error}).",
            hint="latest.completed is null until a checkpoint completes: return None then.",
        ) from None
    if empty is not None:
        raise WrongAnswer(
            f"before the first checkpoint completes your function returns {empty!r}, not None.",
            hint="latest.completed is null until a checkpoint completes: return None then.",
        )
