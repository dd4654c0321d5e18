"""delab — the helper package of the Data Engineering & ETL Labs.

Notebooks start with ``from delab import check, datasets, grading`` (and ``stack`` when they need services).
Sub-packages load on first use, so a kernel only imports what its lab needs.
"""

from __future__ import annotations

import importlib
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


def __getattr__(name: str) -> Any:
    if name in _ROOMS:
        module = importlib.import_module(_ROOMS[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'delab' has no attribute {name!r}")
