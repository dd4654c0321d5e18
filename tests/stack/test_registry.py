"""The schema registry service (Apicurio Registry, on demand): finding Java 21+, doctor's line, and — on a private
instance with its own ports and state folder — schemas that survive the registry's down and up."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from delab import config
from delab.cli import app
from delab.stack import down, layout, manager, reset, status, up
from delab.stack.services import CORE, ON_DEMAND
from delab.stack.services import registry as service


def _fake_jdk(root: Path, name: str, major: int) -> Path:
    """A folder that looks like a JDK whose `java` reports ``major``."""
    home = root / name
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '    java.specification.version = {major}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return home


@pytest.fixture
def no_real_java(monkeypatch, tmp_path):
    """Only the fake JDKs of a test are visible: no JAVA_HOME, no java on PATH, JVM folders under tmp_path."""
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv(service.JAVA_OVERRIDE, raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    monkeypatch.setattr(layout, "JVM_FOLDERS", (str(tmp_path / "jvm"),))
    layout.find_java_home.cache_clear()
    layout.java_home.cache_clear()
    yield tmp_path
    layout.find_java_home.cache_clear()
    layout.java_home.cache_clear()  # a None found here must not outlive the test (the next one starts Java)


def test_the_registry_starts_on_demand_after_postgres():
    assert "registry" in ON_DEMAND and "registry" not in CORE
    assert manager.resolve(["registry"]) == ["postgres", "registry"]
    assert set(manager.SERVICES["registry"].ports()) == {"schema_registry", "schema_registry_management"}


def test_java_21_is_found_in_the_usual_jvm_folders_beside_java_17(no_real_java):
    jvm = no_real_java / "jvm"
    _fake_jdk(jvm, "java-17-openjdk", 17)
    newest = _fake_jdk(jvm, "temurin-25-jdk", 25)
    assert service.registry_java_home() == newest


def test_the_override_wins_and_a_too_old_override_is_skipped(no_real_java, monkeypatch):
    jvm = no_real_java / "jvm"
    chosen = _fake_jdk(no_real_java / "elsewhere", "jdk-21", 21)
    _fake_jdk(jvm, "temurin-25-jdk", 25)
    monkeypatch.setenv(service.JAVA_OVERRIDE, str(chosen))
    assert service.registry_java_home() == chosen
    layout.find_java_home.cache_clear()
    monkeypatch.setenv(service.JAVA_OVERRIDE, str(_fake_jdk(no_real_java / "old", "jdk-17", 17)))
    assert service.registry_java_home() == jvm / "temurin-25-jdk"


def test_without_java_21_the_error_and_doctor_say_what_to_install(no_real_java, monkeypatch):
    _fake_jdk(no_real_java / "jvm", "java-17-openjdk", 17)
    with pytest.raises(layout.MissingPrerequisite) as caught:
        service.registry_java_home()
    assert "Java 21+" in caught.value.message and service.JAVA_OVERRIDE in caught.value.message
    assert "\n" not in caught.value.message
    monkeypatch.setenv("DELAB_STACK", "native")
    result = CliRunner().invoke(app, ["doctor"])
    words = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 1 and "fix Java 21+ (schema registry): the schema registry" in words


# --- a private instance ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory):
    """Postgres and the registry under their own stack folder and ports: the shared stack is untouched."""
    if config.profile() != "native":
        pytest.skip("native profile only")
    try:
        service.registry_java_home()
    except layout.MissingPrerequisite as error:
        pytest.skip(error.message)
    build = layout.build_dir()
    saved = dict(os.environ)
    os.environ.update(
        {
            "DELAB_STACK": "native",
            "DELAB_STACK_DIR": str(tmp_path_factory.mktemp("private-registry")),
            "DELAB_STACK_BUILD_DIR": str(build),
        }
    )
    for name in ("postgres", "schema_registry", "schema_registry_management"):
        os.environ[f"DELAB_{name.upper()}_PORT"] = str(_free_port())
    try:
        yield
    finally:
        reset()
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.stack
def test_schemas_survive_the_registry_going_down_and_up(private_registry):
    from delab.contracts import registry

    rows = up(["registry"])
    assert [row.state for row in rows] == ["running", "running"]
    client = registry.client()
    schema_id = client.register_schema("stack_tests.orders-value", registry.avro(registry.ORDER_V1))
    client.set_compatibility(subject_name="stack_tests.orders-value", level="FULL")

    down(["registry"])
    assert [row.state for row in status(["registry"])] == ["stopped"]
    assert [row.state for row in status(["postgres"])] == ["running"]
    up(["registry"])

    client = registry.client()  # a new client: nothing cached
    latest = client.get_latest_version("stack_tests.orders-value")
    assert (latest.schema_id, latest.version) == (schema_id, 1)
    assert client.get_compatibility("stack_tests.orders-value") == "FULL"
    pg = config.postgres()
    import psycopg

    with psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=config.schema_registry().database
    ) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    assert tables > 0  # the registry's own tables live in its own database
