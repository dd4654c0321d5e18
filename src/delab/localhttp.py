"""Small HTTP services a lab runs in its own process, on 127.0.0.1 and a free port, in a daemon thread.

* ``LocalHTTPService`` — the base: records every request (``requests``), answers with ``respond()``; stopped by
  ``stop()``, at the end of a ``with`` block, or at interpreter exit — never left running. Pickled (e.g. into a
  Prefect runner process) it becomes a ``ServiceAddress`` that only knows its URL.
* ``Receiver`` — a webhook receiver: the stand-in for Slack, PagerDuty or an e-mail gateway when a pipeline sends
  alerts (the one every lab uses: Airflow callbacks, Prefect hooks, the error-handling lab). Anything POSTed to
  ``url`` is kept; ``messages`` are the bodies (JSON decoded), ``received`` the requests themselves (with
  headers), ``wait_for(n)`` waits for them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from delab import config

_RUNNING: list[LocalHTTPService] = []


@atexit.register
def stop_all() -> None:
    """Stop every service this process started (also done at interpreter exit)."""
    while _RUNNING:
        with contextlib.suppress(Exception):
            _RUNNING.pop().stop()


@dataclass
class ServedRequest:
    at: float  # time.monotonic() when it arrived
    method: str
    path: str
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        """The body decoded as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True)
class ServiceAddress:
    """What a pickled service becomes in another process: just where to reach it."""

    url: str


class LocalHTTPService:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) in a daemon thread, recording every request."""

    path = ""  # appended to the base address by ``url``

    def __init__(self) -> None:
        self.requests: list[ServedRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.start()

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return ServiceAddress, (self.url,)

    def start(self) -> LocalHTTPService:
        """Start serving (a no-op when it already does); returns the service."""
        if self._httpd is not None:
            return self
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the notebook quiet
                pass

            def do_GET(self) -> None:
                service._dispatch(self, "GET")

            def do_POST(self) -> None:
                service._dispatch(self, "POST")

        self._httpd = ThreadingHTTPServer((config.HOST, 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.1,), daemon=True, name=type(self).__name__).start()
        _RUNNING.append(self)
        return self

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"the {type(self).__name__} is not running: call start() or use it in a with block")
        return f"http://{config.HOST}:{self._httpd.server_address[1]}{self.path}"

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        status, payload = self.respond(method, handler.path, body)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        with self._lock:
            self.requests.append(
                ServedRequest(time.monotonic(), method, handler.path, status, body, dict(handler.headers.items()))
            )
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json" if not isinstance(payload, bytes) else "text/plain")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def respond(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """(status, payload) for a request; payload is JSON-encoded unless it is bytes."""
        return 404, {"error": "not found"}

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with contextlib.suppress(ValueError):
            _RUNNING.remove(self)

    def __enter__(self) -> LocalHTTPService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Receiver(LocalHTTPService):
    """Records every POST it receives: a local stand-in for a Slack/Teams/PagerDuty webhook."""

    path = "/alerts"

    def respond(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method != "POST":
            return 200, {"received": len(self.received)}
        return 200, {"ok": True}

    @property
    def received(self) -> list[ServedRequest]:
        """The POSTs, oldest first (body, headers, arrival time)."""
        return [r for r in list(self.requests) if r.method == "POST"]

    @property
    def messages(self) -> list[Any]:
        """The POSTed bodies, JSON decoded (text when a body is not JSON)."""
        return [r.json if r.json is not None else r.body.decode("utf-8", "replace") for r in self.received]

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Any]:
        """Wait until at least ``count`` POSTs arrived (or the timeout passed); return all messages so far."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages

    def __repr__(self) -> str:
        return f"<Receiver {self.url if self._httpd else '(stopped)'} ({len(self.received)} received)>"
