"""The secured broker of lab 07.06: its configuration (no service needed) and its life cycle (needs the stack's
Kafka jars; starts and stops the broker on the reserved ports)."""

from __future__ import annotations

import pytest

from delab import config
from delab.iac import certificates, secure_kafka, security
from delab.stack import manager

PASSWORDS = {"admin": "admin-pw", "controller": "controller-pw"}


def test_properties_deny_by_default_on_loopback(tmp_path):
    tls = certificates.ensure(tmp_path / "tls")
    text = secure_kafka.properties(PASSWORDS, tls)
    assert f"listeners=SECURE://127.0.0.1:{config.port('kafka_secure')}," in text
    assert "allow.everyone.if.no.acl.found=false" in text
    assert "super.users=User:admin;User:controller\n" in text
    assert "ANONYMOUS" not in text and "PLAINTEXT" not in text
    assert "listener.security.protocol.map=CONTROLLER:SASL_SSL,SECURE:SASL_SSL\n" in text
    assert f"ssl.keystore.location={tls.keystore}\n" in text and "ssl.keystore.type=PEM\n" in text


def test_audit_log_takes_the_authorizer_logger_at_debug():
    text = secure_kafka.log4j_properties()
    assert "logger.authorizer.name = kafka.authorizer.logger" in text
    assert "logger.authorizer.level = DEBUG" in text
    assert f"appender.audit.fileName = {secure_kafka.audit_log_file()}" in text


def test_certificates_name_the_host_and_are_made_once(tmp_path):
    files = certificates.ensure(tmp_path / "tls", hosts=("127.0.0.1", "localhost"))
    server = certificates.describe(files.keystore)
    assert server["names"] == "127.0.0.1, localhost"
    assert server["issuer"] == certificates.describe(files.ca)["subject"]
    assert (files.keystore.stat().st_mode & 0o777) == 0o600
    assert b"BEGIN PRIVATE KEY" in files.keystore.read_bytes()  # Kafka's PEM keystore: PKCS#8, key first
    before = files.ca.read_bytes()
    assert certificates.ensure(tmp_path / "tls").ca.read_bytes() == before


def test_a_client_checks_the_ca_and_the_name(tmp_path):
    files = certificates.ensure(tmp_path / "tls")
    with security.impostor(files.other_cert, files.other_key) as port:
        assert security.tls_handshake("127.0.0.1", port).startswith("certificate verify failed")
        assert "address mismatch" in security.tls_handshake("127.0.0.1", port, cafile=files.ca)
        assert security.tls_handshake("127.0.0.1", port, cafile=files.ca, check_hostname=False).startswith("ok (")


def test_wiretap_relays_and_records_loopback_only():
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with security.Wiretap() as tap, server:
        proxy_port = int(tap.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as client:
            client.sendall(b"\x05\x01\x00")
            assert client.recv(2) == b"\x05\x00"
            client.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + port.to_bytes(2, "big"))
            assert client.recv(10)[:2] == b"\x05\x00"
            upstream, _ = server.accept()
            with upstream:
                client.sendall(b"hello broker")
                assert upstream.recv(100) == b"hello broker"
                upstream.sendall(b"hello client")
                assert client.recv(100) == b"hello client"
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as client:
            client.sendall(b"\x05\x01\x00")
            client.recv(2)
            client.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("192.0.2.1") + (80).to_bytes(2, "big"))
            assert client.recv(10)[:2] == b"\x05\x02"  # not allowed: loopback only
    assert b"hello broker" in tap.captured and b"hello client" in tap.captured


def test_audit_rows_parse_the_authorizer_lines():
    from delab.checks.m07 import l06_security

    rows = security.audit_rows(l06_security.AUDIT_FIXTURE.splitlines())
    assert len(rows) == 9
    denied = [r for r in rows if r["decision"] == "Denied"]
    assert denied[0] == {
        "time": "2026-12-06 18:41:03,902",
        "principal": "User:analytics",
        "decision": "Denied",
        "operation": "WRITE",
        "host": "127.0.0.1",
        "resource": "Topic:LITERAL:shop.orders",
        "request": "Produce",
    }


@pytest.mark.stack
def test_start_refuses_unknown_logins_and_stops_without_leftovers():
    broker = secure_kafka.start()
    try:
        assert security.try_produce("nobody", "wrong-password", "any_topic", timeout=3) == "KafkaTimeoutError"
        host, port = broker.bootstrap.rsplit(":", 1)
        assert security.tls_handshake(host, int(port), cafile=secure_kafka.ca_file()).startswith("ok (TLSv1.3")
        assert security.tls_handshake(host, int(port)).startswith("certificate verify failed")
    finally:
        secure_kafka.stop()
    assert not secure_kafka.running()
    assert manager.port_free(config.port("kafka_secure"))
    assert broker.bootstrap.endswith(str(config.port("kafka_secure")))
