"""Ready-made clients for the stack's services, built from delab.config (one place for endpoints/credentials)."""

from __future__ import annotations

from typing import Any

from delab import config


def postgres(database: str | None = None, autocommit: bool = True, **kwargs: Any):
    """A psycopg 3 connection to the stack's Postgres as the learner role."""
    import psycopg

    pg = config.postgres()
    return psycopg.connect(
        host=pg.host,
        port=pg.port,
        user=pg.user,
        password=pg.password,
        dbname=database or pg.database,
        autocommit=autocommit,
        connect_timeout=5,
        **kwargs,
    )


def s3():
    """A boto3 S3 client for the stack's object store (path-style addressing, local endpoint)."""
    import boto3
    from botocore.config import Config

    s = config.s3()
    return boto3.client(
        "s3",
        endpoint_url=s.endpoint,
        aws_access_key_id=s.access_key,
        aws_secret_access_key=s.secret_key,
        region_name=s.region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def s3_filesystem():
    """A pyarrow filesystem on the object store, for reading and writing Parquet directly."""
    from urllib.parse import urlparse

    from pyarrow import fs

    s = config.s3()
    endpoint = urlparse(s.endpoint)
    return fs.S3FileSystem(
        access_key=s.access_key,
        secret_key=s.secret_key,
        region=s.region,
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme or "http",
    )


def s3_keys(prefix: str, bucket: str | None = None) -> list[str]:
    """Every key under a prefix of a bucket (the stack's default bucket unless named)."""
    client, bucket = s3(), bucket or config.s3().bucket
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return sorted(keys)


def s3_delete_prefix(prefix: str, bucket: str | None = None) -> int:
    """Delete every object under a prefix; returns how many went (lab re-runs start clean this way)."""
    client, bucket = s3(), bucket or config.s3().bucket
    keys = s3_keys(prefix, bucket)
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]})
    return len(keys)


# ------------------------------------------------------------------------------------------- Kafka and Connect


def kafka_producer(**kwargs: Any):
    """A kafka-python producer on the stack's broker (JSON values and string keys are up to the caller)."""
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=config.kafka().bootstrap_servers, **kwargs)


def kafka_messages(topic: str, timeout: float = 10.0, max_messages: int = 100_000) -> list[tuple[Any, Any]]:
    """Every message of a topic from the beginning, as (key, value) bytes pairs, in partition order.

    Stops when no new message arrived for a second (or ``timeout`` passed): for reading what a lab produced.
    """
    import time

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=config.kafka().bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    out: list[tuple[Any, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < max_messages:
            batch = [(m.key, m.value) for m in consumer]
            if not batch and out:
                break
            out += batch
    finally:
        consumer.close()
    return out


def connect_put(name: str, connector_config: dict, timeout: float = 60.0) -> dict:
    """Create or update a Kafka Connect connector (PUT is idempotent) and wait until it and its task run."""
    import requests

    base = config.kafka().connect_url
    response = requests.put(f"{base}/connectors/{name}/config", json=connector_config, timeout=30)
    if response.status_code >= 400:
        raise RuntimeError(f"Kafka Connect refused {name}: {response.json().get('message', response.text)[:300]}")
    return connect_wait_running(name, timeout)


def connect_wait_running(name: str, timeout: float = 60.0, while_restarting: bool = False) -> dict:
    """Wait until a connector and all its tasks run; returns Connect's status. A failed task is an error at once,
    unless ``while_restarting`` (Connect just came back: its REST may not answer yet and tasks are re-assigned)."""
    import time

    import requests

    base = config.kafka().connect_url
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = requests.get(f"{base}/connectors/{name}/status", timeout=10).json()
        except (requests.RequestException, ValueError):
            if not while_restarting:
                raise
            state = {}
        tasks = state.get("tasks", [])
        if (
            state.get("connector", {}).get("state") == "RUNNING"
            and tasks
            and all(t["state"] == "RUNNING" for t in tasks)
        ):
            return state
        failed = [t for t in tasks if t["state"] == "FAILED"]
        if (failed and not while_restarting) or time.monotonic() > deadline:
            trace = (failed[0].get("trace", "") if failed else "").splitlines()[:1]
            raise RuntimeError(f"connector {name} is not running after {timeout:.0f} s: {trace or state}")
        time.sleep(0.5)
