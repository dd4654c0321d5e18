"""Checks of lab 04.05 (compaction and maintenance): files added per commit, a one-commit compaction of the crowded
partitions, snapshot expiry and orphan files. The checks build their own small-files tables in the shared catalog
(with frequent small pyiceberg appends: the lab's Flink job is too slow to repeat here) and recompute every
expectation from the table's manifests and the object store's listing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
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


def _by_type_spec() -> Any:
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    return PartitionSpec(PartitionField(source_id=4, field_id=1000, transform=IdentityTransform(), name="event_type"))


def _fresh_table(name: str, spec: Any, properties: dict[str, str] | None = None) -> Any:
    """An empty clicks table ``NAMESPACE.name``, after dropping an earlier one and every object it left."""
    cat = _catalog()
    identifier = f"{NAMESPACE}.{name}"
    if cat.table_exists(identifier):
        cat.drop_table(identifier)
    clients.s3_delete_prefix(f"warehouse/{NAMESPACE}/{name}/")  # data, stray and expired files alike
    return cat.create_table(identifier, schema=ops.clicks_schema(), partition_spec=spec, properties=properties or {})


def _drop(name: str) -> None:
    _catalog().drop_table(f"{NAMESPACE}.{name}")
    clients.s3_delete_prefix(f"warehouse/{NAMESPACE}/{name}/")


def small_files_table(
    name: str, appends: int = 6, partitioned: bool = True, properties: dict[str, str] | None = None
) -> Any:
    """A fresh table of two days of clicks written in ``appends`` small commits; when partitioned (identity of
    event_type), the checkouts come in one commit only, so their partition has a single file."""
    import pyarrow.compute as pc
    from pyiceberg.partitioning import PartitionSpec

    table = _fresh_table(name, _by_type_spec() if partitioned else PartitionSpec(), properties)
    clicks = ops.clicks(days=2)
    checkouts = clicks.filter(pc.equal(clicks["event_type"], "checkout"))
    others = clicks.filter(pc.not_equal(clicks["event_type"], "checkout")) if partitioned else clicks
    step = -(-others.num_rows // appends)
    for start in range(0, others.num_rows, step):
        table.append(others.slice(start, step))
    if partitioned:
        table.append(checkouts)
    return table


def crowded_table(name: str) -> Any:
    """Two days of clicks by event_type in six commits, so that the partitions hold 6 (page_view), 3
    (product_view), 2 (add_to_cart) and 1 (checkout) files: a threshold of 2 or 3 files tells them apart."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _fresh_table(name, _by_type_spec())
    clicks = ops.clicks(days=2)
    commits: list[list[pa.Table]] = [[] for _ in range(6)]
    for event_type, files in CROWDING.items():
        rows = clicks.filter(pc.equal(clicks["event_type"], event_type))
        step = -(-rows.num_rows // files)
        for i in range(files):
            commits[i].append(rows.slice(i * step, step))
    for parts in commits:
        table.append(pa.concat_tables(parts))
    return table


CROWDING = {"page_view": 6, "product_view": 3, "add_to_cart": 2, "checkout": 1}


def split_files_table(name: str) -> Any:
    """Clicks by event_type in three commits whose files are capped at 64 KiB, so a commit writes several files
    into one partition: files added differ from partitions changed, and from commit to commit."""
    table = _fresh_table(name, _by_type_spec(), {"write.target-file-size-bytes": str(64 * 1024)})
    clicks = ops.clicks(days=2)
    for start, end in ((0, 6000), (6000, 6300), (6300, clicks.num_rows)):
        table.append(clicks.slice(start, end - start))
    return table


def _rows(table: Any) -> Any:
    """Every row of the table, in event_id order (compaction must keep them all, every column)."""
    return table.scan().to_arrow().sort_by("event_id")


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


def summary_count(summary: Any, key: str, default: int = 0) -> int:
    """A counter of a snapshot summary. pyiceberg's ``Summary.get(key, default)`` returns None, not the default,
    for a key the commit did not write (an empty checkpoint commit of Flink's sink has no added-data-files)."""
    value = summary.get(key)
    return default if value is None else int(value)


@learner_code("added_files_per_commit")
def _added(fn: Any, table: Any) -> Any:
    return fn(table)


def _as_dict(got: Any, what: str) -> dict:
    if hasattr(got, "to_dict") and not isinstance(got, dict):  # a pandas Series
        got = got.to_dict()
    if not isinstance(got, Mapping):
        raise WrongAnswer(f"expected a dict {what}, got {type(got).__name__}.")
    return dict(got)


def _judge_added(got: Any, table: Any, where: str) -> None:
    got = _as_dict(got, "snapshot id -> files added")
    want = added_by_snapshot(table)
    if set(got) != set(want):
        if len(got) == len(want):
            example = next(iter(set(got) - set(want)))
            raise WrongAnswer(
                f"{where}: your keys are not the table's snapshot ids (e.g. {example!r}).",
                hint="key by snapshot_id, the int each snapshot carries — not a position or a sequence number.",
            )
        raise WrongAnswer(
            f"{where}: your dict has {len(got)} snapshot ids; the table has {len(want)} snapshots.",
            hint="one entry per snapshot of table.snapshots(), keyed by snapshot_id.",
        )
    got = {k: int(v) for k, v in got.items()}
    if got == want:
        return
    summaries = {s.snapshot_id: s.summary for s in table.snapshots()}
    if all(got[k] == summary_count(summaries[k], "total-data-files", -1) for k in got):
        raise WrongAnswer(
            f"{where}: you counted every file of the table at each snapshot.", hint="only the files it added."
        )
    if all(got[k] == summary_count(summaries[k], "added-records", -1) for k in got):
        raise WrongAnswer(f"{where}: you counted rows, not files.", hint="the summary has a counter for data files.")
    if all(got[k] == summary_count(summaries[k], "changed-partition-count", -1) for k in got):
        raise WrongAnswer(
            f"{where}: you counted the partitions each commit changed, not the files it added.",
            hint="one file per partition per commit is what the Flink job happens to write; count files.",
        )
    wrong = next(k for k in want if got[k] != want[k])
    raise WrongAnswer(f"{where}: snapshot {wrong} added {want[wrong]} data files, you say {got[wrong]}.")


@exercise("m04.l05.e1")
def added_files_per_commit(fn: Any, table: Any) -> None:
    """Snapshot id -> data files that commit added, as the manifests record it: on the lab's table and on one
    whose commits write several files into a partition."""
    _judge_added(_added(fn, table), table, "on your table")
    name = "check_added_files"
    probe = split_files_table(name)
    _judge_added(_added(fn, probe), probe, "on a table whose commits write several files per partition")
    _drop(name)


# ------------------------------------------------------------------------------------------------ exercise 2


@learner_code("compact")
def _compact(fn: Any, table: Any, **kwargs: Any) -> None:
    fn(table, **kwargs)


def _files_by_partition(table: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in table.inspect.files().to_pylist():
        out.setdefault(str(row["partition"]["event_type"]), []).append(row["file_path"])
    return out


def _judge_compaction(before: Any, after: Any, min_files: int, commits: int, call: str) -> None:
    """``before``/``after``: (rows, files by partition) around one call of the learner's compact()."""
    (before_rows, before_files), (after_rows, after_files) = before, after
    if not after_rows.equals(before_rows):
        before_ids, after_ids = before_rows["event_id"].to_pylist(), after_rows["event_id"].to_pylist()
        lost, extra = Counter(before_ids) - Counter(after_ids), Counter(after_ids) - Counter(before_ids)
        if not lost and not extra:
            raise WrongAnswer(
                f"{call}: every event_id is still there, but the rows' other columns changed.",
                hint="rewrite whole rows: read every column of the partitions you compact.",
            )
        raise WrongAnswer(
            f"{call}: compaction changed the rows: {sum(lost.values())} missing, {sum(extra.values())} duplicated.",
            hint="the small files must leave in the same commit that adds their rewritten rows.",
        )
    if commits != 1:
        raise WrongAnswer(
            f"{call}: compaction took {commits} commits; between them readers see a half-done table.",
            hint="one transaction: an overwrite that deletes and adds together.",
        )
    crowded = [p for p, files in before_files.items() if len(files) >= min_files]
    still = [p for p in crowded if len(after_files.get(p, [])) != 1]
    exactly = [p for p in still if len(before_files[p]) == min_files and after_files.get(p) == before_files[p]]
    if exactly:
        raise WrongAnswer(
            f"{call}: partition {exactly[0]!r} has exactly min_files={min_files} files and was left as it was.",
            hint="'at least min_files' includes a partition with min_files files.",
        )
    if still:
        raise WrongAnswer(
            f"{call}: partition(s) {still} still have {[len(after_files.get(p, [])) for p in still]} files, "
            "expected 1.",
            hint="write each crowded partition's rows back in one go.",
        )
    untouched = [p for p, files in before_files.items() if len(files) < min_files and after_files.get(p) != files]
    if untouched:
        single = all(len(before_files[p]) == 1 for p in untouched)
        raise WrongAnswer(
            f"{call}: partition(s) {untouched} had "
            + ("a single file" if single else f"fewer than min_files={min_files} files")
            + " and were rewritten anyway.",
            hint="rewrite only partitions with at least min_files files (the argument): compaction costs I/O.",
        )


def _state(table: Any) -> tuple[Any, dict[str, list[str]]]:
    return _rows(table), _files_by_partition(table)


@exercise("m04.l05.e2")
def compaction_in_one_commit(compact: Any) -> None:
    """Crowded partitions rewritten into one file each, in one commit, every row kept, the rest untouched —
    with min_files=3, then with the default of 2, then again with nothing left to do."""
    if not callable(compact):
        raise WrongAnswer("expected a function compact(table, min_files=2).")
    cat = _catalog()
    name = "check_compaction"
    identifier = f"{NAMESPACE}.{name}"
    table = crowded_table(name)  # partitions of 6, 3, 2 and 1 files
    for call, kwargs, min_files in (
        ("compact(table, min_files=3)", {"min_files": 3}, 3),
        ("then compact(table)", {}, 2),
    ):
        before, commits = _state(table), _commits(table)
        _compact(compact, table, **kwargs)
        table = cat.load_table(identifier)
        _judge_compaction(before, _state(table), min_files, _commits(table) - commits, call)
    commits = _commits(table)
    _compact(compact, table)
    if _commits(cat.load_table(identifier)) != commits:
        raise WrongAnswer(
            "compacting an already compacted table committed again.", hint="nothing to do, nothing to commit."
        )
    _drop(name)


# ------------------------------------------------------------------------------------------------ exercise 3


@learner_code("expire_all_but")
def _expire(fn: Any, table: Any, keep: int) -> None:
    fn(table, keep)


def _newest_first(table: Any) -> list[Any]:
    return sorted(table.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number), reverse=True)


def _expiry_table(name: str, keep: int) -> Any:
    """Snapshots in five or more commits, whose ``keep`` largest (random) ids are not the ``keep`` newest: so an
    answer that sorts by snapshot_id is always told apart."""
    table = small_files_table(name, appends=5, partitioned=False)
    extra = ops.clicks(start="2026-03-05", days=1)
    for start in range(0, 20 * 50, 50):
        by_id = sorted(table.snapshots(), key=lambda s: s.snapshot_id, reverse=True)[:keep]
        if {s.snapshot_id for s in by_id} != {s.snapshot_id for s in _newest_first(table)[:keep]}:
            break
        table.append(extra.slice(start, 50))
    return table


def _judge_expiry(table: Any, before: list[Any], current: int, keep: int, commits: int, call: str) -> None:
    left = {s.snapshot_id for s in table.snapshots()}
    if table.current_snapshot() is None or table.current_snapshot().snapshot_id != current:
        raise WrongAnswer(f"{call}: the current snapshot changed.", hint="expiry removes old snapshots only.")
    if len(before) > 2 * keep and left == {s.snapshot_id for s in before[-keep:]} | {current}:
        raise WrongAnswer(f"{call}: you kept the oldest snapshots.", hint="sort by timestamp_ms, newest first.")
    if len(left) != keep:
        raise WrongAnswer(
            f"{call}: {len(left)} snapshots remain, expected {keep} (keep={keep}).",
            hint="expire all the others — and read keep from the argument.",
        )
    if left == {s.snapshot_id for s in sorted(before, key=lambda s: s.snapshot_id)[-keep:]} and left != {
        s.snapshot_id for s in before[:keep]
    }:
        raise WrongAnswer(
            f"{call}: you kept the snapshots with the largest ids; snapshot ids are random, not ordered in time.",
            hint="sort by timestamp_ms (or sequence_number), newest first.",
        )
    if left != {s.snapshot_id for s in before[:keep]}:
        raise WrongAnswer(
            f"{call}: the snapshots left are not the {keep} newest.", hint="sort by timestamp_ms, newest first."
        )
    if commits != 1:
        raise WrongAnswer(
            f"{call}: expiry took {commits} commits, expected one.",
            hint="collect every id first, then one expire_snapshots().by_ids(...).commit().",
        )


@exercise("m04.l05.e3")
def expire_all_but(fn: Any) -> None:
    """Every snapshot but the newest ``keep`` expired in one commit (keep=2, then keep=1); the data unchanged."""
    if not callable(fn):
        raise WrongAnswer("expected a function expire_all_but(table, keep).")
    cat = _catalog()
    name = "check_expiry"
    identifier = f"{NAMESPACE}.{name}"
    table = _expiry_table(name, keep=2)
    current, rows = table.current_snapshot().snapshot_id, _event_ids(table)
    for keep in (2, 1):
        before, commits = _newest_first(table), _commits(table)
        _expire(fn, table, keep)
        table = cat.load_table(identifier)
        _judge_expiry(table, before, current, keep, _commits(table) - commits, f"expire_all_but(table, keep={keep})")
    if _event_ids(table) != rows:
        raise WrongAnswer("the table's rows changed.", hint="expiry must not touch the current data.")
    _drop(name)


# ------------------------------------------------------------------------------------------------ exercise 4


def _kind(uri: str, table: Any) -> tuple[str, str]:
    """What a still-referenced object is, and a hint about where its reference lives."""
    name = uri.rsplit("/", 1)[-1]
    if uri == table.metadata_location:
        return "the table's current metadata file", "the current metadata file is referenced too (by the catalog)."
    if name.endswith(".metadata.json"):
        return "a metadata file still in the metadata log", "inspect.metadata_log_entries() lists the kept ones."
    if name.startswith("snap-"):
        return "the manifest list of a live snapshot", "every live snapshot references its manifest list."
    if name.endswith(".avro"):
        return "a manifest of a live snapshot", "collect references from every live snapshot, not just the current one."
    return "a data file of a live snapshot", "collect references from every live snapshot, not just the current one."


PREVIOUS_VERSIONS = 3


def orphan_probe() -> Any:
    """A table with orphans of every kind: expired snapshots' manifest lists, manifests and data files, metadata
    files that fell off the metadata log (it keeps PREVIOUS_VERSIONS) and a crashed write's file."""
    from delab import config

    table = small_files_table(
        "check_orphans",
        appends=3,
        partitioned=False,
        properties={"write.metadata.previous-versions-max": str(PREVIOUS_VERSIONS)},
    )
    table.overwrite(table.scan().to_arrow().slice(0, 500))
    table.append(ops.clicks(start="2026-03-05", days=1).slice(0, 200))
    oldest = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)[:2]
    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in oldest]).commit()
    stray = ops.table_prefix(table) + "data/00000-crashed-writer.parquet"
    clients.s3().put_object(Bucket=config.s3().bucket, Key=stray, Body=b"PAR1 never committed")
    return _catalog().load_table(f"{NAMESPACE}.check_orphans")


