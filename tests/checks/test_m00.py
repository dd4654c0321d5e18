"""Every module-00 check: the right answer passes, realistic wrong answers are rejected with a telling message,
and the lab's placeholder is 'not solved yet'."""

from __future__ import annotations

import duckdb
import pytest

from delab.checks import m00
from delab.grading import NotSolvedYet, WrongAnswer


@pytest.fixture(scope="module")
def shop():
    return m00.shop()


@pytest.fixture(scope="module")
def con(shop):
    """A DuckDB connection loaded the way lab 02 loads it, with its orders_clean view."""
    con = duckdb.connect()
    for table in shop.tables:
        frame = shop.table(table)  # noqa: F841 — read by DuckDB's replacement scan
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM frame")
    con.execute(
        "CREATE VIEW orders_clean AS SELECT DISTINCT o.* FROM orders o JOIN customers c USING (customer_id) "
        "WHERE o.order_ts < TIMESTAMP '2026-04-01'"
    )
    return con


def rejects(check, *args, match: str):
    with pytest.raises(WrongAnswer, match=match):
        check(*args)


# -------------------------------------------------------------------------------------------------- lab 01


def test_orders_per_channel_accepts_distinct_counts(shop):
    m00.orders_per_channel(shop.orders.drop_duplicates("order_id").groupby("channel").order_id.nunique())


def test_orders_per_channel_rejects_counting_duplicate_rows(shop):
    rejects(m00.orders_per_channel, shop.orders.groupby("channel").size().to_dict(), match="twice")


def test_orders_per_channel_rejects_counting_order_lines(shop):
    lines = shop.order_items.merge(shop.orders.drop_duplicates("order_id"), on="order_id")
    rejects(m00.orders_per_channel, lines.groupby("channel").size().to_dict(), match="off")


def test_orders_per_channel_rejects_missing_channel(shop):
    counts = shop.orders.drop_duplicates("order_id").groupby("channel").order_id.nunique().to_dict()
    counts.pop("marketplace")
    rejects(m00.orders_per_channel, counts, match="missing")


def test_orders_per_channel_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        m00.orders_per_channel(...)


def test_captured_revenue_accepts_captured_total(shop):
    m00.captured_revenue(shop.payments.query("status == 'captured'").amount.sum())


def test_captured_revenue_rejects_every_attempt(shop):
    rejects(m00.captured_revenue, shop.payments.amount.sum(), match="every payment attempt")


def test_captured_revenue_rejects_refunds_included(shop):
    rejects(m00.captured_revenue, shop.payments.query("status != 'failed'").amount.sum(), match="refunded")


def test_captured_revenue_rejects_text():
    rejects(m00.captured_revenue, "a lot", match="number")


# -------------------------------------------------------------------------------------------------- lab 02

ORPHANS = (
    "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = o.customer_id)"
)


def test_orphan_orders_accepts_anti_join(con):
    m00.orphan_orders(con, ORPHANS)


def test_orphan_orders_rejects_null_check(con):
    rejects(m00.orphan_orders, con, "SELECT count(*) FROM orders WHERE customer_id IS NULL", match="no orphans")


def test_orphan_orders_rejects_inner_join_count(con):
    rejects(
        m00.orphan_orders,
        con,
        "SELECT count(*) FROM orders JOIN customers USING (customer_id)",
        match="DO have a customer",
    )


def test_orphan_orders_rejects_many_rows_and_broken_sql(con):
    rejects(m00.orphan_orders, con, "SELECT customer_id FROM orders", match="one row")
    rejects(m00.orphan_orders, con, "SELEC count(*) FROM orders", match="failed with")


def test_orphan_orders_rejects_a_hard_coded_number(con, shop):
    want = int((~shop.orders.customer_id.isin(shop.customers.customer_id)).sum())
    rejects(m00.orphan_orders, con, f"SELECT {want}", match="still returns")


def test_orphan_orders_rejects_counting_distinct_customers(con):
    sql = ORPHANS.replace("count(*)", "count(DISTINCT o.customer_id)")
    rejects(m00.orphan_orders, con, sql, match="counted the customers")


def test_orphan_orders_rejects_counting_distinct_order_ids(con):
    sql = ORPHANS.replace("count(*)", "count(DISTINCT o.order_id)")
    rejects(m00.orphan_orders, con, sql, match="distinct order ids")


def test_orphan_orders_rejects_total_minus_joined(con):
    sql = "SELECT (SELECT count(*) FROM orders) - (SELECT count(*) FROM orders JOIN customers USING (customer_id))"
    rejects(m00.orphan_orders, con, sql, match="listed twice")


def test_orphan_orders_accepts_a_left_anti_join(con):
    m00.orphan_orders(
        con, "SELECT count(*) FROM orders o LEFT JOIN customers c USING (customer_id) WHERE c.customer_id IS NULL"
    )


