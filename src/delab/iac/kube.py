"""Kubernetes for the labs: the stack's API server (``kubernetes`` service) through kubectl, the Python client and
kopf, plus offline validation of manifests.

The plane is real (etcd, kube-apiserver, controller-manager, scheduler) but its only node is simulated by kwok:
pods are scheduled, get an IP and report Running, yet **no container ever starts** — no image is pulled, no
process runs, ``kubectl logs``/``exec`` have nothing to reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

from delab.stack.services import kubernetes as plane

#: the Kubernetes minor version the offline schemas are taken for (the plane's version)
SCHEMA_VERSION = plane.VERSION.removeprefix("v").rsplit(".", 1)[0]


class KubectlError(RuntimeError):
    """kubectl refused something; the message is kubectl's own first error line."""


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 60) -> str:
    """Run the plane's kubectl as admin; returns stdout, raises KubectlError with kubectl's message on failure."""
    result = plane.kubectl(*args, stdin=stdin, timeout=timeout)
    if check and result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()] or ["(no message)"]
        raise KubectlError(" / ".join(lines[:3])[:600])
    return result.stdout


def apply(manifests: list[dict[str, Any]] | dict[str, Any], *extra: str) -> str:
    """``kubectl apply --validate=strict`` of one or more manifests (a List); extra flags such as
    ``--dry-run=server`` pass through. Returns kubectl's summary lines."""
    items = manifests if isinstance(manifests, list) else [manifests]
    document = {"apiVersion": "v1", "kind": "List", "items": items}
    return kubectl("apply", "--validate=strict", *extra, "-f", "-", stdin=json.dumps(document))


def get(kind: str, *args: str) -> dict[str, Any]:
    """``kubectl get KIND ARGS -o json`` as a dict."""
    return json.loads(kubectl("get", kind, *args, "-o", "json"))


def ensure_namespace(name: str) -> str:
    """Create a namespace unless it exists (idempotent); returns its name."""
    apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def wait_rollout(deployment: str, namespace: str, timeout_s: int = 60) -> None:
    """Wait until a Deployment's pods are all Running and Ready (kwok makes them so: nothing runs)."""
    kubectl(
        "rollout", "status", f"deployment/{deployment}", "-n", namespace, f"--timeout={timeout_s}s",
        timeout=timeout_s + 30,
    )  # fmt: skip


def wait_established(crd_name: str, timeout_s: int = 30) -> None:
    """Wait until the API server serves a CustomResourceDefinition's resource. (Polled: `kubectl wait` fails
    instead of waiting while a new CRD has no conditions yet.)"""

    def established() -> bool:
        conditions = get("crd", crd_name).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    wait_for(established, timeout_s=timeout_s, what=f"CRD {crd_name} established")


def offline_error(manifest: dict[str, Any], version: str = SCHEMA_VERSION) -> str | None:
    """The first schema error of a manifest against Kubernetes' published OpenAPI schemas (kubernetes-validate,
    strict: unknown fields are errors), as ``path: message``; None when valid. No API server involved."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path) or "(top)"
        return f"{path}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError:
        return f"(top): no schema for {manifest.get('apiVersion')}/{manifest.get('kind')} in Kubernetes {version}"
    return None


def api_client():
    """A ``kubernetes.client.ApiClient`` on the plane, from the admin kubeconfig."""
    import kubernetes

    return kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig()))


# --- JSON Schema -> a CRD's structural schema ---------------------------------------------------------------------

_PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def structural_schema(schema: dict[str, Any], max_depth: int = 4) -> dict[str, Any]:
    """A CRD's ``openAPIV3Schema`` from a JSON Schema with ``$defs``: references inlined (a type met again inside
    itself, or deeper than ``max_depth`` references, becomes an object that keeps any field — the size of the CRD
    stays reasonable), ``const`` as a one-value ``enum``, string-or-number as ``x-kubernetes-int-or-string``, and
    open objects as ``x-kubernetes-preserve-unknown-fields``. Objects with properties are closed by the API server
    itself: unknown fields are pruned, or refused with ``kubectl apply --validate=strict``."""
    definitions = schema.get("$defs", {})

    def convert(node: dict[str, Any], depth: int, seen: frozenset[str]) -> dict[str, Any]:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in seen or depth >= max_depth or name not in definitions:
                return dict(_PRESERVE)
            return convert(definitions[name], depth + 1, seen | {name})
        if "const" in node:
            return {"type": "string", "enum": [node["const"]]}
        kind = node.get("type")
        if isinstance(kind, list):
            return {"x-kubernetes-int-or-string": True}
        if kind is None:
            return {"x-kubernetes-preserve-unknown-fields": True}
        if kind == "object":
            out: dict[str, Any] = {"type": "object"}
            if node.get("properties"):
                out["properties"] = {key: convert(value, depth, seen) for key, value in node["properties"].items()}
                if node.get("required"):
                    out["required"] = list(node["required"])
            elif isinstance(node.get("additionalProperties"), dict):
                out["additionalProperties"] = convert(node["additionalProperties"], depth, seen)
            else:
                out["x-kubernetes-preserve-unknown-fields"] = True
            return out
        if kind == "array":
            return {"type": "array", "items": convert(node.get("items", {}), depth, seen)}
        keep = ("type", "pattern", "maxLength", "enum", "minimum", "maximum", "format")
        return {key: value for key, value in node.items() if key in keep}

    root = {key: value for key, value in schema.items() if key not in ("$defs", "$schema")}
    return convert(root, 0, frozenset())


# --- kopf, embedded ---------------------------------------------------------------------------------------------


def kopf_registry():
    """A fresh kopf registry with a login handler for the plane (client certificates of the admin user)."""
    import kopf

    registry = kopf.OperatorRegistry()
    pki = plane.pki_dir()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=plane.Kubernetes().endpoint(),
            ca_path=str(pki / "ca.crt"),
            certificate_path=str(pki / "admin.crt"),
            private_key_path=str(pki / "admin.key"),
        )

    return registry


@contextlib.contextmanager
def running_operator(registry: Any, namespace: str, startup_timeout_s: float = 30) -> Iterator[None]:
    """Run a kopf operator (the handlers of ``registry``) in a background thread, watching one namespace, until the
    ``with`` block ends. ``standalone``: no peering objects, one operator instance."""
    import kopf

    ready, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def settings(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = 40  # post only errors as Kubernetes events
        settings.watching.server_timeout = 30

    kopf.on.startup(registry=registry)(settings)

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry, namespaces=[namespace], standalone=True, ready_flag=ready, stop_flag=stop
                )
            )
        except BaseException as error:
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=run, name=f"kopf-{namespace}", daemon=True)
    thread.start()
    if not ready.wait(startup_timeout_s) or failure:
        stop.set()
        raise RuntimeError(f"the kopf operator did not start: {failure[0] if failure else 'timeout'}")
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)


def wait_for(condition, timeout_s: float = 30, interval_s: float = 0.3, what: str = "the condition"):
    """Poll ``condition()`` until it returns something truthy; returns it, or raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met after {timeout_s:.0f} s")
        time.sleep(interval_s)


def server_error(result: subprocess.CompletedProcess) -> str:
    """kubectl's error text of a failed call (one line)."""
    return " ".join(result.stderr.split())[:600]


__all__ = [
    "SCHEMA_VERSION",
    "KubectlError",
    "api_client",
    "apply",
    "ensure_namespace",
    "get",
    "kopf_registry",
    "kubectl",
    "offline_error",
    "running_operator",
    "structural_schema",
    "wait_established",
    "wait_for",
    "wait_rollout",
]
