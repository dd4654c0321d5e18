"""Measure what a piece of code costs: peak memory in a fresh Python process, and wall time.

The function is shipped to a new interpreter with cloudpickle (so functions defined in a notebook work) and the
modules in ``preload`` are imported first. On Linux the process's high-water mark is then reset
(``/proc/self/clear_refs``), so the peak resident set (``VmHWM``) minus the resident set before the call is what
the function needed; elsewhere ``ru_maxrss`` stands in. A fresh process matters: a forked child, or one whose
earlier peak was higher, would reuse freed memory and under-report.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

_CHILD = r"""
import base64, importlib, pickle, resource, sys, time
path, blob = pickle.loads(base64.b64decode(sys.stdin.buffer.read()))
sys.path[:0] = [p for p in path if p not in sys.path]
fn, args, preload = pickle.loads(blob)
for module in preload:
    importlib.import_module(module)


def status_kb(field):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None


try:  # Linux: reset the high-water mark, so only what fn uses counts
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    baseline = status_kb("VmRSS")
except OSError:
    baseline = None
if baseline is None:  # elsewhere: the peak so far (ru_maxrss is KiB on Linux, bytes on macOS)
    scale = 1024 if sys.platform == "darwin" else 1
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // scale
started = time.perf_counter()
try:
    value = fn(*args)
    seconds = time.perf_counter() - started
    peak = status_kb("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    result = ("ok", (seconds, max(peak - baseline, 0) / 1024, value))
except Exception as error:
    result = ("error", f"{type(error).__name__}: {error}")
sys.stdout.buffer.write(base64.b64encode(pickle.dumps(result)))
"""


@dataclass(frozen=True)
class Cost:
    seconds: float
    peak_mb: float  # growth of the peak resident set over the child's baseline after imports
    result: Any


def cost(
    fn: Callable[..., Any], *args: Any, preload: tuple[str, ...] = ("pandas", "pyarrow"), timeout: float = 120
) -> Cost:
    """Run ``fn(*args)`` in a fresh Python process; return its wall time, peak memory growth (MB) and result."""
    # the child sees this process's import path, so functions of modules imported here unpickle there too
    payload = base64.b64encode(cloudpickle.dumps((list(sys.path), cloudpickle.dumps((fn, args, preload)))))
    done = subprocess.run([sys.executable, "-c", _CHILD], input=payload, capture_output=True, timeout=timeout)
    if done.returncode != 0 or not done.stdout:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the measured function crashed its process: {last}")
    status, value = cloudpickle.loads(base64.b64decode(done.stdout))
    if status == "error":
        raise RuntimeError(value)
    seconds, peak_mb, result = value
    return Cost(seconds, peak_mb, result)
