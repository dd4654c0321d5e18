"""Checks of lab 02.06 (performance and data quality): daily range partitions with pruning, indexes that serve a
workload within a size budget, data-quality rules, and volume anomalies.

Plans are read with EXPLAIN (FORMAT JSON) through ``delab.loading.performance``; expected rule counts and
anomalous days are recomputed from the shop data, which the checks regenerate from its seed.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, timedelta

import pandas as pd
import psycopg

from delab import clients, datasets
from delab.grading import WrongAnswer, exercise, learner_code
from delab.loading import bulk, performance

SCHEMA = "m02_l06"
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


def _clicks() -> pd.DataFrame:
    return datasets.cached(seed=42, scale=1.0).clicks


# ------------------------------------------------------------------------------------------- partitioning


@learner_code("create_partitioned_clicks")
def _create(fn, conn, table, first_day, days):
    return fn(conn, table, first_day, days)


def _partitions(conn, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 2""",
        (table,),
    ).fetchall()


@exercise("m02.l06.e1")
def daily_partitions(create_partitioned_clicks) -> None:
    """The table is range-partitioned by event_time, one partition per day plus a default; a day's query prunes."""
    first_day, days = date(2026, 3, 8), 7  # not the notebook's range: the function must use its arguments
    table = f"{SCHEMA}.check_part_clicks"
    clicks = _clicks()
    with clients.postgres() as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        _create(create_partitioned_clicks, conn, table, first_day, days)
        row = conn.execute("SELECT pg_get_partkeydef(%s::regclass)", (table,)).fetchone()
        key = (row[0] or "").lower() if row else ""
        if key != "range (event_time)":
            raise WrongAnswer(
                f"{table} is partitioned by {key or 'nothing'}; expected RANGE (event_time).",
                hint="queries filter on a time window: CREATE TABLE … PARTITION BY RANGE (event_time).",
            )
        partitions = _partitions(conn, table)
        defaults = [name for name, bound in partitions if bound == "DEFAULT"]
        ranges = sorted(
            (pd.Timestamp(m.group(1)), pd.Timestamp(m.group(2)), name)
            for name, bound in partitions
            if (m := _BOUND.search(bound))
        )
        wanted = [
            (pd.Timestamp(first_day + timedelta(days=k)), pd.Timestamp(first_day + timedelta(days=k + 1)))
            for k in range(days)
        ]
        if [(lo, hi) for lo, hi, _ in ranges] != wanted:
            spans = sorted({(hi - lo).days for lo, hi, _ in ranges})
            raise WrongAnswer(
                f"asked for {days} daily partitions from {first_day}, got {len(ranges)} range partition(s)"
                + (f" spanning {', '.join(map(str, spans))} day(s)." if spans else "."),
                hint="one partition per day: FOR VALUES FROM ('<day>') TO ('<next day>'), for each of the `days` "
                "days starting at first_day (the upper bound is exclusive).",
            )
        if len(defaults) != 1:
            raise WrongAnswer(
                f"{table} has no DEFAULT partition.",
                hint="events outside the daily partitions (late, early, wrong clock) need a home: "
                "CREATE TABLE … PARTITION OF … DEFAULT.",
            )
        try:
            bulk.copy_frame(conn, table, clicks)
        except psycopg.Error as error:
            raise WrongAnswer(
                f"loading the clicks into {table} failed: {str(error).splitlines()[0]}",
                hint="use the columns of m02_l06.clicks, with the same names and types.",
            ) from None
        conn.execute(f"ANALYZE {table}")
        third = first_day + timedelta(days=2)
        plan = performance.explain(
            conn,
            f"SELECT count(*) FROM {table} WHERE event_time >= %s AND event_time < %s",
            (third, third + timedelta(days=1)),
        )
        scanned = performance.scanned_tables(plan)
        expected = ranges[2][2]
        if scanned != [expected]:
            raise WrongAnswer(
                f"a query for {third} reads {', '.join(scanned) or 'no table'}; expected only {expected}.",
                hint="pruning needs the filter on the partition key itself (event_time), compared with constants.",
            )
        plan = performance.explain(conn, f"SELECT count(*) FROM {table} WHERE event_time < %s", (first_day,))
        if performance.scanned_tables(plan) != defaults:
            raise WrongAnswer(
                "a query for events before first_day should read only the DEFAULT partition.",
                hint="check the partition bounds: everything outside the daily ranges belongs to the default.",
            )


# ------------------------------------------------------------------------------------------------ indexing


def workload(table: str) -> list[tuple[str, str, tuple]]:
    """The two queries exercise 2's indexes must serve, with the parameters the check uses."""
    return [
        ("one hour of clicks", performance.HOUR_QUERY.format(table=table), ("2026-03-12 18:00", "2026-03-12 19:00")),
        ("one customer's clicks", performance.CUSTOMER_QUERY.format(table=table), (1234,)),
    ]


@learner_code("index_statements")
def _create_indexes(conn, statements, table):
    for statement in statements:
        conn.execute(statement.format(table=table))


