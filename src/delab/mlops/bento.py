"""BentoML in a lab: a model store of the lab's own, ``bentoml build`` and ``bentoml serve`` on loopback.

``BENTOML_HOME`` points at the lab's folder (``model_store()``), so models and bentos a notebook saves never mix
with another lab's or the learner's own. ``serve(...)`` starts ``bentoml serve`` through ``delab.servers`` (a free
port on 127.0.0.1, waited for on ``/readyz``, stopped with its workers, never orphaned).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
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


def fingerprint(data: bytes) -> str:
    """A short content hash (stored as a label, so an identical model or bento is reused, not rebuilt)."""
    return hashlib.sha256(data).hexdigest()[:16]


def save_once(name: str, content: bytes, save: Callable[[dict[str, str]], object]):
    """The model ``name:latest`` if it was saved from the same content, else ``save(labels)``'s new model.

    ``content`` is what identifies the model (e.g. its pickle or ONNX bytes: a seeded model retrained on the same
    data gives the same bytes); ``save(labels)`` must save it with those extra labels. Re-running a notebook then
    keeps the same model version, and so can reuse the bento built from it."""
    import bentoml

    mark = fingerprint(content)
    try:
        latest = bentoml.models.get(f"{name}:latest")
        if latest.info.labels.get("delab_fingerprint") == mark:
            return latest
    except bentoml.exceptions.NotFound:
        pass
    return save({"delab_fingerprint": mark})


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
    wait: bool = True,
) -> LocalServer:
    """``bentoml serve TARGET`` (``module:Class`` or a bento tag) on 127.0.0.1 and a free port, ready to call.

    ``wait=False`` returns as soon as it is started (call ``wait_ready()`` before using it): start a server early
    and do other work while it boots."""
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
    server.start()
    return server.wait_ready() if wait else server


def _path_with_uv() -> str:
    """PATH with a ``uv`` on it: ``bentoml build`` insists on one (and would pip-install it otherwise); the
    project's own (bootstrapped by the Makefile into .delab/tools) does."""
    path = os.environ.get("PATH", "")
    tools = config.project_root() / ".delab" / "tools" / "bin"
    if shutil.which("uv") is None and (tools / "uv").exists():
        path = f"{tools}{os.pathsep}{path}"
    return path


BUILD_ENV = {"BENTOML_DO_NOT_TRACK": "true", "NO_COLOR": "1", "TERM": "dumb"}


def build(
    workdir: Path | str, service: str, name: str, *, include: list[str] | None = None, labels: dict | None = None
) -> str:
    """``bentoml build`` a service (``module:Class``) in ``workdir`` as bento ``name`` (give it a name of its own,
    not a model's: ``bentoml serve`` refuses a bento named like a model); returns its tag (``name:version``).

    A bento already built from the same files, options and models in the store is reused (label
    ``delab_fingerprint``): a second run of a notebook does not pay for ``bentoml build`` again."""
    import bentoml
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
    sources = sorted(p for pattern in spec["include"] for p in workdir.glob(pattern) if p.is_file())
    models = sorted(str(model.tag) for model in bentoml.models.list())
    mark = fingerprint(
        repr((spec, [(p.name, p.read_bytes()) for p in sources], models)).encode(errors="surrogateescape")
    )
    try:
        built = bentoml.list(name)
    except bentoml.exceptions.NotFound:  # no bento of that name yet
        built = []
    for bento in built:
        if bento.info.labels.get("delab_fingerprint") == mark:
            return str(bento.tag)
    spec["labels"] = {**spec["labels"], "delab_fingerprint": mark}
    # BentoML refuses to build from a folder below a hidden one ("Accessing hidden files is not allowed"), and a
    # lab's folder lives under the project's .delab/: build from a copy of the sources in a plain temporary folder.
    with tempfile.TemporaryDirectory(prefix="delab-bento-") as staging:
        context = Path(staging)
        for source in sources:
            target = context / source.relative_to(workdir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        (context / "bentofile.yaml").write_text(yaml.safe_dump(spec))
        # No colours: in a notebook's kernel, rich highlights parts of the printed tag that look like hex pairs
        # ("ce:4f") with escape codes, and the tag read back is then invalid — for some versions only.
        done = subprocess.run(
            [bentoml_bin(), "build", "--output", "tag", str(context)],
            capture_output=True,
            text=True,
            cwd=context,
            env={
                **os.environ,
                "BENTOML_DO_NOT_TRACK": "true",
                "PATH": _path_with_uv(),
                "NO_COLOR": "1",
                "TERM": "dumb",
            },
        )
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError("bentoml build failed: " + " | ".join(last))
    output = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", done.stdout)  # and strip any that got through
    match = re.search(r"__tag__:(\S+)", output) or re.search(r"([\w.-]+:[a-z0-9]+)\s*$", output.strip())
    if not match:
        raise RuntimeError(f"bentoml build printed no tag: {output.strip()[-200:]}")
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
