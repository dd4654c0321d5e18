"""Checks of lab 02.05 (error handling). The retry policy meets a real lock held by another session; validation
is judged against the defects the shop generator injected (not against a second copy of the rules); routing is
run over the real raw topic into a fresh dead-letter topic; alerts go to a real local webhook; the delivery audit
is compared with the real CDC topic after the crash and with crafted duplicates and losses."""

from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from collections.abc import Callable

from delab import clients
from delab.grading import WrongAnswer, exercise, learner_code

SCHEMA = "m02_l05"
ORDERS = f"{SCHEMA}.orders_clean"


# ----------------------------------------------------------------------------------------------- retries


def _attempts(fn) -> dict:
    stats = getattr(fn, "statistics", None)
    if not isinstance(stats, dict):
        raise WrongAnswer(
            "your function has no retry statistics: it is not wrapped by tenacity.",
            hint="decorate it with @tenacity.retry(...).",
        )
    return stats


def _time_budget(fn) -> float | None:
    """The seconds after which the policy stops retrying, read back from its tenacity stop strategy (None when
    it has no delay-based stop tenacity can tell): a setting, not a stopwatch, so a busy machine cannot change
    the verdict. With several stops combined by ``|``, the first that fires counts."""
    stop = getattr(getattr(fn, "retry", None), "stop", None)
    budgets = []
    for part in getattr(stop, "stops", (stop,)):
        delay = getattr(part, "max_delay", None)
        if isinstance(delay, int | float):
            budgets.append(float(delay))
    return min(budgets) if budgets else None


def _wait_problem(fn) -> str | None:
    """What the policy's wait strategy lacks of the text's "exponential backoff, capped at 0.5 s, a little jitter",
    read back from tenacity's wait objects (``a + b`` combines them); None when it has all three, or when it is
    a strategy of its own that cannot be read (then the run below judges it)."""
    import tenacity

    wait = getattr(getattr(fn, "retry", None), "wait", None)
    parts, stack = [], [wait]
    while stack:
        part = stack.pop()
        if isinstance(part, tenacity.wait_combine):
            stack.extend(part.wait_funcs)
        else:
            parts.append(part)
    if not all(isinstance(p, tenacity.wait.wait_base) for p in parts):
        return None
    exponential = [p for p in parts if isinstance(p, tenacity.wait_exponential | tenacity.wait_exponential_jitter)]
    if not exponential:
        if all(isinstance(p, tenacity.wait_fixed) and not p.wait_fixed for p in parts):
            return None  # no wait at all: the run below says so
        return "the waits do not grow: that is not exponential backoff"
    cap = max(float(p.max) for p in exponential)
    if cap > 1.0:
        return f"the backoff is capped at {cap:g} s" if cap < 1e6 else "the backoff has no cap"
    jitter = [
        p
        for p in parts
        if isinstance(p, tenacity.wait_random | tenacity.wait_random_exponential)
        or (isinstance(p, tenacity.wait_exponential_jitter) and p.jitter)
    ]
    if not jitter:
        return "the waits have no jitter: clients that failed together retry together"
    return None


