"""Checks of lab 04.03 (time travel): reading a table as of a point in time, rolling back a bad write, and erasing
a customer for good. Each check builds its own scratch table with a known history (namespace ``m04_l03_check``),
runs the learner's function and inspects the table's snapshots and the files left in the object store."""

from __future__ import annotations

import contextlib
import datetime as dt
import re

import pyarrow as pa
import pyarrow.compute as pc

from delab.checks.m04.l01_formats import scratch_iceberg
from delab.grading import WrongAnswer, exercise, learner_code
from delab.lakehouse import compliance, data, ops, storage

NAMESPACE = "m04_l03_check"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def history_table(name: str, batches: int = 3, size: int = 400):
    """A scratch table of customer orders written in ``batches`` appends (one snapshot each)."""
    rows = data.customer_orders()
    table = scratch_iceberg(name, rows.slice(0, size), namespace=NAMESPACE)
    for i in range(1, batches):
        table.append(rows.slice(i * size, size))
    return table.catalog.load_table(table.name()), rows


def _ids(rows: pa.Table) -> list[int]:
    return sorted(rows["order_id"].to_pylist())


# ------------------------------------------------------------------------------------------------ e1 as of


@learner_code("read_as_of")
def _run_as_of(fn, table, when):
    return fn(table, when)


