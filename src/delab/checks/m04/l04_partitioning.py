"""Checks of lab 04.04 (partitioning): a day-and-bucket layout, a filter that uses hidden partitioning, the layout
that prunes best for each query, and a partition evolution that rewrites nothing. Every check builds or reads
real Iceberg tables in the shared catalog and recomputes what it expects from the table's own metadata."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from delab.grading import WrongAnswer, exercise, learner_code
from delab.lakehouse import ops

NAMESPACE = "m04_l04"
THE_DAY = date(2026, 3, 3)


def _catalog() -> Any:
    from delab import lakehouse

    cat = lakehouse.catalog()
    cat.create_namespace_if_not_exists(NAMESPACE)
    return cat


def _drop(cat: Any, identifier: str) -> None:
    if cat.table_exists(identifier):
        cat.purge_table(identifier)


def _field_of(table: Any, name: str) -> int:
    return table.schema().find_field(name).field_id


def _transform_name(transform: Any) -> str:
    return type(transform).__name__.replace("Transform", "").lower()


@learner_code("your create function")
def _create(fn: Any, cat: Any, identifier: str) -> Any:
    return fn(cat, identifier)


@exercise("m04.l04.e1")
def daily_bucketed_layout(create_fn: Any) -> None:
    """A table partitioned by day of event_time and by 8 hash buckets of customer_id."""
    if not callable(create_fn):
        raise WrongAnswer("expected a function create(cat, identifier) that returns the new table.")
    cat = _catalog()
    identifier = f"{NAMESPACE}.check_daily_bucketed"
    _drop(cat, identifier)
    returned = _create(create_fn, cat, identifier)
    if not cat.table_exists(identifier):
        raise WrongAnswer(
            f"no table {identifier} exists after your function ran.", hint="cat.create_table(identifier, ...)"
        )
    table = cat.load_table(identifier)
    if returned is None or getattr(returned, "metadata_location", None) is None:
        raise WrongAnswer("your function did not return the table.", hint="return what cat.create_table gives you.")
    names = set(table.schema().column_names)
    if names != set(ops.clicks_schema().column_names):
        raise WrongAnswer(f"the table's columns are {sorted(names)}.", hint="create it with clicks_schema.")
    time_id, customer_id = _field_of(table, "event_time"), _field_of(table, "customer_id")
    by_source: dict[int, list[Any]] = {}
    for field in table.spec().fields:
        by_source.setdefault(field.source_id, []).append(field.transform)
    time_transforms = by_source.get(time_id, [])
    customer_transforms = by_source.get(customer_id, [])
    if not time_transforms:
        raise WrongAnswer("the table is not partitioned by event_time.", hint="a time transform of event_time.")
    kind = _transform_name(time_transforms[0])
    if kind == "identity":
        raise WrongAnswer(
            "event_time is partitioned by identity: one partition per distinct timestamp, so every row its own file.",
            hint="a time transform turns a timestamp into a coarser value.",
        )
    if kind != "day":
        raise WrongAnswer(f"event_time is partitioned by {kind}, not by day.", hint="the DayTransform.")
    if not customer_transforms:
        raise WrongAnswer("the table is not partitioned by customer_id.", hint="hash customer_id into buckets.")
    bucket = customer_transforms[0]
    if _transform_name(bucket) == "identity":
        raise WrongAnswer(
            "customer_id is partitioned by identity: one partition per customer (thousands of tiny files).",
            hint="a bucket transform hashes values into a fixed number of partitions.",
        )
    if _transform_name(bucket) != "bucket" or getattr(bucket, "num_buckets", None) != 8:
        raise WrongAnswer(
            f"customer_id is partitioned by {bucket}, expected 8 hash buckets.", hint="BucketTransform(8)"
        )
    if len(table.spec().fields) != 2:
        raise WrongAnswer(f"the spec has {len(table.spec().fields)} fields, expected 2.", hint="day + bucket only.")
    already = sum(f["record_count"] for f in table.inspect.files().to_pylist())
    if already:
        raise WrongAnswer(
            f"the new table already holds {already} rows: your function wrote data.",
            hint="only create the table; the cell after the check appends the week.",
        )
    sample = ops.clicks(days=2)
    table.append(sample)
    files = table.inspect.files().to_pylist()
    if sum(f["record_count"] for f in files) != sample.num_rows:
        raise WrongAnswer("appending two days of clicks did not keep every row.", hint="use clicks_schema as is.")
    days = {v for f in files for k, v in f["partition"].items() if k == _spec_name(table, time_id)}
    if len(days) != 2:
        raise WrongAnswer(f"two days of clicks landed in {len(days)} day partitions.", hint="day(event_time).")
    cat.purge_table(identifier)


def _spec_text(table: Any) -> str:
    """The table's partition spec on one line: ``event_ts=identity(event_time)``."""
    schema = table.schema()
    fields = [f"{f.name}={f.transform}({schema.find_column_name(f.source_id)})" for f in table.spec().fields]
    return ", ".join(fields) or "unpartitioned"


