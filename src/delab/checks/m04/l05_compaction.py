"""Checks of lab 04.05 (compaction and maintenance): files added per commit, a one-commit compaction of the crowded
partitions, snapshot expiry and orphan files. The checks build their own small-files tables in the shared catalog
(with frequent small pyiceberg appends: the lab's Flink job is too slow to repeat here) and recompute every
expectation from the table's manifests and the object store's listing."""

from __future__ import annotations

from collections import Counter
from typing import Any

from delab import clients
from delab.grading import WrongAnswer, exercise, learner_code
from delab.lakehouse import ops

NAMESPACE = "m04_l05"


def _catalog() -> Any:
    from delab import lakehouse

    cat = lakehouse.catalog()
    cat.create_namespace_if_not_exists(NAMESPACE)
    return cat


def small_files_table(name: str, appends: int = 6, partitioned: bool = True) -> Any:
    """A fresh table of two days of clicks written in ``appends`` small commits; when partitioned (identity of
    event_type), the checkouts come in one commit only, so their partition has a single file."""
    import pyarrow.compute as pc
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    cat = _catalog()
    identifier = f"{NAMESPACE}.{name}"
    if cat.table_exists(identifier):
        cat.purge_table(identifier)
    clients.s3_delete_prefix(f"warehouse/{NAMESPACE}/{name}/")  # what purge leaves (stray and expired files)
    spec = (
        PartitionSpec(PartitionField(source_id=4, field_id=1000, transform=IdentityTransform(), name="event_type"))
        if partitioned
        else PartitionSpec()
    )
    table = cat.create_table(identifier, schema=ops.clicks_schema(), partition_spec=spec)
    clicks = ops.clicks(days=2)
    checkouts = clicks.filter(pc.equal(clicks["event_type"], "checkout"))
    others = clicks.filter(pc.not_equal(clicks["event_type"], "checkout")) if partitioned else clicks
    step = -(-others.num_rows // appends)
    for start in range(0, others.num_rows, step):
        table.append(others.slice(start, step))
    if partitioned:
        table.append(checkouts)
    return table


def _event_ids(table: Any) -> list[int]:
    return sorted(table.scan(selected_fields=("event_id",)).to_arrow()["event_id"].to_pylist())


def _commits(table: Any) -> int:
    return len(table.inspect.metadata_log_entries())


# ------------------------------------------------------------------------------------------------ exercise 1


def added_by_snapshot(table: Any) -> dict[int, int]:
    """Data files each snapshot added, counted from the manifest entries (not from the summaries)."""
    out = {}
    for snapshot in table.snapshots():
        entries = table.inspect.entries(snapshot_id=snapshot.snapshot_id).to_pylist()
        out[snapshot.snapshot_id] = sum(
            1
            for e in entries
            if e["status"] == 1 and e["snapshot_id"] == snapshot.snapshot_id and e["data_file"]["content"] == 0
        )
    return out


@learner_code("added_files_per_commit")
def _added(fn: Any, table: Any) -> Any:
    return fn(table)


@exercise("m04.l05.e1")
def added_files_per_commit(fn: Any, table: Any) -> None:
    """Snapshot id -> data files that commit added, as the manifests record it."""
    got = _added(fn, table)
    if not isinstance(got, dict):
        raise WrongAnswer(f"expected a dict snapshot id -> files added, got {type(got).__name__}.")
    want = added_by_snapshot(table)
    if set(got) != set(want):
        raise WrongAnswer(
            f"your dict has {len(got)} snapshot ids; the table has {len(want)} snapshots.",
            hint="one entry per snapshot of table.snapshots(), keyed by snapshot_id.",
        )
    got = {k: int(v) for k, v in got.items()}
    if got == want:
        return
    summaries = {s.snapshot_id: s.summary for s in table.snapshots()}
    if all(got[k] == int(summaries[k].get("total-data-files", -1)) for k in got):
        raise WrongAnswer("you counted every file of the table at each snapshot.", hint="only the files it added.")
    if all(got[k] == int(summaries[k].get("added-records", -1)) for k in got):
        raise WrongAnswer("you counted rows, not files.", hint="the summary has a counter for data files.")
    wrong = next(k for k in want if got[k] != want[k])
    raise WrongAnswer(f"snapshot {wrong} added {want[wrong]} data files, you say {got[wrong]}.")


# ------------------------------------------------------------------------------------------------ exercise 2


@learner_code("compact")
def _compact(fn: Any, table: Any, **kwargs: Any) -> None:
    fn(table, **kwargs)


def _files_by_partition(table: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in table.inspect.files().to_pylist():
        out.setdefault(str(row["partition"]["event_type"]), []).append(row["file_path"])
    return out


@exercise("m04.l05.e2")
def compaction_in_one_commit(compact: Any) -> None:
    """Crowded partitions rewritten into one file each, in one commit, every row kept, the rest untouched."""
    if not callable(compact):
        raise WrongAnswer("expected a function compact(table, min_files=2).")
    cat = _catalog()
    table = small_files_table("check_compaction")
    before_ids, before_files, commits = _event_ids(table), _files_by_partition(table), _commits(table)
    _compact(compact, table, min_files=2)
    table = cat.load_table(f"{NAMESPACE}.check_compaction")
    after_ids, after_files = _event_ids(table), _files_by_partition(table)
    if after_ids != before_ids:
        lost, extra = Counter(before_ids) - Counter(after_ids), Counter(after_ids) - Counter(before_ids)
        raise WrongAnswer(
            f"compaction changed the rows: {sum(lost.values())} missing, {sum(extra.values())} duplicated.",
            hint="the small files must leave in the same commit that adds their rewritten rows.",
        )
    if _commits(table) - commits != 1:
        raise WrongAnswer(
            f"compaction took {_commits(table) - commits} commits; between them readers see a half-done table.",
            hint="one transaction: an overwrite that deletes and adds together.",
        )
    crowded = [p for p, files in before_files.items() if len(files) >= 2]
    still = [p for p in crowded if len(after_files.get(p, [])) != 1]
    if still:
        raise WrongAnswer(
            f"partition(s) {still} still have {[len(after_files.get(p, [])) for p in still]} files, expected 1.",
            hint="write each crowded partition's rows back in one go.",
        )
    untouched = [p for p, files in before_files.items() if len(files) < 2 and after_files.get(p) != files]
    if untouched:
        raise WrongAnswer(
            f"partition(s) {untouched} had a single file and were rewritten anyway.",
            hint="rewrite only partitions with at least min_files files: compaction costs I/O.",
        )
    commits = _commits(table)
    _compact(compact, table, min_files=2)
    if _commits(cat.load_table(f"{NAMESPACE}.check_compaction")) != commits:
        raise WrongAnswer(
            "compacting an already compacted table committed again.", hint="nothing to do, nothing to commit."
        )
    cat.purge_table(f"{NAMESPACE}.check_compaction")


# ------------------------------------------------------------------------------------------------ exercise 3


@learner_code("expire_all_but")
def _expire(fn: Any, table: Any, keep: int) -> None:
    fn(table, keep)


@exercise("m04.l05.e3")
def expire_all_but(fn: Any) -> None:
    """Every snapshot but the newest ``keep`` expired; the current state unchanged."""
    if not callable(fn):
        raise WrongAnswer("expected a function expire_all_but(table, keep).")
    cat = _catalog()
    identifier = f"{NAMESPACE}.check_expiry"
    table = small_files_table("check_expiry", appends=5, partitioned=False)
    newest_first = sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)
    current, rows = table.current_snapshot().snapshot_id, _event_ids(table)
    _expire(fn, table, 2)
    table = cat.load_table(identifier)
    left = {s.snapshot_id for s in table.snapshots()}
    if table.current_snapshot() is None or table.current_snapshot().snapshot_id != current:
        raise WrongAnswer("the current snapshot changed.", hint="expiry removes old snapshots only.")
    if left == {s.snapshot_id for s in newest_first[-2:]} | {current}:
        raise WrongAnswer("you kept the oldest snapshots.", hint="sort by timestamp_ms, newest first.")
    if len(left) != 2:
        raise WrongAnswer(f"{len(left)} snapshots remain, expected 2 (keep=2).", hint="expire all the others.")
    if left != {s.snapshot_id for s in newest_first[:2]}:
        raise WrongAnswer("the snapshots left are not the two newest.", hint="sort by timestamp_ms, newest first.")
    if _event_ids(table) != rows:
        raise WrongAnswer("the table's rows changed.", hint="expiry must not touch the current data.")
    cat.purge_table(identifier)


# ------------------------------------------------------------------------------------------------ exercise 4


def _kind(uri: str) -> str:
    name = uri.rsplit("/", 1)[-1]
    if name.endswith(".metadata.json"):
        return "a metadata file still in the metadata log"
    if name.startswith("snap-"):
        return "the manifest list of a live snapshot"
    if name.endswith(".avro"):
        return "a manifest of a live snapshot"
    return "a data file of a live snapshot"


def orphan_probe() -> Any:
    """A table with orphans of every kind: expired snapshots' files, metadata files and a crashed write's file."""
    from delab import config

    table = small_files_table("check_orphans", appends=3, partitioned=False)
    table.overwrite(table.scan().to_arrow().slice(0, 500))
    table.append(ops.clicks(start="2026-03-05", days=1).slice(0, 200))
    oldest = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)[:2]
    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in oldest]).commit()
    stray = ops.table_prefix(table) + "data/00000-crashed-writer.parquet"
    clients.s3().put_object(Bucket=config.s3().bucket, Key=stray, Body=b"PAR1 never committed")
    return _catalog().load_table(f"{NAMESPACE}.check_orphans")


