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
