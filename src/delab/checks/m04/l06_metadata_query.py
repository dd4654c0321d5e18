"""Checks of lab 04.06 (metadata and query optimization): discovery by table properties, the lineage of the current
snapshot, an audited append, and a DuckDB query that skips files. Expectations come from the catalog's own tables
in Postgres and the metadata.json files in the object store (read directly, not through pyiceberg), and from
DuckDB's EXPLAIN ANALYZE."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from delab import clients
from delab.grading import WrongAnswer, exercise, learner_code
from delab.lakehouse import ops

NAMESPACE = "m04_l06"
ARCHIVE = "m04_l06_archive"


def _catalog() -> Any:
    from delab import lakehouse

    cat = lakehouse.catalog()
    cat.create_namespace_if_not_exists(NAMESPACE)
    return cat


def catalog_rows(catalog_name: str = "lake") -> list[tuple[str, str, str]]:
    """(namespace, table, metadata location) of every table of the catalog, from its Postgres table."""
    with clients.postgres() as conn:
        return conn.execute(
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables "
            "WHERE catalog_name = %s AND metadata_location IS NOT NULL",
            (catalog_name,),
        ).fetchall()


# ------------------------------------------------------------------------------------------------ exercise 1


def _names(found: Any) -> set[str] | None:
    """'namespace.table' names from a collection of names, identifier tuples or tables; None if it is not one."""
    if hasattr(found, "tolist"):  # a pandas Series or a numpy array
        found = found.tolist()
    if isinstance(found, (str, bytes, Mapping)) or not isinstance(found, Iterable):
        return None
    names = set()
    for item in found:
        if hasattr(item, "name") and callable(item.name):  # a pyiceberg Table
            item = item.name()
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, (tuple, list)) and all(isinstance(part, str) for part in item):
            names.add(".".join(item))
        else:
            return None
    return names


# A namespace the notebook never mentions: an answer that lists the lab's namespaces by name misses its table.
ELSEWHERE = "m04_l06_finance"


def governed_tables() -> dict[str, dict[str, str]]:
    """Tables of three namespaces with governance properties (created if missing): name -> properties."""
    cat = _catalog()
    cat.create_namespace_if_not_exists(ARCHIVE)
    cat.create_namespace_if_not_exists(ELSEWHERE)
    wanted = {
        f"{NAMESPACE}.check_pii_a": {"owner": "m04_l06-growth", "classification": "pii"},
        f"{NAMESPACE}.check_internal": {"owner": "m04_l06-growth", "classification": "internal"},
        f"{ARCHIVE}.check_pii_b": {"owner": "m04_l06-finance", "classification": "pii"},
        f"{ELSEWHERE}.check_pii_c": {"owner": "m04_l06-growth", "classification": "pii"},
    }
    for name, properties in wanted.items():
        if not cat.table_exists(name):
            cat.create_table(name, schema=ops.clicks_schema(), properties=properties)
    return wanted


def tables_with(**wanted: str) -> set[str]:
    """Tables of the whole catalog whose metadata.json properties hold every key=value of ``wanted``."""
    out = set()
    for namespace, table, location in catalog_rows():
        try:
            properties = ops.metadata_json(location).get("properties", {})
        except Exception:  # a table another lab is dropping right now
            continue
        if all(properties.get(k) == v for k, v in wanted.items()):
            out.add(f"{namespace}.{table}")
    return out


@learner_code("find_tables")
def _find(fn: Any, cat: Any, **wanted: str) -> Any:
    return fn(cat, **wanted)


@exercise("m04.l06.e1")
def find_tables(fn: Any) -> None:
    """Every table of the catalog, in any namespace, whose properties match all the given ones."""
    if not callable(fn):
        raise WrongAnswer("expected a function find_tables(cat, **properties).")
    governed_tables()
    cat = _catalog()
    for wanted in ({"classification": "pii", "owner": "m04_l06-growth"}, {"classification": "pii"}):
        found = _find(fn, cat, **wanted)
        got = _names(found)
        if got is None:
            raise WrongAnswer(f"expected a set of 'namespace.table' names, got {type(found).__name__}.")
        want = tables_with(**wanted)
        shown = ", ".join(f"{k}={v}" for k, v in wanted.items())
        if want - got:
            missed = sorted(want - got)
            raise WrongAnswer(
                f"for {shown} you missed {missed[:3]}.",
                hint="look in every namespace of the catalog (cat.list_namespaces()).",
            )
        if got - want:
            extra = sorted(got - want)
            raise WrongAnswer(
                f"for {shown} you also returned {extra[:3]}, whose properties do not all match.",
                hint="a table matches when every requested property has the requested value.",
            )


# ------------------------------------------------------------------------------------------------ exercise 2


def lineage_probe() -> Iterator[Any]:
    """A table with an abandoned branch of history: s1 <- s2 <- s3, rolled back to s2 (the newest snapshot, s3, is
    not the current one), then s4 on top of s2. Yields the table after the rollback, then after s4."""
    cat = _catalog()
    identifier = f"{NAMESPACE}.check_lineage"
    if cat.table_exists(identifier):
        cat.purge_table(identifier)
    table = cat.create_table(identifier, schema=ops.clicks_schema())
    clicks = ops.clicks(days=1)
    for start in (0, 100, 200):
        table.append(clicks.slice(start, 100))
    second = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)[1].snapshot_id
    table.manage_snapshots().rollback_to_snapshot(second).commit()
    yield cat.load_table(identifier)
    table = cat.load_table(identifier)
    table.append(clicks.slice(300, 100))
    yield cat.load_table(identifier)


def ancestors_from_metadata(metadata_location: str, start: int | None = None) -> list[int]:
    """The ancestry of ``start`` (default: the current snapshot) from the metadata file's ``parent-snapshot-id``
    links."""
    meta = ops.metadata_json(metadata_location)
    parents = {s["snapshot-id"]: s.get("parent-snapshot-id") for s in meta.get("snapshots", [])}
    out, current = [], meta.get("current-snapshot-id") if start is None else start
    while current is not None and current in parents:
        out.append(current)
        current = parents[current]
    return out


@learner_code("ancestry")
def _ancestry(fn: Any, table: Any) -> Any:
    return fn(table)


def _judge_ancestry(got: Any, table: Any, state: str) -> None:
    if hasattr(got, "tolist"):  # a pandas Series or a numpy array
        got = got.tolist()
    if not isinstance(got, (list, tuple)):
        raise WrongAnswer(f"expected a list of snapshot ids, got {type(got).__name__}.")
    got = [int(x) for x in got]
    want = ancestors_from_metadata(table.metadata_location)
    if got == want:
        return
    newest = max(table.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number)).snapshot_id
    if newest != want[0] and got == ancestors_from_metadata(table.metadata_location, newest):
        raise WrongAnswer(
            f"{state}: your list starts at the newest snapshot, {newest}; after a rollback the current one is "
            f"{want[0]}.",
            hint="start at table.current_snapshot() and follow the parent ids.",
        )
    if sorted(got) == sorted(want):
        raise WrongAnswer(f"{state}: the right snapshots, in the wrong order.", hint="start at the current snapshot.")
    twice = sorted({x for x in got if got.count(x) > 1})
    if twice:
        raise WrongAnswer(
            f"{state}: snapshot {twice[0]} is in your list twice; a lineage has each snapshot once.",
            hint="history lists a snapshot again when a rollback makes it current: follow the parent ids instead.",
        )
    abandoned = set(got) - set(want)
    if abandoned:
        raise WrongAnswer(
            f"{state}: {len(abandoned)} of your snapshots are not ancestors of the current one (a rollback abandoned "
            "them).",
            hint="follow parent_snapshot_id from the current snapshot instead of listing all snapshots.",
        )
    raise WrongAnswer(
        f"{state}: you gave {len(got)} snapshots; the current one has {len(want)} in its lineage (itself included)."
    )


@exercise("m04.l06.e2")
def snapshot_ancestry(fn: Any) -> None:
    """The current snapshot and its ancestors, newest first, following parent ids — right after a rollback (the
    newest snapshot is not the current one) and after one more append."""
    if not callable(fn):
        raise WrongAnswer("expected a function ancestry(table).")
    states = ("right after the rollback", "after the append that followed it")
    for state, table in zip(states, lineage_probe(), strict=True):
        _judge_ancestry(_ancestry(fn, table), table, state)


# ------------------------------------------------------------------------------------------------ exercise 3


@learner_code("audited_append")
def _append(fn: Any, table: Any, rows: Any, user: str) -> None:
    fn(table, rows, user)


@exercise("m04.l06.e3")
def audited_append(fn: Any) -> None:
    """Each append is one snapshot whose summary says who wrote it."""
    if not callable(fn):
        raise WrongAnswer("expected a function audited_append(table, rows, user).")
    cat = _catalog()
    identifier = f"{NAMESPACE}.check_audit"
    if cat.table_exists(identifier):
        cat.purge_table(identifier)
    table = cat.create_table(identifier, schema=ops.clicks_schema())
    clicks = ops.clicks(days=1)
    writes = [("ada", clicks.slice(0, 120)), ("grace", clicks.slice(120, 80))]
    for user, rows in writes:
        before = {s.snapshot_id for s in table.snapshots()}
        _append(fn, table, rows, user)
        table = cat.load_table(identifier)
        new = [s for s in table.snapshots() if s.snapshot_id not in before]
        if len(new) != 1:
            raise WrongAnswer(f"one call made {len(new)} snapshots, expected 1.", hint="a single append.")
        summary = ops.metadata_json(table.metadata_location)["snapshots"][-1]["summary"]
        if int(summary.get("added-records") or -1) != rows.num_rows:
            raise WrongAnswer(f"the snapshot added {summary.get('added-records')} rows, not {rows.num_rows}.")
        if summary.get("written-by") != user:
            where = (
                " (it is a table property: that says who wrote last, not who wrote what)"
                if table.properties.get("written-by")
                else ""
            )
            raise WrongAnswer(
                f"the snapshot that added {user}'s rows has written-by={summary.get('written-by')!r}{where}.",
                hint="append accepts snapshot_properties, stored in that snapshot's summary.",
            )
    cat.purge_table(identifier)


# ------------------------------------------------------------------------------------------------ exercise 4

DAYS = ("2026-03-03", "2026-03-04")


def checkouts_per_day(table: Any) -> dict[str, int]:
    """Checkouts of each day of DAYS, counted by pyiceberg and pandas (not DuckDB)."""
    frame = table.scan(row_filter="event_type = 'checkout'", selected_fields=("event_time",)).to_pandas()
    days = frame.event_time.dt.strftime("%Y-%m-%d")
    counts = days[days.isin(DAYS)].value_counts()
    return {day: int(counts[day]) for day in DAYS if day in counts}


def files_of_days(table: Any) -> int:
    wanted = {datetime.fromisoformat(d).date() for d in DAYS}
    return sum(1 for row in table.inspect.files().to_pylist() if next(iter(row["partition"].values()), None) in wanted)


# Clicks at the edges of DAYS (a checkout in its last half second, others on the midnights around it), and
# counts unlike the lab's table: a query with the wrong bounds, or with the lab table's numbers typed in, fails.
_EDGE_CLICKS = [
    ("checkout", datetime(2026, 3, 2, 23, 59, 59, 999999)),
    ("checkout", datetime(2026, 3, 3, 0, 0, 0)),
    ("checkout", datetime(2026, 3, 3, 12, 0, 0)),
    ("page_view", datetime(2026, 3, 3, 13, 0, 0)),
    ("checkout", datetime(2026, 3, 4, 23, 59, 59, 500000)),
    ("checkout", datetime(2026, 3, 5, 0, 0, 0)),
    ("checkout", datetime(2026, 3, 6, 10, 0, 0)),
]


def edge_table() -> Any:
    """A day-partitioned clicks table holding _EDGE_CLICKS, one file per day (recreated on every call)."""
    import pyarrow as pa
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform

    cat = _catalog()
    identifier = f"{NAMESPACE}.check_checkout_edges"
    if cat.table_exists(identifier):
        cat.purge_table(identifier)
    schema = ops.clicks_schema()
    spec = PartitionSpec(PartitionField(source_id=6, field_id=1000, transform=DayTransform(), name="event_day"))
    table = cat.create_table(identifier, schema=schema, partition_spec=spec)
    columns: dict[str, list] = {name: [None] * len(_EDGE_CLICKS) for name in schema.column_names}
    columns["event_id"] = list(range(1, len(_EDGE_CLICKS) + 1))
    columns["event_type"] = [kind for kind, _ in _EDGE_CLICKS]
    columns["event_time"] = [when for _, when in _EDGE_CLICKS]
    table.append(pa.Table.from_pydict(columns, schema=schema.as_arrow()))
    return cat.load_table(identifier)


def _run_checkouts(con: Any, sql: str, table: Any) -> tuple[dict[str, int], int]:
    """The learner's query on ``table``: {day: checkouts} and the data files DuckDB read."""
    query = sql.format(table=table.metadata_location)
    try:
        rows = con.sql(query).fetchall()
        profile = con.sql("EXPLAIN ANALYZE " + query).fetchall()[0][1]
    except Exception as error:
        raise WrongAnswer(f"DuckDB refused your query: {str(error).splitlines()[0][:200]}") from None
    got = {}
    for row in rows:
        day, count = (row[0], row[1]) if len(row) == 2 else (None, None)
        if not isinstance(count, int) or isinstance(count, bool) or not str(day)[:10].startswith("20"):
            raise WrongAnswer(
                f"each row should be (day, checkouts); one of yours is {tuple(row)}.",
                hint="two columns: the day first, then the number of checkouts.",
            )
        got[str(day)[:10]] = int(count)
    return got, ops.files_read(profile)


