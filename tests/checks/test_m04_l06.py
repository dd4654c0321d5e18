"""Checks of lab 04.06 (metadata and query optimization), against the real catalog, object store and DuckDB:
right answers pass, realistic wrong ones fail."""

from __future__ import annotations

import pytest
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.transforms import DayTransform

from delab import lakehouse, stack
from delab.checks.m04 import l06_metadata_query as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.lakehouse import ops

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module", autouse=True)
def services():
    stack.require("postgres", "s3", quiet=True)


# ------------------------------------------------------------------------------------------------ exercise 1


def find_right(cat, **wanted):
    found = set()
    for namespace in cat.list_namespaces():
        for identifier in cat.list_tables(namespace):
            properties = cat.load_table(identifier).properties
            if all(properties.get(k) == v for k, v in wanted.items()):
                found.add(".".join(identifier))
    return found


def test_find_accepts_every_namespace():
    checks.find_tables(find_right)


def test_find_rejects_one_namespace_only():
    def one_namespace(cat, **wanted):
        return {
            ".".join(i)
            for i in cat.list_tables("m04_l06")
            if all(cat.load_table(i).properties.get(k) == v for k, v in wanted.items())
        }

    with pytest.raises(WrongAnswer, match=r"you missed .*m04_l06_finance.check_pii_c"):
        checks.find_tables(one_namespace)


def test_find_accepts_tables_and_identifiers():
    def tables(cat, **wanted):
        return [
            cat.load_table(i)
            for namespace in cat.list_namespaces()
            for i in cat.list_tables(namespace)
            if wanted.items() <= cat.load_table(i).properties.items()
        ]

    checks.find_tables(tables)
    checks.find_tables(lambda cat, **wanted: [tuple(name.split(".")) for name in find_right(cat, **wanted)])


def test_find_rejects_the_notebooks_namespaces_typed_in():
    def two_namespaces(cat, **wanted):
        return {
            ".".join(i)
            for namespace in ("m04_l06", "m04_l06_archive")
            for i in cat.list_tables(namespace)
            if all(cat.load_table(i).properties.get(k) == v for k, v in wanted.items())
        }

    with pytest.raises(WrongAnswer, match=r"you missed .*m04_l06_finance.check_pii_c"):
        checks.find_tables(two_namespaces)


def test_find_rejects_any_property_and_placeholder():
    def any_match(cat, **wanted):
        found = set()
        for namespace in cat.list_namespaces():
            for identifier in cat.list_tables(namespace):
                properties = cat.load_table(identifier).properties
                if any(properties.get(k) == v for k, v in wanted.items()):
                    found.add(".".join(identifier))
        return found

    with pytest.raises(WrongAnswer, match=r"also returned .*whose properties do not all match"):
        checks.find_tables(any_match)
    with pytest.raises(NotSolvedYet):
        checks.find_tables(...)


# ------------------------------------------------------------------------------------------------ exercise 2


def ancestry_right(table):
    out, snapshot = [], table.current_snapshot()
    while snapshot is not None:
        out.append(snapshot.snapshot_id)
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return out


def test_ancestry_accepts_parent_links():
    checks.snapshot_ancestry(ancestry_right)


def test_ancestry_rejects_all_snapshots_and_history():
    # right after the rollback, every snapshot newest first is the lineage of the abandoned newest snapshot
    with pytest.raises(WrongAnswer, match="right after the rollback: your list starts at the newest snapshot"):
        checks.snapshot_ancestry(
            lambda t: [s.snapshot_id for s in sorted(t.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)]
        )
    with pytest.raises(WrongAnswer, match="is in your list twice"):
        checks.snapshot_ancestry(lambda t: [h.snapshot_id for h in reversed(t.history())])


def test_ancestry_rejects_starting_from_the_newest_snapshot():
    def from_newest(table):
        out, snapshot = [], table.snapshots()[-1]
        while snapshot is not None:
            out.append(snapshot.snapshot_id)
            snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
        return out

    with pytest.raises(WrongAnswer, match=r"starts at the newest snapshot, \d+; after a rollback the current one"):
        checks.snapshot_ancestry(from_newest)


def test_ancestry_accepts_history_deduplicated_as_a_series():
    def from_history(table):
        history = table.inspect.history().to_pandas()
        ids = history[history.is_current_ancestor].snapshot_id.iloc[::-1]
        return ids.drop_duplicates()

    checks.snapshot_ancestry(from_history)


def test_ancestry_rejects_oldest_first_and_placeholder():
    with pytest.raises(WrongAnswer, match="wrong order"):
        checks.snapshot_ancestry(lambda t: list(reversed(ancestry_right(t))))
    with pytest.raises(NotSolvedYet):
        checks.snapshot_ancestry(...)


# ------------------------------------------------------------------------------------------------ exercise 3


def test_audit_accepts_snapshot_properties():
    checks.audited_append(lambda t, rows, user: t.append(rows, snapshot_properties={"written-by": user}))


