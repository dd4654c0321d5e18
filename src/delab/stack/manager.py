"""Start, stop, inspect and reset the stack: native processes (tracked by pid files) or the docker compose project.

``up`` is idempotent and starts services in parallel (Connect waits for Kafka), returning only when each one
really works (see ``probes``). ``down`` stops only processes this stack started: a pid file names each one, and
its command line must mention the stack's state folder, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from delab import config
from delab.stack import docker, layout, probes
from delab.stack.errors import PortTaken, ServiceFailed, StackError
from delab.stack.services import CORE, NAMES, SERVICES, NativeService, ProcessSpec

Progress = Callable[[str], None]

_children: list[subprocess.Popen] = []  # keep Popen objects alive so a notebook kernel can reap its children
_lock = threading.Lock()


@dataclass
class ServiceStatus:
    """One row of the status table."""

    service: str
    endpoint: str
    state: str  # running | unhealthy | degraded | stopped | port taken | down
    ui_url: str | None = None
    detail: str = ""
    pids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "running"


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One starter/stopper at a time, across processes too (two notebook kernels calling require() together)."""
    with _lock:
        path = layout.run_dir() / "stack.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def resolve(services: Iterable[str] | None) -> list[str]:
    """Requested services plus their dependencies, in start order (none requested: the core stack); unknown
    names are one-line errors."""
    wanted = list(services or CORE)
    unknown = [name for name in wanted if name not in NAMES]
    if unknown:
        raise StackError(f"unknown service {', '.join(unknown)}: choose from {', '.join(NAMES)}")
    closure: set[str] = set()

    def add(name: str) -> None:
        if name not in closure:
            closure.add(name)
            for dep in SERVICES[name].depends_on:
                add(dep)

    for name in wanted:
        add(name)
    return [name for name in NAMES if name in closure]


# --- processes -------------------------------------------------------------------------------------------------


def _start_time(pid: int) -> str:
    """The kernel's start time of a process (field 22 of /proc/PID/stat); '' where /proc is missing."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _read_pid(process: str) -> int | None:
    pid, _ = _read_pid_file(process)
    return pid


def _read_pid_file(process: str) -> tuple[int | None, str]:
    try:
        fields = layout.pid_file(process).read_text().split()
        return int(fields[0]), (fields[1] if len(fields) > 1 else "")
    except (OSError, ValueError, IndexError):
        return None, ""


def _reap(pid: int) -> None:
    for child in list(_children):
        if child.pid == pid:
            child.poll()
            _children.remove(child)
            return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int | None, started: str = "") -> bool:
    """True when pid runs and is not a zombie; with ``started`` (from the pid file) it must also be the very
    process the stack started, not a later one that got the same pid."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive but another user's (PostgreSQL runs as `postgres`)
    stat_file = Path(f"/proc/{pid}/stat")
    if not stat_file.exists():
        return True  # no /proc (macOS): trust kill(0)
    try:
        state = stat_file.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        _reap(pid)
        return False
    return not started or _start_time(pid) == started


def process_alive(process: str) -> bool:
    """True when the named process of the stack (e.g. ``flink-taskmanager``) runs."""
    pid, started = _read_pid_file(process)
    return pid_alive(pid, started)


def port_free(port: int, host: str = config.HOST) -> bool:
    """True when nothing listens on host:port (we could bind it)."""
    if probes.port_open(host, port, timeout=0.3):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str:
    """Who listens on a port, e.g. 'pid 4242 (java)', as far as `ss` can tell (may be empty)."""
    ss = shutil.which("ss")
    if ss is None:
        return ""
    try:
        out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return f"pid {match.group(2)} ({match.group(1)})" if match else ""


def port_taken_message(service: str, label: str, port: int) -> str:
    """The one line shown when a port is held by a process the stack did not start."""
    owner = port_owner(port)
    env = "DELAB_" + re.sub(r"\W", "_", label).upper() + "_PORT"
    return (
        f"{service} cannot start: {config.HOST}:{port} ({label}) is already in use"
        f"{' by ' + owner if owner else ''}. Stop that process, or choose another port: export {env}=<free port>"
    )


def _start(spec: ProcessSpec, preexec_fn: Callable[[], object] | None = None) -> int:
    """Start one process: its own session, output appended to its log, pid and kernel start time in its pid file
    (so a recycled pid is never signalled). ``preexec_fn`` runs in the child before exec (e.g. die with parent)."""
    log = layout.log_file(spec.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    layout.pid_file(spec.name).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env}
    with open(log, "ab") as out:
        out.write(f"\n===== delab.stack: starting {spec.name} at {time.strftime('%F %T')} =====\n".encode())
        out.flush()
        extra: dict = {"user": spec.user, "group": spec.user, "extra_groups": []} if spec.user else {}
        if preexec_fn is not None:
            extra["preexec_fn"] = preexec_fn
        child = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=spec.cwd,
            env=env,
            start_new_session=True,  # its own process group: stopped as a whole, deaf to the notebook's Ctrl-C
            **extra,
        )
    _children.append(child)
    layout.pid_file(spec.name).write_text(f"{child.pid} {_start_time(child.pid)}\n")
    return child.pid


