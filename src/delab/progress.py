"""The scoreboard: every exercise of curriculum.yaml with the learner's standing, as a rich table or HTML."""

from __future__ import annotations

from pathlib import Path

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