@exercise("m04.l06.e4")
def pruned_checkout_query(sql: Any, table: Any) -> None:
    """Checkouts per day for 3-4 March, reading only those days' files — on the lab's table and on a table of
    clicks at the edges of those days."""
    from delab.lakehouse import engines

    if not isinstance(sql, str) or "{table}" not in sql:
        raise WrongAnswer("expected a SQL string reading iceberg_scan('{table}').", hint="keep the {table} slot.")
    con = engines.duckdb_iceberg()
    got, read = _run_checkouts(con, sql, table)
    want = checkouts_per_day(table)
    if got != want:
        raise WrongAnswer(
            f"your query gives {got}, expected a count per day for {list(DAYS)} that matches the table.",
            hint="two columns: the day and the number of checkouts; a day runs from midnight to midnight.",
        )
    needed = files_of_days(table)
    if read > needed:
        raise WrongAnswer(
            f"your query read {read} data files; the two days live in {needed}.",
            hint="compare event_time itself with timestamps: a function around the column hides it from pruning.",
        )
    edges = edge_table()
    on_lab_table = got
    got, read = _run_checkouts(con, sql, edges)
    want = checkouts_per_day(edges)
    if got == on_lab_table:
        raise WrongAnswer(
            f"on another table your query gives the same {got} as on the lab's: those numbers are typed in.",
            hint="let the query count the rows of iceberg_scan('{table}').",
        )
    if got != want:
        raise WrongAnswer(
            f"on a table of checkouts at the edges of those days (midnights, the last half second) your query gives "
            f"{got}, expected {want}.",
            hint="a day runs from its midnight (included) to the next midnight (excluded).",
        )
    if read > files_of_days(edges):
        raise WrongAnswer(
            f"on a table with one file per day your query read {read} data files; the two days live in "
            f"{files_of_days(edges)}.",
            hint="compare event_time itself with timestamps: a function around the column hides it from pruning.",
        )
    _catalog().purge_table(f"{NAMESPACE}.check_checkout_edges")
