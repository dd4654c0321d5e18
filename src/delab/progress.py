"""The scoreboard: every exercise of curriculum.yaml with the learner's standing, as a rich table or HTML."""

from __future__ import annotations

import getpass
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from delab import curriculum, grading

MARKS = {grading.PASSED: "[green]passed[/]", grading.WRONG: "[red]wrong[/]", grading.TODO: "[yellow]started[/]"}


def table(module: str | None = None) -> Table:
    """One row per lab: exercises passed out of total, and the state of each exercise."""
    course = curriculum.current()
    standings = grading.standings()
    out = Table(title="Your progress" + (f" — module {module}" if module else ""), title_justify="left")
    for column in ("module", "lab", "passed", "exercises"):
        out.add_column(column, justify="right" if column == "passed" else "left")
    total = done = 0
    for mod in course.modules:
        if module is not None and mod.id != module:
            continue
        for lab in mod.labs:
            if lab.status != "available":
                continue
            cells = []
            passed = 0
            for exercise_id in lab.exercises:
                standing = standings.get(exercise_id)
                state = standing.status if standing else None
                passed += state == grading.PASSED
                cells.append(f"{exercise_id.rsplit('.', 1)[1]} {MARKS.get(state, '[dim]not started[/]')}")
            total += len(lab.exercises)
            done += passed
            out.add_row(
                f"{mod.id} {mod.title}",
                f"{lab.id} {lab.title.split(' — ')[0]}",
                f"{passed}/{len(lab.exercises)}",
                ", ".join(cells),
            )
    out.caption = f"{done} of {total} exercises passed"
    return out


def render(module: str | None = None, html: Path | None = None, console: Console | None = None) -> None:
    """Print the scoreboard; with ``html``, also save it as a standalone HTML report."""
    console = console or Console(record=html is not None)
    console.print(table(module))
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        console.save_html(str(html))


# ------------------------------------------------------------------------------ hand-in: export and import

EXPORT_FORMAT = "delab-scoreboard/1"


def export(path: Path, learner: str | None = None) -> int:
    """Write every recorded verdict to a JSON file a learner can hand in; returns how many."""
    rows = grading.attempts()
    board = {
        "format": EXPORT_FORMAT,
        "learner": learner or getpass.getuser(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "attempts": [{"exercise_id": e, "status": s, "message": m, "at": a} for e, s, m, a in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(board, indent=1), encoding="utf-8")
    return len(rows)


def read_export(path: Path) -> dict[str, Any]:
    """An exported scoreboard, checked; ``attempts`` as (exercise_id, status, message, at) tuples."""
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
        if board.get("format") != EXPORT_FORMAT:
            raise ValueError
        statuses = (grading.PASSED, grading.WRONG, grading.TODO)
        rows = [
            (str(a["exercise_id"]), a["status"], str(a.get("message") or ""), float(a["at"])) for a in board["attempts"]
        ]
        if any(row[1] not in statuses for row in rows):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{path} is not a scoreboard written by `delab progress --export`") from None
    return {**board, "attempts": rows}


def standings_of(rows: list[tuple[str, str, str, float]]) -> dict[str, grading.Standing]:
    """Standings computed from exported rows (not the local store)."""
    return grading.standings(rows)


def import_(paths: list[Path]) -> int:
    """Merge exported scoreboards into the local store (a learner moving machines); returns new verdicts."""
    return sum(grading.merge(read_export(path)["attempts"]) for path in paths)
