"""Who is using which service, so that a fault-injection lab never pulls a service from under another notebook.

Every process that calls ``stack.require(...)`` (a notebook kernel, a test worker) holds a *shared* lock on each
service it needs (and their dependencies) until it exits. ``with stack.disrupt("connect"):`` takes the
*exclusive* lock: it waits until no other process holds the service, lets the block kill or stop it, starts it
again on the way out and goes back to a shared lock. Meanwhile a ``require`` elsewhere waits for the disruption to
end. The locks are ``flock``s on files in the stack's run folder, so the kernel frees them when a process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from delab import config
from delab.stack import layout
from delab.stack.errors import StackError

_held: dict[str, IO[str]] = {}
_guard = threading.Lock()


def _wait_seconds() -> float:
    return float(os.environ.get("DELAB_DISRUPT_WAIT", "900"))


def _say(message: str) -> None:
    print(f"[stack] {message}", file=sys.stdout, flush=True)


def _lock_path(service: str) -> str:
    return str(layout.run_dir() / "locks" / f"{service}.lock")


def _lock_file(service: str) -> IO[str]:
    path = _lock_path(service)  # keyed by path: a test may switch to a private stack folder mid-process
    handle = _held.get(path)
    if handle is None or handle.closed:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held for the life of the process on purpose
        _held[path] = handle
    return handle


def holders(service: str) -> list[int]:
    """Pids of other processes holding a lock on ``service`` (read from /proc/locks; [] where there is none)."""
    try:
        inode = os.stat(_lock_path(service)).st_ino
        lines = open("/proc/locks").read().splitlines()  # noqa: SIM115
    except OSError:
        return []
    pids = set()
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            pids.add(int(fields[4]))
    pids.discard(os.getpid())
    return sorted(pids)


def _acquire(service: str, mode: int, waiting: Callable[[float], str]) -> None:
    handle = _lock_file(service)
    started = time.monotonic()
    told = 0.0
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            waited = time.monotonic() - started
            if waited > _wait_seconds():
                raise StackError(waiting(waited) + " — gave up (DELAB_DISRUPT_WAIT sets how long to wait)") from None
            if waited - told >= 15 or told == 0.0:
                _say(waiting(waited))
                told = waited or 1e-9
            time.sleep(0.25)


def use(services: Iterable[str]) -> None:
    """Hold a shared lock on each service for the life of this process (waits while one is being disrupted)."""
    if config.profile() != "native":
        return
    with _guard:
        for service in services:
            if _lock_path(service) in _held:
                continue
            _acquire(
                service,
                fcntl.LOCK_SH,
                lambda waited, s=service: (
                    f"{s} is being stopped on purpose by a fault-injection lab "
                    f"(pid {', '.join(map(str, holders(s))) or '?'}); waiting for it to come back ({waited:.0f} s)"
                ),
            )


def release() -> None:
    """Give up every shared lock this process holds (a test module done with its services); the next
    ``stack.require`` takes them again. Without it a long-lived test worker would make every ``disrupt`` elsewhere
    wait until the worker exits."""
    with _guard:
        for path, handle in list(_held.items()):
            if not handle.closed:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            del _held[path]


@contextlib.contextmanager
def disrupt(*services: str) -> Iterator[None]:
    """Fault injection, safely: wait until no other process uses ``services``, run the block (which may kill or
    stop them), then start them again and wait until they answer."""
    from delab.stack import manager

    if not services:
        raise StackError("disrupt(): name the service(s) you will stop, e.g. stack.disrupt('connect')")
    manager.resolve(services)
    if config.profile() != "native":
        raise StackError(f"fault injection needs the native profile (this is {config.profile()!r}): DELAB_STACK=native")
    with _guard:
        for service in services:
            # Drop our own shared lock first: two disrupters that both kept theirs would wait for each other.
            fcntl.flock(_lock_file(service), fcntl.LOCK_UN)
            _acquire(
                service,
                fcntl.LOCK_EX,
                lambda waited, s=service: (
                    f"waiting until no other notebook uses {s} before stopping it: "
                    f"{len(holders(s))} other process(es) (pid {', '.join(map(str, holders(s)))}) still hold it — "
                    f"shut down other notebooks' kernels or let them finish ({waited:.0f} s)"
                ),
            )
    try:
        yield
    finally:
        manager.up(list(services))
        with _guard:
            for service in services:
                fcntl.flock(_lock_file(service), fcntl.LOCK_SH)
