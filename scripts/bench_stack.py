#!/usr/bin/env python3
"""Measure the native stack: cold start to all-healthy, warm restart, idle memory per service.

Runs a private instance (its own stack folder and free ports), so a stack you already run is left alone:

    .venv/bin/python scripts/bench_stack.py            # prints the figures
    .venv/bin/python scripts/bench_stack.py --markdown # the same as a table for docs/bench.md

cold start   = `up` on an empty stack folder (Kafka storage format, initdb, bucket creation included)
warm restart = `down`, then `up` again with the data in place
idle RSS     = resident memory of each service's processes (children included) after --idle seconds
Targets (docs/bench.md): cold start <= 20 s, whole stack idle <= 2.5 GB.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

TARGET_COLD_S = 20.0
TARGET_RSS_MB = 2500.0
PORT_NAMES = ("kafka", "kafka_controller", "connect", "postgres", "s3", "flink", "flink_rpc")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    """root and every process below it (PostgreSQL's backends, Flink's Python workers)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def timed_up(manager, label: str, verbose: bool) -> float:
    started = time.monotonic()

    def progress(message: str) -> None:
        if verbose:
            print(f"  [{label} +{time.monotonic() - started:5.1f} s] {message}", file=sys.stderr)

    manager.up(progress=progress)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=float, default=15.0, help="seconds to let the stack settle before RSS")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--verbose", "-v", action="store_true", help="show each service's start on stderr")
    args = parser.parse_args()

    from delab.stack import layout

    build = layout.build_dir()
    workdir = tempfile.mkdtemp(prefix="delab-bench-")
    os.environ.update({"DELAB_STACK": "native", "DELAB_STACK_DIR": workdir, "DELAB_STACK_BUILD_DIR": str(build)})
    for name in PORT_NAMES:
        os.environ[f"DELAB_{name.upper()}_PORT"] = str(free_port())

    from delab.stack import manager

    try:
        cold = timed_up(manager, "cold", args.verbose)
        manager.down()
        warm = timed_up(manager, "warm", args.verbose)
        time.sleep(args.idle)
        memory: dict[str, float] = {}
        for row in manager.status():
            pids = {pid for root in row.pids for pid in descendants(root)}
            memory[row.service] = sum(rss_kb(pid) for pid in pids) / 1024
    finally:
        manager.reset()
        os.rmdir(workdir) if os.path.isdir(workdir) and not os.listdir(workdir) else None

    total = sum(memory.values())
    rows = [
        ("cold start to all-healthy", f"{cold:.1f} s", f"<= {TARGET_COLD_S:.0f} s", cold <= TARGET_COLD_S),
        ("warm restart (down, up)", f"{warm:.1f} s", "", True),
        *[(f"idle RSS {name}", f"{mb:.0f} MB", "", True) for name, mb in memory.items()],
        ("idle RSS total", f"{total:.0f} MB", f"<= {TARGET_RSS_MB:.0f} MB", total <= TARGET_RSS_MB),
    ]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.markdown:
        print(f"| figure | value | target |  \n|---|---|---|  <!-- {machine} -->")
        for name, value, target, ok in rows:
            print(f"| {name} | {value} | {target}{'' if ok else ' **missed**'} |")
    else:
        print(f"native stack bench ({machine})")
        for name, value, target, ok in rows:
            print(f"  {name:<28} {value:>9}  {target}{'' if ok else '  MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
