"""The instructors' autograder: run learners' submitted lab notebooks and write a gradebook.

``delab grade SUBMISSIONS...`` calls :func:`grade`. A submission is a notebook file (or a scoreboard exported by
``delab progress --export``); a folder holds one sub-folder per learner. For each notebook:

1. **Which lab?** Its cell ids (generated from the lab's source, kept by JupyterLab while a learner edits) name
   the published lab in ``labs/``; a notebook sharing no cell with any lab falls back to its file name, else it
   is a *wrong lab*.
2. **Tamper check.** Every check cell of the published lab is looked up in the submission: edited, removed or
   reordered check cells are flagged, and the notebook that runs is the *published* lab with the learner's own
   cells put in — checks always run from the published version, in the published order.
3. **Run** in a fresh kernel of the lab's own kind (nbclient), with a time limit for the whole notebook. Each
   learner gets an isolated corner of the stack: ``DELAB_LEARNER`` (Kafka topics, groups and connectors of
   ``stack.namespace()`` carry it), a Postgres database and an S3 bucket of their own, and a state folder of their
   own (progress, lab working folders). Submissions run one at a time, so a lab's clean-up of its own prefix never
   races another learner's run.
4. **Verdicts** come from the outputs of the published check cells: passed, wrong (with the hint), not attempted
   (the placeholder is still there), error (any other exception) or timeout; a kernel that dies or a notebook
   that cannot be read gets a clear verdict and the others carry on.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delab import config, curriculum

PASSED, WRONG, NOT_ATTEMPTED, ERROR, TIMEOUT = "passed", "wrong", "not attempted", "error", "timeout"
STATUSES = (PASSED, WRONG, NOT_ATTEMPTED, ERROR, TIMEOUT)
CHECK_CALL = re.compile(r"^check\.m\d\d\.\w+\(", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DEFAULT_TIME_LIMIT = 300.0


# ------------------------------------------------------------------------------------------------ data model


@dataclass(frozen=True)
class Submission:
    """One file handed in by one learner."""

    learner: str
    path: Path


@dataclass(frozen=True)
class Verdict:
    exercise_id: str
    status: str  # one of STATUSES
    detail: str = ""


@dataclass
class Result:
    """Everything the grader found about one submission."""

    submission: Submission
    lab: str = ""  # the lab's key, e.g. m00.l01 ("" when it could not be told)
    verdicts: list[Verdict] = field(default_factory=list)
    problem: str = ""  # why the submission could not be graded (not a notebook, wrong lab, ...)
    flags: list[str] = field(default_factory=list)  # tampering and other remarks; the checks still ran
    seconds: float = 0.0


@dataclass(frozen=True)
class PublishedLab:
    lab: curriculum.Lab
    notebook: Any  # nbformat.NotebookNode

    @property
    def check_cells(self) -> list[Any]:
        return [cell for cell in self.notebook.cells if is_check_cell(cell)]


def is_check_cell(cell: Any) -> bool:
    return cell.cell_type == "code" and bool(CHECK_CALL.search(cell.source))


# ---------------------------------------------------------------------------------------------- collecting


def collect(paths: Iterable[Path]) -> list[Submission]:
    """Submissions from files and folders: a file belongs to the learner named by its folder; in a folder given on
    the command line, each sub-folder is a learner (all files in it, at any depth) and a loose file is the
    learner named by its file name."""
    found: list[Submission] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            found.append(Submission(path.resolve().parent.name, path))
        elif path.is_dir():
            for entry in sorted(path.iterdir()):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    found += [
                        Submission(entry.name, file)
                        for file in sorted(entry.rglob("*"))
                        if file.is_file() and not any(part.startswith(".") for part in file.relative_to(entry).parts)
                    ]
                elif entry.is_file():
                    found.append(Submission(entry.stem, entry))
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return found


def published_labs(course: curriculum.Curriculum | None = None) -> list[PublishedLab]:
    """Every available lab with its published (student) notebook."""
    import nbformat

    course = course or curriculum.current()
    return [
        PublishedLab(lab, nbformat.read(lab.lab_notebook, as_version=4))
        for lab in course.labs
        if lab.status == "available" and lab.lab_notebook.exists()
    ]


def identify(notebook: Any, path: Path, labs: list[PublishedLab]) -> PublishedLab | None:
    """The published lab a submitted notebook is a copy of: most shared cell ids, else the same file name."""
    ids = {cell.get("id") for cell in notebook.cells}
    best = max(labs, key=lambda p: len(ids & {c.id for c in p.notebook.cells}), default=None)
    if best is not None and ids & {c.id for c in best.notebook.cells}:
        return best
    return next((p for p in labs if p.lab.lab_notebook.name == path.name), None)


# --------------------------------------------------------------------------------------------- tamper check


def assemble(published: PublishedLab, submitted: Any) -> tuple[Any, list[str], list[int]]:
    """The notebook to run: the published lab, with the learner's version of each non-check cell and the cells
    they added; check cells always from the published lab. Returns it, the tamper flags and the indices of the
    published check cells in it (in exercise order)."""
    import nbformat

    mine = {cell.get("id"): cell for cell in submitted.cells}
    published_ids = {cell.id for cell in published.notebook.cells}
    flags: list[str] = []
    exercises = published.lab.exercises
    for number, check_cell in enumerate(published.check_cells):
        own = mine.get(check_cell.id)
        label = f"check cell of {exercises[number]}" if number < len(exercises) else "a check cell"
        if own is None:
            moved = any(cell.source.strip() == check_cell.source.strip() for cell in submitted.cells)
            flags.append(f"{label} {'re-created in another cell' if moved else 'removed'}")
        elif own.source.strip() != check_cell.source.strip():
            flags.append(f"{label} edited")
    order = [c.get("id") for c in submitted.cells if c.get("id") in {k.id for k in published.check_cells}]
    expected_order = [c.id for c in published.check_cells if c.id in order]
    if order != expected_order:
        flags.append("check cells reordered")

    # learner-added cells go after the published cell they follow in the submission
    added_after: dict[str | None, list[Any]] = {}
    anchor: str | None = None
    for cell in submitted.cells:
        if cell.get("id") in published_ids:
            anchor = cell.get("id")
        elif cell.cell_type == "code" and not is_check_cell(cell):  # a learner's own check call is not graded
            added_after.setdefault(anchor, []).append(cell)

    run = nbformat.v4.new_notebook(metadata=published.notebook.metadata)
    check_indices: list[int] = []

    def add(source: str, cell_id: str) -> None:
        code = nbformat.v4.new_code_cell(source)
        code.id = cell_id
        run.cells.append(code)

    for index, cell in enumerate(added_after.get(None, [])):
        add(cell.source, f"added-{index}")
    for cell in published.notebook.cells:
        if cell.cell_type == "code":
            if is_check_cell(cell):
                check_indices.append(len(run.cells))
                add(cell.source, cell.id)
            else:
                own = mine.get(cell.id)
                add(own.source if own is not None and own.cell_type == "code" else cell.source, cell.id)
        for index, extra in enumerate(added_after.get(cell.id, [])):
            add(extra.source, f"{cell.id}-added-{index}")
    return run, flags, check_indices


# ------------------------------------------------------------------------------------------------- running


def learner_slug(learner: str) -> str:
    """A name safe for databases, buckets and topics; a short hash keeps two spellings apart."""
    slug = re.sub(r"[^a-z0-9]+", "_", learner.lower()).strip("_")[:24] or "learner"
    if slug != learner:
        slug = f"{slug}_{hashlib.sha1(learner.encode()).hexdigest()[:4]}"
    return slug


def learner_environment(learner: str, work: Path) -> dict[str, str]:
    """The environment of a learner's kernel: their own state folder, database, bucket and namespace suffix."""
    slug = learner_slug(learner)
    return {
        **os.environ,
        "DELAB_LEARNER": slug,
        "DELAB_STATE_DIR": str(work / slug / "state"),
        "DELAB_POSTGRES_DATABASE": f"{config.postgres().database}_{slug}",
        "DELAB_S3_BUCKET": f"{config.s3().bucket}-{slug.replace('_', '-')}",
        "PYTHONHASHSEED": "0",
    }


