"""The S3 object store: versitygw over a POSIX folder, and its probe (put + get an object)."""

from __future__ import annotations

import uuid

from delab import config
from delab.stack import layout
from delab.stack.probes import PROBE_KEY, ProbeFailed, port_open
from delab.stack.services.base import (
    HOST,
    NativeService,
    ProcessSpec,
)


def probe_s3() -> None:
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


class S3(NativeService):
    """versitygw serving a POSIX folder as S3 (metadata in a sidecar folder, so no xattrs are needed)."""

    name = "s3"
    start_timeout = 30.0

    def endpoint(self) -> str:
        return config.s3().endpoint

    def prepare(self) -> None:
        layout.versitygw_bin()
        for sub in ("objects", "meta"):
            (layout.data_dir("s3") / sub).mkdir(parents=True, exist_ok=True)

    def processes(self) -> list[ProcessSpec]:
        settings, data = config.s3(), layout.data_dir("s3")
        return [
            ProcessSpec(
                "s3",
                [
                    str(layout.versitygw_bin()),
                    "--port",
                    f"{HOST}:{config.port('s3')}",
                    "--region",
                    settings.region,
                    "--quiet",
                    "posix",
                    "--sidecar",
                    str(data / "meta"),
                    str(data / "objects"),
                ],
                env={"ROOT_ACCESS_KEY": settings.access_key, "ROOT_SECRET_KEY": settings.secret_key},
                cwd=data,
            )
        ]

    def probe(self) -> None:
        probe_s3()