def test_audit_rejects_table_property():
    def as_table_property(table, rows, user):
        with table.transaction() as tx:
            tx.set_properties({"written-by": user})
            tx.append(rows)

    with pytest.raises(WrongAnswer, match="it is a table property"):
        checks.audited_append(as_table_property)


def test_audit_rejects_plain_append_twice_and_placeholder():
    with pytest.raises(WrongAnswer, match="written-by=None"):
        checks.audited_append(lambda t, rows, user: t.append(rows))

    def in_halves(table, rows, user):
        half = rows.num_rows // 2
        table.append(rows.slice(0, half), snapshot_properties={"written-by": user})
        table.append(rows.slice(half), snapshot_properties={"written-by": user})

    with pytest.raises(WrongAnswer, match="made 2 snapshots"):
        checks.audited_append(in_halves)
    with pytest.raises(NotSolvedYet):
        checks.audited_append(...)


# ------------------------------------------------------------------------------------------------ exercise 4

RIGHT_SQL = """SELECT CAST(event_time AS DATE) AS day, count(*) FROM iceberg_scan('{table}')
WHERE event_time >= TIMESTAMP '2026-03-03' AND event_time < TIMESTAMP '2026-03-05' AND event_type = 'checkout'
GROUP BY 1"""


@pytest.fixture(scope="module")
def clicks_table():
    cat = lakehouse.catalog()
    ns = lakehouse.fresh_namespace(cat, "m04_l06_tests")
    spec = PartitionSpec(PartitionField(source_id=6, field_id=1000, transform=DayTransform(), name="event_day"))
    table = cat.create_table(f"{ns}.clicks", schema=ops.clicks_schema(), partition_spec=spec)
    table.append(ops.clicks(days=6))
    yield table
    lakehouse.fresh_namespace(cat, ns)
    cat.drop_namespace(ns)


def test_pruned_query_accepts_range_on_column(clicks_table):
    checks.pruned_checkout_query(RIGHT_SQL, clicks_table)


def test_pruned_query_rejects_function_on_column(clicks_table):
    sql = """SELECT strftime(event_time, '%Y-%m-%d') AS day, count(*) FROM iceberg_scan('{table}')
    WHERE strftime(event_time, '%Y-%m-%d') IN ('2026-03-03', '2026-03-04') AND event_type = 'checkout' GROUP BY 1"""
    with pytest.raises(WrongAnswer, match="read 6 data files; the two days live in 2"):
        checks.pruned_checkout_query(sql, clicks_table)


def test_pruned_query_accepts_date_trunc_and_a_count_filter(clicks_table):
    sql = """SELECT date_trunc('day', event_time) AS day, count(*) FILTER (WHERE event_type = 'checkout')
    FROM iceberg_scan('{table}') WHERE event_time >= '2026-03-03' AND event_time < '2026-03-05' GROUP BY ALL"""
    checks.pruned_checkout_query(sql, clicks_table)


def test_pruned_query_rejects_bounds_that_only_the_edges_catch(clicks_table):
    # the generated clicks have whole seconds and none at midnight of the 5th: only the edge table tells
    with pytest.raises(WrongAnswer, match=r"edges of those days.*gives \{'2026-03-03': 2\}"):
        checks.pruned_checkout_query(
            RIGHT_SQL.replace("< TIMESTAMP '2026-03-05'", "<= TIMESTAMP '2026-03-04 23:59:59'"), clicks_table
        )
    with pytest.raises(WrongAnswer, match=r"edges of those days.*'2026-03-05': 1"):
        checks.pruned_checkout_query(
            RIGHT_SQL.replace("< TIMESTAMP '2026-03-05'", "<= TIMESTAMP '2026-03-05'"), clicks_table
        )


def test_pruned_query_rejects_typed_in_numbers_and_swapped_columns(clicks_table):
    counts = checks.checkouts_per_day(clicks_table)
    typed_in = (
        "SELECT * FROM (VALUES "
        + ", ".join(f"(DATE '{day}', {n})" for day, n in counts.items())
        + ") -- iceberg_scan('{table}')"
    )
    with pytest.raises(WrongAnswer, match="those numbers are typed in"):
        checks.pruned_checkout_query(typed_in, clicks_table)
    swapped = RIGHT_SQL.replace(
        "SELECT CAST(event_time AS DATE) AS day, count(*)", "SELECT count(*), CAST(event_time AS DATE)"
    )
    with pytest.raises(WrongAnswer, match=r"each row should be \(day, checkouts\)"):
        checks.pruned_checkout_query(swapped.replace("GROUP BY 1", "GROUP BY 2"), clicks_table)


def test_pruned_query_rejects_closed_interval_and_placeholder(clicks_table):
    with pytest.raises(WrongAnswer, match="your query gives"):
        checks.pruned_checkout_query(RIGHT_SQL.replace("2026-03-05", "2026-03-04"), clicks_table)
    with pytest.raises(WrongAnswer, match="keep the \\{table\\} slot"):
        checks.pruned_checkout_query("SELECT 1", clicks_table)
    with pytest.raises(NotSolvedYet):
        checks.pruned_checkout_query(..., clicks_table)
