"""The local HTTP services labs run in-process (alert receivers, flaky upstream APIs)."""

from __future__ import annotations

import pickle

import pytest
import requests

from delab.localhttp import LocalHTTPService, Receiver, ServiceAddress


def test_receiver_keeps_json_and_text_posts_and_stops():
    with Receiver() as hook:
        assert hook.url.startswith("http://127.0.0.1:") and hook.url.endswith("/alerts")
        requests.post(hook.url, json={"task": "load", "state": "failed"}, timeout=5)
        requests.post(hook.url, data="plain text", timeout=5)
        assert hook.wait_for(2, timeout=5) == [{"task": "load", "state": "failed"}, "plain text"]
        assert hook.received[0].headers.get("Content-Type") == "application/json"
        hook.clear()
        assert hook.wait_for(1, timeout=0.2) == []
    with pytest.raises(RuntimeError, match="not running"):
        _ = hook.url


def test_a_pickled_service_is_just_its_address():
    class Echo(LocalHTTPService):
        def respond(self, method, path, body):
            return 200, {"path": path}

    service = Echo()
    try:
        assert requests.get(service.url + "/x", timeout=5).json() == {"path": "/x"}
        copy = pickle.loads(pickle.dumps(service))
        assert isinstance(copy, ServiceAddress) and copy.url == service.url
    finally:
        service.stop()
        service.stop()  # idempotent