@learner_code("find_orphans")
def _orphans(fn: Any, table: Any) -> Any:
    return fn(table)


@exercise("m04.l05.e4")
def orphan_files(fn: Any) -> None:
    """Exactly the objects under the table's location that its metadata no longer references."""
    if not callable(fn):
        raise WrongAnswer("expected a function find_orphans(table).")
    table = orphan_probe()
    got = _orphans(fn, table)
    if not isinstance(got, (set, list, tuple, frozenset)):
        raise WrongAnswer(f"expected a set of s3:// URIs, got {type(got).__name__}.")
    got = set(got)
    want = set(ops.table_objects(table)) - ops.referenced_files(table)
    if got and not all(isinstance(u, str) and u.startswith("s3://") for u in got):
        raise WrongAnswer("give full s3:// URIs, as ops.table_objects lists them.")
    still_needed = got - want
    if still_needed:
        example = sorted(still_needed)[0]
        raise WrongAnswer(
            f"{len(still_needed)} of your orphans are still referenced — deleting them breaks the table; e.g. "
            f"{example.rsplit('/', 1)[-1]} is {_kind(example)}.",
            hint="collect references from every live snapshot, not just the current one.",
        )
    missed = want - got
    if missed:
        raise WrongAnswer(
            f"you missed {len(missed)} orphans, e.g. {sorted(missed)[0].rsplit('/', 1)[-1]}.",
            hint="list everything under the table's location and subtract what is referenced.",
        )
    _catalog().purge_table(f"{NAMESPACE}.check_orphans")