@exercise("m04.l03.e1")
def as_of_read(read_as_of) -> None:
    """Reading as of a time gives the snapshot that was current then — between commits, just after one, and later."""
    table, _ = history_table("orders_as_of")
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    expected_rows = {s.snapshot_id: _ids(table.scan(snapshot_id=s.snapshot_id).to_arrow()) for s in snapshots}
    first, second, third = snapshots
    probes = [
        (first.timestamp_ms + (second.timestamp_ms - first.timestamp_ms) // 2, first, "between two commits"),
        (second.timestamp_ms + 0.5, second, "half a millisecond after a commit"),
        (third.timestamp_ms, third, "exactly at a commit's time"),
        (third.timestamp_ms + 60_000, third, "after the last commit"),
    ]
    for millis, want, where in probes:
        when = EPOCH + dt.timedelta(milliseconds=millis)  # exact, unlike a float of seconds
        # `int(when.timestamp() * 1000)` is exact for such a time; were it ever 1 ms short, the snapshot before
        # is what a right answer reads at a commit's exact time, and it is accepted there
        lenient = millis == want.timestamp_ms and int(when.timestamp() * 1000) < millis
        try:
            got = _run_as_of(read_as_of, table, when)
        except WrongAnswer as wrong:
            if "'NoneType'" in wrong.message:  # snapshot_as_of_timestamp found no snapshot that old
                raise WrongAnswer(
                    f"{wrong.message} — no snapshot was found at or before your time.",
                    hint="snapshot_as_of_timestamp returns None for a time before the first commit: "
                    "check the unit you pass (milliseconds since the epoch).",
                ) from None
            raise
        if not isinstance(got, pa.Table):
            raise WrongAnswer(
                f"read_as_of returned {type(got).__name__}, not a pyarrow Table.", hint="scan(...).to_arrow()"
            )
        ids = _ids(got)
        if ids == expected_rows[want.snapshot_id]:
            continue
        before = snapshots[snapshots.index(want) - 1]
        if millis == want.timestamp_ms and ids == expected_rows[before.snapshot_id]:
            if lenient:
                continue
            raise WrongAnswer(
                f"{where}, you read the snapshot before that commit.",
                hint="a snapshot committed exactly at T is the table as of T: at or before means <=, not <.",
            )
        for other in snapshots:
            if ids == expected_rows[other.snapshot_id]:
                if other.timestamp_ms > millis:
                    raise WrongAnswer(
                        f"{where}, you read a snapshot committed after that time.",
                        hint="as of T means the last snapshot committed at or before T.",
                    )
                raise WrongAnswer(
                    f"{where}, you read an older snapshot than the one current at that time.",
                    hint="as of T means the *last* snapshot committed at or before T.",
                )
        raise WrongAnswer(f"{where}, the rows match no snapshot of the table ({len(ids)} rows).")


# ----------------------------------------------------------------------------------------------- e2 rollback


@learner_code("undo_job")
def _run_undo(fn, table, job):
    return fn(table, job)


def _bad_rows(rows: pa.Table, start: int, count: int) -> pa.Table:
    bad = rows.slice(start, count)
    return bad.set_column(bad.schema.get_field_index("status"), "status", pa.array(["lost"] * count))


@exercise("m04.l03.e2")
def rollback_bad_write(undo_job) -> None:
    """The bad job's commits are undone by pointing the table back at the snapshot before them; history keeps them."""
    table, rows = history_table("orders_rollback")
    good = table.current_snapshot()
    good_ids = _ids(table.scan().to_arrow())

    def overwrite_then_append(table):  # the bug: replaced the table with 50 rows, then added 20 more
        table.overwrite(_bad_rows(rows, 0, 50), snapshot_properties={"job": "fixup"})
        table.append(_bad_rows(rows, 50, 20), snapshot_properties={"job": "fixup"})

    def append_only(table):  # the same job run again after the rollback: one snapshot this time
        table.append(_bad_rows(rows, 70, 20), snapshot_properties={"job": "fixup"})

    # two bad runs writing a different number of snapshots: no fixed position in the history fits both
    for write, what in (
        (overwrite_then_append, "a bad run that committed three snapshots (an overwrite, then an append)"),
        (append_only, "a second bad run that committed one snapshot"),
    ):
        table = table.catalog.load_table(table.name())
        history = {s.snapshot_id for s in table.snapshots()}
        write(table)
        table = table.catalog.load_table(table.name())
        before = {s.snapshot_id for s in table.snapshots()}
        _judge_rollback(undo_job, table, good, good_ids, before - history, before, what)


def _judge_rollback(undo_job, table, good, good_ids: list[int], bad: set[int], before: set[int], what: str) -> None:
    try:
        _run_undo(undo_job, table, "fixup")
    except WrongAnswer as wrong:
        if "not an ancestor" not in wrong.message:
            raise
        raise WrongAnswer(
            f"after {what}, you rolled back to a snapshot that is not an ancestor of the current one: the list of "
            "snapshots also holds those a rollback left off the table's lineage.",
            hint="walk back from the current snapshot through parent_snapshot_id past every snapshot whose summary "
            "names the job — a fixed position in the snapshot list only fits one history.",
        ) from None
    after = table.catalog.load_table(table.name())
    current = after.current_snapshot()
    ids = _ids(after.scan().to_arrow())
    if current.snapshot_id not in before:
        raise WrongAnswer(
            f"after {what}, you wrote a new snapshot on top of the bad ones: the data may be back, but as a "
            "corrective write, not a rollback.",
            hint="a rollback makes an existing snapshot current again and writes no data files.",
        )
    if current.snapshot_id in bad:
        raise WrongAnswer(
            f"after {what}, the table points at a snapshot the bad job wrote ({len(ids)} rows); "
            "note that an overwrite commits two snapshots, a delete and then an append.",
            hint="walk back from the current snapshot past every snapshot whose summary names the job — "
            "a fixed position in the snapshot list only fits one history.",
        )
    if current.snapshot_id != good.snapshot_id:
        if set(ids) < set(good_ids):
            raise WrongAnswer(
                f"after {what}, you went back too far: {len(good_ids) - len(ids)} rows of good writes are gone.",
                hint="stop at the first snapshot that the bad job did not write.",
            )
        raise WrongAnswer(
            f"after {what}, the current snapshot is not the one before the bad write.",
            hint="the snapshot to restore is the parent of the oldest of the job's latest snapshots.",
        )
    if ids != good_ids:
        raise WrongAnswer(f"after {what}, the rows differ from the rows before the bad write.")
    if not bad <= {s.snapshot_id for s in after.snapshots()}:
        raise WrongAnswer(
            "the bad snapshots were removed: the audit trail lost what happened.",
            hint="a rollback keeps the bad snapshot in the history; expiring it is a separate decision.",
        )


# ------------------------------------------------------------------------------------------------- e3 erasure


@learner_code("erase_customer")
def _run_erase(fn, table, customer_id):
    return fn(table, customer_id)


def _victim(rows: pa.Table, limit: int) -> int:
    """A customer with orders in at least two of the first ``limit`` rows' batches."""
    head = rows.slice(0, limit).to_pandas()
    counts = head.groupby("customer_id").order_id.count().sort_values(ascending=False, kind="stable")
    return int(counts.index[0])


@exercise("m04.l03.e3")
def customer_erased(erase_customer) -> None:
    """After erasure the customer is in no snapshot and no stored file; everybody else is intact."""
    table, rows = history_table("orders_erasure")
    victim = _victim(rows, 1200)
    stored = table.scan().to_arrow()
    others = sorted(stored.filter(pc.not_equal(stored["customer_id"], victim))["order_id"].to_pylist())
    _run_erase(erase_customer, table, victim)
    with _intact("the table"):
        after = table.catalog.load_table(table.name())
        current = after.scan().to_arrow()
    if pc.sum(pc.equal(current["customer_id"], victim)).as_py():
        raise WrongAnswer(f"customer {victim} is still in the current table.", hint="delete their rows first.")
    if _ids(current) != others:
        raise WrongAnswer(
            f"the table lost {len(others) - current.num_rows} rows of other customers.",
            hint="erase one customer's rows, not the files or the table.",
        )
    for snapshot in after.snapshots():
        with _intact(f"time travel to snapshot {snapshot.snapshot_id}"):
            old = after.scan(snapshot_id=snapshot.snapshot_id, selected_fields=("customer_id",)).to_arrow()
        if pc.sum(pc.equal(old["customer_id"], victim)).as_py():
            raise WrongAnswer(
                f"time travel to snapshot {snapshot.snapshot_id} still shows customer {victim}.",
                hint="older snapshots keep the deleted rows readable until they are expired.",
            )
    left = compliance.rows_in_stored_files(after.location(), "customer_id", victim)
    if left:
        raise WrongAnswer(
            f"{len(left)} data files in the object store still hold customer {victim}'s rows.",
            hint="expiring snapshots only forgets files; files no metadata references must be deleted too.",
        )
    referenced = {storage.s3_key(uri) for uri in ops.referenced_files(after)}
    orphans = [key.rsplit("/", 2) for key in storage.objects_under(after.location()) if key not in referenced]
    if orphans:
        raise WrongAnswer(
            f"{len(orphans)} orphan objects are left under the table's location, e.g. {'/'.join(orphans[0][-2:])}.",
            hint="manifests and manifest lists of expired snapshots are orphans too, and their column statistics "
            "(min/max per file) can still hold the customer's name or email.",
        )


@contextlib.contextmanager
def _intact(what: str):
    """Turn a file the table's metadata still needs, but that the learner deleted, into one line."""
    try:
        yield
    except FileNotFoundError as error:
        paths = re.findall(r"'([^']+)'", str(error))
        missing = "/".join(paths[0].split("/")[-2:]) if paths else str(error).splitlines()[0]
        raise WrongAnswer(
            f"{what} can no longer be read: {missing} was deleted, but the table still needs it.",
            hint="an orphan is an object that no remaining metadata references — the current metadata file, "
            "the manifest lists and manifests of live snapshots, and the data files they list all stay.",
        ) from None
