"""`delab grade` on a workshop's folder of submissions of lab 00.01, against the real stack.

The folder holds what a room hands in: a complete correct notebook, a partly solved one, one whose check cell was
deleted, a file that is not a notebook, one that loops forever, one whose kernel dies, a notebook of no lab of the
course, and an exported scoreboard. Each must get its own verdict, and none may stop the others.
"""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys

import nbformat
import pytest

from delab import clients, config, curriculum, gradebook, grading, progress

pytestmark = pytest.mark.stack

LAB = curriculum.current().lab("m00.l01")
E1, E2 = LAB.exercises
TIME_LIMIT = 15  # seconds after the kernel started; lab 00.01 runs in ~2 s, the looping submission costs this


def lab_copy():
    """The published lab as a learner's JupyterLab keeps it: same cell ids."""
    return nbformat.read(LAB.lab_notebook, as_version=4)


def answer(notebook, exercise: str, source: str) -> None:
    """Put ``source`` into the exercise cell (the code cell just before the exercise's check cell)."""
    checks = [i for i, cell in enumerate(notebook.cells) if gradebook.is_check_cell(cell)]
    index = checks[LAB.exercises.index(exercise)] - 1
    assert notebook.cells[index].cell_type == "code" and "..." in notebook.cells[index].source
    notebook.cells[index].source = source


RIGHT = {
    E1: 'orders_per_channel = shop.orders.drop_duplicates("order_id").groupby("channel").order_id.count().to_dict()',
    E2: 'captured_revenue = round(shop.payments.loc[shop.payments.status == "captured", "amount"].sum(), 2)',
}


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    folder = tmp_path_factory.mktemp("room")

    def hand_in(learner: str, notebook) -> None:
        (folder / learner).mkdir()
        nbformat.write(notebook, folder / learner / LAB.lab_notebook.name)

    complete = lab_copy()
    for exercise, source in RIGHT.items():
        answer(complete, exercise, source)
    probe = nbformat.v4.new_code_cell(  # a cell of her own, leaving marks in the stack the others must not see
        "from delab import clients, config, stack\n"
        "_pg = clients.postgres()\n"
        "_pg.execute('CREATE SCHEMA IF NOT EXISTS grading_probe')\n"
        "_pg.execute('CREATE TABLE IF NOT EXISTS grading_probe.marker (n int)')\n"
        "clients.s3().put_object(Bucket=config.s3().bucket, Key='grading_probe/marker', Body=b'1')\n"
        "print('topic:', stack.namespace('m00_l01').topic('probe'))"
    )
    complete.cells.insert(3, probe)
    hand_in("alice", complete)

    partly = lab_copy()
    answer(partly, E1, RIGHT[E1])
    answer(partly, E2, "captured_revenue = round(shop.payments.amount.sum(), 2)  # every attempt, not captured")
    hand_in("bob", partly)

    no_check = lab_copy()  # e1 solved, e2 left undone and its check cell deleted, hoping for a pass
    answer(no_check, E1, RIGHT[E1])
    no_check.cells = [cell for cell in no_check.cells if "check.m00.captured_revenue" not in cell.source]
    hand_in("carol", no_check)

    (folder / "dave").mkdir()
    (folder / "dave" / LAB.lab_notebook.name).write_text("I could not save my notebook, sorry\n")

    looping = lab_copy()
    answer(looping, E1, RIGHT[E1])
    answer(looping, E2, "while True:\n    pass")
    hand_in("erin", looping)

    crashing = lab_copy()
    answer(crashing, E1, "import os\nos._exit(1)")
    hand_in("frank", crashing)

    other = nbformat.v4.new_notebook()
    other.cells = [nbformat.v4.new_code_cell("print('my own notebook')")]
    (folder / "gina").mkdir()
    nbformat.write(other, folder / "gina" / "homework.ipynb")

    board = {
        "format": progress.EXPORT_FORMAT,
        "learner": "hal",
        "attempts": [
            {"exercise_id": E1, "status": grading.WRONG, "message": "off", "at": 1.0},
            {"exercise_id": E1, "status": grading.PASSED, "message": "", "at": 2.0},
        ],
    }
    (folder / "hal.json").write_text(json.dumps(board))
    return folder


