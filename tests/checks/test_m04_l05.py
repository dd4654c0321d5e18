"""Checks of lab 04.05 (compaction and maintenance), against real Iceberg tables with small files: right answers
pass, realistic wrong ones fail."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
from pyiceberg.expressions import AlwaysTrue, EqualTo, In

from delab import stack
from delab.checks.m04 import l05_compaction as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.lakehouse import ops

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module", autouse=True)
def services():
    stack.require("postgres", "s3", quiet=True)


# ------------------------------------------------------------------------------------------------ exercise 1


@pytest.fixture(scope="module")
def small_table():
    return checks.small_files_table("test_commits", appends=4)


def test_added_files_accepts_summary_counter(small_table):
    checks.added_files_per_commit(
        lambda t: {s.snapshot_id: int(s.summary["added-data-files"]) for s in t.snapshots()}, small_table
    )


def test_added_files_rejects_totals_and_rows(small_table):
    with pytest.raises(WrongAnswer, match="every file of the table"):
        checks.added_files_per_commit(
            lambda t: {s.snapshot_id: int(s.summary["total-data-files"]) for s in t.snapshots()}, small_table
        )
    with pytest.raises(WrongAnswer, match="rows, not files"):
        checks.added_files_per_commit(
            lambda t: {s.snapshot_id: int(s.summary["added-records"]) for s in t.snapshots()}, small_table
        )


def test_added_files_accepts_a_series_from_inspect(small_table):
    def from_inspect(t):
        frame = t.inspect.snapshots().to_pandas()
        return pd.Series([int(dict(s)["added-data-files"]) for s in frame["summary"]], index=frame["snapshot_id"])

    checks.added_files_per_commit(from_inspect, small_table)


def test_added_files_rejects_partition_counts(small_table):
    # one file per partition per commit on the lab's table: only a table of the check's tells them apart
    with pytest.raises(WrongAnswer, match="several files per partition: you counted the partitions"):
        checks.added_files_per_commit(
            lambda t: {s.snapshot_id: int(s.summary["changed-partition-count"]) for s in t.snapshots()}, small_table
        )


def test_added_files_rejects_sequence_numbers_as_keys(small_table):
    with pytest.raises(WrongAnswer, match="your keys are not the table's snapshot ids"):
        checks.added_files_per_commit(
            lambda t: {s.sequence_number: int(s.summary["added-data-files"]) for s in t.snapshots()}, small_table
        )


def test_added_files_rejects_current_only_and_placeholder(small_table):
    with pytest.raises(WrongAnswer, match="1 snapshot ids; the table has 5"):
        checks.added_files_per_commit(lambda t: {t.current_snapshot().snapshot_id: 1}, small_table)
    with pytest.raises(NotSolvedYet):
        checks.added_files_per_commit(..., small_table)


# ------------------------------------------------------------------------------------------------ exercise 2


def crowded(table, min_files):
    per_type = Counter(row["partition"]["event_type"] for row in table.inspect.files().to_pylist())
    return [value for value, files in per_type.items() if files >= min_files]


def crowded_count(table, value):
    return sum(1 for row in table.inspect.files().to_pylist() if row["partition"]["event_type"] == value)


def compact_right(table, min_files=2):
    types = crowded(table, min_files)
    if types:
        table.dynamic_partition_overwrite(table.scan(row_filter=In("event_type", types)).to_arrow())


def test_compaction_accepts_one_transaction():
    checks.compaction_in_one_commit(compact_right)


def test_compaction_accepts_an_overwrite_per_partition_in_one_transaction():
    def per_partition(table, min_files=2):
        types = crowded(table, min_files)
        if types:
            with table.transaction() as tx:
                for value in types:
                    rows = table.scan(row_filter=EqualTo("event_type", value)).to_arrow()
                    tx.overwrite(rows, overwrite_filter=EqualTo("event_type", value))

    checks.compaction_in_one_commit(per_partition)


def test_compaction_rejects_more_than_min_files():
    def strictly_more(table, min_files=2):
        types = [value for value in crowded(table, min_files) if crowded_count(table, value) > min_files]
        if types:
            table.dynamic_partition_overwrite(table.scan(row_filter=In("event_type", types)).to_arrow())

    with pytest.raises(WrongAnswer, match="has exactly min_files=3 files and was left as it was"):
        checks.compaction_in_one_commit(strictly_more)


def test_compaction_rejects_a_hard_coded_threshold():
    with pytest.raises(WrongAnswer, match=r"min_files=3\): partition\(s\) \['add_to_cart'\] had fewer than"):
        checks.compaction_in_one_commit(lambda table, min_files=2: compact_right(table, 2))


def test_compaction_rejects_rows_missing_columns():
    def some_columns(table, min_files=2):
        types = crowded(table, min_files)
        if types:
            columns = ("event_id", "event_type", "event_time")
            table.dynamic_partition_overwrite(
                table.scan(row_filter=In("event_type", types), selected_fields=columns).to_arrow()
            )

    with pytest.raises(WrongAnswer, match="every event_id is still there, but the rows' other columns changed"):
        checks.compaction_in_one_commit(some_columns)


def test_compaction_rejects_two_commits_and_duplicates():
    def delete_then_append(table, min_files=2):
        types = crowded(table, min_files)
        if types:
            rows = table.scan(row_filter=In("event_type", types)).to_arrow()
            table.delete(In("event_type", types))
            table.append(rows)

    with pytest.raises(WrongAnswer, match="took 2 commits"):
        checks.compaction_in_one_commit(delete_then_append)

    def append_only(table, min_files=2):
        types = crowded(table, min_files)
        if types:
            table.append(table.scan(row_filter=In("event_type", types)).to_arrow())

    with pytest.raises(WrongAnswer, match=r"0 missing, \d+ duplicated"):
        checks.compaction_in_one_commit(append_only)


def test_compaction_rejects_whole_table_rewrite_and_placeholder():
    def rewrite_everything(table, min_files=2):
        table.overwrite(table.scan().to_arrow(), overwrite_filter=AlwaysTrue())

    with pytest.raises(WrongAnswer, match="had fewer than min_files=3 files and were rewritten"):
        checks.compaction_in_one_commit(rewrite_everything)

    def stub(table, min_files=2):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.compaction_in_one_commit(stub)


# ------------------------------------------------------------------------------------------------ exercise 3


def expire_right(table, keep):
    newest_first = sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)
    old = [s.snapshot_id for s in newest_first[keep:]]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()


def test_expiry_accepts_newest_kept():
    checks.expire_all_but(expire_right)


def test_expiry_rejects_everything_but_current_and_nothing():
    def all_but_current(table, keep):
        current = table.current_snapshot().snapshot_id
        table.maintenance.expire_snapshots().by_ids(
            [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current]
        ).commit()

    with pytest.raises(WrongAnswer, match="1 snapshots remain, expected 2"):
        checks.expire_all_but(all_but_current)
    with pytest.raises(WrongAnswer, match=r"\d+ snapshots remain, expected 2"):
        checks.expire_all_but(lambda table, keep: None)


def test_expiry_accepts_the_parent_chain():
    def ancestors(table, keep):
        kept, snapshot = set(), table.current_snapshot()
        while snapshot is not None and len(kept) < keep:
            kept.add(snapshot.snapshot_id)
            snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
        old = [s.snapshot_id for s in table.snapshots() if s.snapshot_id not in kept]
        if old:
            table.maintenance.expire_snapshots().by_ids(old).commit()

    checks.expire_all_but(ancestors)


def test_expiry_rejects_one_commit_per_snapshot():
    def one_by_one(table, keep):
        newest_first = sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)
        for snapshot in newest_first[keep:]:
            table.maintenance.expire_snapshots().by_id(snapshot.snapshot_id).commit()

    with pytest.raises(WrongAnswer, match=r"expiry took \d+ commits, expected one"):
        checks.expire_all_but(one_by_one)


def test_expiry_rejects_a_hard_coded_keep_and_sorting_by_id():
    with pytest.raises(WrongAnswer, match=r"keep=1\): 2 snapshots remain, expected 1"):
        checks.expire_all_but(lambda table, keep: expire_right(table, 2))

    def by_id(table, keep):
        largest = sorted(table.snapshots(), key=lambda s: s.snapshot_id, reverse=True)[:keep]
        current = table.current_snapshot().snapshot_id
        kept = {s.snapshot_id for s in largest} | {current}
        old = [s.snapshot_id for s in table.snapshots() if s.snapshot_id not in kept]
        if old:
            table.maintenance.expire_snapshots().by_ids(old).commit()

    # the check's table always has a newest snapshot whose id is not among the largest
    with pytest.raises(WrongAnswer, match=r"snapshots remain|largest ids"):
        checks.expire_all_but(by_id)


def test_expiry_rejects_oldest_kept_and_placeholder():
    def keeps_oldest(table, keep):
        current = table.current_snapshot().snapshot_id
        oldest_first = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
        table.maintenance.expire_snapshots().by_ids(
            [s.snapshot_id for s in oldest_first[keep:] if s.snapshot_id != current]
        ).commit()

    with pytest.raises(WrongAnswer, match="kept the oldest"):
        checks.expire_all_but(keeps_oldest)
    with pytest.raises(NotSolvedYet):
        checks.expire_all_but(...)


# ------------------------------------------------------------------------------------------------ exercise 4


def orphans_right(table):
    referenced = set(table.inspect.metadata_log_entries()["file"].to_pylist())
    referenced |= {s.manifest_list for s in table.snapshots()}
    referenced |= set(table.inspect.all_manifests()["path"].to_pylist())
    referenced |= set(table.inspect.all_files()["file_path"].to_pylist())
    return set(ops.table_objects(table)) - referenced


def test_orphans_accepts_difference():
    checks.orphan_files(orphans_right)


def test_orphans_accepts_a_list_or_a_generator():
    checks.orphan_files(lambda table: sorted(orphans_right(table)))
    checks.orphan_files(lambda table: (uri for uri in orphans_right(table)))


def test_orphans_rejects_keeping_every_metadata_file():
    # metadata files that fell off the log (previous-versions-max) are orphans too
    with pytest.raises(WrongAnswer, match=r"you missed \d+ orphans, e.g. \S+\.metadata\.json"):
        checks.orphan_files(lambda table: {u for u in orphans_right(table) if not u.endswith(".metadata.json")})


def test_orphans_rejects_the_current_metadata_file():
    def log_without_current(table):
        referenced = {entry.metadata_file for entry in table.metadata.metadata_log}
        referenced |= {s.manifest_list for s in table.snapshots()}
        referenced |= set(table.inspect.all_manifests()["path"].to_pylist())
        referenced |= set(table.inspect.all_files()["file_path"].to_pylist())
        return set(ops.table_objects(table)) - referenced

    with pytest.raises(WrongAnswer, match="is the table's current metadata file"):
        checks.orphan_files(log_without_current)


def test_orphans_rejects_current_snapshot_only():
    def current_only(table):
        referenced = set(table.inspect.metadata_log_entries()["file"].to_pylist())
        referenced |= {s.manifest_list for s in table.snapshots()}
        referenced |= set(table.inspect.manifests()["path"].to_pylist())
        referenced |= set(table.inspect.files()["file_path"].to_pylist())
        return set(ops.table_objects(table)) - referenced

    with pytest.raises(WrongAnswer, match=r"still referenced .* live snapshot"):
        checks.orphan_files(current_only)


def test_orphans_rejects_data_files_only_and_placeholder():
    def data_only(table):
        return {u for u in ops.table_objects(table) if u.endswith(".parquet")} - set(
            table.inspect.all_files()["file_path"].to_pylist()
        )

    with pytest.raises(WrongAnswer, match="you missed"):
        checks.orphan_files(data_only)

    def forgets_metadata_log(table):
        return orphans_right(table) | set(table.inspect.metadata_log_entries()["file"].to_pylist()[:-1])

    with pytest.raises(WrongAnswer, match="metadata file still in the metadata log"):
        checks.orphan_files(forgets_metadata_log)
    with pytest.raises(NotSolvedYet):
        checks.orphan_files(...)


def test_summary_counters_missing_from_an_empty_commit_count_as_the_default():
    from pyiceberg.table.snapshots import Operation, Summary

    from delab.checks.m04.l05_compaction import summary_count

    empty_commit = Summary(Operation.APPEND)  # Flink's sink commits one for a checkpoint that saw no rows
    assert empty_commit.get("added-data-files", 0) is None  # the pyiceberg behaviour the check guards against
    assert summary_count(empty_commit, "added-data-files") == 0
    assert summary_count(empty_commit, "total-data-files", -1) == -1
    assert summary_count(Summary(Operation.APPEND, **{"added-data-files": "3"}), "added-data-files") == 3
