"""The graded checks, one module per curriculum module: ``check.m00.orders_per_channel(answer)``.

Modules are imported on first use, so a lab only pays for the checks it calls.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def __getattr__(name: str) -> ModuleType:
    if name.startswith("m") and name[1:].isdigit():
        return importlib.import_module(f"delab.checks.{name}")
    raise AttributeError(f"module 'delab.checks' has no attribute {name!r}")