def test_orphan_orders_placeholder_is_not_solved(con):
    with pytest.raises(NotSolvedYet):
        m00.orphan_orders(con, ...)


REVENUE = """
SELECT p.category, round(sum(i.quantity * i.unit_price), 2) AS revenue
FROM order_items i JOIN {orders} o USING (order_id) JOIN products p USING (product_id)
WHERE {where}
GROUP BY p.category ORDER BY revenue {direction}
"""


def revenue_sql(orders="orders_clean", where="o.status <> 'cancelled' AND i.quantity > 0", direction="DESC"):
    return REVENUE.format(orders=orders, where=where, direction=direction)


def test_revenue_by_category_accepts_solution(con):
    m00.revenue_by_category(con, revenue_sql())


def test_revenue_by_category_rejects_cancelled_orders(con):
    rejects(m00.revenue_by_category, con, revenue_sql(where="i.quantity > 0"), match="cancelled")


def test_revenue_by_category_rejects_negative_quantities(con):
    rejects(m00.revenue_by_category, con, revenue_sql(where="o.status <> 'cancelled'"), match="negative")


def test_revenue_by_category_rejects_raw_orders_with_duplicates(con):
    sql = revenue_sql(
        orders="(SELECT * FROM orders WHERE order_ts < TIMESTAMP '2026-04-01' AND customer_id IN "
        "(SELECT customer_id FROM customers))"
    )
    rejects(m00.revenue_by_category, con, sql, match="twice")


def test_revenue_by_category_rejects_wrong_order_and_columns(con):
    rejects(m00.revenue_by_category, con, revenue_sql(direction="ASC"), match="order")
    rejects(m00.revenue_by_category, con, "SELECT 'books' AS cat, 1 AS revenue", match="columns")


SEQUENCE = """
SELECT customer_id, order_id, order_ts,
       row_number() OVER w AS order_seq,
       round(epoch(order_ts - lag(order_ts) OVER w) / 3600, 2) AS hours_since_prev
FROM orders_clean
WINDOW w AS ({window})
"""


def test_order_sequence_accepts_solution(con):
    m00.order_sequence(con, SEQUENCE.format(window="PARTITION BY customer_id ORDER BY order_ts, order_id"))


def test_order_sequence_rejects_missing_partition(con):
    rejects(m00.order_sequence, con, SEQUENCE.format(window="ORDER BY order_ts, order_id"), match="all customers")


def test_order_sequence_rejects_id_order(con):
    rejects(
        m00.order_sequence, con, SEQUENCE.format(window="PARTITION BY customer_id ORDER BY order_id"), match="id order"
    )


def test_order_sequence_rejects_self_join_without_window(con):
    sql = "SELECT customer_id, order_id, order_ts, 1 AS order_seq, NULL AS hours_since_prev FROM orders_clean"
    rejects(m00.order_sequence, con, sql, match="OVER")


def test_order_sequence_rejects_hours_in_minutes(con):
    sql = SEQUENCE.format(window="PARTITION BY customer_id ORDER BY order_ts, order_id").replace("/ 3600", "/ 60")
    rejects(m00.order_sequence, con, sql, match="hours_since_prev")


def copy_sql(
    folder,
    select="SELECT *, CAST(order_ts AS DATE) AS order_date FROM orders_clean",
    options="FORMAT parquet, PARTITION_BY (order_date), OVERWRITE_OR_IGNORE",
):
    return f"COPY ({select}) TO '{folder.as_posix()}' ({options})"


def test_partitioned_orders_accepts_solution(con, tmp_path):
    m00.partitioned_orders(con, copy_sql(tmp_path / "by_day"), tmp_path / "by_day")


def test_partitioned_orders_rejects_single_file(con, tmp_path):
    target = tmp_path / "by_day"
    rejects(m00.partitioned_orders, con, copy_sql(target, options="FORMAT parquet"), target, match="one Parquet file")


def test_partitioned_orders_rejects_timestamp_partitions(con, tmp_path):
    target = tmp_path / "by_ts"
    sql = copy_sql(
        target, select="SELECT *, order_ts AS order_date FROM orders_clean WHERE order_ts < TIMESTAMP '2026-03-03'"
    )
    rejects(m00.partitioned_orders, con, sql, target, match="finer than a day")


def test_partitioned_orders_rejects_raw_orders(con, tmp_path):
    target = tmp_path / "raw"
    sql = copy_sql(
        target,
        select="SELECT *, CAST(order_ts AS DATE) AS order_date FROM orders WHERE order_ts < TIMESTAMP '2026-04-01'",
    )
    rejects(m00.partitioned_orders, con, sql, target, match="rows")