def _spec_name(table: Any, source_id: int) -> str:
    return next(f.name for f in table.spec().fields if f.source_id == source_id)


# ---------------------------------------------------------------------------------------- hidden partitioning


def _rows_of_day(table: Any, day: date) -> int:
    import pyarrow.compute as pc

    times = table.scan(selected_fields=("event_time",)).to_arrow()["event_time"]
    start, end = (
        datetime.combine(day, datetime.min.time()),
        datetime.combine(day + timedelta(days=1), datetime.min.time()),
    )
    return int(pc.sum(pc.and_(pc.greater_equal(times, start), pc.less(times, end))).as_py() or 0)


def _files_of_day(table: Any, day: date) -> int:
    """Data files whose partition value (a day or an hour of event_time) falls on ``day``."""
    epoch = datetime(1970, 1, 1)
    count = 0
    for row in table.inspect.files().to_pylist():
        value = next(iter(row["partition"].values()))
        if isinstance(value, datetime):
            on = value.date()
        elif isinstance(value, date):
            on = value
        else:  # hours since the epoch
            on = (epoch + timedelta(hours=int(value))).date()
        count += on == day
    return count


def _timestamp_literal(error: ValueError) -> WrongAnswer | None:
    """pyiceberg's refusal of a timestamp literal (a bare date, a space for the 'T', a zone) told in one line."""
    text = str(error)
    if "ISO-8601" not in text and "Zone offset" not in text:
        return None
    return WrongAnswer(
        f"pyiceberg could not read a timestamp of your filter: {text.strip().splitlines()[0]}.",
        hint="event_time has no zone: pyiceberg parses literals like '2026-01-31T08:00:00' (date, 'T', time).",
    )


@learner_code("scanning with your filter")
def _plan(table: Any, row_filter: Any) -> tuple[int, int]:
    try:
        rows = table.scan(row_filter=row_filter, selected_fields=("event_id",)).to_arrow().num_rows
    except ValueError as error:
        raise _timestamp_literal(error) or error from None
    return rows, ops.scan_plan(table, row_filter).files


# Clicks on and around the edges of THE_DAY: (event_id, event_time, on the day?, what it is).
_EDGES = [
    (1, datetime(2026, 3, 2, 23, 59, 59, 999999), False, "the last microsecond of the 2nd"),
    (2, datetime(2026, 3, 3, 0, 0, 0), True, "midnight that starts the 3rd"),
    (3, datetime(2026, 3, 3, 12, 0, 0), True, "noon on the 3rd"),
    (4, datetime(2026, 3, 3, 23, 59, 59, 500000), True, "half a second before the 3rd ends"),
    (5, datetime(2026, 3, 4, 0, 0, 0), False, "midnight that starts the 4th"),
]


