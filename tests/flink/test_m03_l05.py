"""Checks of lab 03.05 (stream joins): each runs real jobs on the stack's Flink cluster."""

from __future__ import annotations

import pytest

from delab import config, datasets, stack
from delab.checks.m03 import l05_joins as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.streaming import flink_jobs, joins, windows

pytestmark = pytest.mark.stack

PAID = """INSERT INTO paid_orders SELECT o.order_id, o.order_time, p.payment_id, p.amount, p.status
FROM orders o JOIN payments p ON o.order_id = p.order_id {bound}"""
BETWEEN = "AND p.paid_at BETWEEN o.order_time AND o.order_time + INTERVAL '{minutes}' MINUTE"
PRICED = """INSERT INTO priced_lines SELECT l.order_id, l.line_no, l.product_id, l.quantity, l.order_time, p.price
FROM order_lines AS l JOIN prices {version} AS p ON l.product_id = p.product_id"""


@pytest.fixture(scope="module")
def lab():
    ns = stack.namespace("m03_l05_tests")
    flink_jobs.cancel_jobs(ns.prefix)
    topics = flink_jobs.fresh_topics(ns, ["orders", "payments", "order_lines", "prices", "paid", "priced", "live"])
    shop = datasets.shop(seed=5, scale=0.02)
    joins.publish(shop, topics)
    bootstrap = config.kafka().bootstrap_servers
    t_env = flink_jobs.table_environment(f"{ns.prefix} tests")
    for ddl in joins.source_ddl(topics, bootstrap) + joins.source_ddl(topics, bootstrap, "_live", bounded=False):
        t_env.execute_sql(ddl)
    columns = "order_id BIGINT, order_time TIMESTAMP(3), payment_id BIGINT, amount DOUBLE, status STRING"
    t_env.execute_sql(windows.sink_ddl("paid_orders", columns, topics["paid"], bootstrap))
    t_env.execute_sql(windows.sink_ddl("live_out", columns, topics["live"], bootstrap))
    lines = "order_id BIGINT, line_no INT, product_id BIGINT, quantity INT, order_time TIMESTAMP(3), price DOUBLE"
    t_env.execute_sql(windows.sink_ddl("priced_lines", lines, topics["priced"], bootstrap))
    yield t_env, topics, shop, ns
    flink_jobs.cancel_jobs(ns.prefix)


@pytest.fixture(scope="module")
def live_jobs(lab):
    """One unbounded regular join with a checkpoint every second, settled and cancelled."""
    t_env, topics, shop, ns = lab
    t_env.get_config().set("execution.checkpointing.interval", "1 s")
    sql = PAID.format(bound="").replace("paid_orders", "live_out").replace("orders o", "orders_live o")
    sql = sql.replace("payments p", "payments_live p")
    job_id = joins.start(t_env, sql, f"{ns.prefix} regular join")
    try:
        joins.settle(job_id, topics["live"], len(joins.orders(shop).merge(joins.payments(shop))))
    finally:
        flink_jobs.cancel_jobs(ns.prefix)
        t_env.get_config().set("execution.checkpointing.interval", "1 h")
    return {"regular": job_id}


# ----------------------------------------------------------------------------------------- e1 interval join


def test_interval_join_right_answer(lab):
    checks.interval_join_payments(lab[0], PAID.format(bound=BETWEEN.format(minutes=15)), lab[1])


def test_interval_join_rejects_regular_join(lab):
    with pytest.raises(WrongAnswer, match="no time bound"):
        checks.interval_join_payments(lab[0], PAID.format(bound=""), lab[1])


def test_interval_join_rejects_narrow_bound(lab):
    with pytest.raises(WrongAnswer, match="made within 15 minutes of their order are missing"):
        checks.interval_join_payments(lab[0], PAID.format(bound=BETWEEN.format(minutes=5)), lab[1])


def test_interval_join_rejects_wide_bound(lab):
    with pytest.raises(WrongAnswer, match=r"more than 15 minutes after their order \(up to"):
        checks.interval_join_payments(lab[0], PAID.format(bound=BETWEEN.format(minutes=60)), lab[1])


def test_payments_sit_on_the_edges_of_the_window(lab):
    shop = lab[2]
    pairs = joins.orders(shop).merge(joins.payments(shop), on="order_id")
    delays = set(pairs.paid_at - pairs.order_time)
    assert set(joins.EDGE_DELAYS.values()) <= delays


def test_interval_join_rejects_excluded_bounds(lab):
    # used to pass: no payment sat exactly on a bound
    sql = PAID.format(bound="AND p.paid_at > o.order_time AND p.paid_at < o.order_time + INTERVAL '15' MINUTE")
    with pytest.raises(WrongAnswer, match="exactly at a bound"):
        checks.interval_join_payments(lab[0], sql, lab[1])


def test_interval_join_rejects_a_window_before_the_order(lab):
    # used to pass: no payment was made in the 15 minutes before its order
    bound = "AND p.paid_at BETWEEN o.order_time - INTERVAL '15' MINUTE AND o.order_time + INTERVAL '15' MINUTE"
    with pytest.raises(WrongAnswer, match="made before their order"):
        checks.interval_join_payments(lab[0], PAID.format(bound=bound), lab[1])


