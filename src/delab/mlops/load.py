"""A bounded load generator: a fixed budget of requests sent by a fixed number of concurrent clients, every
latency recorded. Figures are measured on the machine the notebook runs on; compare configurations measured the
same way, one after another, never against an absolute number.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LoadResult:
    """What one bounded run measured."""

    label: str
    latencies_s: np.ndarray  # one per successful request, in completion order
    wall_s: float  # first request sent → last answer received
    concurrency: int
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies_s) + self.errors

    def __repr__(self) -> str:
        p50, p95 = (np.percentile(self.latencies_s, q) * 1000 for q in (50, 95)) if len(self.latencies_s) else (0, 0)
        return (
            f"<LoadResult {self.label}: {self.requests} requests, concurrency {self.concurrency}, "
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, {self.errors} errors, {self.wall_s:.2f} s>"
        )


def run_load(
    url: str,
    payloads: Sequence[Any],
    requests: int = 200,
    concurrency: int = 8,
    label: str = "",
    timeout: float = 30.0,
    send: Callable[[Any, str, Any], Any] | None = None,
) -> LoadResult:
    """POST ``requests`` JSON bodies (cycling through ``payloads``) to ``url`` from ``concurrency`` threads.

    Each thread keeps one connection open (keep-alive), as a real client pool would. ``send(client, url, body)``
    replaces the default ``client.post(url, json=body)`` and must return an object with ``status_code``.
    """
    import httpx

    if requests < 1 or concurrency < 1 or not payloads:
        raise ValueError("give at least one payload, one request and one client")
    next_index = iter(range(requests))
    index_lock, result_lock = threading.Lock(), threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    post = send or (lambda client, target, body: client.post(target, json=body))

    def worker() -> None:
        nonlocal errors
        with httpx.Client(timeout=timeout) as client:
            while True:
                with index_lock:
                    i = next(next_index, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    status = post(client, url, payloads[i % len(payloads)]).status_code
                except httpx.HTTPError:
                    status = 0
                elapsed = time.perf_counter() - started
                with result_lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if 200 <= status < 300:
                        latencies.append(elapsed)
                    else:
                        errors += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(concurrency, requests))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return LoadResult(label or url, np.array(latencies), wall, concurrency, errors, statuses)
