"""Checks of lab 04.04 (partitioning), against real Iceberg tables: right answers pass, realistic wrong ones fail."""

from __future__ import annotations

from datetime import datetime

import pytest
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.transforms import BucketTransform, DayTransform, HourTransform, IdentityTransform

from delab import lakehouse, stack
from delab.checks.m04 import l04_partitioning as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.lakehouse import ops

pytestmark = pytest.mark.stack
NS = "m04_l04_tests"
ONE_DAY = "event_time >= '2026-03-03T00:00:00' and event_time < '2026-03-04T00:00:00'"


@pytest.fixture(scope="module")
def tables():
    stack.require("postgres", "s3", quiet=True)
    cat = lakehouse.catalog()
    ns = lakehouse.fresh_namespace(cat, NS)
    clicks = ops.clicks(days=5)
    specs = {
        "flat": [],
        "by_type": [(4, IdentityTransform(), "event_type")],
        "by_day": [(6, DayTransform(), "event_day")],
        "by_hour": [(6, HourTransform(), "event_hour")],
        "by_customer_bucket": [(3, BucketTransform(8), "customer_bucket")],
    }
    out = {}
    for name, fields in specs.items():
        spec = PartitionSpec(
            *[PartitionField(source_id=s, field_id=1000 + i, transform=t, name=n) for i, (s, t, n) in enumerate(fields)]
        )
        out[name] = cat.create_table(f"{ns}.{name}", schema=ops.clicks_schema(), partition_spec=spec)
        out[name].append(clicks)
    yield out
    lakehouse.fresh_namespace(cat, NS)
    cat.drop_namespace(NS)


def creator(*fields):
    def create(cat, identifier):
        spec = PartitionSpec(
            *[PartitionField(source_id=s, field_id=1000 + i, transform=t, name=n) for i, (s, t, n) in enumerate(fields)]
        )
        return cat.create_table(identifier, schema=ops.clicks_schema(), partition_spec=spec)

    return create


# ------------------------------------------------------------------------------------------------ exercise 1


def test_layout_accepts_day_and_bucket(tables):
    checks.daily_bucketed_layout(creator((6, DayTransform(), "d"), (3, BucketTransform(8), "b")))


def test_layout_rejects_identity_time(tables):
    with pytest.raises(WrongAnswer, match="identity: one partition per distinct timestamp"):
        checks.daily_bucketed_layout(creator((6, IdentityTransform(), "d"), (3, BucketTransform(8), "b")))


def test_layout_rejects_hour_and_wrong_bucket_count(tables):
    with pytest.raises(WrongAnswer, match="by hour, not by day"):
        checks.daily_bucketed_layout(creator((6, HourTransform(), "d"), (3, BucketTransform(8), "b")))
    with pytest.raises(WrongAnswer, match="expected 8 hash buckets"):
        checks.daily_bucketed_layout(creator((6, DayTransform(), "d"), (3, BucketTransform(16), "b")))


def test_layout_rejects_identity_customer_and_no_return(tables):
    with pytest.raises(WrongAnswer, match="one partition per customer"):
        checks.daily_bucketed_layout(creator((6, DayTransform(), "d"), (3, IdentityTransform(), "b")))

    def forgets_return(cat, identifier):
        creator((6, DayTransform(), "d"), (3, BucketTransform(8), "b"))(cat, identifier)

    with pytest.raises(WrongAnswer, match="did not return the table"):
        checks.daily_bucketed_layout(forgets_return)


def test_layout_rejects_a_function_that_writes_data(tables):
    def create_and_fill(cat, identifier):
        table = creator((6, DayTransform(), "d"), (3, BucketTransform(8), "b"))(cat, identifier)
        table.append(ops.clicks(days=1))
        return table

    with pytest.raises(WrongAnswer, match=r"already holds \d+ rows: your function wrote data"):
        checks.daily_bucketed_layout(create_and_fill)


def test_layout_accepts_a_spec_added_after_creation(tables):
    def evolve_after_create(cat, identifier):
        table = cat.create_table(identifier, schema=ops.clicks_schema())
        with table.update_spec() as update:
            update.add_field("customer_id", BucketTransform(8), "customer_bucket")
            update.add_field("event_time", DayTransform(), "event_day")
        return table

    checks.daily_bucketed_layout(evolve_after_create)


def test_layout_placeholders():
    with pytest.raises(NotSolvedYet):
        checks.daily_bucketed_layout(...)

    def stub(cat, identifier):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.daily_bucketed_layout(stub)


# ------------------------------------------------------------------------------------------------ exercise 2


def test_filter_accepts_string_and_expression(tables):
    checks.hidden_partition_filter(ONE_DAY, tables)
    expression = And(
        GreaterThanOrEqual("event_time", "2026-03-03T00:00:00"), LessThan("event_time", "2026-03-04T00:00:00")
    )
    checks.hidden_partition_filter(expression, tables)


def test_filter_rejects_partition_field_and_open_interval(tables):
    with pytest.raises(WrongAnswer, match="names a partition field"):
        checks.hidden_partition_filter("event_day = '2026-03-03'", tables)
    with pytest.raises(WrongAnswer, match=r"selects \d+ rows; 2026-03-03 has"):
        checks.hidden_partition_filter("event_time >= '2026-03-03T00:00:00'", tables)


def test_filter_accepts_datetimes_and_the_last_microsecond(tables):
    checks.hidden_partition_filter(
        And(GreaterThanOrEqual("event_time", datetime(2026, 3, 3)), LessThan("event_time", datetime(2026, 3, 4))),
        tables,
    )
    checks.hidden_partition_filter(
        "event_time >= '2026-03-03T00:00:00' AND event_time <= '2026-03-03T23:59:59.999999'", tables
    )