@exercise("m02.l05.e1")
def errors_retry(retry_policy: Callable, set_status: Callable) -> None:
    """Transient lock failures are retried with backoff and a time limit; a permanent error fails at once."""
    import psycopg
    import tenacity

    from delab.loading import errors

    if isinstance(retry_policy, tenacity.BaseRetrying):
        fn = retry_policy.wraps(set_status)
    elif callable(retry_policy):
        fn = learner_code("applying retry_policy to set_status")(retry_policy)(set_status)
    else:
        raise WrongAnswer(
            f"retry_policy is a {type(retry_policy).__name__}, not a decorator.",
            hint="tenacity.retry(...) with keyword arguments returns a decorator.",
        )
    if not callable(fn):
        raise WrongAnswer("retry_policy(set_status) did not return a function.")
    # the time budget is read back from the policy (a setting, not a stopwatch: the same verdict on a busy machine)
    budget = _time_budget(fn)
    if budget is not None and budget > 2.8:
        raise WrongAnswer(
            f"your function keeps retrying for {budget:g} s.", hint="stop after 2 seconds (stop_after_delay)."
        )
    if budget is not None and budget < 1.5:
        raise WrongAnswer(f"your function gives up after {budget:g} s; the budget is 2 seconds.")
    problem = _wait_problem(fn)
    if problem:
        raise WrongAnswer(
            f"{problem}.",
            hint="wait_exponential(multiplier=0.05, max=0.5) + wait_random(0, 0.05): growing waits, capped, "
            "with a little jitter.",
        )
    with clients.postgres() as conn:
        conn.execute(
            f"INSERT INTO {ORDERS} (order_id, customer_id, order_ts, channel, total) "
            "VALUES (2, 95, '2026-03-01 11:36', 'app', 40.91) ON CONFLICT (order_id) DO UPDATE SET status = 'new'"
        )
        # 1. a lock held for 0.8 s: the write must get through
        with errors.row_locked(ORDERS, "order_id = 2", seconds=0.8):
            started = time.monotonic()
            try:
                fn(conn, 2, "paid")
            except psycopg.errors.LockNotAvailable:
                attempts = _attempts(fn).get("attempt_number", 1)
                if attempts > 1:
                    raise WrongAnswer(
                        f"your function gave up after {attempts} attempts in {time.monotonic() - started:.1f} s, "
                        "while the lock was held for only 0.8 s.",
                        hint="give up after a time budget of 2 s (stop_after_delay), not after a few attempts.",
                    ) from None
                raise WrongAnswer(
                    "a lock held for 0.8 s made your function fail.",
                    hint="retry on psycopg.errors.LockNotAvailable (retry_if_exception_type).",
                ) from None
            except tenacity.RetryError:
                raise WrongAnswer("your function gave up while the lock was held for only 0.8 s.") from None
            except NotImplementedError:
                raise
            except Exception as error:
                raise WrongAnswer(f"your function failed with {type(error).__name__}: {error}") from None
        stats = _attempts(fn)
        if conn.execute(f"SELECT status FROM {ORDERS} WHERE order_id = 2").fetchone()[0] != "paid":
            raise WrongAnswer("the status was not saved.")
        if stats.get("attempt_number", 1) < 2:
            raise WrongAnswer("the write went through at the first attempt although the row was locked.")
        if not stats.get("idle_for"):
            raise WrongAnswer(
                f"{stats['attempt_number']} attempts with no wait between them.",
                hint="add a wait strategy: wait_exponential (plus wait_random for jitter).",
            )
        # 2. a permanent error: fail at once
        try:
            fn(conn, 2, "lost in the post")
        except psycopg.errors.CheckViolation:
            pass
        except tenacity.RetryError:
            raise WrongAnswer(
                "a CHECK violation was retried until tenacity gave up.",
                hint="retry only the transient exception type; a constraint violation never goes away.",
            ) from None
        else:
            raise WrongAnswer("a status the CHECK constraint forbids did not raise.")
        if _attempts(fn).get("attempt_number", 1) > 1:
            raise WrongAnswer(
                f"a CHECK violation was tried {_attempts(fn).get('attempt_number')} times.",
                hint="retry only the transient exception type; a constraint violation never goes away.",
            )
        # 3. a lock that outlives the retry budget: give up in about 2 s, with the real error
        with errors.row_locked(ORDERS, "order_id = 2", seconds=3.2):
            started = time.monotonic()
            try:
                fn(conn, 2, "shipped")
            except psycopg.errors.LockNotAvailable:
                pass
            except tenacity.RetryError:
                raise WrongAnswer(
                    "after giving up, your function raised tenacity's RetryError.",
                    hint="re-raise the last exception itself (reraise=True): callers handle database errors.",
                ) from None
            else:
                raise WrongAnswer(
                    f"your function kept retrying for {time.monotonic() - started:.1f} s, until the lock was released.",
                    hint="stop after 2 seconds (stop_after_delay): a lock that is never released must not make the "
                    "write wait forever.",
                )
            waited = time.monotonic() - started
        # the stopwatch only for a stop tenacity cannot tell (see above), and then only from below: a busy
        # machine makes every wait longer, never shorter
        if budget is None and waited < 1.5:
            raise WrongAnswer(f"your function gave up after {waited:.1f} s; the budget is 2 seconds.")


# -------------------------------------------------------------------------------------------- validation


