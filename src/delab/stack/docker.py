"""The docker profile: the compose project of infra/docker, run with the port table of ``delab.config``.

``delab.config`` stays the one source of truth: every ``docker compose`` call gets ``DELAB_<NAME>_PORT`` for each
port of the table (offset and overrides applied), which compose.yaml interpolates. A compose project name per
port offset lets a docker stack run beside another one. ``doctor_checks`` says what is missing with the fix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from delab import config
from delab.stack import layout, probes

#: delab service name -> compose services (the core stack); Flink is two containers.
CORE_SERVICES: dict[str, list[str]] = {
    "kafka": ["kafka"],
    "connect": ["connect"],
    "postgres": ["postgres"],
    "s3": ["s3"],
    "flink": ["flink-jobmanager", "flink-taskmanager"],
}
#: Started on demand (compose profile "services"), never by a plain `delab stack up`.
ON_DEMAND: dict[str, list[str]] = {"registry": ["registry"], "mlflow": ["mlflow"]}
ON_DEMAND_PROFILE = "services"

#: The host ports each service publishes (names of delab.config's port table); Connect and Flink share the host's
#: network and listen on these ports themselves.
PUBLISHED: dict[str, tuple[str, ...]] = {
    "kafka": ("kafka",),
    "connect": ("connect",),
    "postgres": ("postgres",),
    "s3": ("s3",),
    "flink": ("flink", "flink_rpc"),
    "registry": ("schema_registry", "schema_registry_management"),
    "mlflow": ("mlflow",),
}


def compose_file() -> Path:
    return layout.infra_dir() / "docker" / "compose.yaml"


def project_name() -> str:
    """``delab``, or ``delab-o<offset>`` with DELAB_PORT_OFFSET, so two docker stacks keep separate volumes."""
    offset = config.port_offset()
    return "delab" if offset == 0 else f"delab-o{offset}"


def port_variable(name: str) -> str:
    """The compose variable of a port of the table, e.g. ``DELAB_SCHEMA_REGISTRY_PORT`` (as config.port reads)."""
    return f"DELAB_{name.upper()}_PORT"


def compose_env() -> dict[str, str]:
    """The environment of a compose call: ours plus every port of the table."""
    return {**os.environ, **{port_variable(name): str(config.port(name)) for name in config.DEFAULT_PORTS}}


def compose_command(*args: str, on_demand: bool = False) -> list[str]:
    """`docker compose` on the project's compose file (``on_demand`` adds the profile of registry and MLflow)."""
    profile = ["--profile", ON_DEMAND_PROFILE] if on_demand else []
    return ["docker", "compose", "-f", str(compose_file()), "-p", project_name(), *profile, *args]


def run(*args: str, on_demand: bool = False, capture: bool = False) -> subprocess.CompletedProcess:
    """Run one compose command with the port table in its environment."""
    return subprocess.run(
        compose_command(*args, on_demand=on_demand),
        env=compose_env(),
        capture_output=capture,
        text=True,
    )


def compose_services(names: list[str]) -> list[str]:
    table = {**CORE_SERVICES, **ON_DEMAND}
    return [svc for name in names for svc in table.get(name, [name])]


def probe_on_demand(name: str) -> None:
    """Readiness of an on-demand service: the registry's /health/ready, MLflow's /health."""
    url = {
        "registry": f"http://{config.HOST}:{config.port('schema_registry_management')}/health/ready",
        "mlflow": f"http://{config.HOST}:{config.port('mlflow')}/health",
    }[name]
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            if answer.status != 200:
                raise probes.ProbeFailed(f"{url} answered {answer.status}")
    except (OSError, urllib.error.URLError) as error:
        raise probes.ProbeFailed(f"{url}: {error}") from None


# --- doctor --------------------------------------------------------------------------------------------------------

ENGINE_FIX = (
    "start Docker (Docker Desktop, colima, `sudo systemctl start docker`); on a bare Debian machine as root: "
    "scripts/docker-engine install && scripts/docker-engine start && eval $(scripts/docker-engine env)"
)


def check_engine() -> str | None:
    """None when a Docker engine answers, else the problem and its fix."""
    if shutil.which("docker") is None:
        return f"no docker CLI on PATH: install Docker ({ENGINE_FIX})"
    if config.docker_daemon_answers():
        return None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return f"no Docker engine answers at {where}: {ENGINE_FIX}"


def check_compose_plugin() -> str | None:
    """None when `docker compose` (the v2+ CLI plugin) runs, else the fix."""
    if shutil.which("docker") is None:
        return None  # check_engine already says it
    try:
        out = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`docker compose` did not run ({error})"
    if out.returncode != 0:
        return (
            "the compose plugin is missing (`docker compose` fails): install docker-compose-plugin with your "
            "Docker, or build it: scripts/docker-engine plugin"
        )
    return None


def own_ports() -> set[int]:
    """Host ports held by this compose project's running containers (not a conflict)."""
    if not config.docker_daemon_answers():
        return set()
    out = run("ps", "--status", "running", "--services", capture=True)
    running = set(out.stdout.split()) if out.returncode == 0 else set()
    return {
        config.port(port)
        for name, services in {**CORE_SERVICES, **ON_DEMAND}.items()
        if running.intersection(services)
        for port in PUBLISHED[name]
    }


def check_ports(names: list[str]) -> list[str]:
    """A line per port the stack would publish that another process holds, with the fix."""
    from delab.stack import manager

    mine = own_ports()
    problems = []
    for name in names:
        for port_name in PUBLISHED.get(name, ()):
            port = config.port(port_name)
            if port not in mine and not manager.port_free(port):
                problems.append(manager.port_taken_message(name, port_name, port))
    return problems
