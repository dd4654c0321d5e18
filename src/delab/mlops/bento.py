"""BentoML in a lab: a model store of the lab's own, ``bentoml build`` and ``bentoml serve`` on loopback.

``BENTOML_HOME`` points at the lab's folder (``model_store()``), so models and bentos a notebook saves never mix
with another lab's or the learner's own. ``serve(...)`` starts ``bentoml serve`` through ``delab.servers`` (a free
port on 127.0.0.1, waited for on ``/readyz``, stopped with its workers, never orphaned).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from delab import config
from delab.servers import LocalServer, free_port

READY_PATH = "/readyz"


def model_store(lab: str) -> Path:
    """Set ``BENTOML_HOME`` to ``<lab folder>/bentoml`` (before ``import bentoml``) and return it."""
    home = config.lab_dir(lab) / "bentoml"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    return home


def bentoml_bin() -> str:
    """The ``bentoml`` command of this interpreter's environment."""
    candidate = Path(sys.executable).parent / "bentoml"
    return str(candidate) if candidate.exists() else "bentoml"


def serve(
    target: str,
    *,
    name: str = "bento",
    workdir: Path | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 90.0,
    extra_args: list[str] | None = None,
) -> LocalServer:
    """``bentoml serve TARGET`` (``module:Class`` or a bento tag) on 127.0.0.1 and a free port, ready to call."""
    port = free_port()
    argv = [bentoml_bin(), "serve", target, "--host", config.HOST, "--port", str(port), *(extra_args or [])]
    server = LocalServer(
        name,
        argv,
        port=port,
        ready=READY_PATH,
        log_dir=Path(os.environ.get("BENTOML_HOME", config.state_dir())) / "logs",
        env={"BENTOML_DO_NOT_TRACK": "true", **(env or {})},
        cwd=workdir,
        timeout=timeout,
    )
    return server.start().wait_ready()


def _path_with_uv() -> str:
    """PATH with a ``uv`` on it: ``bentoml build`` insists on one (and would pip-install it otherwise); the
    project's own (bootstrapped by the Makefile into .delab/tools) does."""
    path = os.environ.get("PATH", "")
    tools = config.project_root() / ".delab" / "tools" / "bin"
    if shutil.which("uv") is None and (tools / "uv").exists():
        path = f"{tools}{os.pathsep}{path}"
    return path


def build(
    workdir: Path | str, service: str, name: str, *, include: list[str] | None = None, labels: dict | None = None
) -> str:
    """``bentoml build`` a service (``module:Class``) in ``workdir`` as bento ``name`` (give it a name of its own,
    not a model's: ``bentoml serve`` refuses a bento named like a model); returns its tag (``name:version``)."""
    import yaml

    workdir = Path(workdir)
    # No package lock: locking resolves every requirement against a package index (uv pip compile), which a
    # laptop offline or a CI runner cannot reach; the bento records the packages without exact pins instead.
    spec = {
        "service": service,
        "name": name,
        "include": include or ["*.py"],
        "labels": labels or {},
        "python": {"lock_packages": False},
    }
    (workdir / "bentofile.yaml").write_text(yaml.safe_dump(spec))
    done = subprocess.run(
        [bentoml_bin(), "build", "--output", "tag", str(workdir)],
        capture_output=True,
        text=True,
        cwd=workdir,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "true", "PATH": _path_with_uv()},
    )
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError("bentoml build failed: " + " | ".join(last))
    match = re.search(r"__tag__:(\S+)", done.stdout) or re.search(r"([\w.-]+:[a-z0-9]+)\s*$", done.stdout.strip())
    if not match:
        raise RuntimeError(f"bentoml build printed no tag: {done.stdout.strip()[-200:]}")
    return match.group(1)


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of one metric in a Prometheus text exposition: ``[(labels, value), ...]``."""
    samples = []
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)", line)
        if not match or match.group(1) != name:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        samples.append((labels, float(match.group(4))))
    return samples


def metric_total(text: str, name: str, **where: str) -> float:
    """The sum of a metric's samples whose labels match ``where`` (e.g. ``endpoint="/predict"``)."""
    samples = metric_samples(text, name)
    return sum(value for labels, value in samples if all(labels.get(k) == v for k, v in where.items()))
