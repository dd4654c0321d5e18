"""The graded checks, one module per curriculum module: ``check.m00.orders_per_channel(answer)``.

A module's checks live in ``delab/checks/mNN.py`` or, for bigger modules, in a package ``delab/checks/mNN/`` with
one file per lab (``l01_airflow.py`` …) whose functions ``check.mNN.<name>`` finds by name. Everything is imported
on first use, so a lab only pays for the checks it calls, and a kernel without (say) Prefect can still use the
checks of the labs it runs.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import Any


def __getattr__(name: str) -> ModuleType:
    if name.startswith("m") and name[1:].isdigit():
        return importlib.import_module(f"delab.checks.{name}")
    raise AttributeError(f"module 'delab.checks' has no attribute {name!r}")


def lab_checks(package: str, path: list[str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for a package of per-lab check files: finds ``name`` in one of them.

    Lab files import their heavy libraries (Airflow, Prefect, Dagster …) inside the checks, so importing every
    file is cheap and works in every kernel.
    """

    def find(name: str) -> Any:
        for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
            module = importlib.import_module(f"{package}.{info.name}")
            if hasattr(module, name) and not name.startswith("_"):
                return getattr(module, name)
        raise AttributeError(f"no check named {name!r} in {package}")

    return find
