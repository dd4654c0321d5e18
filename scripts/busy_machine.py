#!/usr/bin/env python3
"""Run a command while the machine is busy: the proof that checks and tests give the same verdict under load.

    .venv/bin/python scripts/busy_machine.py -- make test                  # what `make test-loaded` runs
    .venv/bin/python scripts/busy_machine.py --cpu 3 --io 2 -- .venv/bin/pytest -q tests/checks/test_m01_l02.py

Beside the command, ``--cpu`` processes spin (arithmetic in a tight loop) and ``--io`` processes write, fsync,
read back and delete files of a few MB in a scratch folder under .delab/ — all at normal priority, so they
compete with the tests as a browser, a video call or an IDE indexing would on a learner's laptop. Nothing
leaves this machine. The load is bounded: the workers stop when the command ends, when this script is killed
(each worker watches its parent), and at the latest after ``--max-minutes``. The exit code is the command's.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IO_CHUNK = b"\0" * (1 << 20)


def _keep_going(parent: int, deadline: float) -> bool:
    return os.getppid() == parent and time.monotonic() < deadline


def _stop_on_sigterm() -> None:
    # a fork inherits its parent's SIGTERM handler (a pytest-xdist worker's did not exit): restore the default
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def spin(parent: int, deadline: float) -> None:
    """Keep one core busy until the parent is gone or the deadline passed."""
    _stop_on_sigterm()
    x = 0
    while _keep_going(parent, deadline):
        for i in range(200_000):
            x = (x * 31 + i) % 1_000_003


def churn(parent: int, deadline: float, folder: str) -> None:
    """Write, fsync, read back and delete 8 MB files in a loop until the parent is gone or the deadline passed."""
    _stop_on_sigterm()
    path = Path(folder) / f"churn-{os.getpid()}"
    while _keep_going(parent, deadline):
        with path.open("wb") as out:
            for _ in range(8):
                out.write(IO_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        with path.open("rb") as back:
            while back.read(1 << 20):
                pass
        path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", type=int, default=2, help="busy-loop processes (default 2: one per core here)")
    parser.add_argument("--io", type=int, default=1, help="file-churning processes (default 1)")
    parser.add_argument("--max-minutes", type=float, default=90, help="stop the load after this long in any case")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run under load (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --, e.g. -- make test")

    # a folder of this run's own: `make test-loaded` runs the tests of this script inside a busy_machine run
    scratch = ROOT / ".delab" / "busy-machine" / str(os.getpid())
    scratch.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.max_minutes * 60
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=spin, args=(os.getpid(), deadline), daemon=True) for _ in range(args.cpu)]
    workers += [
        context.Process(target=churn, args=(os.getpid(), deadline, str(scratch)), daemon=True) for _ in range(args.io)
    ]
    for worker in workers:
        worker.start()
    print(f"[busy machine] {args.cpu} busy loop(s) and {args.io} file churner(s) beside: {' '.join(command)}")
    started = time.monotonic()
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:
        code = 130
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(10)
            if worker.is_alive():  # did not stop on SIGTERM: no worker may outlive the run
                worker.kill()
                worker.join(10)
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(OSError):  # the parent folder too, unless another run still uses it
            scratch.parent.rmdir()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"[busy machine] exit {code} after {time.monotonic() - started:.0f} s; load average now {load}")
    return code


if __name__ == "__main__":
    sys.exit(main())
