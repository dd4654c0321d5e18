"""A local webhook receiver: the stand-in for Slack, PagerDuty or an e-mail gateway when a lab sends alerts.

``with Receiver() as hook:`` starts an HTTP server on 127.0.0.1 (a free port) in a background thread; anything
POSTed to ``hook.url`` is kept in ``hook.messages`` (JSON bodies decoded). It stops when the block ends, when
``stop()`` is called, or at interpreter exit — never left running.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Collects the HTTP POSTs a pipeline sends when it alerts."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not running: call start() or use it in a with block")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/alerts"

    def start(self) -> Receiver:
        if self._server is not None:
            return self
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
                try:
                    message: Any = json.loads(body)
                except json.JSONDecodeError:
                    message = body
                with receiver._lock:
                    receiver.messages.append(message)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # keep notebooks quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="delab-webhook", daemon=True).start()
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Any]:
        """Wait until at least ``count`` messages arrived (or the timeout passed); return them all."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            return list(self.messages)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
