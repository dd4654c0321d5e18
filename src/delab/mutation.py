"""Mutation testing of a learner's test suite: the suite must pass on the real module and fail on each copy of it
with one planted bug (a *mutant*). Labs 01.06 and 05.05 grade their testing exercises this way.

Each run is a fresh ``pytest`` subprocess in a temporary folder holding the module (under its import name) and
the learner's tests, so a suite never sees the installed package's copy and mutants never leak between runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from delab.grading import WrongAnswer

#: a planted bug: (what it breaks, said in the hint; the original text; its replacement)
Mutant = tuple[str, str, str]


#: how long one run of a learner's suite may take: tiny suites take a second or two, even on a busy machine
SUITE_TIMEOUT = 120.0


def run_suite(
    tests: str, module_name: str, module_source: str, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run the learner's ``tests`` against ``module_source`` importable as ``module_name``; pytest's outcome. A suite
    that runs past the timeout is a one-line verdict (a loop that never ends), not a traceback."""
    timeout = SUITE_TIMEOUT if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="delab-mutant-") as folder:
        Path(folder, f"{module_name}.py").write_text(module_source)
        Path(folder, f"test_{module_name}.py").write_text(tests)
        env = {
            **os.environ,
            "PYTHONPATH": folder,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # the suite needs plain pytest: start fast
        }
        try:
            return subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--rootdir", folder, folder],
                capture_output=True,
                text=True,
                cwd=folder,
                env=env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise WrongAnswer(
                f"your tests were still running after {timeout:.0f} s.",
                hint="a test that loops forever or waits for something? Each test should take a blink.",
            ) from None


def _last_line(run: subprocess.CompletedProcess) -> str:
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def check_suite(tests: str, module_name: str, module_file: str | Path, mutants: list[Mutant]) -> None:
    """Raise ``WrongAnswer`` unless ``tests`` pass on the module at ``module_file`` and fail on every mutant."""
    if not isinstance(tests, str) or "def test_" not in tests:
        raise WrongAnswer(
            "expected the source of a pytest module with test functions.",
            hint="def test_something(): ... inside a string.",
        )
    original = Path(module_file).read_text()
    clean = run_suite(tests, module_name, original)
    if clean.returncode == 5:
        raise WrongAnswer("pytest found no tests in your module.", hint="test functions start with test_.")
    if clean.returncode != 0:
        raise WrongAnswer(
            f"your tests fail on the correct code: {_last_line(clean)}",
            hint="run them in a cell first; check the expected values by hand.",
        )
    for _, before, _ in mutants:
        if before not in original:
            raise RuntimeError(f"mutant out of date: {before!r}")
    with ThreadPoolExecutor(max_workers=2) as pool:  # the mutants are independent: run two at a time
        runs = list(pool.map(lambda m: run_suite(tests, module_name, original.replace(m[1], m[2])), mutants))
    for (description, _, _), mutant in zip(mutants, runs, strict=True):
        if mutant.returncode == 0:
            raise WrongAnswer(
                f"a planted bug survives your tests: {description}.",
                hint="add a tiny input where that rule changes the result, and assert on it.",
            )