def _edge_table(cat: Any) -> Any:
    """A day-partitioned clicks table holding the five edge clicks (recreated on every run)."""
    import pyarrow as pa
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform

    identifier = f"{NAMESPACE}.check_day_edges"
    _drop(cat, identifier)
    schema = ops.clicks_schema()
    spec = PartitionSpec(PartitionField(source_id=6, field_id=1000, transform=DayTransform(), name="event_day"))
    table = cat.create_table(identifier, schema=schema, partition_spec=spec)
    columns = {name: [None] * len(_EDGES) for name in schema.column_names}
    columns["event_id"] = [edge[0] for edge in _EDGES]
    columns["event_time"] = [edge[1] for edge in _EDGES]
    table.append(pa.Table.from_pydict(columns, schema=schema.as_arrow()))
    return table


def _check_edges(row_filter: Any) -> None:
    """The filter keeps exactly the edge clicks that fall on THE_DAY: instants the week's data does not contain."""
    cat = _catalog()
    table = _edge_table(cat)
    chosen = set(_scan_ids(table, row_filter))
    cat.purge_table(f"{NAMESPACE}.check_day_edges")
    for event_id, when, on_day, what in _EDGES:
        if on_day and event_id not in chosen:
            raise WrongAnswer(
                f"your filter misses a click at {when.isoformat(sep=' ')} ({what}).",
                hint="a day is a half-open interval: from its midnight (included) to the next midnight (excluded).",
            )
        if not on_day and event_id in chosen:
            raise WrongAnswer(
                f"your filter also selects a click at {when.isoformat(sep=' ')} ({what}).",
                hint="a day is a half-open interval: from its midnight (included) to the next midnight (excluded).",
            )


@learner_code("scanning with your filter")
def _scan_ids(table: Any, row_filter: Any) -> list[int]:
    return table.scan(row_filter=row_filter, selected_fields=("event_id",)).to_arrow()["event_id"].to_pylist()


@exercise("m04.l04.e2")
def hidden_partition_filter(one_day: Any, tables: dict) -> None:
    """A filter on event_time alone selects one day and prunes to that day's files, whatever the layout."""
    from pyiceberg.expressions import BooleanExpression

    if not isinstance(one_day, (str, BooleanExpression)):
        raise WrongAnswer("expected a filter: a string such as \"col >= '...'\" or a pyiceberg expression.")
    if isinstance(one_day, str) and any(name in one_day for name in ("event_day", "event_hour")):
        raise WrongAnswer(
            "your filter names a partition field: readers never see those columns in Iceberg.",
            hint="filter the source column event_time; Iceberg derives the partition values itself.",
        )
    for layout in ("by_day", "by_hour"):
        table = tables[layout]
        rows, files = _plan(table, one_day)
        want_rows = _rows_of_day(table, THE_DAY)
        if rows != want_rows:
            raise WrongAnswer(
                f"on {layout} your filter selects {rows} rows; {THE_DAY} has {want_rows} clicks.",
                hint="a day is a half-open interval: from its midnight (included) to the next midnight (excluded).",
            )
        want_files = _files_of_day(table, THE_DAY)
        if files != want_files:
            raise WrongAnswer(
                f"on {layout} your filter plans {files} files; the day's partitions hold {want_files}.",
                hint="compare event_time with timestamps so Iceberg can prune partitions.",
            )
    _check_edges(one_day)


# ---------------------------------------------------------------------------------------- cheapest layout


@exercise("m04.l04.e3")
def cheapest_layouts(choice: Any, tables: dict, predicates: dict) -> None:
    """For each query, the layout whose scan plans the fewest bytes."""
    if hasattr(choice, "to_dict") and not isinstance(choice, dict):  # a pandas Series (e.g. from idxmin)
        choice = choice.to_dict()
    if not isinstance(choice, Mapping):
        raise WrongAnswer("expected a dict: query label -> layout name.")
    missing = set(predicates) - set(choice)
    if missing:
        raise WrongAnswer(f"no layout chosen for {sorted(missing)}.", hint="one entry per query of the table above.")
    names_of = {id(table): name for name, table in tables.items()}
    for label, predicate in predicates.items():
        layout = choice[label]
        layout = names_of.get(id(layout), layout)  # the table itself names its layout as well
        if not isinstance(layout, str) or layout not in tables:
            raise WrongAnswer(f"{layout!r} (for {label!r}) is not one of the layouts: {sorted(tables)}.")
        costs = {name: ops.scan_plan(table, predicate).bytes for name, table in tables.items()}
        best = min(costs.values())
        if costs[layout] > best:
            ratio = costs[layout] / best if best else float("inf")
            raise WrongAnswer(
                f"for {label!r}, {layout} plans {costs[layout]:,} bytes — {ratio:.1f}x the cheapest layout.",
                hint="compare the KiB each plan reads, not its share: the layouts differ in total size.",
            )


