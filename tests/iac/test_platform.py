"""The write steps of the platform modules (``delab platform create|delete``): one-line errors, idempotence, and
the refusals that protect data (a bucket or a namespace that still holds something)."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from delab import clients, config, lakehouse
from delab.cli import app
from delab.iac import platform
from delab.iac.platform import PlatformError, run_step


def _spec(**values) -> str:
    return json.dumps(values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no spec"),
        ("{not json", "not JSON"),
        (_spec(kind="cluster"), "unknown platform kind"),
        (_spec(kind="bucket"), "lacks bucket"),
        (_spec(kind="subject", registry_url="http://127.0.0.1:1"), "lacks subject"),
    ],
)
def test_bad_specs_fail_in_one_line(text, message):
    with pytest.raises(PlatformError, match=message) as failed:
        run_step("create", text)
    assert "\n" not in failed.value.message


def test_the_cli_prints_one_error_line_and_exits_1():
    result = CliRunner().invoke(app, ["platform", "create"], env={platform.SPEC_VARIABLE: _spec(kind="cluster")})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["error: unknown platform kind 'cluster'"]


def test_a_failed_step_is_one_line_from_tofu(tmp_path):
    from delab import iac

    root = iac.write_root(
        tmp_path / "root",
        'resource "terraform_data" "x" {\n  input = { kind = "cluster" }\n'
        '  provisioner "local-exec" {\n    command = "delab platform create"\n'
        "    environment = { DELAB_PLATFORM_SPEC = jsonencode(self.input) }\n  }\n}\n",
        providers=(),
    )
    tofu = iac.Tofu(root)
    tofu.init()
    with pytest.raises(iac.TofuError) as failed:
        tofu.apply()
    assert failed.value.message.endswith("provisioner error: error: unknown platform kind 'cluster'")


def test_an_unreachable_service_is_one_line():
    spec = _spec(kind="subject", registry_url="http://127.0.0.1:9", subject="x-value", compatibility="BACKWARD")
    with pytest.raises(PlatformError, match="is the service running"):
        run_step("create", spec)


def test_the_password_comes_from_the_environment_or_the_stack(monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    assert platform.database_password(config.postgres().user) == config.postgres().password
    with pytest.raises(PlatformError, match="set PGPASSWORD"):
        platform.database_password("someone_else")
    monkeypatch.setenv("PGPASSWORD", "from-the-environment")
    assert platform.database_password("someone_else") == "from-the-environment"


def test_iceberg_schema_of_an_avro_record():
    avro = {
        "type": "record",
        "name": "Order",
        "fields": [{"name": "id", "type": "int"}, {"name": "note", "type": ["null", "string"], "default": None}],
    }
    schema = platform.iceberg_schema(json.dumps(avro))
    assert [(f.name, str(f.field_type), f.required) for f in schema.fields] == [
        ("id", "int", True),
        ("note", "string", False),
    ]
    with pytest.raises(PlatformError, match="not an Avro record"):
        platform.iceberg_schema('"string"')
    with pytest.raises(PlatformError, match="not mapped"):
        platform.iceberg_schema({"type": "record", "name": "X", "fields": [{"name": "a", "type": {"type": "map"}}]})


@pytest.mark.stack
def test_bucket_steps_are_idempotent_and_keep_data_unless_forced():
    bucket = f"platform-test-{uuid.uuid4().hex[:8]}"
    spec = {"kind": "bucket", "bucket": bucket, "force_destroy": False}
    assert "created" in run_step("create", json.dumps(spec))
    assert "exists" in run_step("create", json.dumps(spec))
    clients.s3().put_object(Bucket=bucket, Key="a/b.txt", Body=b"data")
    with pytest.raises(PlatformError, match="still holds 1 object"):
        run_step("delete", json.dumps(spec))
    assert "1 object(s) with it" in run_step("delete", json.dumps({**spec, "force_destroy": True}))
    assert "already gone" in run_step("delete", json.dumps(spec))


@pytest.mark.stack
def test_namespace_steps_are_idempotent_and_keep_tables_unless_forced():
    from pyiceberg.schema import Schema
    from pyiceberg.types import IntegerType, NestedField

    name = f"platform_test_{uuid.uuid4().hex[:8]}"
    bucket = name.replace("_", "-")
    run_step("create", json.dumps({"kind": "bucket", "bucket": bucket}))
    spec = {"kind": "namespace", "catalog": "lake", "namespace": name, "location": f"s3://{bucket}/{name}"}
    try:
        assert "created" in run_step("create", json.dumps(spec))
        assert "exists" in run_step("create", json.dumps(spec))
        catalog = lakehouse.catalog()
        table = catalog.create_table(f"{name}.t", schema=Schema(NestedField(1, "id", IntegerType(), required=False)))
        assert table.location().startswith(f"s3://{bucket}/{name}/")  # the namespace's location is used
        with pytest.raises(PlatformError, match="still has 1 table"):
            run_step("delete", json.dumps(spec))
        assert "1 table(s) with it" in run_step("delete", json.dumps({**spec, "force_destroy": True}))
        assert "already gone" in run_step("delete", json.dumps(spec))
    finally:
        run_step("delete", json.dumps({"kind": "bucket", "bucket": bucket, "force_destroy": True}))


@pytest.mark.stack
def test_deleting_a_connector_that_is_gone_is_a_no_op():
    pg = config.postgres()
    spec = {
        "kind": "connector",
        "name": "platform_test_missing",
        "connect_url": config.kafka().connect_url,
        "slot": "platform_test_missing",
        "config": {
            "database.hostname": pg.host,
            "database.port": str(pg.port),
            "database.dbname": pg.database,
            "database.user": pg.user,
        },
    }
    assert "deleted" in run_step("delete", json.dumps(spec))
