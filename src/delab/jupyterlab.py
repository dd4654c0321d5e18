"""The course's JupyterLab: one launch command for `make lab` and the browser test.

It opens straight on the course: the file browser on ``labs/``, new notebooks on the ``delab`` kernel, and no
"get notified about news?" prompt (infra/jupyterlab/overrides.json sets JupyterLab's news and update checks to
never — nothing is fetched from the internet).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from delab import config


def settings_dir() -> Path:
    """JupyterLab's application settings folder of the project (holds overrides.json)."""
    return config.project_root() / "infra" / "jupyterlab"


def command(port: int | None = None, token: str | None = None, root: Path | None = None) -> list[str]:
    """The ``jupyter lab`` command line with the project's settings, on 127.0.0.1."""
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port if port is not None else config.port('jupyter')}",
        f"--ServerApp.root_dir={root or config.project_root()}",
        "--LabApp.default_url=/lab/tree/labs",
        f"--LabApp.app_settings_dir={settings_dir()}",
        "--MappingKernelManager.default_kernel_name=delab",
        "--LabApp.extension_manager=readonly",  # the extension manager would otherwise query a package index
    ]
    if token is not None:
        argv.append(f"--IdentityProvider.token={token}")
    if os.geteuid() == 0:
        argv.append("--allow-root")
    return argv


def main() -> None:
    """`make lab`: replace this process with JupyterLab."""
    argv = command()
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
