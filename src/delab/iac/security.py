"""Security probes for lab 07.06: try an action as a principal and report what the service answered.

Every probe returns a short verdict instead of raising, so a lab (or a check) can put allowed and denied actions
side by side: ``"ok"`` or the name of the error the server sent (``TopicAuthorizationFailedError``,
``InsufficientPrivilege``, ...). Also: a TLS handshake as a given client would make it (which certificate, which
CA, hostname verified or not), a wiretap (a SOCKS5 proxy on loopback that records the bytes a Kafka client sends
and receives), the secured broker's audit log as rows, reading an object of the stack's store as raw bytes (is
the state encrypted?) and running checkov, the policy-as-code scanner that lives in its own tool environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from delab import clients, config
from delab.iac import secure_kafka
from delab.stack.errors import MissingPrerequisite

# ------------------------------------------------------------------------------------------------ Kafka


@contextlib.contextmanager
def _quiet_kafka() -> Iterator[None]:
    """kafka-python logs every refusal (and SCRAM without TLS) as a warning: the probes report them instead."""
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _error_name(error: BaseException) -> str:
    cause = getattr(error, "__cause__", None) or error
    name = type(cause).__name__
    for known in ("TopicAuthorizationFailed", "GroupAuthorizationFailed", "SaslAuthenticationFailed"):
        if known in f"{name} {error}":
            return f"{known}Error"
    return name


def try_produce(
    user: str, password: str, topic: str, timeout: float = 6.0, settings: dict[str, Any] | None = None, **extra: Any
) -> str:
    """Produce one message to ``topic`` on the secured broker as ``user``: "ok" or the error's name. ``settings``
    replaces the client settings (default: SCRAM over TLS trusting the lab's CA); ``extra`` adds to them (e.g.
    ``proxy_url`` of a wiretap, ``value``: the message)."""
    with _quiet_kafka():
        return _produce(settings or secure_kafka.client_settings(user, password), topic, timeout, **extra)


def _produce(settings: dict[str, Any], topic: str, timeout: float, value: bytes | None = None, **extra: Any) -> str:
    from kafka import KafkaProducer

    user = settings.get("sasl_plain_username", "anonymous")
    try:
        producer = KafkaProducer(
            **{
                **settings,
                **extra,
                "request_timeout_ms": int(timeout * 1000),
                "max_block_ms": int(timeout * 1000),
                "bootstrap_timeout_ms": int(timeout * 1000),  # a refused login is retried until this runs out
                "retries": 0,
            }
        )
    except Exception as error:
        return _error_name(error)
    try:
        producer.send(topic, key=b"probe", value=value or f"from {user}".encode()).get(timeout=timeout + 2)
        return "ok"
    except Exception as error:
        return _error_name(error)
    finally:
        producer.close(timeout=2)


def try_consume(user: str, password: str, topic: str, group: str, timeout: float = 6.0) -> str:
    """Read ``topic`` from the beginning as ``user`` in consumer group ``group``: "ok (N messages)" or the error."""
    with _quiet_kafka():
        return _consume(user, password, topic, group, timeout)


def _consume(user: str, password: str, topic: str, group: str, timeout: float) -> str:
    from kafka import KafkaConsumer, TopicPartition

    try:
        consumer = KafkaConsumer(
            **secure_kafka.client_settings(user, password),
            group_id=group,
            enable_auto_commit=False,
            request_timeout_ms=int(timeout * 1000) + 1000,
            bootstrap_timeout_ms=int(timeout * 1000),
        )
    except Exception as error:
        return _error_name(error)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return "TopicAuthorizationFailedError"  # the broker hides topics a principal may not describe
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        batches = consumer.poll(timeout_ms=int(timeout * 1000))
        consumer.commit()  # needs Read on the group
        return f"ok ({sum(len(records) for records in batches.values())} messages)"
    except Exception as error:
        return _error_name(error)
    finally:
        consumer.close()


# ---------------------------------------------------------------------------------------------------- TLS


def tls_handshake(
    host: str, port: int, cafile: str | Path | None = None, check_hostname: bool = True, server_name: str | None = None
) -> str:
    """Open a TLS connection the way a client with these settings would: "ok (TLSv1.3, CN=…)" or the reason the
    client refused the server (``certificate verify failed: …``, ``Hostname mismatch …``). ``cafile=None``
    trusts the system's CAs only (what a client gets when nobody configured the lab's CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = check_hostname
    if cafile:
        context.load_verify_locations(str(cafile))
    else:
        context.load_default_certs()
    try:
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name or host) as tls,
        ):
            subject = dict(item[0] for item in (tls.getpeercert() or {}).get("subject", ()))
            return f"ok ({tls.version()}, CN={subject.get('commonName', '?')})"
    except ssl.SSLCertVerificationError as refused:
        return f"certificate verify failed: {refused.verify_message or refused}"
    except (ssl.SSLError, OSError) as error:
        return f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def impostor(cert_file: str | Path, key_file: str | Path) -> Iterator[int]:
    """A TLS server on an ephemeral loopback port that presents ``cert_file`` (e.g. a certificate the same CA
    issued to another service) and then closes: a client that skips hostname verification completes the
    handshake with it. Yields the port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_file), str(key_file))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            with contextlib.suppress(OSError), client:
                client.settimeout(5)
                context.wrap_socket(client, server_side=True).close()

    thread = threading.Thread(target=serve, name="impostor", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()


class Wiretap:
    """A SOCKS5 proxy on an ephemeral loopback port that relays connections to loopback addresses only and
    records every byte both ways: what anyone on the network path between a client and its broker sees. Give a
    kafka-python client ``proxy_url=tap.url``; ``tap.captured`` holds the bytes."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._captured = bytearray()
        self._threads: list[threading.Thread] = []
        self.connections = 0

    @property
    def url(self) -> str:
        return f"socks5://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def captured(self) -> bytes:
        with self._lock:
            return bytes(self._captured)

    def __enter__(self) -> Wiretap:
        thread = threading.Thread(target=self._accept, name="wiretap", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._relay, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    @staticmethod
    def _read(sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed during the SOCKS5 handshake")
            data += chunk
        return data

    def _target(self, client: socket.socket) -> tuple[str, int]:
        """The SOCKS5 greeting (no authentication) and CONNECT request: the address the client asks for."""
        _, methods = self._read(client, 2)
        self._read(client, methods)
        client.sendall(b"\x05\x00")
        _, command, _, kind = self._read(client, 4)
        if kind == 1:
            host = socket.inet_ntop(socket.AF_INET, self._read(client, 4))
        elif kind == 4:
            host = socket.inet_ntop(socket.AF_INET6, self._read(client, 16))
        else:
            host = self._read(client, self._read(client, 1)[0]).decode()
        (port,) = struct.unpack("!H", self._read(client, 2))
        if command != 1:
            raise ConnectionError("only CONNECT is relayed")
        return host, port

    def _relay(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError, ConnectionError), client:
            client.settimeout(10)
            host, port = self._target(client)
            if host not in ("127.0.0.1", "::1", "localhost"):  # a lab tool: loopback only
                client.sendall(b"\x05\x02\x00\x01" + bytes(6))
                return
            with socket.create_connection((host, port), timeout=10) as upstream:
                client.sendall(b"\x05\x00\x00\x01" + bytes(6))
                self.connections += 1
                self._pump(client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(peers), [], [], 0.2)
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                with self._lock:
                    self._captured += data
                peers[sock].sendall(data)


def tls_records(captured: bytes) -> dict[str, int]:
    """How many bytes of a capture look like TLS records (handshake 0x16, application data 0x17, alert 0x15 with
    version 3.x), by kind: a rough look at a wiretap's bytes, not a parser of either protocol."""
    kinds = {0x15: "alert", 0x16: "handshake", 0x17: "application data"}
    found: dict[str, int] = {}
    for match in re.finditer(rb"[\x15\x16\x17]\x03[\x01-\x04]", captured):
        kind = kinds[captured[match.start()]]
        found[kind] = found.get(kind, 0) + 1
    return found


# ------------------------------------------------------------------------------------------------ audit log

#: one decision of Kafka's authorizer, as StandardAuthorizer writes it (kafka.authorizer.logger)
AUDIT_LINE = re.compile(
    r"Principal = (?P<principal>\S+) is (?P<decision>Allowed|Denied) operation = (?P<operation>\S+) "
    r"from host = (?P<host>\S+) on resource = (?P<resource>\S+)"
)


def audit_rows(lines: Iterable[str]) -> list[dict[str, str]]:
    """The authorizer's decisions in log lines: time, decision, principal, operation, resource, host, request."""
    rows = []
    for line in lines:
        match = AUDIT_LINE.search(line)
        if not match:
            continue
        request = re.search(r"for request = (\w+)", line)
        rows.append(
            {
                "time": line[1:24] if line.startswith("[") else "",
                **match.groupdict(),
                "request": request.group(1) if request else "",
            }
        )
    return rows


def audit_log_lines(since: int = 0) -> list[str]:
    """The secured broker's audit log from byte offset ``since`` (``audit_log_size()`` taken earlier)."""
    path = secure_kafka.audit_log_file()
    if not path.exists():
        return []
    with path.open("rb") as log:
        log.seek(since)
        return log.read().decode(errors="replace").splitlines()


def audit_log_size() -> int:
    """The audit log's size now: pass it to ``audit_log_lines`` later to read only what happened in between."""
    path = secure_kafka.audit_log_file()
    return path.stat().st_size if path.exists() else 0


# --------------------------------------------------------------------------------------------- Postgres


def try_sql(login: str, password: str, statement: str, database: str | None = None) -> str:
    """Run one statement as ``login`` (rolled back): "ok" or the SQLSTATE's name (e.g. InsufficientPrivilege)."""
    import psycopg

    pg = config.postgres()
    try:
        with psycopg.connect(
            host=pg.host,
            port=pg.port,
            dbname=database or pg.database,
            user=login,
            password=password,
            connect_timeout=5,
        ) as connection:
            try:
                connection.execute(statement)
                return "ok"
            finally:
                connection.rollback()
    except psycopg.Error as error:
        return type(error).__name__


# ------------------------------------------------------------------------------------------ object store


def s3_object(key: str, bucket: str | None = None) -> bytes:
    """The raw bytes of one object of the stack's store (what anyone with read access to the bucket sees)."""
    response = clients.s3().get_object(Bucket=bucket or config.s3().bucket, Key=key)
    return response["Body"].read()


def looks_like_plain_state(raw: bytes) -> bool:
    """True when the bytes are a readable OpenTofu state (JSON with resources), False for ciphertext."""
    try:
        document = json.loads(raw)
    except ValueError:
        return False
    return isinstance(document, dict) and "resources" in document


# ----------------------------------------------------------------------------------------------- checkov


def checkov_bin() -> Path:
    """checkov from its own tool environment (.venv-checkov, `make setup`), or $DELAB_CHECKOV."""
    if os.environ.get("DELAB_CHECKOV"):
        return Path(os.environ["DELAB_CHECKOV"])
    path = config.project_root() / ".venv-checkov" / "bin" / "checkov"
    if not path.exists():
        raise MissingPrerequisite(f"checkov is not installed ({path} is missing): run `make setup`")
    return path


def checkov(
    directory: str | Path,
    checks: list[str] | None = None,
    external_checks_dir: str | Path | None = None,
    framework: str = "terraform",
) -> list[dict[str, Any]]:
    """Scan a folder of Terraform files (or ``framework="kubernetes"``: manifests, ``"cloudformation"``: templates);
    one row per (check, resource): check_id, resource, result, file, check (its name)."""
    # run inside the folder: with a path that has a hidden component (the state folder .delab), checkov's
    # kubernetes runner silently skips every manifest (0 resources)
    argv = [str(checkov_bin()), "-d", ".", "--framework", framework, "-o", "json"]
    argv += ["--skip-download", "--compact"]
    if checks:
        argv += ["--check", ",".join(checks)]
    if external_checks_dir:
        argv += ["--external-checks-dir", str(Path(external_checks_dir).resolve())]
    home = config.lab_dir("checkov_home")  # checkov writes a cache under $HOME: keep it in the lab's folder
    env = {**os.environ, "HOME": str(home), "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=directory)
    out = result.stdout.strip()
    try:
        report = json.loads(out) if out else {}
    except ValueError as error:
        last = (result.stderr or out).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"checkov failed (exit {result.returncode}): {last[0][:300]}") from error
    reports = report if isinstance(report, list) else [report]
    rows = []
    for one in reports:
        results = one.get("results", {}) if isinstance(one, dict) else {}
        for verdict, key in (("passed", "passed_checks"), ("failed", "failed_checks")):
            for item in results.get(key, []):
                rows.append(
                    {
                        "check_id": item.get("check_id"),
                        "resource": item.get("resource"),
                        "result": verdict,
                        "file": item.get("file_path"),
                        "check": item.get("check_name"),
                    }
                )
    return rows


def unique_name(prefix: str) -> str:
    """A fresh name for a scratch principal or group (re-runs never collide)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"
