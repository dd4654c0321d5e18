"""The secured broker of lab 07.06: its configuration (no service needed) and its life cycle (needs the stack's
Kafka jars; starts and stops the broker on the reserved ports)."""

from __future__ import annotations

import pytest

from delab import config
from delab.iac import secure_kafka, security
from delab.stack import manager

PASSWORDS = {"admin": "admin-pw", "controller": "controller-pw"}


def test_properties_deny_by_default_on_loopback():
    text = secure_kafka.properties(PASSWORDS)
    assert f"listeners=SECURE://127.0.0.1:{config.port('kafka_secure')}," in text
    assert "allow.everyone.if.no.acl.found=false" in text
    assert "super.users=User:admin;User:controller\n" in text
    assert "ANONYMOUS" not in text and "PLAINTEXT:PLAINTEXT" not in text


@pytest.mark.stack
def test_start_refuses_unknown_logins_and_stops_without_leftovers():
    broker = secure_kafka.start()
    try:
        assert security.try_produce("nobody", "wrong-password", "any_topic", timeout=3) == "KafkaTimeoutError"
    finally:
        secure_kafka.stop()
    assert not secure_kafka.running()
    assert manager.port_free(config.port("kafka_secure"))
    assert broker.bootstrap.endswith(str(config.port("kafka_secure")))