def test_interval_join_rejects_sixteen_minutes(lab):
    # used to pass with the lab's data: its first payment after 15 minutes came at 17:32 (now one at 15:01)
    with pytest.raises(WrongAnswer, match="came more than 15 minutes after their order"):
        checks.interval_join_payments(lab[0], PAID.format(bound=BETWEEN.format(minutes=16)), lab[1])


def test_interval_join_says_failed_attempts_are_missing(lab):
    sql = PAID.format(bound=BETWEEN.format(minutes=15)) + " WHERE p.status <> 'failed'"
    with pytest.raises(WrongAnswer, match="failed payment attempts are missing"):
        checks.interval_join_payments(lab[0], sql, lab[1])


def test_interval_join_accepts_the_condition_on_the_order_and_a_comment(lab):
    # a leading comment used to fail: "expected one statement: INSERT INTO paid_orders SELECT ..."
    bound = "AND o.order_time BETWEEN p.paid_at - INTERVAL '15' MINUTE AND p.paid_at"
    checks.interval_join_payments(lab[0], "-- within 15 minutes\n" + PAID.format(bound=bound), lab[1])


def test_interval_join_placeholder(lab):
    with pytest.raises(NotSolvedYet, match="placeholder"):
        checks.interval_join_payments(lab[0], ..., lab[1])


# ----------------------------------------------------------------------------------------- e2 temporal join


def test_temporal_join_right_answer(lab):
    checks.temporal_join_prices(lab[0], PRICED.format(version="FOR SYSTEM_TIME AS OF l.order_time"), lab[1])


def test_temporal_join_rejects_regular_join(lab):
    with pytest.raises(WrongAnswer, match="regular join against the prices changelog"):
        checks.temporal_join_prices(lab[0], PRICED.format(version=""), lab[1])


def test_temporal_join_rejects_processing_time(lab):
    with pytest.raises(WrongAnswer, match="processing-time lookup"):
        checks.temporal_join_prices(lab[0], PRICED.format(version="FOR SYSTEM_TIME AS OF PROCTIME()"), lab[1])


def test_temporal_join_says_price_times_quantity(lab):
    sql = PRICED.format(version="FOR SYSTEM_TIME AS OF l.order_time").replace("p.price", "p.price * l.quantity")
    with pytest.raises(WrongAnswer, match="price × quantity"):
        checks.temporal_join_prices(lab[0], sql, lab[1])


def test_temporal_join_placeholder(lab):
    with pytest.raises(NotSolvedYet):
        checks.temporal_join_prices(lab[0], ..., lab[1])


# ------------------------------------------------------------------------------------------- e3 state size


def right(stats):
    completed = (stats.get("latest") or {}).get("completed")
    return None if completed is None else completed["state_size"]


def test_state_size_right_answer(live_jobs):
    assert joins.state_size(joins.checkpoints(live_jobs["regular"])) > 0
    checks.join_state_size(right, live_jobs)


def test_state_size_rejects_newest_history_entry(live_jobs):
    def newest(stats):
        return stats["history"][0]["state_size"] if stats["history"] else None

    with pytest.raises(WrongAnswer, match="in progress"):
        checks.join_state_size(newest, live_jobs)


def test_state_size_rejects_sum_of_checkpoints(live_jobs):
    def total(stats):
        return sum(c["state_size"] for c in stats["history"] if c["status"] == "COMPLETED") or None

    with pytest.raises(WrongAnswer, match="added up"):
        checks.join_state_size(total, live_jobs)


def test_state_size_rejects_crash_before_first_checkpoint(live_jobs):
    def strict(stats):
        return stats["latest"]["completed"]["state_size"]

    with pytest.raises(WrongAnswer, match="before the first checkpoint completes your function fails"):
        checks.join_state_size(strict, live_jobs)


def test_state_size_rejects_kilobytes(live_jobs):
    def kilobytes(stats):
        size = right(stats)
        return None if size is None else size // 1024

    with pytest.raises(WrongAnswer, match="kilobytes"):
        checks.join_state_size(kilobytes, live_jobs)


def test_state_size_rejects_checkpointed_size(live_jobs):
    # used to pass: with the hashmap backend checkpointed_size equals state_size
    def checkpointed(stats):
        completed = (stats.get("latest") or {}).get("completed")
        return None if completed is None else completed["checkpointed_size"]

    with pytest.raises(WrongAnswer, match="you read checkpointed_size"):
        checks.join_state_size(checkpointed, live_jobs)


def test_state_size_rejects_the_summary_maximum(live_jobs):
    # used to be rejected only for returning a number before the first checkpoint
    def largest(stats):
        return stats["summary"]["state_size"]["max"] or None

    with pytest.raises(WrongAnswer, match="newer checkpoint completed"):
        checks.join_state_size(largest, live_jobs)


def test_state_size_accepts_reading_the_counts_first(live_jobs):
    # used to fail: the check's "no checkpoint yet" statistics still counted completed checkpoints
    def by_counts(stats):
        if stats["counts"]["completed"] == 0:
            return None
        return stats["latest"]["completed"]["state_size"]

    checks.join_state_size(by_counts, live_jobs)


def test_state_size_placeholder(live_jobs):
    def todo(stats):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet, match="NotImplementedError"):
        checks.join_state_size(todo, live_jobs)
    with pytest.raises(NotSolvedYet):
        checks.join_state_size(..., live_jobs)
