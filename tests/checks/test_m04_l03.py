"""Checks of lab 04.03 (time travel), against the stack's catalog and object store: the right answer passes,
realistic wrong answers are rejected with a telling message, and the placeholder is not solved yet."""

from __future__ import annotations

import pytest

from delab import clients
from delab.checks.m04 import l03_time_travel as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.lakehouse import storage

pytestmark = pytest.mark.stack


@pytest.fixture(autouse=True)
def own_namespace(monkeypatch):
    """Scratch tables apart from the notebook's checks, so both can run at once."""
    monkeypatch.setattr(checks, "NAMESPACE", "m04_l03_t")


def todo(*args, **kwargs):
    raise NotImplementedError


# ------------------------------------------------------------------------------------------------ e1 as of


def as_of(table, when):
    snapshot = table.snapshot_as_of_timestamp(int(when.timestamp() * 1000))
    return table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()


def test_as_of_accepts_solution():
    checks.as_of_read(as_of)


def test_as_of_rejects_the_next_snapshot():
    def first_at_or_after(table, when):
        millis = when.timestamp() * 1000
        later = [s for s in sorted(table.snapshots(), key=lambda s: s.timestamp_ms) if s.timestamp_ms >= millis]
        snapshot = later[0] if later else table.current_snapshot()
        return table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()

    with pytest.raises(WrongAnswer, match="committed after that time"):
        checks.as_of_read(first_at_or_after)


def test_as_of_rejects_the_current_table():
    with pytest.raises(WrongAnswer, match="committed after that time"):
        checks.as_of_read(lambda table, when: table.scan().to_arrow())


def test_as_of_rejects_seconds_for_milliseconds():
    def in_seconds(table, when):
        snapshot = table.snapshot_as_of_timestamp(int(when.timestamp()))
        return table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()

    with pytest.raises(WrongAnswer, match=r"read_as_of failed with AttributeError.*no snapshot was found"):
        checks.as_of_read(in_seconds)


def test_as_of_rejects_strictly_before():
    def strictly_before(table, when):
        millis = when.timestamp() * 1000
        earlier = [s for s in sorted(table.snapshots(), key=lambda s: s.timestamp_ms) if s.timestamp_ms < millis]
        return table.scan(snapshot_id=earlier[-1].snapshot_id).to_arrow()

    with pytest.raises(WrongAnswer, match="snapshot before that commit"):
        checks.as_of_read(strictly_before)


def test_as_of_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.as_of_read(todo)


# ---------------------------------------------------------------------------------------------- e2 rollback


def undo(table, job):
    snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.summary.get("job") == job:
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    table.manage_snapshots().rollback_to_snapshot(snapshot.snapshot_id).commit()


def test_rollback_accepts_solution():
    checks.rollback_bad_write(undo)


def test_rollback_rejects_stopping_at_the_parent():
    def parent_only(table, job):
        table.manage_snapshots().rollback_to_snapshot(table.current_snapshot().parent_snapshot_id).commit()

    with pytest.raises(WrongAnswer, match="an overwrite commits two snapshots"):
        checks.rollback_bad_write(parent_only)


def test_rollback_rejects_the_position_that_fits_the_labs_table():
    def third_from_last(table, job):  # in the lab, the bad overwrite left two snapshots after the good one
        table.manage_snapshots().rollback_to_snapshot(table.snapshots()[-3].snapshot_id).commit()

    with pytest.raises(WrongAnswer, match=r"three snapshots.*a snapshot the bad job wrote"):
        checks.rollback_bad_write(third_from_last)


def test_rollback_rejects_a_position_that_fits_one_bad_run_only():
    def fourth_from_last(table, job):
        table.manage_snapshots().rollback_to_snapshot(table.snapshots()[-4].snapshot_id).commit()

    with pytest.raises(WrongAnswer, match=r"second bad run.*not an ancestor of the current one"):
        checks.rollback_bad_write(fourth_from_last)


def test_rollback_rejects_going_back_to_the_first_snapshot():
    def to_first(table, job):
        first = min(table.snapshots(), key=lambda s: s.timestamp_ms)
        table.manage_snapshots().rollback_to_snapshot(first.snapshot_id).commit()

    with pytest.raises(WrongAnswer, match="went back too far"):
        checks.rollback_bad_write(to_first)


