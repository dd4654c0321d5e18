"""Lab 06.03's model router: versions from the MLflow registry behind one endpoint, with a traffic split, a
shadow and per-version counts — the part of a serving platform that does blue/green, canaries and rollbacks.

    router = rollout.serve(model_name="shop-order-value")          # a real HTTP server on 127.0.0.1
    rollout.deploy(router, stable="@champion", canary="@challenger", canary_percent=10)
    httpx.post(f"{router.url}/predict", json={"key": "customer-42", "rows": [[...]]}).json()
    # {"version": "2", "role": "canary", "predictions": [...]}
    rollout.stats(router)   # per version: requests, errors, latencies; shadow comparisons

``deploy`` resolves aliases (``@champion``) to version numbers in the registry **at deploy time** and loads each
version with ``mlflow.pyfunc.load_model("models:/NAME/VERSION")`` inside the router; versions already loaded stay
loaded, so a switch (blue/green) or a rollback is one call, without a cold start. The split is sticky: a
request's ``key`` (a customer id) is hashed (sha256) into 100 buckets, buckets below ``canary_percent`` go to the
canary. A shadow version gets a copy of every request; its answer is recorded, never returned.

Run as ``python -m delab.mlops.rollout --port N --model NAME`` (what ``serve`` does, through ``delab.servers``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from typing import Any

import numpy as np

from delab import config
from delab.servers import LocalServer, free_port


def bucket(key: str) -> int:
    """A stable bucket 0..99 for a routing key (the same in every process, unlike Python's ``hash``)."""
    return int.from_bytes(hashlib.sha256(str(key).encode()).digest()[:8], "big") % 100


# ------------------------------------------------------------------------------------------ client side


def serve(model_name: str, *, log_dir=None, timeout: float = 120.0) -> LocalServer:
    """Start the router for registered model ``model_name`` on a free loopback port (no version deployed yet)."""
    port = free_port()
    server = LocalServer(
        f"router-{model_name}",
        [sys.executable, "-m", "delab.mlops.rollout", "--port", str(port), "--model", model_name],
        port=port,
        ready="/health",
        log_dir=log_dir,
        env={"MLFLOW_TRACKING_URI": config.mlflow().tracking_uri},
        timeout=timeout,
    )
    return server.start().wait_ready()


def deploy(router: LocalServer, **spec: Any) -> dict:
    """POST a deployment to the router: ``stable``, ``canary``, ``shadow`` (a version number or ``@alias``) and
    ``canary_percent``; returns the versions it resolved and now serves."""
    import httpx

    answer = httpx.post(f"{router.url}/deploy", json=spec, timeout=180)
    if answer.status_code != 200:
        raise RuntimeError(f"deploy refused ({answer.status_code}): {answer.text[:300]}")
    return answer.json()


def stats(router: LocalServer, reset: bool = False) -> dict:
    """What the router counted since the last reset: per version requests, errors, latencies (ms), shadow diffs."""
    import httpx

    return httpx.get(f"{router.url}/stats", params={"reset": str(reset).lower()}, timeout=30).json()


def send(router: LocalServer, requests: list[tuple[str, list]], concurrency: int = 4) -> list[tuple[int, dict]]:
    """POST ``(key, rows)`` requests to the router's ``/predict`` from ``concurrency`` threads; every answer as
    ``(status, body)`` in the order of ``requests`` (status 0: no answer)."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    local, clients = threading.local(), []

    def one(request: tuple[str, list]) -> tuple[int, dict]:
        if not hasattr(local, "client"):  # one keep-alive connection per thread
            local.client = httpx.Client(timeout=60)
            clients.append(local.client)
        key, rows = request
        try:
            answer = local.client.post(f"{router.url}/predict", json={"key": key, "rows": rows})
            return answer.status_code, answer.json()
        except (httpx.HTTPError, ValueError) as error:
            return 0, {"error": str(error)}

    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(one, requests))
    finally:
        for client in clients:
            client.close()


def summary(version_stats: dict) -> dict[str, float]:
    """requests, errors, error_rate and p95_ms of one version's counts (as ``stats()`` reports them)."""
    latencies = np.asarray(version_stats.get("latencies_ms") or [], dtype=float)
    requests = int(version_stats.get("requests", 0))
    errors = int(version_stats.get("errors", 0))
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "p95_ms": float(np.percentile(latencies, 95)) if latencies.size else float("nan"),
    }


# --------------------------------------------------------------------------------- a degraded release


try:  # the server's request type, resolvable from this module's globals (annotations are strings here)
    from fastapi import Request
except ImportError:  # pragma: no cover - only the delab-mlops kernel runs the router
    Request = Any

try:
    import mlflow.pyfunc as _pyfunc

    _PythonModel = _pyfunc.PythonModel
except ImportError:  # pragma: no cover - only the delab-mlops kernel has MLflow
    _PythonModel = object