def _stop(process: str, sig: int, timeout: float = 20.0) -> None:
    pid, started = _read_pid_file(process)
    if pid_alive(pid, started):
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pid_alive(pid, started) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while pid_alive(pid, started) and time.monotonic() < deadline + 5:
                time.sleep(0.1)
        _reap(pid)
    layout.pid_file(process).unlink(missing_ok=True)


def kill(process: str, sig: int = signal.SIGKILL) -> int:
    """Fault injection: send ``sig`` (default SIGKILL, a crash with no clean shutdown) to one process of the
    native stack, e.g. ``kafka``, ``connect`` or ``flink-taskmanager``. Returns its pid. ``up`` starts it again."""
    known = [name for service in SERVICES.values() for name in _process_names(service)]
    if process not in known:
        raise StackError(f"no stack process named {process!r}; one of: {', '.join(known)}")
    if config.profile() != "native":
        raise StackError(f"kill works on the native profile only (this is {config.profile()!r})")
    pid, started = _read_pid_file(process)
    if not pid_alive(pid, started):
        raise StackError(f"{process} is not running: `delab stack up` starts it")
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
    deadline = time.monotonic() + 20
    while sig == signal.SIGKILL and pid_alive(pid, started) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


def last_error(process: str) -> str:
    """The most telling line at the end of a process's log (for one-line failure messages)."""
    try:
        lines = layout.log_file(process).read_text(errors="replace").splitlines()[-200:]
    except OSError:
        return ""
    start = max((i for i, line in enumerate(lines) if line.startswith("===== delab.stack")), default=0)
    lines = [line.strip() for line in lines[start + 1 :] if line.strip()]
    for pattern in (r"\b(FATAL|ERROR|Exception|Error:|error:|panic)\b",):
        hits = [line for line in lines if re.search(pattern, line) and not line.startswith("at ")]
        if hits:
            return hits[-1][:240]
    return lines[-1][:240] if lines else ""


# --- native services -------------------------------------------------------------------------------------------


def _native_status(service: NativeService, probe: bool = True) -> ServiceStatus:
    specs_names = _process_names(service)
    pids = {name: _read_pid(name) for name in specs_names}
    alive = {name: process_alive(name) for name in specs_names}
    row = ServiceStatus(service.name, service.endpoint(), "stopped", service.ui_url())
    row.pids = [pid for name, pid in pids.items() if pid and alive[name]]
    if all(alive.values()):
        if not probe:
            row.state = "running"
            return row
        try:
            service.probe()
            row.state = "running"
        except probes.ProbeFailed as error:
            row.state, row.detail = "unhealthy", str(error)
        return row
    if any(alive.values()):
        dead = [name for name, ok in alive.items() if not ok]
        row.state, row.detail = "degraded", f"{', '.join(dead)} not running"
        return row
    if any(pids.values()):
        row.detail = "exited (killed or crashed): `delab stack up` restarts it"
    for label, port in service.ports().items():
        if not port_free(port):
            row.state = "port taken"
            owner = port_owner(port)
            row.detail = f"{config.HOST}:{port} ({label}) is held by {owner or 'a process the stack did not start'}"
            break
    return row


def _process_names(service: NativeService) -> list[str]:
    return service.process_names()


def _ensure(service: NativeService, progress: Progress, listening: Callable[[], None] = lambda: None) -> ServiceStatus:
    """Make one service run and answer; a no-op when it already does. ``listening`` is called as soon as the
    service's main port accepts connections (dependants may start then)."""
    current = _native_status(service, probe=False)
    if current.state == "running":
        try:
            service.probe()
            return _native_status(service, probe=False)
        except probes.ProbeFailed:
            pass  # alive but not answering yet (still starting?): wait below
        _wait_ready(service, _process_names(service), progress, time.monotonic(), listening)
        return _native_status(service, probe=False)
    if current.state == "degraded":
        names = _process_names(service)
        if process_alive(names[0]):
            # e.g. Flink's TaskManager killed under a live JobManager: start only what died, so the JobManager
            # (and the jobs it runs) survive, as on a real cluster where a lost TaskManager is replaced.
            progress(f"{service.name}: {current.detail}; starting it again")
            started = time.monotonic()
            for spec in service.processes():
                if not process_alive(spec.name):
                    _start(spec)
            _wait_ready(service, names, progress, started, listening)
            return _native_status(service, probe=False)
        progress(f"{service.name}: {current.detail}; restarting it")
        _stop_service(service)
    for label, port in service.ports().items():
        if not port_free(port):
            raise PortTaken(port_taken_message(service.name, label, port))
    started = time.monotonic()
    service.prepare()
    for spec in service.processes():
        _start(spec)
    progress(f"{service.name}: started, waiting until it answers")
    _wait_ready(service, _process_names(service), progress, started, listening)
    service.after_ready({name: pid for name in _process_names(service) if (pid := _read_pid(name))})
    progress(f"{service.name}: ready in {time.monotonic() - started:.1f} s")
    return _native_status(service, probe=False)


