"""Graded exercises: the verdict exceptions, the ``@exercise`` decorator and the local progress store.

A check is a plain function decorated with ``@exercise("m00.l02.e1")``. It raises :class:`NotSolvedYet` while
the learner's answer is still the lab's placeholder (``...``) or a function that raises ``NotImplementedError``,
:class:`WrongAnswer` with a hint when the answer is wrong, and returns quietly when it is right. Every verdict
is written to a small SQLite file so ``delab progress`` can show a scoreboard.
"""

from __future__ import annotations

import dis
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from delab import config

P = ParamSpec("P")
R = TypeVar("R")

PASSED, WRONG, TODO = "passed", "wrong", "todo"

_RED, _YELLOW, _GREEN, _BOLD, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[1m", "\x1b[0m"


class LabFeedback(AssertionError):
    """A verdict about a learner's answer; Jupyter shows it as one line instead of a traceback."""

    label = "Feedback"
    colour = _YELLOW

    def __init__(self, message: str, hint: str | None = None, exercise_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exercise_id = exercise_id

    def one_line(self, colour: bool = False) -> str:
        where = f" [{self.exercise_id}]" if self.exercise_id else ""
        hint = f"  Hint: {self.hint}" if self.hint else ""
        label = f"{self.colour}{_BOLD}{self.label}{where}{_RESET}" if colour else f"{self.label}{where}"
        return f"{label}: {self.message}{hint}"

    def __str__(self) -> str:
        return self.one_line()

    def _render_traceback_(self) -> list[str]:  # IPython calls this instead of printing a traceback
        return [self.one_line(colour=True)]


class NotSolvedYet(LabFeedback):
    """The exercise still holds the lab's placeholder."""

    label = "Not solved yet"
    colour = _YELLOW


class WrongAnswer(LabFeedback):
    """The answer ran but is not right; ``hint`` nudges without giving the answer away."""

    label = "Wrong answer"
    colour = _RED


# --------------------------------------------------------------------------------------------- progress store


def progress_path() -> Path:
    """The SQLite file holding every verdict (under the project's state folder)."""
    return config.state_dir() / "progress.sqlite"


@contextmanager
def _store() -> Iterator[sqlite3.Connection]:
    path = progress_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=10)
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS attempts ("
            " exercise_id TEXT NOT NULL, status TEXT NOT NULL, message TEXT, at REAL NOT NULL)"
        )
        yield con
        con.commit()
    finally:
        con.close()


def record(exercise_id: str, status: str, message: str = "") -> None:
    """Store one verdict; a broken store never breaks a lab (the verdict is still shown)."""
    try:
        with _store() as con:
            con.execute("INSERT INTO attempts VALUES (?, ?, ?, ?)", (exercise_id, status, message, time.time()))
    except sqlite3.Error:
        pass


@dataclass(frozen=True)
class Standing:
    status: str  # passed | wrong | todo
    attempts: int
    last_message: str


def attempts() -> list[tuple[str, str, str, float]]:
    """Every recorded verdict as (exercise_id, status, message, at), oldest first."""
    if not progress_path().exists():
        return []
    with _store() as con:
        return con.execute("SELECT exercise_id, status, message, at FROM attempts ORDER BY at, rowid").fetchall()


def merge(rows: list[tuple[str, str, str, float]]) -> int:
    """Add verdicts recorded elsewhere (an exported scoreboard); ones already stored are skipped. Returns how many
    were new."""
    with _store() as con:
        known = set(con.execute("SELECT exercise_id, status, message, at FROM attempts").fetchall())
        new = [tuple(row) for row in rows if tuple(row) not in known]
        con.executemany("INSERT INTO attempts VALUES (?, ?, ?, ?)", new)
    return len(new)


def standings(rows: list[tuple[str, str, str, float]] | None = None) -> dict[str, Standing]:
    """Per exercise: passed if it ever passed, else the latest verdict; with the number of attempts. From the
    local store, or from ``rows`` (as :func:`attempts` gives them)."""
    rows = attempts() if rows is None else sorted(rows, key=lambda row: row[3])
    out: dict[str, Standing] = {}
    for exercise_id, status, message, _at in rows:
        before = out.get(exercise_id)
        count = (before.attempts if before else 0) + 1
        if before and before.status == PASSED:
            status, message = PASSED, before.last_message
        out[exercise_id] = Standing(status, count, message or "")
    return out


def forget(exercise_ids: list[str] | None = None) -> None:
    """Clear the progress of some exercises (all when None)."""
    with _store() as con:
        if exercise_ids is None:
            con.execute("DELETE FROM attempts")
        else:
            con.executemany("DELETE FROM attempts WHERE exercise_id = ?", [(e,) for e in exercise_ids])


# ------------------------------------------------------------------------------------------------- exercises


_STUB_OPS = {"RESUME", "NOP", "CACHE", "LOAD_GLOBAL", "PUSH_NULL", "PRECALL", "CALL", "LOAD_CONST", "RAISE_VARARGS"}


def _is_placeholder(value: Any) -> bool:
    return value is ...


def _is_stub(value: Any) -> bool:
    """A function whose whole body is the lab's ``raise NotImplementedError`` (a docstring aside). Caught before
    the check runs, so an unsolved exercise says so at once instead of after a job on a service failed."""
    code = getattr(value, "__code__", None)
    if code is None or code.co_names != ("NotImplementedError",):
        return False
    return {instruction.opname for instruction in dis.get_instructions(code)} <= _STUB_OPS


def exercise(exercise_id: str) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """Make a function a graded check for ``exercise_id``: record its verdict and show it as one line."""

    def wrap(check: Callable[P, None]) -> Callable[P, None]:
        @functools.wraps(check)
        def graded(*args: P.args, **kwargs: P.kwargs) -> None:
            try:
                answers = (*args, *kwargs.values())
                if any(_is_placeholder(a) for a in answers):
                    raise NotSolvedYet("replace the `...` placeholder with your answer, then run this cell again.")
                try:
                    if any(_is_stub(a) for a in answers):
                        raise NotImplementedError
                    check(*args, **kwargs)
                except NotImplementedError:
                    raise NotSolvedYet(
                        "your function still raises NotImplementedError: write its body, then run this cell again."
                    ) from None
            except LabFeedback as verdict:
                verdict.exercise_id = exercise_id
                record(exercise_id, TODO if isinstance(verdict, NotSolvedYet) else WRONG, verdict.message)
                raise verdict.with_traceback(None) from None
            record(exercise_id, PASSED)
            print(f"{_GREEN}{_BOLD}Passed [{exercise_id}]{_RESET}: {(check.__doc__ or '').strip().splitlines()[0]}")

        graded.exercise_id = exercise_id  # type: ignore[attr-defined]
        graded.__wrapped__ = check  # type: ignore[attr-defined]
        return graded

    return wrap


def try_answer(check: Callable[..., None], *args: Any, **kwargs: Any) -> str:
    """Run a check without recording anything and return (and print) its verdict — for demonstrations."""
    inner = getattr(check, "__wrapped__", check)
    exercise_id = getattr(check, "exercise_id", None)
    try:
        if any(_is_placeholder(a) for a in (*args, *kwargs.values())):
            raise NotSolvedYet("replace the `...` placeholder with your answer.")
        inner(*args, **kwargs)
    except LabFeedback as verdict:
        verdict.exercise_id = exercise_id
        line = verdict.one_line()
    else:
        line = f"Passed [{exercise_id}]"
    print(line)
    return line


def learner_code(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn an error raised while running the learner's code (a query, a function) into a WrongAnswer."""

    def wrap(run: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(run)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return run(*args, **kwargs)
            except (LabFeedback, NotImplementedError):
                raise
            except Exception as error:  # the learner's code failed: say how, in one line
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                if len(first) > 240:  # some clients put a whole request or response in the first line
                    first = first[:240] + " …"
                raise WrongAnswer(
                    f"{what} failed with {type(error).__name__}: {first}",
                    hint="run it in a cell of its own to see the whole error.",
                ) from None

        return guarded

    return wrap


def show_progress(module: str | None = None) -> None:
    """Show the scoreboard in a notebook (the same table as `delab progress`)."""
    from delab import progress

    progress.render(module=module)
