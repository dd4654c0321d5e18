"""Run Prefect 3 the self-hosted way from a notebook, and the two little services lab 01.02 talks to.

* ``setup("m01_l02")`` — call it before ``import prefect``: it points Prefect at a lab-local home
  (``PREFECT_HOME`` under the lab's folder: persisted results, profiles, logs) and a server database
  (``prefect_m01_l02`` in the stack's Postgres), turns analytics off and starts
  ``prefect server start --host 127.0.0.1 --port <free port>`` in a subprocess — the open-source, self-hosted
  counterpart of Prefect Cloud. Flows run in the notebook report to it; so does the runner below.
* ``serve(flow, name, ...)`` — serves a notebook-defined flow as a *deployment* from a separate runner process
  (``flow.serve()``), which polls the server and executes each triggered run in a subprocess of its own.
* ``RatesService`` — a tiny exchange-rate HTTP API on 127.0.0.1 that can be told to fail its next N requests:
  the flaky upstream the retry exercise runs against, built on ``delab.localhttp`` like the on-call channel the
  failure alerts are sent to (``delab.localhttp.Receiver``).

Everything started here is stopped by ``stop_all()``, which also runs at interpreter exit; the server and the
runner additionally watch their parent process and stop themselves when the notebook's kernel goes away.
Run as ``python -m delab.orchestration.prefect server|runner ...`` only by the functions of this module.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from delab import config, localhttp
from delab.localhttp import LocalHTTPService, ServedRequest

HOST = config.HOST
SERVER_START_TIMEOUT = 120  # a cold start migrates a fresh database: ~10-20 s on a laptop
FINAL_STATE_TYPES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

_STARTED: list[Any] = []  # everything this process started, stopped in reverse order by stop_all()
_SERVER: PrefectServer | None = None


def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM a process started in its own session (and its children), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python -m delab.orchestration.prefect ...`` in its own session, watching this process."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "delab.orchestration.prefect", *args, "--parent", str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # an interrupt in the notebook does not reach it; stop() ends the group
        )


# ------------------------------------------------------------------------------------------------ the server


@dataclass
class PrefectServer:
    """A local Prefect server in a subprocess; ``api_url`` is what ``PREFECT_API_URL`` points at."""

    home: Path
    port: int
    standby_runner: bool = False
    process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> PrefectServer:
        if not self.running:
            self.process = _spawn(["server", "--port", str(self.port)], self.log_path)
        return self

    def healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT) -> PrefectServer:
        """Block until the API answers (the first start creates the database: give it time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                if self.standby_runner:  # now, not earlier: its imports would slow the server's start on 2 cores
                    self.standby_runner = False
                    _STARTED.append(_StandbyRunner(self.home / "runners" / "standby"))
                return self
            if not self.running:
                raise RuntimeError(f"the Prefect server exited; last lines of {self.log_path}:\n{_tail(self.log_path)}")
            time.sleep(0.25)
        raise TimeoutError(f"the Prefect server did not answer within {timeout:.0f} s; see {self.log_path}")

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the server's REST API, e.g. ``server.api("GET", f"/flow_runs/{run_id}")``; returns the JSON."""
        import httpx

        response = httpx.request(method, f"{self.api_url}{path}", timeout=kwargs.pop("timeout", 10), **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def task_runs(self, flow_run_id: Any, expect: int = 1, timeout: float = 5.0) -> list[dict]:
        """The task runs of a flow run, once at least ``expect`` of them have a final state.

        Task runs reach the server as events that a server-side service records, a moment after the run ends.
        """
        deadline = time.monotonic() + timeout
        while True:
            runs = self.api("POST", "/task_runs/filter", json={"flow_runs": {"id": {"any_": [str(flow_run_id)]}}})
            done = [r for r in runs if (r.get("state") or {}).get("type") in FINAL_STATE_TYPES]
            if (len(done) >= expect and len(done) == len(runs)) or time.monotonic() > deadline:
                return runs
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            _stop_process_group(self.process)

    def __enter__(self) -> PrefectServer:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PrefectServer {self.ui_url} ({state}), PREFECT_HOME={self.home}>"


def server_database(lab: str) -> str:
    """An SQLAlchemy URL for the server's own database: ``prefect_<lab>`` in the stack's Postgres (created here).

    Prefect's default SQLite database answers 'database is locked' (HTTP 503) as soon as a runner, the server's
    services and an API client write at the same moment (upstream issue PrefectHQ/prefect#18934); Postgres is
    what a self-hosted production server uses anyway. Falls back to SQLite under PREFECT_HOME when the database
    cannot be created (a role without CREATEDB, say).
    """
    import psycopg

    from delab import clients

    name = f"prefect_{lab}"
    pg = config.postgres()
    try:
        with clients.postgres() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error:
        return ""
    return f"postgresql+asyncpg://{pg.user}:{pg.password}@{pg.host}:{pg.port}/{name}"


def prefect_env(home: Path, port: int, database_url: str = "") -> dict[str, str]:
    """The settings every Prefect process of the lab shares (the kernel, the server, the runner)."""
    database = {"PREFECT_API_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    return {
        **database,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://{HOST}:{port}/api",
        "PREFECT_SERVER_API_HOST": HOST,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # a served deployment picks a triggered run up within a second
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
        "PREFECT_CLI_PROMPT": "false",  # `prefect server start` must not ask about profiles in a subprocess
        # background services a one-notebook server does not need (kept: events, task runs, scheduler, triggers)
        **{
            f"PREFECT_SERVER_SERVICES_{service}_ENABLED": "false"
            for service in ("CANCELLATION_CLEANUP", "FOREMAN", "LATE_RUNS", "PAUSE_EXPIRATIONS", "REPOSSESSOR")
        },
        "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
    }


def setup(lab: str, *, reset_results: bool = True, standby_runner: bool = True) -> PrefectServer:
    """Configure Prefect for this lab and start its local server (returns at once; ``wait_ready()`` blocks).

    Call it before ``import prefect``. Re-running it in the same kernel returns the running server. With
    ``reset_results`` the persisted task results (the cache) of earlier notebook runs are deleted, so the lab
    starts cold every time; with ``standby_runner`` a runner process starts once the server answers and imports
    Prefect while the notebook works, so that ``serve()`` has one ready later.
    """
    global _SERVER
    if _SERVER is not None and _SERVER.running and _SERVER.home == config.lab_dir(lab) / "prefect":
        return _SERVER
    if _SERVER is not None:
        _SERVER.stop()
    home = config.lab_dir(lab) / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    if reset_results:
        import shutil

        shutil.rmtree(home / "storage", ignore_errors=True)
    port = free_port()
    for stale in ("PREFECT_API_KEY", "PREFECT_PROFILE", "PREFECT_API_DATABASE_CONNECTION_URL"):
        os.environ.pop(stale, None)  # never send a Prefect Cloud key to the local server, nor reuse another lab's DB
    os.environ.update(prefect_env(home, port, server_database(lab)))
    imported_before = "prefect" in sys.modules
    _SERVER = PrefectServer(home=home, port=port, standby_runner=standby_runner).start()
    _STARTED.append(_SERVER)  # started first: the server boots while this process imports Prefect
    if imported_before:  # a test session, a re-run: make the imported Prefect read the new settings
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
    from prefect.settings import get_current_settings

    # Prefect 3.9 ends every flow run by joining a heartbeat thread that sleeps in 1-second steps. Heartbeats only
    # help the server spot crashed runs of deployments; runs started from the notebook finish ~1 s sooner without.
    get_current_settings().flows.heartbeat_frequency = None
    return _SERVER


def current_server() -> PrefectServer:
    """The server ``setup()`` started in this process (checks use it to read the API)."""
    if _SERVER is None or not _SERVER.running:
        raise RuntimeError("no local Prefect server is running: run the lab's setup cell first")
    return _SERVER


# ------------------------------------------------------------------------------------------ served deployments


@dataclass
class ServedDeployment:
    """A deployment served by a runner process: trigger it with ``run_deployment(full_name)`` or the REST API."""

    id: str
    flow_name: str
    name: str
    process: subprocess.Popen
    log_path: Path

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        _stop_process_group(self.process, grace=3)  # a runner only pauses its deployments on the way out

    def __repr__(self) -> str:
        state = "served" if self.running else "stopped"
        return f"<ServedDeployment {self.full_name!r} id={self.id} ({state})>"


class _StandbyRunner:
    """A runner process started early: it imports Prefect while the notebook works, then waits for a flow to
    serve. ``serve()`` hands it one by writing a spec file, which saves the runner's start-up time later."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*"):
            old.unlink()
        self.log_path = folder / "runner.log"
        self.process = _spawn(["runner", "--standby", str(folder)], self.log_path)

    @property
    def available(self) -> bool:
        return self.process.poll() is None and not (self.folder / "spec.json").exists()

    def claim(self, spec: dict[str, Any]) -> subprocess.Popen:
        staged = self.folder / "spec.json.tmp"
        staged.write_text(json.dumps(spec, default=str))
        staged.rename(self.folder / "spec.json")  # atomic: the runner never reads half a file
        return self.process

    def stop(self) -> None:
        _stop_process_group(self.process)


def serve(
    flow: Any,
    name: str,
    *,
    cron: str | None = None,
    parameters: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    timeout: float = 60,
) -> ServedDeployment:
    """Serve ``flow`` as deployment ``name`` from a runner process; returns once the runner is polling.

    The flow object is pickled (cloudpickle, as Prefect itself does) so a flow defined in a notebook can be
    served; the runner executes each run of the deployment in a subprocess of its own.
    """
    import cloudpickle

    server = current_server().wait_ready()
    folder = server.home / "runners"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{flow.name}-{name}".replace("/", "_")
    for old in [d for d in _STARTED if isinstance(d, ServedDeployment) and d.full_name == f"{flow.name}/{name}"]:
        old.stop()
        _STARTED.remove(old)
    (folder / f"{stem}.pkl").write_bytes(cloudpickle.dumps(flow))
    spec = {
        "flow": str(folder / f"{stem}.pkl"),
        "serve": {
            "name": name,
            "cron": cron,
            "parameters": parameters or {},
            "tags": tags or [],
            "description": description,
        },
    }
    standby = next((s for s in _STARTED if isinstance(s, _StandbyRunner) and s.available), None)
    if standby is not None:
        _STARTED.remove(standby)
        process, log = standby.claim(spec), standby.log_path
    else:
        (folder / f"{stem}.json").write_text(json.dumps(spec, default=str))
        log = folder / f"{stem}.log"
        log.unlink(missing_ok=True)
        process = _spawn(["runner", "--spec", str(folder / f"{stem}.json")], log)
    deadline = time.monotonic() + timeout
    started = time.time()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the runner for {flow.name}/{name} exited; last lines of {log}:\n{_tail(log)}")
        with contextlib.suppress(Exception):
            found = server.api("GET", f"/deployments/name/{flow.name}/{name}")
            polled = found.get("last_polled")
            if found.get("status") == "READY" and polled and _iso_to_epoch(polled) >= started - 1:
                served = ServedDeployment(found["id"], flow.name, name, process, log)
                _STARTED.append(served)
                return served
        time.sleep(0.25)
    _stop_process_group(process)
    raise TimeoutError(f"the runner did not start serving {flow.name}/{name} within {timeout:.0f} s; see {log}")


def _iso_to_epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------------- the exchange-rate API

CURRENCIES = ("USD", "GBP", "CHF")
_BASE_RATES = {"USD": 1.0825, "GBP": 0.8571, "CHF": 0.9412}


def eur_rates(day: str | date) -> dict[str, float]:
    """The rates the service publishes for a day: 1 EUR in each currency (deterministic, a little wobbly)."""
    when = date.fromisoformat(str(day)[:10])
    wobble = ((when.toordinal() * 37) % 21 - 10) / 1000  # within ±1 %, different every day
    return {cur: round(rate * (1 + wobble * (i + 1) / 3), 4) for i, (cur, rate) in enumerate(_BASE_RATES.items())}


class RatesService(LocalHTTPService):
    """``GET /rates?day=YYYY-MM-DD`` → ``{"day", "base": "EUR", "rates": {"USD": …}}``; fails on demand.

    ``fail_next(n)`` makes the next ``n`` requests answer 503 Service Unavailable (a real API under load does the
    same); ``fail_next(None)`` makes every request fail until ``recover()``.
    """

    def __init__(self, fail_first: int = 0) -> None:
        self._failures_left: int | None = fail_first
        super().__init__()

    def fail_next(self, n: int | None) -> None:
        with self._lock:
            self._failures_left = n

    def recover(self) -> None:
        self.fail_next(0)

    def attempts(self, day: str | None = None) -> list[ServedRequest]:
        """The requests for /rates (of one day, if given), oldest first."""
        return [
            r for r in list(self.requests) if r.path.startswith("/rates") and (day is None or f"day={day}" in r.path)
        ]

    def respond(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        url = urlparse(path)
        if method != "GET" or url.path != "/rates":
            return 404, {"error": "not found: try GET /rates?day=YYYY-MM-DD"}
        with self._lock:
            if self._failures_left is None or self._failures_left > 0:
                if self._failures_left:
                    self._failures_left -= 1
                return 503, b"503 Service Unavailable: the rates backend is overloaded, try again later"
        day = parse_qs(url.query).get("day", [""])[0]
        try:
            rates = eur_rates(day)
        except ValueError:
            return 400, {"error": f"day must be YYYY-MM-DD, got {day!r}"}
        return 200, {"day": day, "base": "EUR", "rates": rates}

    def __repr__(self) -> str:
        return f"<RatesService {self.url}/rates?day=YYYY-MM-DD>"


# ------------------------------------------------------------------------------------------------- clean-up


def stop_all() -> None:
    """Stop everything this process started: runners, the server, the local HTTP services."""
    global _SERVER
    localhttp.stop_all()
    while _STARTED:
        thing = _STARTED.pop()
        with contextlib.suppress(Exception):
            thing.stop()
    _SERVER = None


atexit.register(stop_all)


# ------------------------------------------------------------------------------ the subprocesses' entry point


def _watch_parent(parent: int) -> None:
    """End this process when the process that started it is gone (a kernel that died without clean-up)."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(10)
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _run_server(port: int) -> None:
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", "--host", HOST, "--port", str(port), "--analytics-off"]
    app()


def _run_runner(spec_path: str | None, standby: str | None) -> None:
    import cloudpickle
    import prefect.flows  # noqa: F401 (a standby runner pays for the import before it is needed)

    if standby is not None:
        spec_file = Path(standby) / "spec.json"
        while not spec_file.exists():
            time.sleep(0.1)
        spec_path = str(spec_file)
    spec = json.loads(Path(spec_path).read_text())
    flow = cloudpickle.loads(Path(spec["flow"]).read_bytes())
    options = {k: v for k, v in spec["serve"].items() if v is not None}
    flow.serve(print_starting_message=False, **options)


def _main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m delab.orchestration.prefect")
    parser.add_argument("what", choices=["server", "runner"])
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--port", type=int)
    parser.add_argument("--spec")
    parser.add_argument("--standby")
    args = parser.parse_args(argv)
    _watch_parent(args.parent)
    runs: dict[str, Callable[[], None]] = {
        "server": lambda: _run_server(args.port),
        "runner": lambda: _run_runner(args.spec, args.standby),
    }
    runs[args.what]()


if __name__ == "__main__":
    _main(sys.argv[1:])
