#!/usr/bin/env python3
"""Measure the native stack: cold start to all-healthy, warm restart, idle memory per service.

Runs a private instance (its own stack folder <stack>/bench and the usual ports + 1000), so a stack you already
run is left alone:

    .venv/bin/python scripts/bench_stack.py            # prints the figures
    .venv/bin/python scripts/bench_stack.py --markdown # the same as a table for docs/bench.md

cold start   = `up` with no data (Kafka storage format, initdb, bucket creation included) on a set-up machine:
               jars built, and the JVM class archives and Flink launch lines recorded by an earlier start
               (the first start after install.sh is slower; run the bench twice)
warm restart = `down`, then `up` again with the data in place
idle RSS     = resident memory of each service's processes (children included) after --idle seconds
on demand    = then the schema registry (started on first require, not by `up`): its first start (schema
               created in Postgres), a restart with its data in place, its idle RSS, and the total with it
               (--no-registry skips it)
Targets (docs/bench.md): cold start <= 20 s, whole stack idle <= 2.5 GB.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import socket
import sys
import time
from pathlib import Path

TARGET_COLD_S = 20.0
TARGET_RSS_MB = 2500.0


DEFAULT_PORTS = {"kafka": 19092, "kafka_controller": 19093, "connect": 18083, "postgres": 15432, "s3": 17070}
DEFAULT_PORTS |= {"flink": 18081, "flink_rpc": 16123, "schema_registry": 18085, "schema_registry_management": 18086}
DEFAULT_PORTS |= {"mlflow": 18050}
OFFSET = 1000


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of the children it waited for (Flink's helper JVMs run before the exec)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def stack_cpu(manager) -> dict[str, float]:
    """CPU seconds used so far by each service's processes (children included)."""
    return {
        row.service: sum(cpu_seconds(pid) for root in row.pids for pid in descendants(root)) for row in manager.status()
    }


def timed_up(manager, label: str, verbose: bool, services: list[str] | None = None) -> float:
    started = time.monotonic()

    def progress(message: str) -> None:
        if verbose:
            print(f"  [{label} +{time.monotonic() - started:5.1f} s] {message}", file=sys.stderr)

    manager.up(services, progress=progress)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=float, default=15.0, help="seconds to let the stack settle before RSS")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--verbose", "-v", action="store_true", help="show each service's start on stderr")
    parser.add_argument("--no-registry", action="store_true", help="skip the on-demand schema registry")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the on-demand MLflow server")
    args = parser.parse_args()

    from delab.stack import layout

    build = layout.build_dir()
    workdir = layout.stack_dir() / "bench"
    os.environ.update({"DELAB_STACK": "native", "DELAB_STACK_DIR": str(workdir), "DELAB_STACK_BUILD_DIR": str(build)})
    for name, port in DEFAULT_PORTS.items():
        if not port_is_free(port + OFFSET):
            print(f"error: port {port + OFFSET} (bench {name}) is in use: stop what holds it", file=sys.stderr)
            return 1
        os.environ[f"DELAB_{name.upper()}_PORT"] = str(port + OFFSET)

    from delab.stack import manager

    manager.reset()  # no data: a cold start

    try:
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cold = timed_up(manager, "cold", args.verbose)
        cpu = stack_cpu(manager)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # Kafka's format tool, initdb, psql
        cpu["tools"] = (children_after.ru_utime + children_after.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
        manager.down()
        warm = timed_up(manager, "warm", args.verbose)
        time.sleep(args.idle)
        memory: dict[str, float] = {}
        for row in manager.status():
            pids = {pid for root in row.pids for pid in descendants(root)}
            memory[row.service] = sum(rss_kb(pid) for pid in pids) / 1024
        on_demand: list[tuple[str, str, str, bool]] = []
        if not args.no_registry:
            first = timed_up(manager, "registry", args.verbose, ["registry"])
            manager.down(["registry"])
            again = timed_up(manager, "registry again", args.verbose, ["registry"])
            time.sleep(args.idle)
            [row] = manager.status(["registry"])
            registry_mb = sum(rss_kb(pid) for root in row.pids for pid in descendants(root)) / 1024
            with_registry = sum(memory.values()) + registry_mb
            on_demand = [
                ("registry first start (on demand)", f"{first:.1f} s", "", True),
                ("registry restart (data kept)", f"{again:.1f} s", "", True),
                ("idle RSS registry", f"{registry_mb:.0f} MB", "", True),
                (
                    "idle RSS total with the registry",
                    f"{with_registry:.0f} MB",
                    f"<= {TARGET_RSS_MB:.0f} MB",
                    with_registry <= TARGET_RSS_MB,
                ),
            ]
            manager.down(["registry"])
        if not args.no_mlflow:  # its first start migrates an empty schema; a restart finds it in place
            first = timed_up(manager, "mlflow", args.verbose, ["mlflow"])
            manager.down(["mlflow"])
            again = timed_up(manager, "mlflow again", args.verbose, ["mlflow"])
            time.sleep(args.idle)
            [row] = manager.status(["mlflow"])
            mlflow_mb = sum(rss_kb(pid) for root in row.pids for pid in descendants(root)) / 1024
            with_mlflow = sum(memory.values()) + mlflow_mb
            on_demand += [
                ("mlflow first start (on demand)", f"{first:.1f} s", "", True),
                ("mlflow restart (data kept)", f"{again:.1f} s", "", True),
                ("idle RSS mlflow", f"{mlflow_mb:.0f} MB", "", True),
                (
                    "idle RSS total with mlflow",
                    f"{with_mlflow:.0f} MB",
                    f"<= {TARGET_RSS_MB:.0f} MB",
                    with_mlflow <= TARGET_RSS_MB,
                ),
            ]
    finally:
        manager.reset()

    total = sum(memory.values())
    load = os.getloadavg()[0]
    rows = [
        ("cold start to all-healthy", f"{cold:.1f} s", f"<= {TARGET_COLD_S:.0f} s", cold <= TARGET_COLD_S),
        ("CPU used by the cold start", f"{sum(cpu.values()):.1f} s", "", True),
        *[(f"  of which {name}", f"{seconds:.1f} s", "", True) for name, seconds in cpu.items()],
        ("warm restart (down, up)", f"{warm:.1f} s", "", True),
        *[(f"idle RSS {name}", f"{mb:.0f} MB", "", True) for name, mb in memory.items()],
        ("idle RSS total", f"{total:.0f} MB", f"<= {TARGET_RSS_MB:.0f} MB", total <= TARGET_RSS_MB),
        *on_demand,
    ]
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load:.1f} at the end"
    )
    if args.markdown:
        print(f"Measured on {machine}.\n\n| figure | value | target |\n|---|---|---|")
        for name, value, target, ok in rows:
            print(f"| {name} | {value} | {target}{'' if ok else ' **missed**'} |")
    else:
        print(f"native stack bench ({machine})")
        for name, value, target, ok in rows:
            print(f"  {name:<28} {value:>9}  {target}{'' if ok else '  MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
