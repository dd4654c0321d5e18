"""Checks of lab 02.06 (performance and data quality): right answers pass, realistic wrong ones are rejected."""

from __future__ import annotations

from datetime import timedelta

import pytest

from delab.checks.m02 import l06_performance_quality as checks
from delab.grading import NotSolvedYet, WrongAnswer

COLUMNS = """event_id bigint, session_id bigint, customer_id bigint, event_type text, product_id bigint,
             event_time timestamp NOT NULL, ingest_time timestamp"""


def _partitioned(conn, table, first_day, days, step=1, default=True):
    conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    conn.execute(f"CREATE TABLE {table} ({COLUMNS}) PARTITION BY RANGE (event_time)")
    for k in range(0, days, step):
        lo, hi = first_day + timedelta(days=k), first_day + timedelta(days=min(k + step, days))
        conn.execute(f"CREATE TABLE {table}_{k} PARTITION OF {table} FOR VALUES FROM ('{lo}') TO ('{hi}')")
    if default:
        conn.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")


def partitions_good(conn, table, first_day, days):
    _partitioned(conn, table, first_day, days)


def partitions_weekly(conn, table, first_day, days):
    _partitioned(conn, table, first_day, days, step=7)


def partitions_without_default(conn, table, first_day, days):
    _partitioned(conn, table, first_day, days, default=False)


def partitions_by_event_type(conn, table, first_day, days):
    conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    conn.execute(f"CREATE TABLE {table} ({COLUMNS}) PARTITION BY LIST (event_type)")
    conn.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")


@pytest.mark.stack
def test_partitions_accept_daily_ranges_with_default():
    checks.daily_partitions(partitions_good)


def partitions_one_day_short(conn, table, first_day, days):
    # range(1, days): off by one at the start (the first day falls into the default partition)
    _partitioned(conn, table, first_day + timedelta(days=1), days - 1)


def partitions_of_the_notebook(conn, table, first_day, days):
    # the notebook's dates typed in instead of the arguments
    from datetime import date

    _partitioned(conn, table, date(2026, 3, 1), 7)


def partitions_ending_a_second_early(conn, table, first_day, days):
    # inclusive bounds written as [day 00:00, day 23:59:59]: the last second of every day lands in the default
    conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    conn.execute(f"CREATE TABLE {table} ({COLUMNS}) PARTITION BY RANGE (event_time)")
    for k in range(days):
        day = first_day + timedelta(days=k)
        conn.execute(f"CREATE TABLE {table}_{k} PARTITION OF {table} FOR VALUES FROM ('{day}') TO ('{day} 23:59:59')")
    conn.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")


