"""Readiness probes that really use each service (not just an open port).

Each probe returns None when the service works and raises ``ProbeFailed`` (with a short reason) when it does not.
Client libraries are imported lazily, so every kernel can import delab.stack.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from delab import config

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


def kafka(timeout: float = 10.0) -> None:
    """Produce one message to the probe topic and read it back."""
    bootstrap = config.kafka().bootstrap_servers
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not port_open(host, int(port)):
        raise ProbeFailed(f"nothing listens on {bootstrap}")
    try:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition
        from kafka.errors import KafkaError
    except ImportError:  # a kernel without kafka-python: the open port has to do
        return
    token = uuid.uuid4().hex.encode()
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), retries=3)
        try:
            meta = producer.send(PROBE_TOPIC, token).get(timeout=timeout)
        finally:
            producer.close(timeout=2)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=500)
        try:
            partition = TopicPartition(PROBE_TOPIC, meta.partition)
            consumer.assign([partition])
            consumer.seek(partition, meta.offset)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    if any(record.value == token for record in records):
                        return
        finally:
            consumer.close()
    except (KafkaError, OSError, ValueError) as error:
        raise ProbeFailed(f"produce/consume on {bootstrap}: {type(error).__name__}: {error}") from None
    raise ProbeFailed(f"a message produced to {PROBE_TOPIC} was not read back")


def connect() -> None:
    """The Connect REST API answers and lists the Debezium PostgreSQL connector."""
    url = config.kafka().connect_url.rstrip("/")
    plugins = http_json(f"{url}/connector-plugins")
    if not any("PostgresConnector" in plugin.get("class", "") for plugin in plugins or []):
        raise ProbeFailed("the Debezium PostgreSQL connector is not on the worker's plugin path")
    http_json(f"{url}/connectors")


def postgres() -> None:
    """SELECT 1 as the learner role over TCP."""
    pg = config.postgres()
    if not port_open(pg.host, pg.port):
        raise ProbeFailed(f"nothing listens on {pg.host}:{pg.port}")
    try:
        import psycopg
    except ImportError:
        return
    try:
        with psycopg.connect(
            host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database, connect_timeout=3
        ) as conn:
            if conn.execute("SELECT 1").fetchone() != (1,):
                raise ProbeFailed("SELECT 1 did not return 1")
    except psycopg.Error as error:
        raise ProbeFailed(f"SELECT 1 as {pg.user}@{pg.database}: {str(error).strip().splitlines()[-1]}") from None


def s3() -> None:
    """Create the default bucket if needed, put an object and read it back."""
    settings = config.s3()
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        host, _, port = settings.endpoint.split("://")[-1].rpartition(":")
        if not port_open(host, int(port or 80)):
            raise ProbeFailed(f"nothing listens on {settings.endpoint}") from None
        return
    client = boto3.client(
        "s3",
        endpoint_url=settings.endpoint,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        region_name=settings.region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    token = uuid.uuid4().hex.encode()
    try:
        try:
            client.head_bucket(Bucket=settings.bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
            client.create_bucket(Bucket=settings.bucket)
        client.put_object(Bucket=settings.bucket, Key=PROBE_KEY, Body=token)
        body = client.get_object(Bucket=settings.bucket, Key=PROBE_KEY)["Body"].read()
    except (BotoCoreError, ClientError, OSError) as error:
        raise ProbeFailed(f"put/get on {settings.endpoint}/{settings.bucket}: {error}") from None
    if body != token:
        raise ProbeFailed("the object read back differs from the one put")


def flink() -> None:
    """The Flink REST API answers and at least one TaskManager is registered."""
    overview = http_json(f"{config.flink().rest_url.rstrip('/')}/overview")
    if not overview or overview.get("taskmanagers", 0) < 1:
        raise ProbeFailed("the JobManager answers but no TaskManager is registered")


PROBES = {"kafka": kafka, "connect": connect, "postgres": postgres, "s3": s3, "flink": flink}
