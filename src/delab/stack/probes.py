"""What the readiness probes share. Each service's own probe sits in its module (``delab.stack.services.*``):
it really uses the service (not just an open port), returns None when it works and raises ``ProbeFailed`` (with a
short reason) when it does not.
Client libraries are imported lazily, so every kernel can import delab.stack.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

PROBE_TOPIC = "_delab_probe"
PROBE_KEY = "_delab_probe/ping"


class ProbeFailed(Exception):
    """The service did not answer as it should (the reason is the message)."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_json(url: str, timeout: float = 3.0) -> Any:
    """GET a URL and decode its JSON body (ProbeFailed on any error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ProbeFailed(f"GET {url}: {error}") from None