def provision(environment: dict[str, str]) -> None:
    """Create the learner's database (with Debezium's publication when the stack runs natively) and bucket."""
    from delab import clients

    database, bucket = environment["DELAB_POSTGRES_DATABASE"], environment["DELAB_S3_BUCKET"]
    pg = clients.postgres()  # the course's own database: the learner's is made from it
    try:
        exists = pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            pg.execute(f'CREATE DATABASE "{database}"')
    finally:
        pg.close()
    if config.profile() == "native":
        from delab.stack.services import SERVICES

        postgres = SERVICES["postgres"]
        has = postgres.psql(database, "SELECT 1 FROM pg_publication WHERE pubname = 'dbz_publication'")
        if has.returncode == 0 and not has.stdout.strip():
            postgres.psql(database, "CREATE PUBLICATION dbz_publication FOR ALL TABLES")
    s3 = clients.s3()
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:  # botocore's ClientError (404): the bucket is new
        s3.create_bucket(Bucket=bucket)


def _check_verdict(exercise_id: str, cell: Any) -> Verdict:
    """The verdict a published check cell's outputs give."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            name, value = output.get("ename", ""), ANSI.sub("", output.get("evalue", ""))
            if name == "NotSolvedYet":
                return Verdict(exercise_id, NOT_ATTEMPTED, value)
            if name == "WrongAnswer":
                return Verdict(exercise_id, WRONG, value)
            return Verdict(exercise_id, ERROR, f"{name}: {value}".strip()[:300])
    printed = "".join(
        ANSI.sub("", o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream"
    )
    if f"Passed [{exercise_id}]" in printed:
        return Verdict(exercise_id, PASSED)
    if cell.get("execution_count") is None:
        return Verdict(exercise_id, ERROR, "the check did not run")
    return Verdict(exercise_id, ERROR, "the check gave no verdict")


def run_notebook(
    notebook: Any, kernel: str, cwd: Path, environment: dict[str, str], time_limit: float
) -> tuple[str, str]:
    """Execute every cell (errors do not stop the run) within ``time_limit`` seconds for the whole notebook.
    Returns (status, detail): ("", "") when it ran to the end, else (TIMEOUT | ERROR, what happened)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client = NotebookClient(
        notebook,
        kernel_name=kernel,
        allow_errors=True,
        interrupt_on_timeout=False,
        shutdown_kernel="immediate",
        startup_timeout=120,
        resources={"metadata": {"path": str(cwd)}},
    )
    try:
        # the kernel's own start-up does not count against the learner; its stderr chatter is not theirs either
        with client.setup_kernel(env=environment, cwd=str(cwd), stderr=subprocess.DEVNULL):
            deadline = time.monotonic() + time_limit
            for index, cell in enumerate(notebook.cells):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return TIMEOUT, f"stopped at cell {index + 1}: over the {time_limit:.0f} s limit"
                client.timeout = max(1, int(remaining))
                client.execute_cell(cell, index)
    except CellTimeoutError:
        return TIMEOUT, f"a cell was still running when the {time_limit:.0f} s limit ran out"
    except DeadKernelError:
        return ERROR, "the kernel died (a crash, or it ran out of memory)"
    except RuntimeError as error:  # e.g. the kernel did not start
        return ERROR, f"the kernel failed: {str(error).strip().splitlines()[0] if str(error).strip() else error}"
    return "", ""


def grade_one(
    submission: Submission,
    labs: list[PublishedLab],
    work: Path,
    time_limit: float = DEFAULT_TIME_LIMIT,
    only_lab: str | None = None,
    stack_ready: Callable[[tuple[str, ...]], None] | None = None,
) -> Result:
    """Grade one submission; never raises for a bad submission (its problem is the result)."""
    import nbformat

    result = Result(submission)
    started = time.monotonic()
    try:
        if submission.path.suffix == ".json":
            return _scoreboard_result(submission, result)
        try:
            submitted = nbformat.read(submission.path, as_version=4)
            if not isinstance(submitted.get("cells"), list):
                raise ValueError("no cells")
        except Exception as error:
            result.problem = f"not a notebook ({type(error).__name__}): hand in the lab's .ipynb file"
            return result
        published = identify(submitted, submission.path, labs)
        if published is None or (only_lab and published.lab.key != only_lab):
            what = f"lab {published.lab.key}" if published else "no lab of the course"
            want = f" (expected {only_lab})" if only_lab else ""
            result.problem = f"wrong lab: this notebook is {what}{want}"
            if published:
                result.lab = published.lab.key
            return result
        result.lab = published.lab.key
        notebook, result.flags, check_indices = assemble(published, submitted)
        environment = learner_environment(submission.learner, work)
        if stack_ready is not None:
            stack_ready(published.lab.services)
            provision(environment)
        status, detail = run_notebook(
            notebook, published.lab.kernel, published.lab.lab_notebook.parent, environment, time_limit
        )
        executed = work / learner_slug(submission.learner) / f"{published.lab.key}.ipynb"
        executed.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, executed)  # what ran, with its outputs: for an instructor looking into a verdict
        if status:
            result.flags.append(detail)
        for exercise_id, index in zip(published.lab.exercises, check_indices, strict=False):
            verdict = _check_verdict(exercise_id, notebook.cells[index])
            if status and verdict.detail in ("the check did not run", "the check gave no verdict"):
                verdict = Verdict(exercise_id, status, detail)
            result.verdicts.append(verdict)
        return result
    except Exception as error:  # the grader's own trouble with this submission must not stop the others
        result.problem = f"could not be graded: {type(error).__name__}: {error}"
        return result
    finally:
        result.seconds = time.monotonic() - started


