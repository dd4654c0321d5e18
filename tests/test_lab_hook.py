"""The conftest hook that runs lab notebooks: a lab must stop at its first check with "Not solved yet"."""

from __future__ import annotations

import shutil

import nbformat
import pytest

from delab import config

pytest_plugins = ["pytester"]


def lab(pytester: pytest.Pytester, *sources: str) -> None:
    shutil.copy(config.project_root() / "conftest.py", pytester.path / "conftest.py")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "delab", "display_name": "delab"}})
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    (pytester.path / "labs").mkdir()
    nbformat.write(nb, pytester.path / "labs" / "demo.ipynb")


def run(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess("--nbval-lax", "-p", "no:cacheprovider", "labs", timeout=180)


@pytest.mark.slow
def test_lab_stopping_at_not_solved_passes_and_the_rest_is_deselected(pytester):
    lab(pytester, "from delab import check", "answer = ...", "check.m00.captured_revenue(answer)", "1 / 0")
    result = run(pytester)
    result.assert_outcomes(passed=3, deselected=1)


@pytest.mark.slow
def test_lab_leaking_its_answer_fails(pytester):
    lab(pytester, "from delab import check", "answer = 'leaked'", "check.m00.captured_revenue(answer)")
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*expected 'Not solved yet'*"])


@pytest.mark.slow
def test_lab_erroring_before_its_first_check_fails(pytester):
    lab(pytester, "import no_such_module", "answer = ...", "check.m00.captured_revenue(answer)")
    result = run(pytester)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1


@pytest.mark.slow
def test_lab_whose_first_check_passes_fails(pytester):
    lab(
        pytester,
        "from delab import check\nfrom delab.checks import m00",
        "answer = m00.expected_captured_revenue()",
        "check.m00.captured_revenue(answer)",
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*first check passed*"])