def _wait_ready(
    service: NativeService,
    processes: list[str],
    progress: Progress,
    started: float,
    listening: Callable[[], None] = lambda: None,
) -> None:
    deadline = started + service.start_timeout
    reason = "no answer yet"
    main_port = next(iter(service.ports().values()))
    while time.monotonic() < deadline:
        if probes.port_open(config.HOST, main_port, timeout=0.2):
            listening()
        for name in processes:
            if not process_alive(name):
                hint = last_error(name)
                raise ServiceFailed(
                    f"{service.name} exited while starting{': ' + hint if hint else ''} "
                    f"(full log: delab stack logs {service.name})"
                )
        try:
            if service.bootstrap():
                service.probe()
                return
        except probes.ProbeFailed as error:
            reason = str(error)
        time.sleep(0.25)
    raise ServiceFailed(
        f"{service.name} did not answer within {service.start_timeout:.0f} s ({reason}); "
        f"see `delab stack logs {service.name}`"
    )


def _stop_service(service: NativeService) -> None:
    # reversed: Flink's TaskManager goes before its JobManager
    stop_signal = signal.SIGINT if service.name == "postgres" else signal.SIGTERM
    for name in reversed(_process_names(service)):
        _stop(name, stop_signal)


def _native_up(names: list[str], progress: Progress) -> list[ServiceStatus]:
    # A dependant starts once its dependency *listens* (not once it fully answers): Connect's JVM warms up while
    # Kafka finishes starting, and waits for the broker by itself. That takes seconds off a cold start on 2 cores.
    listening = {name: threading.Event() for name in names}
    results: dict[str, ServiceStatus] = {}
    errors: dict[str, StackError] = {}

    def run(name: str) -> None:
        service = SERVICES[name]
        try:
            for dep in service.depends_on:
                listening[dep].wait()
                if dep in errors:
                    raise ServiceFailed(f"{name} needs {dep}, which did not start")
            results[name] = _ensure(service, progress, listening[name].set)
        except StackError as error:
            errors[name] = error
        except Exception as error:  # a bug or an OS error: still one line
            errors[name] = ServiceFailed(f"{name} failed to start: {type(error).__name__}: {error}")
        finally:
            listening[name].set()

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        list(pool.map(run, names))
    if errors:
        first = next(name for name in names if name in errors and "which did not start" not in errors[name].message)
        raise errors[first]
    return [results[name] for name in names]


# --- docker / external profiles --------------------------------------------------------------------------------


def compose_file() -> Path:
    return docker.compose_file()


def compose_command(*args: str) -> list[str]:
    """`docker compose` on the project's compose file (run it with ``docker.compose_env()``)."""
    return docker.compose_command(*args)


def _require_docker() -> None:
    problem = docker.check_engine()
    if problem:
        raise StackError(f"DELAB_STACK=docker but {problem}; or use the native profile: export DELAB_STACK=native")


def _probe_row(name: str) -> ServiceStatus:
    if name in docker.ON_DEMAND and name not in SERVICES:
        port = config.port("schema_registry" if name == "registry" else name)
        row = ServiceStatus(name, f"{config.HOST}:{port}", "running", f"http://{config.HOST}:{port}")
        probe: Callable[[], None] = lambda: docker.probe_on_demand(name)  # noqa: E731
    else:
        service = SERVICES[name]
        row = ServiceStatus(name, service.endpoint(), "running", service.ui_url())
        probe = service.probe
    try:
        probe()
    except probes.ProbeFailed as error:
        row.state, row.detail = "down", str(error)
    return row


def _split_docker(services: Iterable[str] | None) -> tuple[list[str], list[str]]:
    """(core services with their dependencies, on-demand services) of a docker-profile request."""
    wanted = list(services or CORE)
    on_demand = [name for name in wanted if name in docker.ON_DEMAND]
    core = [name for name in wanted if name not in docker.ON_DEMAND]
    if on_demand:
        core += ["postgres", "s3"]  # the registry's and MLflow's stores
    return (resolve(core) if core else []), on_demand


def _docker_up(services: Iterable[str] | None, progress: Progress) -> list[ServiceStatus]:
    _require_docker()
    core, on_demand = _split_docker(services)
    names = core + on_demand
    taken = docker.check_ports(names)
    if taken:
        raise PortTaken(taken[0])
    progress(f"docker compose up --wait {' '.join(docker.compose_services(names))}")
    result = docker.run("up", "-d", "--wait", *docker.compose_services(names), on_demand=bool(on_demand))
    if result.returncode != 0:
        # a JVM that died while booting on an overloaded machine (Flink's RPC start timing out) gets one more
        # try; `up` leaves the healthy containers alone
        progress("docker compose up failed; trying once more")
        result = docker.run("up", "-d", "--wait", *docker.compose_services(names), on_demand=bool(on_demand))
    if result.returncode != 0:
        raise ServiceFailed(f"docker compose up failed (exit {result.returncode}): see `delab stack logs SERVICE`")
    # a healthy container is not yet a working service (e.g. the bucket, a first produce): wait for the probes
    deadline = time.monotonic() + 120
    while True:
        rows = [_probe_row(name) for name in names]
        if all(row.ok for row in rows) or time.monotonic() > deadline:
            break
        time.sleep(1)
    down_rows = [row for row in rows if not row.ok]
    if down_rows:
        row = down_rows[0]
        raise ServiceFailed(
            f"{row.service} does not answer after compose up ({row.detail}): delab stack logs {row.service}"
        )
    return rows


# --- public API ------------------------------------------------------------------------------------------------


def up(services: Iterable[str] | None = None, progress: Progress | None = None) -> list[ServiceStatus]:
    """Start the services (and what they depend on) and wait until each really works; idempotent."""
    progress = progress or _quiet
    profile = config.profile()
    if profile == "docker":
        return _docker_up(services, progress)
    names = resolve(services)
    if profile == "native":
        with _exclusive():
            return _native_up(names, progress)
    raise StackError("DELAB_STACK=external: the stack is yours to run; `delab stack status` checks that it answers")


def down(services: Iterable[str] | None = None) -> list[ServiceStatus]:
    """Stop the services this stack started (dependants first: Connect before Kafka); other processes are never
    touched. None named: every service, on-demand ones included."""
    if config.profile() == "docker":
        _require_docker()
        if services:
            core, on_demand = _split_docker(services)
            wanted = [name for name in services if name in core or name in on_demand]
            docker.run("stop", *docker.compose_services(wanted), on_demand=True)
            return [ServiceStatus(name, "", "stopped") for name in wanted]
        docker.run("down", on_demand=True)
        return [ServiceStatus(name, "", "stopped") for name in CORE]
    names = list(services) if services else list(NAMES)
    resolve(names)
    with _exclusive():
        for name in [name for name in reversed(NAMES) if name in names]:
            _stop_service(SERVICES[name])
    return [_native_status(SERVICES[name], probe=False) for name in names]


def status(services: Iterable[str] | None = None) -> list[ServiceStatus]:
    """What is running and answering right now (probes run in parallel). None named: the core services, plus
    the on-demand ones that are not simply stopped."""
    names = list(services) if services else list(NAMES)
    resolve([name for name in names if not (config.profile() == "docker" and name in docker.ON_DEMAND)])
    check = (lambda name: _native_status(SERVICES[name])) if config.profile() == "native" else _probe_row
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        rows = list(pool.map(check, names))
    if services:
        return rows
    return [row for row in rows if row.service in CORE or row.state not in ("stopped", "down")]


def logs(service: str, lines: int = 50) -> str:
    """The last lines of a service's log (both Flink processes for `flink`)."""
    if config.profile() == "docker":
        _require_docker()
        if service not in docker.ON_DEMAND:
            resolve([service])
        tail = ["--no-color", "--tail", str(lines), *docker.compose_services([service])]
        out = docker.run("logs", *tail, on_demand=True, capture=True)
        return out.stdout + out.stderr
    resolve([service])
    parts = []
    for name in _process_names(SERVICES[service]):
        path = layout.log_file(name)
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log yet)"]
        parts.append(f"==> {path} <==\n" + "\n".join(text))
    return "\n".join(parts)


def reset() -> None:
    """Stop the stack and wipe its data, configs and logs (the built jars and binaries stay)."""
    if config.profile() == "docker":
        _require_docker()
        docker.run("down", "-v", on_demand=True)
        return
    down()
    pg_home = layout.data_dir("postgres")
    if pg_home.is_symlink():
        shutil.rmtree(pg_home.resolve(), ignore_errors=True)
        pg_home.unlink()
    for folder in (layout.stack_dir() / "data", layout.run_dir()):
        shutil.rmtree(folder, ignore_errors=True)