def _scoreboard_result(submission: Submission, result: Result) -> Result:
    """A scoreboard from `delab progress --export`: self-reported standings, flagged as not re-run."""
    from delab import grading, progress

    try:
        board = progress.read_export(submission.path)
    except ValueError as error:
        result.problem = str(error)
        return result
    learner = board.get("learner") or submission.learner
    result.submission = Submission(learner, submission.path)
    result.lab = "scoreboard"
    result.flags.append("self-reported scoreboard (delab progress --export): not re-run")
    mapping = {grading.PASSED: PASSED, grading.WRONG: WRONG, grading.TODO: NOT_ATTEMPTED}
    for exercise_id, standing in sorted(progress.standings_of(board["attempts"]).items()):
        result.verdicts.append(Verdict(exercise_id, mapping.get(standing.status, ERROR), standing.last_message))
    return result


def grade(
    submissions: list[Submission],
    work: Path,
    time_limit: float = DEFAULT_TIME_LIMIT,
    only_lab: str | None = None,
    use_stack: bool = True,
    progress: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Grade submissions one after another (see the module docstring)."""
    labs = published_labs()
    ready: set[tuple[str, ...]] = set()

    def stack_ready(services: tuple[str, ...]) -> None:
        from delab import stack

        needed = tuple(sorted({"postgres", "s3", *services}))  # the learner's database and bucket live there
        if needed not in ready:
            stack.require(*needed, quiet=True)
            ready.add(needed)

    results = []
    for submission in submissions:
        result = grade_one(submission, labs, work, time_limit, only_lab, stack_ready if use_stack else None)
        results.append(result)
        if progress:
            progress(result)
    return results


# ----------------------------------------------------------------------------------------------- gradebook


def rows(results: list[Result]) -> list[dict[str, str]]:
    """One row per learner × exercise (and one per submission that could not be graded)."""
    out = []
    for result in results:
        base = {
            "learner": result.submission.learner,
            "submission": str(result.submission.path),
            "lab": result.lab,
            "flags": "; ".join(result.flags),
        }
        if result.problem:
            out.append({**base, "exercise": "", "status": ERROR, "detail": result.problem})
        for verdict in result.verdicts:
            out.append({**base, "exercise": verdict.exercise_id, "status": verdict.status, "detail": verdict.detail})
    return out


def hardest(results: list[Result]) -> list[tuple[str, int, int, Counter]]:
    """Per exercise: (id, passed, graded, counts by status), the lowest pass rate first."""
    by_exercise: dict[str, Counter] = {}
    for result in results:
        for verdict in result.verdicts:
            by_exercise.setdefault(verdict.exercise_id, Counter())[verdict.status] += 1
    table = [(e, c[PASSED], sum(c.values()), c) for e, c in by_exercise.items()]
    return sorted(table, key=lambda row: (row[1] / row[2], row[0]))


def write_csv(results: list[Result], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(
            out, fieldnames=["learner", "lab", "exercise", "status", "detail", "flags", "submission"]
        )
        writer.writeheader()
        writer.writerows(rows(results))
    return path


_COLOURS = {PASSED: "#c8f0c8", WRONG: "#f6c6c6", NOT_ATTEMPTED: "#eeeeee", ERROR: "#f6dca0", TIMEOUT: "#e2c8f0"}


def write_html(results: list[Result], path: Path) -> Path:
    """The gradebook as one page: learners × exercises, problems and flags, and the hardest exercises."""
    esc = html.escape
    learners = sorted({r.submission.learner for r in results})
    exercises = sorted({v.exercise_id for r in results for v in r.verdicts})
    cell: dict[tuple[str, str], Verdict] = {}
    for result in results:
        for verdict in result.verdicts:
            cell[(result.submission.learner, verdict.exercise_id)] = verdict
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Gradebook</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
        "td,th{border:1px solid #999;padding:4px 8px;font-size:14px;vertical-align:top}"
        "td.v{max-width:16em}small{color:#444}</style></head><body><h1>Gradebook</h1>",
        f"<p>{len(results)} submissions from {len(learners)} learners; graded {time.strftime('%Y-%m-%d %H:%M')}. "
        "Legend: "
        + " ".join(f"<span style='background:{_COLOURS[s]};padding:2px 6px'>{s}</span>" for s in STATUSES)
        + "</p><h2>Learners × exercises</h2><table><tr><th>learner</th>"
        + "".join(f"<th>{esc(e)}</th>" for e in exercises)
        + "<th>passed</th></tr>",
    ]
    for learner in learners:
        mine = [cell.get((learner, e)) for e in exercises]
        passed = sum(1 for v in mine if v and v.status == PASSED)
        parts.append(f"<tr><th>{esc(learner)}</th>")
        for verdict in mine:
            if verdict is None:
                parts.append("<td></td>")
            else:
                detail = f"<br><small>{esc(verdict.detail)}</small>" if verdict.detail else ""
                parts.append(
                    f"<td class='v' style='background:{_COLOURS[verdict.status]}'>{esc(verdict.status)}{detail}</td>"
                )
        parts.append(f"<td>{passed}/{sum(1 for v in mine if v)}</td></tr>")
    parts.append(
        "</table><h2>Submissions</h2><table><tr><th>learner</th><th>file</th><th>lab</th>"
        "<th>verdict</th><th>seconds</th></tr>"
    )
    for result in results:
        remarks = result.problem or "; ".join(result.flags) or "graded"
        colour = _COLOURS[ERROR] if result.problem or result.flags else _COLOURS[PASSED]
        parts.append(
            f"<tr><td>{esc(result.submission.learner)}</td><td>{esc(result.submission.path.name)}</td>"
            f"<td>{esc(result.lab)}</td><td style='background:{colour}'>{esc(remarks)}</td>"
            f"<td>{result.seconds:.1f}</td></tr>"
        )
    parts.append(
        "</table><h2>Hardest exercises</h2><table><tr><th>exercise</th><th>passed</th>"
        + "".join(f"<th>{s}</th>" for s in STATUSES[1:])
        + "</tr>"
    )
    for exercise_id, passed, graded, counts in hardest(results):
        parts.append(
            f"<tr><td>{esc(exercise_id)}</td><td>{passed}/{graded}</td>"
            + "".join(f"<td>{counts[s]}</td>" for s in STATUSES[1:])
            + "</tr>"
        )
    parts.append("</table></body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def summary(results: list[Result]) -> dict[str, Any]:
    """Counts for the command line: submissions graded, problems, verdicts by status."""
    statuses = Counter(v.status for r in results for v in r.verdicts)
    return {
        "submissions": len(results),
        "problems": sum(1 for r in results if r.problem),
        "flagged": sum(1 for r in results if r.flags),
        "verdicts": dict(statuses),
    }


def write_json(results: list[Result], path: Path) -> Path:
    """The same rows as the CSV, for scripts."""
    path.write_text(json.dumps(rows(results), indent=1), encoding="utf-8")
    return path
