"""delab.config: the port table and its overrides."""

import pytest

from delab import config


def test_port_offset_shifts_every_default_but_not_an_explicit_port(monkeypatch):
    monkeypatch.setenv("DELAB_PORT_OFFSET", "100")
    monkeypatch.setenv("DELAB_CONNECT_PORT", "18999")
    assert config.port("kafka") == config.DEFAULT_PORTS["kafka"] + 100
    assert config.port("postgres") == config.DEFAULT_PORTS["postgres"] + 100
    assert config.port("connect") == 18999
    assert config.kafka().bootstrap_servers.endswith(f":{config.DEFAULT_PORTS['kafka'] + 100}")


def test_no_offset_gives_the_table(monkeypatch):
    monkeypatch.delenv("DELAB_PORT_OFFSET", raising=False)
    monkeypatch.delenv("DELAB_KAFKA_PORT", raising=False)
    assert config.port("kafka") == config.DEFAULT_PORTS["kafka"]


def test_a_bad_offset_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("DELAB_PORT_OFFSET", "ten")
    with pytest.raises(ValueError, match="DELAB_PORT_OFFSET='ten' is not a whole number"):
        config.port("kafka")


def test_ports_are_distinct_and_below_the_ephemeral_range():
    ports = [p for name, p in config.DEFAULT_PORTS.items() if name != "jupyter"]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < 32768 for p in ports)


def test_loopback_calls_bypass_a_configured_proxy(monkeypatch):
    """With a proxy set and no_proxy empty, the stack's loopback HTTP calls must not go to the proxy."""
    import http.server
    import os
    import socket
    import threading
    import urllib.request

    import delab

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # a port nothing listens on: the "proxy"
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        for name in ("http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{dead_port}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.setenv(name, "")
        # a new opener each time: urlopen's shared one keeps the proxies it read from the first call's environment
        with pytest.raises(OSError):  # the trap itself: urllib sends a loopback call to the dead proxy
            urllib.request.build_opener().open(url, timeout=5)
        delab.keep_loopback_off_proxies()
        assert urllib.request.build_opener().open(url, timeout=5).status == 200
        monkeypatch.setenv("no_proxy", "corp.example,localhost")
        delab.keep_loopback_off_proxies()
        assert os.environ["no_proxy"] == "corp.example,localhost,127.0.0.1,::1"  # kept, completed once
    finally:
        server.shutdown()


def test_no_proxy_is_left_alone_without_a_proxy():
    environ = {"no_proxy": "corp.example"}
    import delab

    delab.keep_loopback_off_proxies(environ)
    assert environ == {"no_proxy": "corp.example"}