def test_rollback_rejects_a_corrective_write():
    def rewrite(table, job):
        snapshot = table.current_snapshot()
        while snapshot.summary.get("job") == job:
            snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id)
        table.overwrite(table.scan(snapshot_id=snapshot.snapshot_id).to_arrow())

    with pytest.raises(WrongAnswer, match="corrective write"):
        checks.rollback_bad_write(rewrite)


def test_rollback_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.rollback_bad_write(todo)


# ---------------------------------------------------------------------------------------------- e3 erasure


def erase(table, customer_id, expire=True, orphans=True):
    table.delete(f"customer_id == {customer_id}")
    if expire:
        current = table.current_snapshot().snapshot_id
        older = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current]
        table.maintenance.expire_snapshots().by_ids(older).commit()
    if orphans:
        referenced = {table.metadata_location, *table.inspect.metadata_log_entries()["file"].to_pylist()}
        referenced |= {snapshot.manifest_list for snapshot in table.snapshots()}
        referenced |= set(table.inspect.all_manifests()["path"].to_pylist())
        referenced |= set(table.inspect.all_files()["file_path"].to_pylist())
        referenced = {storage.s3_key(uri) for uri in referenced}
        keys = [k for k in storage.objects_under(table.location()) if k not in referenced]
        bucket = table.location().split("/")[2]
        if keys:
            clients.s3().delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})


def test_erasure_accepts_solution():
    checks.customer_erased(erase)


def test_erasure_rejects_a_delete_only():
    with pytest.raises(WrongAnswer, match="time travel to snapshot"):
        checks.customer_erased(lambda table, customer_id: erase(table, customer_id, expire=False, orphans=False))


def test_erasure_rejects_leaving_orphan_files():
    with pytest.raises(WrongAnswer, match="data files in the object store still hold"):
        checks.customer_erased(lambda table, customer_id: erase(table, customer_id, orphans=False))


def test_erasure_rejects_deleting_only_the_files_that_hold_the_customer():
    from delab.lakehouse import compliance

    def hits_only(table, customer_id):
        erase(table, customer_id, orphans=False)
        keys = [
            storage.s3_key(uri) for uri in compliance.rows_in_stored_files(table.location(), "customer_id", customer_id)
        ]
        clients.s3().delete_objects(
            Bucket=table.location().split("/")[2], Delete={"Objects": [{"Key": k} for k in keys]}
        )

    with pytest.raises(WrongAnswer, match="orphan objects are left"):
        checks.customer_erased(hits_only)


def test_erasure_rejects_deleting_files_the_metadata_still_needs():
    def data_files_only(table, customer_id):
        erase(table, customer_id, orphans=False)
        referenced = {storage.s3_key(uri) for uri in table.inspect.all_files()["file_path"].to_pylist()}
        keys = [k for k in storage.objects_under(table.location()) if k not in referenced]  # metadata too
        clients.s3().delete_objects(
            Bucket=table.location().split("/")[2], Delete={"Objects": [{"Key": k} for k in keys]}
        )

    with pytest.raises(WrongAnswer, match=r"the table can no longer be read: metadata/.* was deleted"):
        checks.customer_erased(data_files_only)


def test_erasure_rejects_deleting_files_before_expiring():
    from delab.lakehouse import compliance

    def no_expiry(table, customer_id):
        before = compliance.rows_in_stored_files(table.location(), "customer_id", customer_id)
        table.delete(f"customer_id == {customer_id}")
        keys = [storage.s3_key(uri) for uri in before]
        clients.s3().delete_objects(
            Bucket=table.location().split("/")[2], Delete={"Objects": [{"Key": k} for k in keys]}
        )

    with pytest.raises(WrongAnswer, match=r"time travel to snapshot \d+ can no longer be read: data/"):
        checks.customer_erased(no_expiry)


def test_erasure_rejects_deleting_every_data_file():
    def scorched_earth(table, customer_id):
        erase(table, customer_id)
        table.delete("true")

    with pytest.raises(WrongAnswer, match="rows of other customers"):
        checks.customer_erased(scorched_earth)


def test_erasure_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.customer_erased(todo)