@pytest.mark.stack
@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (partitions_one_day_short, "asked for 7 daily partitions from 2026-03-08, got 6"),
        (partitions_of_the_notebook, "asked for 7 daily partitions from 2026-03-08"),
        (partitions_ending_a_second_early, "spanning 0 day"),
    ],
)
def test_partitions_reject_wrong_bounds(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.daily_partitions(answer)


@pytest.mark.stack
def test_partitions_reject_weekly_and_list():
    with pytest.raises(WrongAnswer, match="spanning 7 day"):
        checks.daily_partitions(partitions_weekly)
    with pytest.raises(WrongAnswer, match=r"partitioned by list \(event_type\)"):
        checks.daily_partitions(partitions_by_event_type)


@pytest.mark.stack
def test_partitions_reject_missing_default_and_placeholder():
    with pytest.raises(WrongAnswer, match="no DEFAULT partition"):
        checks.daily_partitions(partitions_without_default)

    def stub(conn, table, first_day, days):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.daily_partitions(stub)


@pytest.mark.stack
def test_indexes_accept_brin_plus_btree():
    checks.workload_indexes(
        ["CREATE INDEX ON {table} USING brin (ingest_time)", "CREATE INDEX ON {table} (customer_id)"]
    )


@pytest.mark.stack
def test_indexes_reject_two_btrees_over_budget():
    with pytest.raises(WrongAnswer, match="the budget is"):
        checks.workload_indexes(["CREATE INDEX ON {table} (ingest_time)", "CREATE INDEX ON {table} (customer_id)"])


@pytest.mark.stack
def test_indexes_hint_at_the_big_index():
    with pytest.raises(WrongAnswer, match="the budget is") as failed:
        checks.workload_indexes(
            ["CREATE INDEX ON {table} USING brin (ingest_time)", "CREATE INDEX ON {table} USING hash (customer_id)"]
        )
    assert "hash" in failed.value.hint


@pytest.mark.stack
def test_indexes_reject_missing_or_useless_index_and_bad_shapes():
    with pytest.raises(WrongAnswer, match="one customer's clicks without any of your indexes"):
        checks.workload_indexes(["CREATE INDEX ON {table} USING brin (ingest_time)"])
    with pytest.raises(WrongAnswer, match="one customer's clicks"):
        checks.workload_indexes(
            ["CREATE INDEX ON {table} USING brin (ingest_time)", "CREATE INDEX ON {table} USING brin (customer_id)"]
        )
    with pytest.raises(WrongAnswer, match="list of SQL strings"):
        checks.workload_indexes("CREATE INDEX ON {table} (customer_id)")
    with pytest.raises(WrongAnswer, match=r"as \{table\}"):
        checks.workload_indexes(["CREATE INDEX ON m02_l06.clicks (customer_id)"])
    with pytest.raises(NotSolvedYet):
        checks.workload_indexes(...)


RULES_GOOD = """
SELECT 'unknown_customer', count(*) FROM {schema}.orders o
 WHERE NOT EXISTS (SELECT 1 FROM {schema}.customers c WHERE c.customer_id = o.customer_id)
UNION ALL SELECT 'duplicate_order', count(*) FROM
  (SELECT order_id FROM {schema}.orders GROUP BY order_id HAVING count(*) > 1) d
UNION ALL SELECT 'negative_quantity', count(*) FROM {schema}.order_items WHERE quantity <= 0
UNION ALL SELECT 'missing_email', count(*) FROM {schema}.customers WHERE email IS NULL
UNION ALL SELECT 'future_timestamp', count(*) FROM {schema}.orders WHERE order_ts > now()
UNION ALL SELECT 'lowercase_country', count(*) FROM {schema}.customers WHERE country <> upper(country)
"""


@pytest.mark.stack
def test_rules_accept_exact_counts():
    checks.quality_rules(RULES_GOOD)


@pytest.mark.stack
def test_rules_reject_counting_every_copy_of_a_duplicate():
    every_copy = RULES_GOOD.replace(
        "(SELECT order_id FROM {schema}.orders GROUP BY order_id HAVING count(*) > 1) d",
        "(SELECT o.order_id FROM {schema}.orders o JOIN (SELECT order_id FROM {schema}.orders GROUP BY 1 "
        "HAVING count(*) > 1) x USING (order_id)) d",
    )
    with pytest.raises(WrongAnswer, match="rule duplicate_order: your query counts"):
        checks.quality_rules(every_copy)


@pytest.mark.stack
def test_rules_reject_near_misses_the_generator_alone_cannot_tell():
    # extra copies instead of orders (an order is sent three times), `< 0` (a quantity of 0), `= lower(...)`
    # (a mixed-case country): right on the generated defects, wrong on the check's added edge cases
    extra_copies = RULES_GOOD.replace(
        "count(*) FROM\n  (SELECT order_id FROM {schema}.orders GROUP BY order_id HAVING count(*) > 1) d",
        "count(*) - count(DISTINCT order_id) FROM {schema}.orders",
    )
    assert extra_copies != RULES_GOOD
    with pytest.raises(WrongAnswer, match="rule duplicate_order: your query counts"):
        checks.quality_rules(extra_copies)
    with pytest.raises(WrongAnswer, match="rule negative_quantity: your query counts"):
        checks.quality_rules(RULES_GOOD.replace("quantity <= 0", "quantity < 0"))
    with pytest.raises(WrongAnswer, match="rule lowercase_country: your query counts"):
        checks.quality_rules(RULES_GOOD.replace("country <> upper(country)", "country = lower(country)"))


@pytest.mark.stack
def test_rules_accept_other_phrasings():
    checks.quality_rules(
        """
SELECT 'unknown_customer', count(*) FROM {schema}.orders o LEFT JOIN {schema}.customers c USING (customer_id)
 WHERE c.customer_id IS NULL
UNION ALL SELECT 'duplicate_order', count(DISTINCT order_id)
  FROM (SELECT order_id, count(*) OVER (PARTITION BY order_id) AS n FROM {schema}.orders) x WHERE n > 1
UNION ALL SELECT 'negative_quantity', count(*) FILTER (WHERE quantity <= 0) FROM {schema}.order_items
UNION ALL SELECT 'missing_email', count(*) FILTER (WHERE email IS NULL) FROM {schema}.customers
UNION ALL SELECT 'future_timestamp', count(*) FROM {schema}.orders WHERE order_ts > localtimestamp
UNION ALL SELECT 'lowercase_country', count(*) FROM {schema}.customers WHERE country !~ '^[A-Z]+$'
"""
    )


@pytest.mark.stack
def test_rules_reject_empty_string_test_missing_rule_and_bad_shape():
    with pytest.raises(WrongAnswer, match="rule missing_email"):
        checks.quality_rules(RULES_GOOD.replace("email IS NULL", "email = ''"))
    without_country = RULES_GOOD[: RULES_GOOD.index("UNION ALL SELECT 'lowercase_country'")]
    with pytest.raises(WrongAnswer, match="no row for the rule 'lowercase_country'"):
        checks.quality_rules(without_country)
    with pytest.raises(WrongAnswer, match="names its tables"):
        checks.quality_rules("SELECT 'missing_email', count(*) FROM m02_l06_shop.customers WHERE email IS NULL")
    with pytest.raises(NotSolvedYet):
        checks.quality_rules(...)


def flag_mad(daily, threshold=5.0):
    median = daily.median()
    mad = (daily - median).abs().median()
    return list(daily.index[(0.6745 * (daily - median) / mad).abs() > threshold])


def flag_mean_std(daily):
    return list(daily.index[((daily - daily.mean()) / daily.std()).abs() > 3])


def test_anomalies_accept_robust_z():
    checks.volume_anomalies(flag_mad)


def test_anomalies_reject_mean_and_std():
    with pytest.raises(WrongAnswer, match="went unflagged"):
        checks.volume_anomalies(flag_mean_std)


def test_anomalies_reject_touchy_threshold_and_bad_shape():
    with pytest.raises(WrongAnswer, match="normal day"):
        checks.volume_anomalies(lambda daily: flag_mad(daily, 3.5))
    with pytest.raises(WrongAnswer, match="not a collection of days"):
        checks.volume_anomalies(lambda daily: 2)
    with pytest.raises(WrongAnswer, match="returned a pandas Series"):
        checks.volume_anomalies(lambda daily: daily[daily > daily.median() * 1.5])
    with pytest.raises(NotSolvedYet):
        checks.volume_anomalies(...)
