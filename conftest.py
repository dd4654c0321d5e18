"""Test-session setup shared by the unit tests and the notebook runs (nbval).

* Progress and lab working folders go to a temporary state folder, never the learner's own ``.delab/``.
* Tests that need another kernel's environment live in tests/<env>/ (tests/airflow, tests/flink, tests/mlops) and
  are run by that environment's pytest (see the Makefile); elsewhere they are not collected.
* Lab notebooks (labs/) are executed too, and must stop exactly at their first check with "Not solved yet":
  every cell before it must run cleanly, that check must raise NotSolvedYet, and the cells after it (which need
  the learner's answers) are deselected.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
CHECK_CALL = re.compile(r"^check\.m\d\d\.\w+\(", re.MULTILINE)
NOT_SOLVED = "Not solved yet"


def _keep_pyspark_connect_from_exiting() -> None:
    """pyspark 4.2's ``pyspark.sql.connect`` calls ``sys.exit(0)`` ("Skipping doctests") when it is imported in a
    process whose ``__main__`` has no file — a pytest-xdist worker — and its optional gRPC extras are missing.
    Great Expectations imports it on the way (lab 05.03), which killed those tests with SystemExit. Import it once
    here; if it exits, mark it missing, so every later import is the ImportError its importers already handle."""
    import sys

    try:
        import pyspark.sql.connect  # noqa: F401
    except ImportError:
        pass
    except SystemExit:
        sys.modules["pyspark.sql.connect"] = None  # type: ignore[assignment]


_OWN_STATE_DIRS: list[str] = []


def _new_state_dir() -> str:
    path = tempfile.mkdtemp(prefix="delab-test-state-")
    _OWN_STATE_DIRS.append(path)
    return path


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the state folder this run made for itself (`make test` shares one it keeps: DELAB_TEST_STATE_DIR)."""
    import shutil

    while _OWN_STATE_DIRS:
        shutil.rmtree(_OWN_STATE_DIRS.pop(), ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    _keep_pyspark_connect_from_exiting()
    if "DELAB_TEST_STATE_DIR" in os.environ:  # `make test` shares one across its phases (Airflow DBs, data)
        os.environ["DELAB_STATE_DIR"] = os.environ["DELAB_TEST_STATE_DIR"]
    elif "DELAB_TEST_KEEP_STATE" not in os.environ:
        os.environ["DELAB_STATE_DIR"] = _OWN_STATE_DIRS[0] if _OWN_STATE_DIRS else _new_state_dir()
    os.environ.setdefault("DELAB_ROOT", str(ROOT))
    os.environ.setdefault("MPLBACKEND", "Agg")


ENV_TEST_DIRS = {"airflow": "airflow", "flink": "pyflink", "mlops": "mlflow"}
collect_ignore = [
    f"tests/{folder}" for folder, module in ENV_TEST_DIRS.items() if importlib.util.find_spec(module) is None
]


def _is_lab_cell(item: pytest.Item) -> bool:
    path = Path(str(item.path))
    return path.suffix == ".ipynb" and "labs" in path.relative_to(ROOT).parts[:1] and hasattr(item, "cell")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselected: list[pytest.Item] = []
    stopped: set[Path] = set()
    for item in items:
        if not _is_lab_cell(item):
            continue
        notebook = Path(str(item.path))
        if notebook in stopped:
            deselected.append(item)
        elif CHECK_CALL.search(item.cell.source):
            item.delab_expect_not_solved = True  # type: ignore[attr-defined]
            stopped.add(notebook)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [i for i in items if i not in set(deselected)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not getattr(item, "delab_expect_not_solved", False):
        return
    if call.excinfo is None:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid}: the lab's first check passed — the lab notebook still holds an answer "
            "(regenerate it with `make notebooks`)"
        )
        return
    detail = str(getattr(call.excinfo.value, "inner_traceback", "") or call.excinfo.value)
    if NOT_SOLVED in detail:
        report.outcome = "passed"
        report.longrepr = None
    else:
        report.longrepr = f"{item.nodeid}: expected 'Not solved yet' at the lab's first check, got:\n{detail}"


_stack_ready = False


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures, which may already load data into the services
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``stack`` use the real services: start whatever is not running (once per process). The
    locks ``require`` takes are given back at once: a test module holds only what its own ``stack.require(...)``
    names, and only until the module ends (below), so a fault-injection test elsewhere (``stack.disrupt``) does not
    wait for this whole worker to exit."""
    global _stack_ready
    if not _stack_ready and item.get_closest_marker("stack") is not None:
        from delab import stack
        from delab.stack import usage

        stack.require(quiet=True)
        usage.release()
        _stack_ready = True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    yield  # the module's fixtures are torn down by now when this was its last test
    if nextitem is None or nextitem.path != item.path:
        from delab.stack import usage

        usage.release()
