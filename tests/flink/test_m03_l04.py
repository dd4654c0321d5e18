"""Checks of lab 03.04 (windowed aggregations): each runs a real job on the stack's Flink cluster."""

from __future__ import annotations

import pytest

from delab import config, datasets, stack
from delab.checks.m03 import l04_windows as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.streaming import flink_jobs, windows

pytestmark = pytest.mark.stack

TUMBLE = "TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(event_time), INTERVAL {size}))"
PER_HOUR = """INSERT INTO clicks_per_hour SELECT window_start, window_end, event_type, {agg} FROM {source}
GROUP BY window_start, window_end, event_type"""
ACTIVE = """INSERT INTO active_sessions SELECT window_start, window_end, {agg} FROM {source}
GROUP BY window_start, window_end"""
HOP = "TABLE(HOP(TABLE clicks, DESCRIPTOR(event_time), INTERVAL {slide}, INTERVAL {size}))"
VISITS = """INSERT INTO visits SELECT {key}, window_start, window_end, COUNT(*) FROM
TABLE(SESSION(TABLE clicks PARTITION BY {key}, DESCRIPTOR(event_time), INTERVAL '{gap}' MINUTE)) {where}
GROUP BY {key}, window_start, window_end"""


@pytest.fixture(scope="module")
def lab():
    ns = stack.namespace("m03_l04_tests")
    topics = flink_jobs.fresh_topics(ns, ["clicks", "per_hour", "active_sessions", "visits"])
    flink_jobs.produce_json(topics["clicks"], flink_jobs.click_events(datasets.shop(seed=5, scale=0.01).clicks))
    bootstrap = config.kafka().bootstrap_servers
    t_env = flink_jobs.table_environment("m03_l04 tests")
    t_env.execute_sql(windows.clicks_ddl(topics["clicks"], bootstrap))
    sinks = {
        "clicks_per_hour": (
            "window_start TIMESTAMP(3), window_end TIMESTAMP(3), event_type STRING, events BIGINT",
            "per_hour",
        ),
        "active_sessions": ("window_start TIMESTAMP(3), window_end TIMESTAMP(3), sessions BIGINT", "active_sessions"),
        "visits": ("customer_id BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), events BIGINT", "visits"),
    }
    for table, (columns, topic) in sinks.items():
        t_env.execute_sql(windows.sink_ddl(table, columns, topics[topic], bootstrap))
    return t_env, topics


def test_tumbling_right_answer(lab):
    checks.tumbling_window_counts(
        *lab[:1], PER_HOUR.format(agg="COUNT(*)", source=TUMBLE.format(size="'1' HOUR")), lab[1]
    )


def test_tumbling_rejects_half_hour_windows(lab):
    sql = PER_HOUR.format(agg="COUNT(*)", source=TUMBLE.format(size="'30' MINUTE"))
    with pytest.raises(WrongAnswer, match="not one hour"):
        checks.tumbling_window_counts(lab[0], sql, lab[1])


def test_tumbling_rejects_hopping_windows(lab):
    sql = PER_HOUR.format(agg="COUNT(*)", source=HOP.format(slide="'15' MINUTE", size="'1' HOUR"))
    with pytest.raises(WrongAnswer, match="overlap"):
        checks.tumbling_window_counts(lab[0], sql, lab[1])


def test_tumbling_rejects_distinct_sessions_instead_of_clicks(lab):
    sql = PER_HOUR.format(agg="COUNT(DISTINCT session_id)", source=TUMBLE.format(size="'1' HOUR"))
    with pytest.raises(WrongAnswer, match="your counts add up to"):
        checks.tumbling_window_counts(lab[0], sql, lab[1])


def test_tumbling_accepts_a_leading_comment(lab):
    # used to fail: "expected one statement: INSERT INTO clicks_per_hour SELECT ..."
    sql = "-- clicks per hour and type\n" + PER_HOUR.format(agg="COUNT(*)", source=TUMBLE.format(size="'1' HOUR"))
    checks.tumbling_window_counts(lab[0], sql, lab[1])


def test_tumbling_says_window_time_is_not_the_end(lab):
    # used to say "not one hour ... the window's size is the last argument of TUMBLE"
    sql = """INSERT INTO clicks_per_hour SELECT window_start, window_time, event_type, COUNT(*)
    FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(event_time), INTERVAL '1' HOUR))
    GROUP BY window_start, window_end, window_time, event_type"""
    with pytest.raises(WrongAnswer, match="you wrote window_time there"):
        checks.tumbling_window_counts(lab[0], sql, lab[1])


def test_tumbling_says_clicks_were_left_out(lab):
    sql = PER_HOUR.format(agg="COUNT(product_id)", source=TUMBLE.format(size="'1' HOUR"))
    with pytest.raises(WrongAnswer, match=r"COUNT\(column\) skips"):
        checks.tumbling_window_counts(lab[0], sql, lab[1])


def test_tumbling_placeholder(lab):
    with pytest.raises(NotSolvedYet):
        checks.tumbling_window_counts(lab[0], ..., lab[1])


def test_hopping_right_answer(lab):
    sql = ACTIVE.format(agg="COUNT(DISTINCT session_id)", source=HOP.format(slide="'15' MINUTE", size="'1' HOUR"))
    checks.hopping_active_sessions(lab[0], sql, lab[1])