class DegradedModel(_PythonModel):
    """A model release with the defects a canary is there to catch: each call takes ``delay_s`` longer, and
    orders with more than ``fail_above_lines`` lines raise (a bug in new feature code)."""

    def __init__(self, model, delay_s: float = 0.02, fail_above_lines: float = 4) -> None:
        self.model, self.delay_s, self.fail_above_lines = model, delay_s, fail_above_lines

    def predict(self, context, model_input, params=None):
        rows = np.asarray(model_input, dtype=np.float32)
        time.sleep(self.delay_s)
        if (rows[:, 0] > self.fail_above_lines).any():  # column 0 is n_lines
            raise ValueError("feature pipeline v2: unexpected basket size")
        return self.model.predict(rows)


# ------------------------------------------------------------------------------------------ server side


class _Router:
    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.models: dict[str, Any] = {}
        self.spec: dict[str, Any] = {"stable": None, "canary": None, "shadow": None, "canary_percent": 0}
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.counts: dict[str, dict[str, Any]] = {}
        self.shadow: dict[str, Any] = {"requests": 0, "errors": 0, "abs_diff": [], "latencies_ms": []}

    def resolve(self, ref: str | int | None) -> str | None:
        if ref in (None, ""):
            return None
        from mlflow import MlflowClient

        ref = str(ref)
        if ref.startswith("@"):
            return str(MlflowClient().get_model_version_by_alias(self.model_name, ref[1:]).version)
        return ref

    def load(self, version: str | None) -> None:
        if version is None or version in self.models:
            return
        import mlflow.pyfunc

        self.models[version] = mlflow.pyfunc.load_model(f"models:/{self.model_name}/{version}")

    def deploy(self, spec: dict) -> dict:
        resolved = {role: self.resolve(spec.get(role)) for role in ("stable", "canary", "shadow")}
        percent = int(spec.get("canary_percent", 0) if resolved["canary"] else 0)
        if resolved["stable"] is None or not 0 <= percent <= 100:
            raise ValueError("a deployment needs a stable version and 0 <= canary_percent <= 100")
        for version in resolved.values():
            self.load(version)  # before the switch: a new version never serves cold
        with self.lock:
            self.spec = {**resolved, "canary_percent": percent}
        return self.spec

    def _record(self, version: str, started: float, ok: bool) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        with self.lock:
            entry = self.counts.setdefault(version, {"requests": 0, "errors": 0, "latencies_ms": []})
            entry["requests"] += 1
            if ok:
                entry["latencies_ms"].append(elapsed_ms)
            else:
                entry["errors"] += 1

    def predict(self, key: str, rows: list) -> tuple[int, dict]:
        spec = self.spec
        if spec["stable"] is None:
            return 503, {"error": "nothing deployed"}
        canary = spec["canary"] is not None and bucket(key) < spec["canary_percent"]
        version, role = (spec["canary"], "canary") if canary else (spec["stable"], "stable")
        matrix = np.asarray(rows, dtype=np.float32)
        started = time.perf_counter()
        try:
            values = np.asarray(self.models[version].predict(matrix), dtype=float)
        except Exception as error:
            self._record(version, started, ok=False)
            return 500, {"version": version, "role": role, "error": f"{type(error).__name__}: {error}"}
        self._record(version, started, ok=True)
        if spec["shadow"] is not None:
            threading.Thread(target=self._shadow, args=(spec["shadow"], matrix, values), daemon=True).start()
        return 200, {"version": version, "role": role, "predictions": values.tolist()}

    def _shadow(self, version: str, matrix: np.ndarray, served: np.ndarray) -> None:
        started = time.perf_counter()
        try:
            values = np.asarray(self.models[version].predict(matrix), dtype=float)
        except Exception:
            with self.lock:
                self.shadow["requests"] += 1
                self.shadow["errors"] += 1
            return
        with self.lock:
            self.shadow["requests"] += 1
            self.shadow["latencies_ms"].append((time.perf_counter() - started) * 1000)
            self.shadow["abs_diff"].extend(np.abs(values - served).tolist())

    def stats(self, reset: bool) -> dict:
        with self.lock:
            answer = {"spec": dict(self.spec), "versions": self.counts, "shadow": self.shadow}
            if reset:
                self.reset()
        return answer


def app(model_name: str):
    """The router's FastAPI app."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    router = _Router(model_name)
    api = FastAPI(title=f"delab router for {model_name}")

    @api.get("/health")
    def health() -> dict:
        return {"model": model_name, "spec": router.spec}

    @api.post("/deploy")
    async def deploy_versions(request: Request):
        try:
            return router.deploy(await request.json())
        except Exception as error:
            return JSONResponse({"error": f"{type(error).__name__}: {error}"}, status_code=400)

    @api.post("/predict")
    async def predict(request: Request):
        body = await request.json()
        status, answer = router.predict(str(body.get("key", "")), body.get("rows") or [])
        return JSONResponse(answer, status_code=status)

    @api.get("/stats")
    def get_stats(reset: bool = False) -> dict:
        return router.stats(reset)

    return api


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delab.mlops.rollout")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    options = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    import uvicorn

    uvicorn.run(app(options.model), host=config.HOST, port=options.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
