"""Checks of lab 04.05 (compaction and maintenance), against real Iceberg tables with small files: right answers
pass, realistic wrong ones fail."""

from __future__ import annotations

from collections import Counter

import pytest
from pyiceberg.expressions import AlwaysTrue, In

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


def test_added_files_rejects_current_only_and_placeholder(small_table):
    with pytest.raises(WrongAnswer, match="1 snapshot ids; the table has 5"):
        checks.added_files_per_commit(lambda t: {t.current_snapshot().snapshot_id: 1}, small_table)
    with pytest.raises(NotSolvedYet):
        checks.added_files_per_commit(..., small_table)


# ------------------------------------------------------------------------------------------------ exercise 2


def crowded(table, min_files):
    per_type = Counter(row["partition"]["event_type"] for row in table.inspect.files().to_pylist())
    return [value for value, files in per_type.items() if files >= min_files]


def compact_right(table, min_files=2):
    types = crowded(table, min_files)
    if types:
        table.dynamic_partition_overwrite(table.scan(row_filter=In("event_type", types)).to_arrow())


def test_compaction_accepts_one_transaction():
    checks.compaction_in_one_commit(compact_right)


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

    with pytest.raises(WrongAnswer, match="had a single file and were rewritten"):
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
    with pytest.raises(WrongAnswer, match="5 snapshots remain"):
        checks.expire_all_but(lambda table, keep: None)


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
