#!/usr/bin/env python3
"""Measure how long each solution notebook takes, each in its own kernel, against the budget (DESIGN §8).

    .venv/bin/python scripts/bench_notebooks.py                      # every solution, once
    .venv/bin/python scripts/bench_notebooks.py --runs 2 solutions/02_loading_cdc
    .venv/bin/python scripts/bench_notebooks.py --markdown           # a table for docs/bench.md

Runs the notebooks one after another against the running stack (start it first: `delab stack up`), the second
run right after the first (so it also shows that a notebook runs twice in a row). Prints seconds per run, then
the median and the slowest. Targets: median <= 30 s, none over 120 s. A notebook that fails is reported, with
the first line of its error, and counted as over budget.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

TARGET_MEDIAN_S = 30.0
TARGET_MAX_S = 120.0
ROOT = Path(__file__).resolve().parent.parent


def notebooks(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths or ["solutions"]:
        path = (ROOT / raw) if not Path(raw).is_absolute() else Path(raw)
        found += sorted(path.rglob("*.ipynb")) if path.is_dir() else [path]
    return [p for p in found if ".ipynb_checkpoints" not in p.parts]


def run_once(path: Path) -> tuple[float, str]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name=nb.metadata.get("kernelspec", {}).get("name", "delab"), resources={}
    )
    started = time.monotonic()
    error = ""
    try:
        client.execute(cwd=str(path.parent))
    except CellExecutionError as failure:
        error = next((line for line in str(failure).splitlines() if "Error" in line), "cell failed")[:120]
    except Exception as failure:  # a kernel that died, a timeout
        error = f"{type(failure).__name__}: {failure}"[:120]
    return time.monotonic() - started, error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: solutions)")
    parser.add_argument("--runs", type=int, default=1, help="runs per notebook, back to back (default 1)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    os.environ.setdefault("DELAB_STATE_DIR", str(ROOT / ".delab" / "bench-state"))

    rows: list[tuple[str, list[float], str]] = []
    for path in notebooks(args.paths):
        times, errors = [], []
        for _ in range(args.runs):
            seconds, error = run_once(path)
            times.append(seconds)
            if error:
                errors.append(error)
        name = str(path.relative_to(ROOT))
        rows.append((name, times, errors[0] if errors else ""))
        print(
            f"{name}: {' / '.join(f'{t:.1f} s' for t in times)}{'  FAILED: ' + errors[0] if errors else ''}",
            file=sys.stderr,
            flush=True,
        )

    firsts = [times[0] for _, times, _ in rows]
    if not firsts:
        print("no notebooks found", file=sys.stderr)
        return 2
    median, slowest = statistics.median(firsts), max(max(times) for _, times, _ in rows)
    failed = [name for name, _, error in rows if error]
    if args.markdown:
        runs = " | ".join(f"run {i + 1}" for i in range(args.runs))
        print(f"| notebook | {runs} | |\n|---|{'---|' * args.runs}---|")
        for name, times, error in rows:
            cells = " | ".join(f"{t:.1f} s" for t in times)
            print(f"| {name} | {cells} | {'FAILED: ' + error if error else ''} |")
        print()
    ok_median, ok_max = median <= TARGET_MEDIAN_S, slowest <= TARGET_MAX_S and not failed
    print(
        f"notebooks: {len(rows)}; median (first runs) {median:.1f} s (target <= {TARGET_MEDIAN_S:.0f} s "
        f"{'ok' if ok_median else 'OVER'}); slowest run {slowest:.1f} s (target <= {TARGET_MAX_S:.0f} s "
        f"{'ok' if ok_max else 'OVER'}); failed: {', '.join(failed) or 'none'}"
    )
    return 0 if ok_median and ok_max else 1


if __name__ == "__main__":
    sys.exit(main())