@exercise("m02.l05.e2")
def errors_validate(validate: Callable, events) -> None:
    """Exactly the orders the generator broke are invalid; duplicates and good orders pass."""
    checked = learner_code("validate")(validate)

    def run(order):
        try:
            return checked(order)
        except WrongAnswer as failed:
            if "KeyError" not in failed.message:
                raise
            raise WrongAnswer(
                failed.message, hint="an order may lack a field: test that the required ones are there first."
            ) from None

    samples = {
        "an order without customer_id": {
            "order_id": 1,
            "order_ts": "2026-03-01T10:00:00",
            "channel": "web",
            "lines": [],
        },
        "an order from an unknown channel": {
            "order_id": 1,
            "customer_id": min(events.known_customers),
            "order_ts": "2026-03-01T10:00:00",
            "channel": "fax",
            "lines": [{"product_id": 101, "quantity": 1, "unit_price": 5.0}],
        },
        "an order whose second line has a negative quantity": {
            "order_id": 1,
            "customer_id": min(events.known_customers),
            "order_ts": "2026-03-01T10:00:00",
            "channel": "web",
            "lines": [
                {"product_id": 101, "quantity": 2, "unit_price": 5.0},
                {"product_id": 102, "quantity": -1, "unit_price": 3.0},
            ],
        },
        "an order with no lines": {
            "order_id": 1,
            "customer_id": min(events.known_customers),
            "order_ts": "2026-03-01T10:00:00",
            "channel": "web",
            "lines": [],
        },
    }
    for what, order in samples.items():
        result = run(order)
        if not isinstance(result, list):
            raise WrongAnswer(f"for {what} you returned {result!r}, not a list of broken rules.")
        if not result:
            raise WrongAnswer(
                f"{what} passed your rules.",
                hint="look at every line, not only the first." if "second line" in what else None,
            )
    # the rules' bounds, which the generated events never sit on: a quantity of 0 is not positive, a price of 0
    # is not negative, an order stamped exactly at as_of is not later than it
    from delab.loading.errors import AS_OF

    def edge(**changes) -> dict:
        order = {
            "order_id": 900_001 + len(edges_made),
            "customer_id": min(events.known_customers),
            "order_ts": "2026-03-01T10:00:00",
            "channel": "web",
            "lines": [{"product_id": 101, "quantity": 2, "unit_price": 5.0}],
        }
        edges_made.append(order)
        return {**order, **changes}

    edges_made: list[dict] = []  # each edge order has its own id (a validator may remember ids it saw)

    edges = (
        (
            "a line with a quantity of 0",
            edge(lines=[{"product_id": 101, "quantity": 0, "unit_price": 5.0}]),
            True,
            "a quantity must be positive: 0 is not (> 0, not >= 0).",
        ),
        (
            "a line with a price of -0.5",
            edge(lines=[{"product_id": 101, "quantity": 1, "unit_price": -0.5}]),
            True,
            "every line's unit_price must be non-negative.",
        ),
        (
            "a free line (unit_price 0)",
            edge(lines=[{"product_id": 101, "quantity": 1, "unit_price": 0.0}]),
            False,
            "a price of 0 is non-negative: a free item is allowed (< 0 is the rule, not <= 0).",
        ),
        (
            "an order placed exactly at as_of",
            edge(order_ts=str(AS_OF)),
            False,
            "'not later than as_of' lets an order stamped at as_of itself pass (> as_of, not >=).",
        ),
    )
    for what, order, broken, hint in edges:
        result = run(order)
        if not isinstance(result, list):
            raise WrongAnswer(f"for {what} you returned {result!r}, not a list of broken rules.")
        if broken and not result:
            raise WrongAnswer(f"{what} passed your rules.", hint=hint)
        if not broken and result:
            raise WrongAnswer(f"{what} was rejected: {result}.", hint=hint)
    flagged_wrongly, missed = [], {}
    for _, value in events.records:
        try:
            order = json.loads(value)
        except ValueError:
            continue
        if not isinstance(order, dict):
            continue
        problems = run(order)
        defect = events.defects.get(order["order_id"])
        if defect and not problems:
            missed.setdefault(defect, []).append(order["order_id"])
        if not defect and problems:
            flagged_wrongly.append((order["order_id"], problems))
    if missed:
        kind, ids = next(iter(missed.items()))
        hints = {
            "unknown_customer": "check customer_id against known_customers.",
            "future_timestamp": "parse both timestamps (pd.Timestamp) and compare them, not their strings' lengths.",
            "negative_quantity": "look at every line's quantity, not only the first or the total.",
        }
        raise WrongAnswer(f"{len(ids)} orders with a {kind.replace('_', ' ')} passed, e.g. {ids[0]}.", hint=hints[kind])
    if flagged_wrongly:
        order_id, problems = flagged_wrongly[0]
        duplicate = order_id in events.duplicate_orders
        raise WrongAnswer(
            f"{len(flagged_wrongly)} valid orders were rejected, e.g. {order_id}: {problems}.",
            hint="an order seen twice is a duplicate for the load to absorb, not a broken rule."
            if duplicate
            else "re-read the rules: this order breaks none of them.",
        )