@pytest.fixture(scope="module")
def graded(room, tmp_path_factory):
    out = tmp_path_factory.mktemp("gradebook")
    run = subprocess.run(
        [sys.executable, "-m", "delab.cli", "grade", str(room), "--out", str(out), "--time-limit", str(TIME_LIMIT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    with (out / "gradebook.csv").open() as f:
        table = list(csv.DictReader(f))
    return out, run.stdout, table


def verdicts(table, learner):
    return {row["exercise"]: row for row in table if row["learner"] == learner}


def test_complete_submission_passes_everything(graded):
    alice = verdicts(graded[2], "alice")
    assert {alice[E1]["status"], alice[E2]["status"]} == {gradebook.PASSED}, alice
    assert not alice[E1]["flags"]


def test_partly_solved_gets_the_hint(graded):
    bob = verdicts(graded[2], "bob")
    assert bob[E1]["status"] == gradebook.PASSED
    assert bob[E2]["status"] == gradebook.WRONG and "Hint:" in bob[E2]["detail"]


def test_a_deleted_check_is_flagged_and_still_run(graded):
    carol = verdicts(graded[2], "carol")
    assert carol[E1]["status"] == gradebook.PASSED
    assert carol[E2]["status"] == gradebook.NOT_ATTEMPTED  # the published check ran on the placeholder
    assert f"check cell of {E2} removed" in carol[E2]["flags"]


def test_bad_submissions_get_a_clear_verdict(graded):
    table = graded[2]
    assert "not a notebook" in verdicts(table, "dave")[""]["detail"]
    erin = verdicts(table, "erin")
    assert erin[E1]["status"] == gradebook.PASSED and erin[E2]["status"] == gradebook.TIMEOUT
    frank = verdicts(table, "frank")
    assert frank[E1]["status"] == gradebook.ERROR and "kernel died" in frank[E1]["detail"]
    assert frank[E2]["status"] == gradebook.ERROR
    assert "wrong lab" in verdicts(table, "gina")[""]["detail"]
    hal = verdicts(table, "hal")
    assert hal[E1]["status"] == gradebook.PASSED and "self-reported" in hal[E1]["flags"]


def test_html_gradebook_and_hardest_exercises(graded):
    out, stdout, _ = graded
    page = (out / "gradebook.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Hardest exercises" in page and "alice" in page
    assert f"hardest: {E2}" in stdout  # e2 was passed by one learner of six, e1 by four


def test_learners_are_isolated(graded):
    out, _, _ = graded
    alice, bob = gradebook.learner_slug("alice"), gradebook.learner_slug("bob")
    executed = nbformat.read(out / "work" / alice / f"{LAB.key}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for cell in executed.cells for o in cell.get("outputs", []))
    assert f"topic: m00_l01_{alice}.probe" in printed
    base_db = config.postgres().database

    def has_marker(database: str) -> bool:
        pg = clients.postgres(database=database)
        try:
            return pg.execute("SELECT to_regclass('grading_probe.marker')").fetchone()[0] is not None
        finally:
            pg.close()

    assert has_marker(f"{base_db}_{alice}") and not has_marker(f"{base_db}_{bob}") and not has_marker(base_db)
    s3 = clients.s3()
    keys = {
        bucket: {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="grading_probe/").get("Contents", [])}
        for bucket in (f"{config.s3().bucket}-{alice}", f"{config.s3().bucket}-{bob}", config.s3().bucket)
    }
    assert list(keys.values()) == [{"grading_probe/marker"}, set(), set()]


def test_assemble_runs_published_checks_in_order():
    published = next(p for p in gradebook.published_labs() if p.lab.key == LAB.key)
    edited = copy.deepcopy(published.notebook)
    checks = [i for i, cell in enumerate(edited.cells) if gradebook.is_check_cell(cell)]
    edited.cells[checks[0]].source = "pass  # check.m00.orders_per_channel(orders_per_channel)"
    first, second = edited.cells[checks[0]], edited.cells[checks[1]]
    edited.cells[checks[0]], edited.cells[checks[1]] = second, first
    run, flags, indices = gradebook.assemble(published, edited)
    assert f"check cell of {E1} edited" in flags and "check cells reordered" in flags
    assert [run.cells[i].source for i in indices] == [c.source for c in published.check_cells]


def test_progress_export_and_import_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("DELAB_STATE_DIR", str(tmp_path / "laptop"))
    grading.record(E1, grading.WRONG, "off")
    grading.record(E1, grading.PASSED)
    assert progress.export(tmp_path / "me.json", learner="ada") == 2
    monkeypatch.setenv("DELAB_STATE_DIR", str(tmp_path / "other-laptop"))
    assert progress.import_([tmp_path / "me.json"]) == 2
    assert progress.import_([tmp_path / "me.json"]) == 0  # merging twice adds nothing
    assert grading.standings()[E1].status == grading.PASSED
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a scoreboard"):
        progress.read_export(tmp_path / "bad.json")