def test_hopping_rejects_counting_events(lab):
    sql = ACTIVE.format(agg="COUNT(*)", source=HOP.format(slide="'15' MINUTE", size="'1' HOUR"))
    with pytest.raises(WrongAnswer, match="counted events, not sessions"):
        checks.hopping_active_sessions(lab[0], sql, lab[1])


def test_hopping_rejects_swapped_slide_and_size(lab):
    sql = ACTIVE.format(agg="COUNT(DISTINCT session_id)", source=HOP.format(slide="'1' HOUR", size="'15' MINUTE"))
    with pytest.raises(WrongAnswer, match="integral multiple of slide"):  # Flink's own message, passed on
        checks.hopping_active_sessions(lab[0], sql, lab[1])


def test_hopping_rejects_tumbling_windows(lab):
    sql = ACTIVE.format(agg="COUNT(DISTINCT session_id)", source=TUMBLE.format(size="'1' HOUR"))
    with pytest.raises(WrongAnswer, match="do not overlap"):
        checks.hopping_active_sessions(lab[0], sql, lab[1])


def test_hopping_says_the_slide_is_wrong(lab):
    # used to say "windows have the wrong number of sessions ... COUNT(DISTINCT session_id)"
    sql = ACTIVE.format(agg="COUNT(DISTINCT session_id)", source=HOP.format(slide="'30' MINUTE", size="'1' HOUR"))
    with pytest.raises(WrongAnswer, match="every 30 minutes, not every 15"):
        checks.hopping_active_sessions(lab[0], sql, lab[1])


def test_hopping_says_customers_are_not_sessions(lab):
    sql = ACTIVE.format(agg="COUNT(DISTINCT customer_id)", source=HOP.format(slide="'15' MINUTE", size="'1' HOUR"))
    with pytest.raises(WrongAnswer, match="distinct customers"):
        checks.hopping_active_sessions(lab[0], sql, lab[1])


def test_sessions_right_answer(lab):
    sql = VISITS.format(key="customer_id", gap=30, where="WHERE customer_id IS NOT NULL")
    checks.session_window_visits(lab[0], sql, lab[1])


def test_sessions_reject_anonymous_clicks(lab):
    with pytest.raises(WrongAnswer, match="anonymous"):
        checks.session_window_visits(lab[0], VISITS.format(key="customer_id", gap=30, where=""), lab[1])


def test_sessions_reject_a_shorter_gap(lab):
    sql = VISITS.format(key="customer_id", gap=10, where="WHERE customer_id IS NOT NULL")
    with pytest.raises(WrongAnswer, match="gap of 10 minutes"):
        checks.session_window_visits(lab[0], sql, lab[1])


def test_sessions_reject_the_site_session_as_key(lab):
    with pytest.raises(WrongAnswer, match="session id"):
        checks.session_window_visits(lab[0], VISITS.format(key="session_id", gap=30, where=""), lab[1])


def test_sessions_accept_a_filter_before_the_window(lab):
    # filtering in a CTE before SESSION gives the same visits: the watermark comes from every click either way
    sql = """INSERT INTO visits WITH known AS (SELECT * FROM clicks WHERE customer_id IS NOT NULL)
    SELECT customer_id, window_start, window_end, COUNT(*)
    FROM TABLE(SESSION(TABLE known PARTITION BY customer_id, DESCRIPTOR(event_time), INTERVAL '30' MINUTE))
    GROUP BY customer_id, window_start, window_end"""
    checks.session_window_visits(lab[0], sql, lab[1])


def test_sessions_reject_counting_sessions_per_visit(lab):
    # used to say "N of M visits differ" with the whole query as the hint
    sql = VISITS.format(key="customer_id", gap=30, where="WHERE customer_id IS NOT NULL").replace(
        "COUNT(*)", "COUNT(DISTINCT session_id)"
    )
    with pytest.raises(WrongAnswer, match="sessions per visit, not clicks"):
        checks.session_window_visits(lab[0], sql, lab[1])


def test_sessions_reject_fixed_windows(lab):
    sql = """INSERT INTO visits SELECT customer_id, window_start, window_end, COUNT(*)
    FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(event_time), INTERVAL '30' MINUTE)) WHERE customer_id IS NOT NULL
    GROUP BY customer_id, window_start, window_end"""
    with pytest.raises(WrongAnswer, match="fixed windows, not visits"):
        checks.session_window_visits(lab[0], sql, lab[1])


def test_sessions_reject_dropping_one_click_visits(lab):
    sql = VISITS.format(key="customer_id", gap=30, where="WHERE customer_id IS NOT NULL") + " HAVING COUNT(*) > 1"
    with pytest.raises(WrongAnswer, match="windows are missing"):
        checks.session_window_visits(lab[0], sql, lab[1])


def test_checks_say_what_flink_refused(lab):
    with pytest.raises(WrongAnswer, match=r"Flink could not run your INSERT: .*sessionz"):
        checks.session_window_visits(lab[0], "INSERT INTO visits SELECT sessionz FROM clicks", lab[1])


def test_checks_reject_a_select_without_insert(lab):
    with pytest.raises(WrongAnswer, match="INSERT INTO visits"):
        checks.session_window_visits(lab[0], "SELECT * FROM clicks", lab[1])