# ---------------------------------------------------------------------------------------- partition evolution


@learner_code("your evolve function")
def _evolve(fn: Any, table: Any) -> Any:
    return fn(table)


@exercise("m04.l04.e4")
def evolution_without_rewrite(evolve_fn: Any) -> None:
    """Day partitioning becomes hour partitioning for new data; the old files stay as they were."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform

    if not callable(evolve_fn):
        raise WrongAnswer("expected a function evolve(table).")
    cat = _catalog()
    identifier = f"{NAMESPACE}.check_evolution"
    _drop(cat, identifier)
    spec = PartitionSpec(PartitionField(source_id=6, field_id=1000, transform=DayTransform(), name="event_day"))
    table = cat.create_table(identifier, schema=ops.clicks_schema(), partition_spec=spec)
    week = ops.clicks(days=3)
    old, new = week.slice(0, week.num_rows // 2), week.slice(week.num_rows // 2)
    table.append(old)
    uuid_before = table.metadata.table_uuid
    commits_before = len(table.metadata.metadata_log)
    old_files = set(table.inspect.files()["file_path"].to_pylist())
    _evolve(evolve_fn, cat.load_table(identifier))
    table = cat.load_table(identifier)
    if table.metadata.table_uuid != uuid_before:
        raise WrongAnswer("the table was dropped and created again.", hint="change the spec of the existing table.")
    files_now = set(table.inspect.files()["file_path"].to_pylist())
    if not old_files <= files_now:
        raise WrongAnswer(
            f"{len(old_files - files_now)} of the {len(old_files)} existing data files were replaced.",
            hint="evolution changes only the metadata; it must not rewrite (overwrite) the data.",
        )
    time_id = _field_of(table, "event_time")
    kinds = sorted(_transform_name(f.transform) for f in table.spec().fields if f.source_id == time_id)
    if table.spec().spec_id == 0:
        raise WrongAnswer("the partition spec did not change.", hint="table.update_spec() as a context manager.")
    if kinds == ["day"]:
        raise WrongAnswer(
            "the new spec still partitions event_time by day only (a renamed field keeps its transform).",
            hint="remove the day field and add an hour field of event_time.",
        )
    if "day" in kinds:
        raise WrongAnswer(
            "the new spec still partitions by day as well: every hour partition sits inside a redundant day.",
            hint="remove the day field when you add the hour field.",
        )
    if not table.spec().fields:
        raise WrongAnswer(
            "the new spec is unpartitioned: new files would hold every hour of every day.",
            hint="add an hour field of event_time when you remove the day field.",
        )
    if kinds != ["hour"] or len(table.spec().fields) != 1:
        raise WrongAnswer(f"the new spec is {_spec_text(table)}, expected only hour(event_time).")
    commits = len(table.metadata.metadata_log) - commits_before
    if commits > 1:
        raise WrongAnswer(
            f"your function made {commits} metadata commits: a writer in between got a spec that was neither.",
            hint="make every spec change inside one update_spec() block, which commits once.",
        )
    table.append(new)
    rows = table.inspect.files().to_pylist()
    by_spec: dict[int, int] = {}
    for row in rows:
        by_spec[row["spec_id"]] = by_spec.get(row["spec_id"], 0) + row["record_count"]
    if by_spec.get(0) != old.num_rows or by_spec.get(table.spec().spec_id) != new.num_rows:
        raise WrongAnswer(f"rows per spec id are {by_spec}; old files should keep spec 0, new ones the new spec.")
    cat.purge_table(identifier)