@exercise("m02.l06.e2")
def workload_indexes(index_statements) -> None:
    """Both workload queries read their rows through your indexes, and the indexes fit the size budget."""
    if isinstance(index_statements, str) or not all(isinstance(s, str) for s in index_statements):
        raise WrongAnswer(
            "index_statements must be a list of SQL strings.",
            hint='for example ["CREATE INDEX … ON {table} …", …] — {table} is filled in by the check.',
        )
    if not all("{table}" in s for s in index_statements):
        raise WrongAnswer(
            "every statement must name the table as {table}.", hint="the check fills in a fresh copy of clicks."
        )
    table = f"{SCHEMA}.check_idx_clicks"
    with clients.postgres() as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        bulk.create_table(conn, table, _clicks(), primary_key=["event_id"])
        bulk.copy_frame(conn, table, _clicks())
        _create_indexes(conn, index_statements, table)
        conn.execute(f"VACUUM ANALYZE {table}")
        sizes = performance.relation_sizes(conn, table)
        pages = conn.execute("SELECT relpages FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()[0]
        pkey = f"{table.split('.')[1]}_pkey"
        yours = sizes[(sizes.kind == "index") & (sizes.relation != pkey)]
        budget = int(sizes.loc[sizes.relation == pkey, "kB"].iloc[0])
        for what, query, params in workload(table):
            plan = performance.explain(conn, query, params, analyze=True)
            used = [name for name in performance.indexes_used(plan) if name in set(yours.relation)]
            if not used:
                raise WrongAnswer(
                    f"the planner reads {what} without any of your indexes ({performance.summary(plan)['nodes']}).",
                    hint="an index helps a query whose WHERE compares its leading column; BRIN only helps a column "
                    "whose values follow the physical order of the rows (see pg_stats.correlation).",
                )
            blocks = performance.blocks_read(plan)
            if blocks > pages // 4:
                raise WrongAnswer(
                    f"{what} uses {', '.join(used)} but still reads {blocks} blocks of a {pages}-block table.",
                    hint="BRIN cannot narrow a column whose values are in random physical order: use a B-tree there.",
                )
        total = int(yours.kB.sum())
        if total > budget:
            schema, name = table.split(".")
            definitions = dict(
                conn.execute(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                    (schema, name),
                ).fetchall()
            )
            each = ", ".join(
                f"{r.relation} {int(r.kB):,} kB" for r in yours.sort_values("kB", ascending=False).itertuples()
            )
            per_row_on_time = any(
                "ingest_time" in d.lower() and "using brin" not in d.lower()
                for n, d in definitions.items()
                if n in set(yours.relation)
            )
            raise WrongAnswer(
                f"your indexes take {total:,} kB together ({each}); the budget is {budget:,} kB (the primary key's "
                "size).",
                hint="ingest_time grows with the physical row order: a BRIN index serves its range scans in a few "
                "kB, where a B-tree stores one entry per row."
                if per_row_on_time
                else "keep the lookup index compact: a B-tree stores each repeated key once (deduplication), a hash "
                "index keeps one entry per row.",
            )


# -------------------------------------------------------------------------------------------- quality rules

RULES = (
    "unknown_customer",
    "duplicate_order",
    "negative_quantity",
    "missing_email",
    "future_timestamp",
    "lowercase_country",
)


def expected_violations(shop) -> dict[str, int]:
    """Each rule's violations, counted in pandas from the frames (the check's independent answer)."""
    orders, items, customers = shop.orders, shop.order_items, shop.customers
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    return {
        "unknown_customer": int((~orders.customer_id.isin(customers.customer_id)).sum()),
        "duplicate_order": int(orders.order_id[orders.order_id.duplicated()].nunique()),
        "negative_quantity": int((items.quantity <= 0).sum()),
        "missing_email": int(customers.email.isna().sum()),
        "future_timestamp": int((orders.order_ts > now).sum()),
        "lowercase_country": int((customers.country != customers.country.str.upper()).sum()),
    }


_RULE_HINTS = {
    "unknown_customer": "orders whose customer_id has no row in customers (an anti-join: NOT EXISTS).",
    "duplicate_order": "count the order_ids that appear more than once — each such order once, not each copy.",
    "negative_quantity": "a quantity of 0 is not positive either.",
    "missing_email": "a missing value is NULL: `= ''` never matches NULL.",
    "future_timestamp": "orders stamped after now().",
    "lowercase_country": "'not in upper case' includes mixed case ('De'), not only all lower case.",
}


def _edge_cases(shop):
    """The shop plus the cases that tell a rule from a near miss: an order sent three times, a line with quantity
    0, a country in mixed case ("De"). The generator's own defects alone cannot tell `count(*) - count(DISTINCT)`
    from counting orders, `< 0` from `<= 0`, or `= lower(country)` from "not upper case"."""
    orders, items, customers = shop.orders.copy(), shop.order_items.copy(), shop.customers.copy()
    twice = orders[orders.order_id.duplicated()].head(1)
    orders = pd.concat([orders, twice], ignore_index=True)
    items.loc[items[items.quantity > 0].index[0], "quantity"] = 0
    upper = customers[customers.country == customers.country.str.upper()].index[0]
    country = customers.loc[upper, "country"]
    customers.loc[upper, "country"] = country[0] + country[1:].lower()
    return dataclasses.replace(shop, orders=orders, order_items=items, customers=customers)


@learner_code("quality_sql")
def _rules(conn, sql_template, schema):
    return conn.execute(sql_template.format(schema=schema)).fetchall()


@exercise("m02.l06.e3")
def quality_rules(quality_sql) -> None:
    """One query counts the violations of six data-quality rules, each exactly."""
    if not isinstance(quality_sql, str) or "{schema}" not in quality_sql:
        raise WrongAnswer(
            "quality_sql must be a string that names its tables as {schema}.orders, {schema}.customers …",
            hint="the check runs it on another copy of the shop.",
        )
    schema = f"{SCHEMA}_check"
    shop = _edge_cases(datasets.cached(seed=7, scale=0.5))  # another shop than the notebook's
    datasets.to_postgres(
        {"orders": shop.orders, "order_items": shop.order_items, "customers": shop.customers},
        schema=schema,
        primary_keys={"customers": ["customer_id"], "order_items": ["order_id", "line_no"]},
    )
    with clients.postgres() as conn:
        rows = _rules(conn, quality_sql, schema)
    try:
        got = {str(rule): int(count) for rule, count in rows}
    except (TypeError, ValueError):
        raise WrongAnswer(
            "quality_sql must return rows of (rule, violations).",
            hint="e.g. SELECT 'missing_email', count(*) … UNION ALL …",
        ) from None
    want = expected_violations(shop)
    for rule in RULES:
        if rule not in got:
            raise WrongAnswer(f"no row for the rule {rule!r}.", hint=f"rules are named {', '.join(RULES)}.")
        if got[rule] != want[rule]:
            raise WrongAnswer(
                f"rule {rule}: your query counts {got[rule]}, the data has {want[rule]} violations.",
                hint=_RULE_HINTS[rule],
            )


# ---------------------------------------------------------------------------------------- volume anomalies


def daily_order_volumes(seed: int) -> pd.Series:
    """Orders per day of a shop (real rows, no future stamps): the normal volume of a daily load."""
    orders = datasets.cached(seed=seed, scale=1.0).orders.drop_duplicates("order_id")
    orders = orders[orders.order_ts < pd.Timestamp("2026-03-29")]
    counts = orders.order_ts.dt.floor("D").value_counts().sort_index()
    return pd.Series(counts.to_numpy(), index=[d.date() for d in counts.index], name="rows_loaded")


def _scenarios() -> list[tuple[str, pd.Series, set[date]]]:
    out = []
    series = daily_order_volumes(42).copy()
    double, partial = series.index[9], series.index[19]
    series[double] *= 2  # the load ran twice
    series[partial] = int(series[partial] * 0.45)  # a truncated file
    out.append(("a month with a doubled and a truncated load", series, {double, partial}))
    out.append(("a normal month (volumes swing with the weekday)", daily_order_volumes(3), set()))
    series = daily_order_volumes(11).copy()
    half = series.index[4]
    series[half] = int(series[half] * 0.5)
    out.append(("a month with one half-loaded day", series, {half}))
    return out


@learner_code("flag_volume_anomalies")
def _flag(fn, series):
    return fn(series.copy())


@exercise("m02.l06.e4")
def volume_anomalies(flag_volume_anomalies) -> None:
    """Exactly the days whose load volume is off are flagged — in spite of the outliers themselves."""
    for what, series, anomalous in _scenarios():
        flagged = _flag(flag_volume_anomalies, series)
        if isinstance(flagged, (pd.Series, pd.DataFrame)):
            raise WrongAnswer(
                f"flag_volume_anomalies returned a pandas {type(flagged).__name__}, not the list of flagged days.",
                hint="the days are the index labels of the rows you flag: list(daily.index[mask]).",
            )
        try:
            flagged = {pd.Timestamp(d).date() for d in flagged}
        except (TypeError, ValueError):
            raise WrongAnswer(
                f"flag_volume_anomalies returned {flagged!r}, not a collection of days.",
                hint="return the index labels (dates) of the flagged days.",
            ) from None
        missed, extra = anomalous - flagged, flagged - anomalous
        if missed:
            raise WrongAnswer(
                f"in {what}, {len(missed)} anomalous day(s) went unflagged ({', '.join(map(str, sorted(missed)))}).",
                hint="a mean and a standard deviation are dragged by the outliers themselves (the doubled day "
                "inflates the deviation and hides the truncated one): use the median and the MAD.",
            )
        if extra:
            raise WrongAnswer(
                f"in {what}, normal day(s) were flagged ({', '.join(map(str, sorted(extra)))}).",
                hint="daily volumes swing with the weekday; a robust z-score above 3.5 is too touchy here — "
                "take the threshold the exercise gives.",
            )
