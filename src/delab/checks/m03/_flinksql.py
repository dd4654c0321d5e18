"""What the Flink SQL checks of module 03 share (private names: ``check.m03.<name>`` never finds them)."""

from __future__ import annotations

import re

from delab.grading import WrongAnswer

_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


def _insert_into(sql, table: str) -> None:
    """The answer is one ``INSERT INTO <table> ...`` statement (comments before it are fine)."""
    statement = _LEADING_COMMENTS.sub("", sql) if isinstance(sql, str) else ""
    if not re.match(rf"insert\s+into\s+(?:[\w`]+\.)*`?{table}`?(?![\w`])", statement, re.IGNORECASE):
        raise WrongAnswer(f"expected one statement: INSERT INTO {table} SELECT ...", hint="a string of Flink SQL.")
