"""Checks of module 07 (infrastructure as code), one file per lab; ``check.m07.<name>`` finds them by name."""

import shutil
from pathlib import Path

from delab import config
from delab.checks import lab_checks

__getattr__ = lab_checks(__name__, __path__)


def scratch(lab: str, name: str) -> Path:
    """An empty folder for one check run, under the lab's folder (``<lab>/checks/<name>``): a root, its state and
    its plans start from nothing each time, and stay there to be looked at after a wrong answer."""
    folder = config.lab_dir(lab) / "checks" / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder
