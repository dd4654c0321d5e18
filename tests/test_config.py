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
