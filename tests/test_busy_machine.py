"""scripts/busy_machine.py: the load it adds is bounded and leaves nothing behind."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("busy_machine", ROOT / "scripts" / "busy_machine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runs_the_command_under_load_and_returns_its_exit_code():
    busy_machine = load_script()
    code = busy_machine.main(["--cpu", "1", "--io", "1", "--", sys.executable, "-c", "import sys; sys.exit(3)"])
    assert code == 3
    # its own scratch folder is gone (another busy_machine run, e.g. `make test-loaded` around this test, may
    # still use the parent folder)
    assert not (ROOT / ".delab" / "busy-machine" / str(os.getpid())).exists()


def test_workers_stop_by_themselves_at_the_deadline():
    busy_machine = load_script()
    busy_machine.spin(parent=-1, deadline=time.monotonic() + 3600)  # its parent is gone: returns at once
    busy_machine.churn(parent=os.getppid(), deadline=time.monotonic() - 1, folder=str(ROOT))  # deadline passed
