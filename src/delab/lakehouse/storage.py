"""The object store as the lakehouse's storage layer: ``s3://`` locations, and the storage options of the formats
that do not go through the Iceberg catalog — Delta Lake (deltalake) and Apache Hudi (read with hudi-rs; written
by ``delab.lakehouse.hudi_spark``).

Endpoint, credentials and addressing style come from ``delab.config``, so every lab configures them one way.
DuckDB lives in ``delab.lakehouse.engines``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from delab import clients, config


def s3_uri(*parts: str) -> str:
    """``s3://<bucket>/<parts joined by />`` in the stack's bucket."""
    return f"s3://{config.s3().bucket}/" + "/".join(p.strip("/") for p in parts)


def s3_key(uri: str) -> str:
    """The object key of an ``s3://bucket/key`` URI (``s3a://`` too)."""
    return urlparse(uri).path.lstrip("/")


def objects_under(uri: str) -> list[str]:
    """Every object key below an ``s3://`` location (a table's folder), sorted."""
    parsed = urlparse(uri)
    prefix = parsed.path.lstrip("/").rstrip("/") + "/"
    return clients.s3_keys(prefix, bucket=parsed.netloc)


def delete_under(uri: str) -> int:
    """Delete every object below an ``s3://`` location; returns how many went."""
    parsed = urlparse(uri)
    return clients.s3_delete_prefix(parsed.path.lstrip("/").rstrip("/") + "/", bucket=parsed.netloc)


# ---------------------------------------------------------------------------------------------- Delta Lake


def delta_storage_options() -> dict[str, str]:
    """deltalake ``storage_options`` for the stack's object store.

    deltalake 1.x commits a new table version by creating ``_delta_log/<version>.json`` with a conditional PUT
    (``If-None-Match: *``); the object store refuses the second writer of the same version, which is what makes
    concurrent writers safe without a DynamoDB lock. So we set neither ``AWS_S3_ALLOW_UNSAFE_RENAME`` (the old
    opt-out of locking: last writer wins) nor ``aws_conditional_put`` (an ETag-based mode for stores without
    ``If-None-Match``). Path-style addressing is object_store's default (virtual-hosted style is opt-in).
    """
    s3 = config.s3()
    return {
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_REGION": s3.region,
        "AWS_ALLOW_HTTP": "true" if s3.endpoint.startswith("http://") else "false",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
    }


def delta_uri(namespace: str, table: str) -> str:
    """Where a lab keeps a Delta table: ``s3://<bucket>/delta/<namespace>/<table>``."""
    return s3_uri("delta", namespace, table)


def fresh_delta_namespace(namespace: str) -> str:
    """Delete every Delta table of ``namespace`` (all objects under ``delta/<namespace>/``), for re-runs."""
    clients.s3_delete_prefix(f"delta/{namespace}/")
    return namespace


def delta_table(uri: str, version: int | None = None) -> Any:
    """A ``deltalake.DeltaTable`` on the object store (optionally as of ``version``)."""
    from deltalake import DeltaTable

    return DeltaTable(uri, version=version, storage_options=delta_storage_options())


# ---------------------------------------------------------------------------------------------- Apache Hudi


def hudi_storage_options() -> dict[str, str]:
    """hudi-rs storage options for the object store (the same object_store keys as deltalake)."""
    return delta_storage_options()


def hudi_table(uri: str) -> Any:
    """A read-only ``hudi.HudiTable`` (hudi-rs) on the object store."""
    from hudi import HudiTableBuilder

    return HudiTableBuilder.from_base_uri(uri).with_storage_options(hudi_storage_options()).build()
