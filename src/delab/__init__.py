"""delab — the helper package of the Data Engineering & ETL Labs.

Notebooks start with ``from delab import check, datasets, grading`` (and ``stack`` when they need services).
Sub-packages load on first use, so a kernel only imports what its lab needs.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["check", "config", "datasets", "grading", "stack"]
__version__ = "0.1.0"

_ROOMS = {
    "check": "delab.checks",
    "config": "delab.config",
    "datasets": "delab.datasets",
    "grading": "delab.grading",
    "stack": "delab.stack",
}


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def keep_loopback_off_proxies(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Add the loopback names to ``no_proxy``/``NO_PROXY`` when a proxy is configured.

    Every service of the stack listens on 127.0.0.1. On a machine whose proxy variables are set (a company
    laptop) and whose ``no_proxy`` leaves out localhost, Python's HTTP clients (urllib, requests, httpx, botocore)
    would send the stack's own calls to the proxy, which cannot reach the learner's loopback: "connection
    refused" from a service that is running. Child processes (Airflow, Prefect, MLflow, tofu) inherit the fix.
    """
    if not any(environ.get(name) for name in _PROXY_VARIABLES):
        return
    for name in ("no_proxy", "NO_PROXY"):
        present = [host.strip() for host in environ.get(name, "").split(",") if host.strip()]
        missing = [host for host in LOOPBACK_HOSTS if host not in present]
        if missing and "*" not in present:
            environ[name] = ",".join(present + missing)


keep_loopback_off_proxies()


def __getattr__(name: str) -> Any:
    if name in _ROOMS:
        module = importlib.import_module(_ROOMS[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'delab' has no attribute {name!r}")
