"""The `delab` command as a learner and CI use it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from delab import config, curriculum

ROOT = config.project_root()


def delab(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "delab.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


@pytest.fixture
def env(tmp_path, monkeypatch):
    import os

    return {**os.environ, "DELAB_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "160"}


def test_solving_an_exercise_shows_in_progress(env, tmp_path):
    script = (
        "from delab import check, datasets\n"
        "from delab.grading import NotSolvedYet\n"
        "try:\n    check.m00.orders_per_channel(...)\nexcept NotSolvedYet: pass\n"
        "shop = datasets.shop(seed=7, scale=0.25)\n"
        "check.m00.orders_per_channel(shop.orders.drop_duplicates('order_id').groupby('channel').size())\n"
    )
    total = sum(len(lab.exercises) for lab in curriculum.current().labs if lab.module_id == "00")
    before = delab("progress", "--module", "00", env=env)
    assert before.returncode == 0 and f"0 of {total} exercises passed" in before.stdout
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
    after = delab("progress", "--module", "00", "--html", str(tmp_path / "report.html"), env=env)
    assert "e1 passed" in after.stdout and f"1 of {total} exercises passed" in after.stdout
    report = (tmp_path / "report.html").read_text()
    assert report.startswith("<!DOCTYPE html>") and f"1 of {total} exercises passed" in report


def test_notebooks_check_names_the_stale_notebook(env, tmp_path):
    copy = tmp_path / "project"
    for part in ("solutions", "labs", "curriculum.yaml", "README.md"):
        source = ROOT / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / part)
    source = copy / "solutions/00_orientation/01_how_a_lab_works.py"
    source.write_text(source.read_text().replace("About 10 minutes.", "About 12 minutes."))
    result = delab("notebooks", "--check", env={**env, "DELAB_ROOT": str(copy)})
    assert result.returncode == 1
    assert "stale: solutions/00_orientation/01_how_a_lab_works.ipynb" in result.stderr
    assert "stale: labs/00_orientation/01_how_a_lab_works.ipynb" in result.stderr
    assert "run `make notebooks`" in result.stderr and "Traceback" not in result.stderr
    fixed = delab("notebooks", env={**env, "DELAB_ROOT": str(copy)})
    assert fixed.returncode == 0
    assert delab("notebooks", "--check", env={**env, "DELAB_ROOT": str(copy)}).returncode == 0


def test_bad_input_is_one_line(env, tmp_path):
    result = delab("data", "--out", str(tmp_path), "--fmt", "xlsx", env=env)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0 and "parquet or csv" in result.stderr
    result = delab("info", env={**env, "DELAB_STACK": "kubernetes"})
    assert result.returncode == 1 and "DELAB_STACK" in result.stderr and "Traceback" not in result.stderr


def test_data_writes_the_shop(env, tmp_path):
    result = delab("data", "--out", str(tmp_path / "shop"), "--scale", "0.05", "--fmt", "csv", env=env)
    assert result.returncode == 0
    assert sorted(p.name for p in (tmp_path / "shop").iterdir())[:2] == ["clicks.csv", "customers.csv"]
