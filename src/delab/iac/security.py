"""Security probes for lab 07.06: try an action as a principal and report what the service answered.

Every probe returns a short verdict instead of raising, so a lab (or a check) can put allowed and denied actions
side by side: ``"ok"`` or the name of the error the server sent (``TopicAuthorizationFailedError``,
``InsufficientPrivilege``, ...). Also: reading an object of the stack's store as raw bytes (is the state
encrypted?) and running checkov, the policy-as-code scanner that lives in its own tool environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
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


def try_produce(user: str, password: str, topic: str, timeout: float = 6.0) -> str:
    """Produce one message to ``topic`` on the secured broker as ``user``: "ok" or the error's name."""
    with _quiet_kafka():
        return _produce(user, password, topic, timeout)


def _produce(user: str, password: str, topic: str, timeout: float) -> str:
    from kafka import KafkaProducer

    try:
        producer = KafkaProducer(
            **secure_kafka.client_settings(user, password),
            request_timeout_ms=int(timeout * 1000),
            max_block_ms=int(timeout * 1000),
            bootstrap_timeout_ms=int(timeout * 1000),  # a refused login is retried until this runs out
            retries=0,
        )
    except Exception as error:
        return _error_name(error)
    try:
        producer.send(topic, key=b"probe", value=f"from {user}".encode()).get(timeout=timeout + 2)
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
    directory: str | Path, checks: list[str] | None = None, external_checks_dir: str | Path | None = None
) -> list[dict[str, Any]]:
    """Scan a folder of Terraform files; one row per (check, resource): check_id, resource, result, file."""
    argv = [str(checkov_bin()), "-d", str(directory), "--framework", "terraform", "-o", "json"]
    argv += ["--skip-download", "--compact"]
    if checks:
        argv += ["--check", ",".join(checks)]
    if external_checks_dir:
        argv += ["--external-checks-dir", str(external_checks_dir)]
    home = config.lab_dir("checkov_home")  # checkov writes a cache under $HOME: keep it in the lab's folder
    env = {**os.environ, "HOME": str(home), "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
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
