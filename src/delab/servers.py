"""Server processes a lab starts (BentoML, a KServe model server under uvicorn, ...): on 127.0.0.1 and a free port,
waited for until they answer, stopped at the end — and never left running when the notebook's kernel dies.

    from delab.servers import LocalServer, free_port
    port = free_port()
    with LocalServer("bento", ["bentoml", "serve", "svc:OrderValue", "--host", "127.0.0.1", "--port", str(port)],
                     port=port, ready_path="/readyz", log_dir=folder) as server:
        httpx.post(f"{server.url}/predict", json=...)

How nothing is orphaned: the command runs under a small supervisor (``python -m delab.servers``) that leads its
own process group and asks Linux to send it SIGTERM when the kernel dies (``prctl(PR_SET_PDEATHSIG)``; elsewhere it
notices its parent is gone within half a second). On that signal, or on ``stop()``, the whole group — the server
and every worker it forked — gets SIGTERM, then SIGKILL after a grace period. ``stop_all()`` also runs at
interpreter exit. A server that exits or does not answer in time raises ``ServerFailed`` with the end of its log.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from delab import config

HOST = config.HOST
_RUNNING: list[LocalServer] = []
_PR_SET_PDEATHSIG = 1


class ServerFailed(RuntimeError):
    """A lab's server exited or did not answer; the message ends with the last lines of its log."""

    def _render_traceback_(self) -> list[str]:  # Jupyter: the message, not a stack of frames
        return [f"ServerFailed: {self}"]


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file ("(no log)" when there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when a GET on url answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class LocalServer:
    """One server process (and its children) on 127.0.0.1: ``start()``, ``wait_ready()``, ``stop()``, ``logs()``.

    ``ready`` is a path polled until it answers 2xx (e.g. ``/readyz``), or a callable returning True when ready.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        port: int,
        ready: str | Callable[[], bool] = "/",
        log_dir: Path | str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | str | None = None,
        timeout: float = 90.0,
    ) -> None:
        self.name, self.argv, self.port, self.ready, self.timeout = name, list(argv), port, ready, timeout
        self.env, self.cwd = dict(env or {}), cwd
        folder = Path(log_dir) if log_dir else config.state_dir() / "servers"
        self.log_path = folder / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> LocalServer:
        """Start the process (a no-op while it runs); does not wait — see ``wait_ready``."""
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== delab.servers: starting {self.name} at {time.strftime('%F %T')} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "delab.servers", str(os.getpid()), "--", *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                start_new_session=True,  # its own process group, deaf to the notebook's interrupt button
            )
        _RUNNING.append(self)
        return self

    def _is_ready(self) -> bool:
        if callable(self.ready):
            try:
                return bool(self.ready())
            except Exception:
                return False
        return http_ok(f"{self.url}{self.ready}")

    def wait_ready(self, timeout: float | None = None) -> LocalServer:
        """Block until the server answers; ServerFailed (with its log) when it exits or takes too long."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            if self._is_ready():
                return self
            if not self.running:
                code = self.process.returncode if self.process else None
                self.stop()
                raise ServerFailed(
                    f"{self.name} exited (code {code}) while starting; end of {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.1)
        self.stop()
        raise ServerFailed(
            f"{self.name} did not answer within {timeout or self.timeout:.0f} s; end of {self.log_path}:\n"
            f"{tail(self.log_path)}"
        )

    def logs(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the whole process group, SIGKILL what lingers after ``grace`` seconds."""
        process = self.process
        if process is not None:
            _stop_group(process.pid, grace, lambda: process.poll() is not None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        with contextlib.suppress(ValueError):
            _RUNNING.remove(self)

    def __enter__(self) -> LocalServer:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LocalServer {self.name} {self.url} ({'running' if self.running else 'stopped'})>"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _stop_group(pgid: int, grace: float, gone: Callable[[], bool] = lambda: False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        gone()  # reaps our direct child, so the group can empty
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@atexit.register
def stop_all() -> None:
    """Stop every server this process started (also runs at interpreter exit)."""
    for server in reversed(list(_RUNNING)):
        with contextlib.suppress(Exception):
            server.stop()
    _RUNNING.clear()


# ------------------------------------------------------------------------------------------- the supervisor


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when our parent (the kernel) dies; a no-op elsewhere (the poll below covers it)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def supervise(parent: int, argv: list[str], grace: float = 10.0) -> int:
    """Run argv in our process group; end the group when we are told to or when ``parent`` is gone."""
    _die_with_parent()
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    child = subprocess.Popen(argv)  # same process group as us (we lead it)
    while child.poll() is None and not stopping:
        if os.getppid() != parent:  # the kernel died and we were re-parented
            break
        time.sleep(0.5)
    if child.poll() is None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # we signal our own group: stay to finish the job
        os.killpg(os.getpgrp(), signal.SIGTERM)
        deadline = time.monotonic() + grace
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # workers that outlived their master, or a master deaf to SIGTERM
        members = [pid for pid in _group_members(os.getpgrp()) if pid != os.getpid()]
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        child.wait()
    return child.returncode or 0


def _group_members(pgid: int) -> list[int]:
    members = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                members.append(int(proc.name))
    return members


if __name__ == "__main__":
    # python -m delab.servers PARENT_PID -- ARGV...
    sys.exit(supervise(int(sys.argv[1]), sys.argv[sys.argv.index("--") + 1 :]))


# ------------------------------------------------------------------ a server's source, run the way a server runs it


@contextlib.contextmanager
def elsewhere(prefix: str = "delab-server-"):
    """Run the block in an empty temporary folder (then return): as a packaged server runs, nothing lies beside its
    code, so a model read from a file next to the notebook is not found."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(here)


def import_source(source: str, folder: Path, stem: str) -> types.ModuleType:
    """Write a server's module ``source`` to ``folder/stem.py`` and import it from there, as the server would.

    The module is not left in ``sys.modules``, so importing another version of the source imports it afresh."""
    path = Path(folder) / f"{stem}.py"
    path.write_text(source)
    name = f"_delab_{stem}_{abs(hash(source))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module
