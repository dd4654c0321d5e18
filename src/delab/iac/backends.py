"""Where OpenTofu keeps state: the stack's Postgres (``backend "pg"``) or its object store (``backend "s3"``).

Both lock: pg with a Postgres advisory lock per state, s3 with a ``<key>.tflock`` object written beside the state
(``use_lockfile``, conditional writes). The functions return the settings of a partial ``backend "pg" {}`` /
``backend "s3" {}`` block (``Tofu.init`` writes them to a .tfbackend file), so no credential or port is ever
written into a .tf file.
"""

from __future__ import annotations

from delab import config


def pg_backend(schema: str) -> dict[str, object]:
    """backend "pg": the state lives in table ``states`` of ``schema`` in the stack's Postgres."""
    return {"conn_str": f"{config.postgres().dsn}?sslmode=disable", "schema_name": schema}


def s3_backend(key: str, bucket: str | None = None) -> dict[str, object]:
    """backend "s3" on the stack's object store, with OpenTofu's S3-native lock file."""
    s3 = config.s3()
    return {
        "bucket": bucket or s3.bucket,
        "key": key,
        "region": s3.region,
        "endpoints": {"s3": s3.endpoint},
        "use_path_style": True,
        "use_lockfile": True,
        "skip_credentials_validation": True,
        "skip_region_validation": True,
        "skip_requesting_account_id": True,
        "skip_metadata_api_check": True,
        "skip_s3_checksum": True,
    }


def hcl_value(value: object) -> str:
    """A Python value as HCL: strings quoted, booleans lower-case, dicts as objects."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {hcl_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hcl_value(item) for item in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def backend_file(values: dict[str, object]) -> str:
    """The text of a .tfbackend file holding these values."""
    return "".join(f"{key} = {hcl_value(value)}\n" for key, value in values.items())
