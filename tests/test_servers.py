"""delab.servers: a lab's server starts on loopback, is waited for, stops with its children, reports its log on
failure, and never outlives the process (kernel) that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from delab import servers


def _http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def _wait_closed(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not servers.http_ok(f"http://127.0.0.1:{port}/", timeout=0.3):
            return True
        time.sleep(0.1)
    return False


def test_start_wait_stop(tmp_path):
    port = servers.free_port()
    with servers.LocalServer("web", _http_server(port), port=port, ready="/", log_dir=tmp_path) as server:
        assert server.running and servers.http_ok(f"{server.url}/")
        pgid = server.process.pid
    assert _wait_closed(port)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_exit_while_starting_shows_the_log(tmp_path):
    argv = [sys.executable, "-c", "import sys; print('boom: no model named order_value'); sys.exit(3)"]
    server = servers.LocalServer("broken", argv, port=servers.free_port(), log_dir=tmp_path, timeout=20)
    with pytest.raises(servers.ServerFailed, match="no model named order_value"):
        server.start().wait_ready()
    assert not server.running


def test_children_stop_with_the_server(tmp_path):
    """A server that forks workers (like BentoML): stop() ends the workers too."""
    port = servers.free_port()
    script = textwrap.dedent(
        f"""
        import subprocess, sys
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print("worker", worker.pid, flush=True)
        subprocess.run({_http_server(port)!r})
        """
    )
    server = servers.LocalServer("forking", [sys.executable, "-c", script], port=port, log_dir=tmp_path)
    server.start().wait_ready()
    worker = int(next(line.split()[1] for line in server.logs().splitlines() if line.startswith("worker")))
    server.stop()
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


def test_no_orphan_when_the_kernel_dies(tmp_path):
    """SIGKILL the process that started the server (a crashed kernel): the server goes away on its own."""
    port = servers.free_port()
    kernel = textwrap.dedent(
        f"""
        import time
        from delab import servers
        servers.LocalServer("web", {_http_server(port)!r}, port={port}, log_dir={str(tmp_path)!r}).start().wait_ready()
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", kernel], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    assert servers.http_ok(f"http://127.0.0.1:{port}/")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _wait_closed(port), "the server outlived the kernel that started it"