# --------------------------------------------------------------------------------------- dead letters


@exercise("m02.l05.e3")
def errors_route(route: Callable, raw_topic: str) -> None:
    """Valid orders land once in the table; every bad or poison record reaches the DLQ unchanged, with its reason."""
    from delab.loading import cdc, errors

    events = errors.order_events()
    raw = cdc.read_topic(raw_topic, decode=False)[: len(events.records)]
    if len(raw) < len(events.records):
        raise WrongAnswer(f"{raw_topic} holds {len(raw)} records, expected {len(events.records)}: run the cells above.")
    dlq = f"{SCHEMA}.orders_dlq.check_{uuid.uuid4().hex[:6]}"

    def run(message, conn, producer, dlq_topic):
        try:
            return route(message, conn, producer, dlq_topic)
        except NotImplementedError:
            raise
        except Exception as error:
            poison = message.key == b"poison"
            first = (str(error).strip().splitlines() or [""])[0]
            raise WrongAnswer(
                f"route failed on {'a poison record' if poison else 'the record'} at offset {message.offset} with "
                f"{type(error).__name__}: {first}",
                hint="a record that is not JSON (not even text) must go to the dead-letter topic, not crash the "
                "loop: catch the parse error."
                if poison
                else "a redelivered order (or the same order sent twice) must change nothing: upsert by order_id."
                if type(error).__name__ == "UniqueViolation"
                else "run route on that record in a cell of its own to see the whole error.",
            ) from None

    producer = clients.kafka_producer(acks="all")
    outcomes = []
    with clients.postgres() as conn:
        conn.execute(f"DELETE FROM {ORDERS}")
        try:
            for message in raw:
                outcomes.append(run(message, conn, producer, dlq))
            for message in raw[: len(raw) // 3]:  # redelivery after a restart
                run(message, conn, producer, dlq)
        finally:
            producer.flush()
            producer.close()
        loaded = {r[0]: float(r[1]) for r in conn.execute(f"SELECT order_id, total FROM {ORDERS}").fetchall()}
    dead_expected = {m.offset for m, (_, value) in zip(raw, events.records, strict=True) if _is_bad(value, events)}
    letters = cdc.read_topic(dlq, decode=False)
    by_source: dict[int, list] = {}
    for letter in letters:
        source = letter.headers.get("error.source", b"").decode()
        try:
            offset = int(source.rsplit("/", 1)[-1])
        except ValueError:
            raise WrongAnswer(
                f"a dead letter has error.source = {source!r}.", hint='use "<topic>/<partition>/<offset>".'
            ) from None
        by_source.setdefault(offset, []).append(letter)
        if not letter.headers.get("error.reason"):
            raise WrongAnswer("a dead letter has no error.reason header.", hint="headers=[('error.reason', b'...')]")
    raw_by_offset = {m.offset: m for m in raw}
    missing = sorted(dead_expected - set(by_source))
    if missing:
        poison = [o for o in missing if raw_by_offset[o].key == b"poison"]
        raise WrongAnswer(
            f"{len(missing)} bad records never reached the dead-letter topic"
            + (f", {len(poison)} of them poison (not JSON)." if poison else "."),
            hint="a record that cannot be parsed must be dead-lettered too, not dropped or crash the loop.",
        )
    wrongly = sorted(set(by_source) - dead_expected)
    if wrongly:
        duplicates = [o for o in wrongly if int(raw_by_offset[o].key or 0) in events.duplicate_orders]
        raise WrongAnswer(
            f"{len(wrongly)} valid records were dead-lettered",
            hint="a duplicate order is absorbed by an idempotent load (ON CONFLICT), not an error."
            if duplicates
            else "only records that fail to parse or break a rule belong there.",
        )
    for offset, copies in by_source.items():
        if any(c.value != raw_by_offset[offset].value or c.key != raw_by_offset[offset].key for c in copies):
            raise WrongAnswer(
                f"the dead letter of offset {offset} does not carry the original key and value.",
                hint="send message.key and message.value as they came: someone must be able to replay them.",
            )
    valid = _valid_totals(events)
    if set(loaded) != set(valid):
        raise WrongAnswer(
            f"orders_clean holds {len(loaded)} orders; {len(valid)} valid distinct orders were sent.",
            hint="load every valid order once (upsert by order_id).",
        )
    off = [k for k in valid if abs(loaded[k] - valid[k]) > 0.011]
    if off:
        raise WrongAnswer(f"the total of order {off[0]} is {loaded[off[0]]}, not {valid[off[0]]}.")
    if set(outcomes) - {"clean", "dead"}:
        raise WrongAnswer(f"route returned {sorted(set(map(repr, outcomes)) - {repr('clean'), repr('dead')})}.")
    said = [o for m, o in zip(raw, outcomes, strict=True) if o != ("dead" if m.offset in dead_expected else "clean")]
    if said:
        raise WrongAnswer(
            f"route returned {said[0]!r} for {len(said)} record(s) it handled the other way.",
            hint='return "clean" when the order was loaded and "dead" when it went to the dead-letter topic.',
        )


def _is_bad(value: bytes, events) -> bool:
    try:
        order = json.loads(value)
    except ValueError:
        return True
    return not isinstance(order, dict) or order.get("order_id") in events.defects


def _valid_totals(events) -> dict[int, float]:
    out = {}
    for _, value in events.records:
        if _is_bad(value, events):
            continue
        order = json.loads(value)
        out[order["order_id"]] = round(sum(li["quantity"] * li["unit_price"] for li in order["lines"]), 2)
    return out


# ------------------------------------------------------------------------------------------------ alerts

SCENARIOS = [  # (metrics, should alert, what it shows)
    ({"processed": 1000, "failed": 10, "lag": 5}, False, "1 % errors and a lag of 5"),
    ({"processed": 1000, "failed": 80, "lag": 5}, True, "8 % errors"),
    ({"processed": 1000, "failed": 0, "lag": 500}, True, "a lag of 500 records"),
    ({"processed": 0, "failed": 0, "lag": 0}, False, "nothing processed yet"),
    ({"processed": 20, "failed": 2, "lag": 0}, True, "2 failures out of 20 (10 %)"),
    ({"processed": 5000, "failed": 40, "lag": 100}, False, "40 failures out of 5000 (0.8 %) and a lag of exactly 100"),
    ({"processed": 100, "failed": 20, "lag": 300}, True, "20 % errors and a lag of 300 at once"),
    ({"processed": 1000, "failed": 50, "lag": 0}, False, "exactly 5 % errors"),
    ({"processed": 1000, "failed": 52, "lag": 0}, True, "52 failures out of 1000 processed (5.2 %)"),
    ({"processed": 10, "failed": 0, "lag": 101}, True, "a lag of 101"),
]


@exercise("m02.l05.e4")
def errors_alert(alert_if_unhealthy: Callable) -> None:
    """One alert, with a reason, exactly when the error rate is over 5 % or the lag over 100."""
    from delab.localhttp import Receiver

    run = learner_code("alert_if_unhealthy")(alert_if_unhealthy)
    with Receiver() as hook:
        for metrics, should, what in SCENARIOS:
            hook.clear()
            try:
                result = run(dict(metrics), hook.url)
            except WrongAnswer as failed:
                if "ZeroDivisionError" not in failed.message:
                    raise
                raise WrongAnswer(
                    f"{failed.message} (for {what}).",
                    hint="with nothing processed there is no error rate yet: guard the division.",
                ) from None
            messages = hook.wait_for(1, timeout=1.0 if should else 0.3)
            if should and not messages:
                raise WrongAnswer(
                    f"no alert reached the webhook for {what}.",
                    hint="the error rate is failed / processed; the lag counts records not yet processed.",
                )
            if not should and messages:
                raise WrongAnswer(
                    f"you alerted for {what}.",
                    hint="compare the rate (failed / processed) with 5 %, not the count; 'above' means >.",
                )
            if len(messages) > 1:
                raise WrongAnswer(f"{len(messages)} messages for {what}: send one alert per check.")
            if result is not should:
                raise WrongAnswer(f"for {what} you returned {result!r}; return whether an alert was sent.")
            if should and not (isinstance(messages[0], dict) and messages[0].get("reason")):
                raise WrongAnswer("the alert has no 'reason'.", hint="POST JSON: {'reason': ..., **metrics}.")
            if should and not (
                all(messages[0].get(k) == v for k, v in metrics.items()) or metrics in messages[0].values()
            ):
                raise WrongAnswer(
                    f"the alert for {what} does not carry the metrics {metrics}.",
                    hint="whoever is paged needs the figures: POST JSON {'reason': ..., **metrics}.",
                )


# ------------------------------------------------------------------------------------------------ audit


def _expected_audit(messages, source_ids) -> dict:
    seen, duplicates, captured = set(), 0, set()
    for m in messages:
        if m.value is None:
            continue
        change = (m.value["source"]["lsn"], m.key["payment_id"], m.value["op"])
        duplicates += change in seen
        seen.add(change)
        captured.add(m.key["payment_id"])
    return {"missing": set(source_ids) - captured, "duplicates": duplicates}


@exercise("m02.l05.e5")
def errors_audit(audit_delivery: Callable, topic: str, source_ids: set) -> None:
    """Lost rows and repeated change records are counted exactly, after the real crash and on crafted streams."""
    from delab.loading import cdc

    run = learner_code("audit_delivery")(audit_delivery)
    messages = cdc.read_topic(topic)
    with clients.postgres() as conn:
        current = {r[0] for r in conn.execute(f"SELECT payment_id FROM {SCHEMA}.payments").fetchall()}
    if not current <= set(source_ids):
        raise WrongAnswer("source_ids lacks payments that are in the table now.")
    rng = random.Random(5)
    changes = [m for m in messages if m.value is not None]
    lost_key = rng.choice(sorted(current))
    end = max((m.offset for m in messages), default=-1) + 1
    repeated = [  # re-sent by a restarted connector: the same change at a new offset
        dataclasses.replace(m, offset=end + i)
        for i, m in enumerate(rng.sample([m for m in changes if m.key != {"payment_id": lost_key}], 4))
    ]
    crafted = [m for m in messages if m.key != {"payment_id": lost_key}] + repeated
    cases = [("the real topic", messages), ("a stream with 4 records re-sent and one payment lost", crafted)]
    for what, stream in cases:
        want = _expected_audit(stream, source_ids)
        got = run(stream, set(source_ids))
        if not isinstance(got, dict) or {"missing", "duplicates"} - set(got):
            raise WrongAnswer(f"expected a dict with missing and duplicates, got {got!r}.")
        try:
            missing = {int(k) for k in got["missing"]}
        except (TypeError, ValueError):
            raise WrongAnswer(
                f"missing should be a set of payment ids, you returned {got['missing']!r:.120}.",
                hint="the ids as ints: a message's key is a dict, {'payment_id': 7} — take its value.",
            ) from None
        if missing != want["missing"]:
            raise WrongAnswer(
                f"on {what}, missing should be {sorted(want['missing'])}, you found {sorted(missing)[:10]}.",
                hint="a source id is missing if no change record (any op) carries its key.",
            )
        if got["duplicates"] != want["duplicates"]:
            per_key = len(changes) - len({m.key["payment_id"] for m in changes})
            hint = (
                "a later update of the same row is a new change: include the LSN (and op) in the identity."
                if got["duplicates"] >= per_key and what == "the real topic"
                else "the same change is the same (source.lsn, key, op); Kafka offsets differ for a re-sent copy."
            )
            raise WrongAnswer(
                f"on {what}, duplicates should be {want['duplicates']}, you counted {got['duplicates']}.", hint=hint
            )
