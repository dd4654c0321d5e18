"""`make lab`'s JupyterLab: started headless, it lists the project's kernels and serves a lab notebook."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request

from delab import config, jupyterlab

ROOT = config.project_root()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_jupyterlab_serves_kernels_and_labs(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    command = jupyterlab.command(port=port, token=token)  # `make lab`'s own command line
    log = (tmp_path / "jupyter.log").open("w")
    server = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                specs = get(f"{base}/api/kernelspecs", token)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "jupyter.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
                time.sleep(0.5)
        assert {"delab", "delab-flink", "delab-airflow"} <= set(specs["kernelspecs"])
        notebook = get(f"{base}/api/contents/labs/00_orientation/01_how_a_lab_works.ipynb", token)
        assert notebook["type"] == "notebook"
        assert notebook["content"]["metadata"]["kernelspec"]["name"] == "delab"
        with urllib.request.urlopen(f"{base}/lab", timeout=10) as page:  # the UI itself is served
            assert page.status == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
