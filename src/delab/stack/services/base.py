"""What every native service shares: the process description, the base class and JVM flags."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from delab import config
from delab.stack import layout

HOST = config.HOST


HOST = config.HOST


@dataclass
class ProcessSpec:
    """One OS process of a service."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None  # run as this OS user (PostgreSQL refuses to run as root)
    stop_signal: int = signal.SIGTERM


class NativeService:
    """Base class: a named service with ports, processes, a bootstrap step and a readiness probe."""

    name: str = ""
    #: started on first ``require()`` (or ``delab stack up NAME``), not with the core stack
    on_demand: bool = False
    depends_on: tuple[str, ...] = ()
    start_timeout: float = 120.0

    def ports(self) -> dict[str, int]:
        """Every port the service listens on (label → port), checked free before it starts."""
        return {self.name: config.port(self.name)}

    def endpoint(self) -> str:
        return f"{HOST}:{config.port(self.name)}"

    def ui_url(self) -> str | None:
        return None

    def prepare(self) -> None:
        """Check prerequisites, write configuration, initialise data on first start."""

    def processes(self) -> list[ProcessSpec]:
        raise NotImplementedError

    def bootstrap(self) -> bool:
        """Called while waiting for readiness until it returns True (e.g. create roles once the server answers)."""
        return True

    def probe(self) -> None:
        """Raise ProbeFailed unless the service really works (the same probe serves every profile)."""
        raise NotImplementedError

    def process_names(self) -> list[str]:
        """The names of its OS processes (pid and log files), without preparing anything."""
        return [self.name]

    def after_ready(self, pids: dict[str, int]) -> None:
        """Called once the service answers after a start (pids by process name)."""


def java_env() -> dict[str, str]:
    home = layout.java_home()
    return {"JAVA_HOME": str(home)} if home else {}


def write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fast_start_flags() -> list[str]:
    """JVM flags that trade peak throughput for a start on 2 cores that costs a third less CPU: the C1 compiler
    only, and the serial collector (small heaps). DELAB_JVM_FAST_START=0 restores the JVM defaults (G1, C2)."""
    if os.environ.get("DELAB_JVM_FAST_START", "1") == "0":
        return ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
    return ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]


def cds_flags(process: str, jars: list[str]) -> list[str]:
    """Class-data sharing: the first run of a JVM records the classes it loaded into an archive when it exits
    (``down``); later starts map that archive and spend ~40% less CPU loading classes. The archive is named after
    the Java binary, flags and jars, so a new jar set or JDK simply records a new one. DELAB_JVM_CDS=0 turns it off.
    """
    if os.environ.get("DELAB_JVM_CDS", "1") == "0":
        return []
    fingerprint = [layout.java_bin(), *fast_start_flags()]
    for jar in sorted(jars):
        with contextlib.suppress(OSError):
            fingerprint.append(f"{jar}:{os.path.getsize(jar)}:{int(os.path.getmtime(jar))}")
    key = hashlib.sha1("\n".join(fingerprint).encode()).hexdigest()[:12]
    folder = layout.build_dir() / "cds"
    archive = folder / f"{process}-{key}.jsa"
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}"]
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{process}-*.jsa"):
        stale.unlink(missing_ok=True)
    return [f"-XX:ArchiveClassesAtExit={archive}"]


def jvm(heap: str) -> list[str]:
    return [
        layout.java_bin(),
        "-Xms64m",
        f"-Xmx{heap}",
        *fast_start_flags(),
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
    ]


def wait_for_dependency(service: str, probe, what: str, timeout: float = 60.0) -> None:
    """Wait until a dependency answers its probe. Dependants start once their dependencies *listen* (see
    manager._native_up); a service whose ``prepare`` uses one (a database made as the learner role, say) waits
    here until it has finished its own bootstrap — on a fresh cluster the role exists only then."""
    import time

    from delab.stack.errors import ServiceFailed
    from delab.stack.probes import ProbeFailed

    deadline, reason = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            probe()
            return
        except ProbeFailed as error:
            reason = str(error)
        time.sleep(0.25)
    raise ServiceFailed(f"{service} needs {what}, which did not answer within {timeout:.0f} s ({reason})")