def test_partitioned_orders_rejects_other_partition_key(con, tmp_path):
    target = tmp_path / "by_channel"
    sql = copy_sql(target, options="FORMAT parquet, PARTITION_BY (channel)")
    rejects(m00.partitioned_orders, con, sql, target, match="order_date=")


def test_partitioned_orders_rejects_csv_partitions(con, tmp_path):
    target = tmp_path / "csv"
    sql = copy_sql(target, options="PARTITION_BY (order_date), OVERWRITE_OR_IGNORE")
    rejects(m00.partitioned_orders, con, sql, target, match="not Parquet")


def test_partitioned_orders_rejects_missing_columns(con, tmp_path):
    target = tmp_path / "few"
    sql = copy_sql(target, select="SELECT order_id, CAST(order_ts AS DATE) AS order_date FROM orders_clean")
    rejects(m00.partitioned_orders, con, sql, target, match="columns missing")


def test_partitioned_orders_rejects_other_rows_of_the_same_count(con, tmp_path):
    target = tmp_path / "shifted"
    sql = copy_sql(
        target,
        select="SELECT * REPLACE (order_id + 1 AS order_id), CAST(order_ts AS DATE) AS order_date FROM orders_clean",
    )
    rejects(m00.partitioned_orders, con, sql, target, match="other orders")


# ------------------------------------------------------------------------------- issue 14 review (module 00)


def test_orders_per_channel_says_when_counts_are_not_numbers(shop):
    channels = shop.orders.channel.unique()
    rejects(m00.orders_per_channel, {c: None for c in channels}, match="whole numbers")
    rejects(m00.orders_per_channel, {c: float("nan") for c in channels}, match="whole numbers")


REVENUE_SQL = """SELECT p.category, round(sum(i.quantity * i.unit_price), 2) AS revenue FROM order_items i
JOIN orders_clean o USING (order_id) JOIN products p USING (product_id)
WHERE o.status <> 'cancelled' AND i.quantity > 0 GROUP BY 1 ORDER BY 2 DESC"""


def test_revenue_by_category_rejects_the_numbers_typed_in(con):
    # used to pass: the right table, typed in as VALUES
    rows = con.sql(REVENUE_SQL).fetchall()
    typed = ", ".join(f"('{category}', {revenue})" for category, revenue in rows)
    sql = f"SELECT * FROM (VALUES {typed}) AS t(category, revenue) ORDER BY revenue DESC"
    rejects(m00.revenue_by_category, con, sql, match="same revenues as before")


def test_revenue_by_category_right_answer_passes_on_more_lines(con):
    m00.revenue_by_category(con, REVENUE_SQL)


SEQUENCE_SQL = """SELECT customer_id, order_id, order_ts, row_number() OVER w AS order_seq,
round(epoch(order_ts - lag(order_ts) OVER w) / 3600, 2) AS hours_since_prev FROM orders_clean
WINDOW w AS (PARTITION BY customer_id ORDER BY order_ts, order_id)"""


def test_order_sequence_says_when_the_numbers_are_text_or_null(con):
    # used to crash: pandas could not cast the column to integers
    rejects(
        m00.order_sequence,
        con,
        SEQUENCE_SQL.replace("row_number() OVER w", "'#' || row_number() OVER w"),
        match="whole numbers",
    )
    rejects(
        m00.order_sequence,
        con,
        SEQUENCE_SQL.replace("row_number() OVER w", "NULLIF(row_number() OVER w, 1)"),
        match="whole numbers",
    )


def test_partitioned_orders_names_days_outside_orders_clean(con, tmp_path):
    # used to say 'the partition key is finer than a day' for days that are days, from the wrong rows
    folder = tmp_path / "out"
    for source, day in (("orders", "order_ts"), ("orders_clean", "order_ts + INTERVAL 2 HOUR")):
        sql = (
            f"COPY (SELECT *, CAST({day} AS DATE) AS order_date FROM {source}) TO '{folder}' "
            "(FORMAT parquet, PARTITION_BY (order_date))"
        )
        rejects(m00.partitioned_orders, con, sql, folder, match="your partitions run from")


def test_revenue_by_category_accepts_a_helper_view(con):
    # the check's copy of the shop must know the learner's own views too
    con.execute(
        "CREATE OR REPLACE VIEW counted_lines AS SELECT i.* FROM order_items i JOIN orders_clean o USING (order_id) "
        "WHERE o.status <> 'cancelled' AND i.quantity > 0"
    )
    m00.revenue_by_category(
        con,
        "SELECT p.category, round(sum(l.quantity * l.unit_price), 2) AS revenue FROM counted_lines l "
        "JOIN products p USING (product_id) GROUP BY 1 ORDER BY 2 DESC",
    )