def test_filter_rejects_the_next_midnight(tables):
    # the week's data has no click at 2026-03-04 00:00:00, so only the edge clicks catch this
    with pytest.raises(WrongAnswer, match="also selects a click at 2026-03-04 00:00:00"):
        checks.hidden_partition_filter(
            "event_time >= '2026-03-03T00:00:00' and event_time <= '2026-03-04T00:00:00'", tables
        )


def test_filter_rejects_the_last_second_and_the_first_midnight(tables):
    with pytest.raises(WrongAnswer, match=r"misses a click at 2026-03-03 23:59:59\.500000"):
        checks.hidden_partition_filter(
            "event_time >= '2026-03-03T00:00:00' and event_time <= '2026-03-03T23:59:59'", tables
        )
    with pytest.raises(WrongAnswer, match="misses a click at 2026-03-03 00:00:00"):
        checks.hidden_partition_filter(
            "event_time > '2026-03-03T00:00:00' and event_time < '2026-03-04T00:00:00'", tables
        )


def test_filter_explains_a_bare_date_literal(tables):
    with pytest.raises(WrongAnswer, match=r"could not read a timestamp of your filter.*2026-03-03.*Hint: event_time"):
        checks.hidden_partition_filter("event_time >= '2026-03-03' and event_time < '2026-03-04'", tables)


def test_filter_rejects_equality_on_midnight(tables):
    with pytest.raises(WrongAnswer, match="selects 0 rows"):
        checks.hidden_partition_filter("event_time = '2026-03-03T00:00:00'", tables)
    with pytest.raises(NotSolvedYet):
        checks.hidden_partition_filter(..., tables)


# ------------------------------------------------------------------------------------------------ exercise 3

QUERIES = {"one day": ONE_DAY, "one customer": EqualTo("customer_id", 1017), "checkouts": "event_type = 'checkout'"}
BEST = {"one day": "by_day", "one customer": "by_customer_bucket", "checkouts": "by_type"}


def test_cheapest_accepts_measured_best(tables):
    checks.cheapest_layouts(BEST, tables, QUERIES)


def test_cheapest_accepts_a_series_and_table_objects(tables):
    pruning = ops.pruning_table(tables, QUERIES)
    checks.cheapest_layouts(pruning.pivot(index="layout", columns="query", values="KiB").idxmin(), tables, QUERIES)
    checks.cheapest_layouts({label: tables[layout] for label, layout in BEST.items()}, tables, QUERIES)


def test_cheapest_hint_compares_kib_not_shares(tables):
    with pytest.raises(WrongAnswer, match="Hint: compare the KiB each plan reads, not its share"):
        checks.cheapest_layouts({**BEST, "one customer": "flat"}, tables, QUERIES)


def test_cheapest_rejects_hourly_for_a_day_and_missing_query(tables):
    with pytest.raises(WrongAnswer, match="for 'one day', by_hour plans"):
        checks.cheapest_layouts({**BEST, "one day": "by_hour"}, tables, QUERIES)
    with pytest.raises(WrongAnswer, match="no layout chosen for \\['checkouts'\\]"):
        checks.cheapest_layouts({"one day": "by_day", "one customer": "by_customer_bucket"}, tables, QUERIES)


def test_cheapest_rejects_unknown_layout_and_placeholder(tables):
    with pytest.raises(WrongAnswer, match="is not one of the layouts"):
        checks.cheapest_layouts({**BEST, "checkouts": "by_event_type"}, tables, QUERIES)
    with pytest.raises(NotSolvedYet):
        checks.cheapest_layouts(..., tables, QUERIES)


# ------------------------------------------------------------------------------------------------ exercise 4


def evolve_right(table):
    with table.update_spec() as update:
        update.remove_field("event_day")
        update.add_field("event_time", HourTransform(), "event_hour")


def test_evolution_accepts_metadata_change(tables):
    checks.evolution_without_rewrite(evolve_right)


def test_evolution_accepts_the_fluent_api_and_a_default_name(tables):
    checks.evolution_without_rewrite(
        lambda table: table.update_spec().remove_field("event_day").add_field("event_time", HourTransform()).commit()
    )


def test_evolution_rejects_two_commits(tables):
    def two_commits(table):
        with table.update_spec() as update:
            update.remove_field("event_day")
        with table.update_spec() as update:
            update.add_field("event_time", HourTransform(), "event_hour")

    with pytest.raises(WrongAnswer, match="made 2 metadata commits"):
        checks.evolution_without_rewrite(two_commits)


def test_evolution_rejects_rename_and_removal_alone(tables):
    def rename(table):
        with table.update_spec() as update:
            update.rename_field("event_day", "event_hour")

    def remove(table):
        with table.update_spec() as update:
            update.remove_field("event_day")

    with pytest.raises(WrongAnswer, match="by day only"):
        checks.evolution_without_rewrite(rename)
    with pytest.raises(WrongAnswer, match="the new spec is unpartitioned"):
        checks.evolution_without_rewrite(remove)


def test_evolution_rejects_rewrite(tables):
    def rewrite(table):
        data = table.scan().to_arrow()
        evolve_right(table)
        table.overwrite(data)

    with pytest.raises(WrongAnswer, match="existing data files were replaced"):
        checks.evolution_without_rewrite(rewrite)


def test_evolution_rejects_kept_day_and_no_change(tables):
    def add_only(table):
        with table.update_spec() as update:
            update.add_field("event_time", HourTransform(), "event_hour")

    with pytest.raises(WrongAnswer, match="still partitions by day"):
        checks.evolution_without_rewrite(add_only)
    with pytest.raises(WrongAnswer, match="did not change"):
        checks.evolution_without_rewrite(lambda table: None)
    with pytest.raises(NotSolvedYet):
        checks.evolution_without_rewrite(...)