@learner_code("find_orphans")
def _orphans(fn: Any, table: Any) -> Any:
    got = fn(table)
    if hasattr(got, "tolist"):  # a pandas Series or a numpy array
        got = got.tolist()
    if isinstance(got, (str, bytes, Mapping)) or not isinstance(got, Iterable):
        return got
    return set(got)  # a list, a tuple, a generator...


@exercise("m04.l05.e4")
def orphan_files(fn: Any) -> None:
    """Exactly the objects under the table's location that its metadata no longer references."""
    if not callable(fn):
        raise WrongAnswer("expected a function find_orphans(table).")
    table = orphan_probe()
    got = _orphans(fn, table)
    if not isinstance(got, set):
        raise WrongAnswer(f"expected a set of s3:// URIs, got {type(got).__name__}.")
    want = set(ops.table_objects(table)) - ops.referenced_files(table)
    if got and not all(isinstance(u, str) and u.startswith("s3://") for u in got):
        raise WrongAnswer("give full s3:// URIs, as ops.table_objects lists them.")
    still_needed = got - want
    if still_needed:
        example = sorted(still_needed)[0]
        kind, hint = _kind(example, table)
        raise WrongAnswer(
            f"{len(still_needed)} of your orphans are still referenced — deleting them breaks the table; e.g. "
            f"{example.rsplit('/', 1)[-1]} is {kind}.",
            hint=hint,
        )
    missed = want - got
    if missed:
        example = sorted(missed, key=lambda u: (not u.endswith(".metadata.json"), u))[0]
        raise WrongAnswer(
            f"you missed {len(missed)} orphans, e.g. {example.rsplit('/', 1)[-1]}.",
            hint="list everything under the table's location and subtract what is referenced.",
        )
    _drop("check_orphans")
