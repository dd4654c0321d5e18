"""Unit tests of delab.stack that need no running service: profiles, one-line errors, ports, namespaces."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from delab import config
from delab.stack import StackError, errors, manager, namespace, require
from delab.stack.cli import app


@pytest.fixture
def busy_port():
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def empty_state(tmp_path, monkeypatch):
    """A fresh state folder and build folder, native profile."""
    monkeypatch.setenv("DELAB_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("DELAB_STACK_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("DELAB_STACK", "native")
    return tmp_path


@pytest.mark.parametrize("cls", [errors.StackError, errors.PortTaken, errors.MissingPrerequisite, errors.ServiceFailed])
def test_errors_render_as_one_line_in_jupyter(cls):
    error = cls("kafka cannot start: do this")
    assert error._render_traceback_() == ["StackError: kafka cannot start: do this"]
    assert isinstance(error, StackError)


def test_profile_comes_from_delab_stack(monkeypatch):
    for name in ("native", "docker", "external"):
        monkeypatch.setenv("DELAB_STACK", name)
        assert config.profile() == name
    monkeypatch.setenv("DELAB_STACK", "kubernetes")
    with pytest.raises(ValueError, match="not one of"):
        config.profile()


def test_profile_is_native_without_a_docker_engine(monkeypatch):
    monkeypatch.delenv("DELAB_STACK", raising=False)
    monkeypatch.setattr(config, "docker_daemon_answers", lambda: False)
    assert config.profile() == "native"
    monkeypatch.setattr(config, "docker_daemon_answers", lambda: True)
    assert config.profile() == "docker"


def test_resolve_adds_dependencies_in_start_order():
    assert manager.resolve(["connect"]) == ["kafka", "connect"]
    assert manager.resolve(["flink", "postgres"]) == ["postgres", "flink"]
    assert manager.resolve(None) == list(manager.CORE)  # on-demand services (the registry) start on require
    assert manager.resolve(["registry"]) == ["postgres", "registry"]


def test_unknown_service_is_a_one_line_error():
    with pytest.raises(StackError, match="unknown service zookeeper: choose from kafka"):
        manager.resolve(["zookeeper"])


def test_port_taken_is_one_actionable_line(empty_state, monkeypatch, busy_port):
    monkeypatch.setenv("DELAB_S3_PORT", str(busy_port))
    with pytest.raises(errors.PortTaken) as caught:
        manager.up(["s3"])
    message = caught.value.message
    assert "\n" not in message
    assert f"127.0.0.1:{busy_port}" in message
    assert "export DELAB_S3_PORT=" in message


def test_missing_build_is_one_actionable_line(empty_state, monkeypatch, free_port):
    monkeypatch.setenv("DELAB_S3_PORT", str(free_port))
    with pytest.raises(errors.MissingPrerequisite) as caught:
        manager.up(["s3"])
    assert "\n" not in caught.value.message
    assert "make setup" in caught.value.message


def test_status_of_a_stack_never_started(empty_state, monkeypatch):
    monkeypatch.setattr(manager, "port_free", lambda port, host="127.0.0.1": True)
    rows = manager.status(["s3", "postgres"])
    assert [(row.service, row.state) for row in rows] == [("s3", "stopped"), ("postgres", "stopped")]


def test_status_after_a_process_died(empty_state, monkeypatch):
    from delab.stack import layout

    monkeypatch.setattr(manager, "port_free", lambda port, host="127.0.0.1": True)
    layout.pid_file("s3").parent.mkdir(parents=True)
    layout.pid_file("s3").write_text("999999 1\n")  # no such process
    [row] = manager.status(["s3"])
    assert row.state == "stopped"
    assert "killed or crashed" in row.detail


def test_docker_profile_require_says_what_to_run(monkeypatch):
    monkeypatch.setenv("DELAB_STACK", "docker")
    down = manager.ServiceStatus("kafka", "127.0.0.1:19092", "down", detail="nothing listens")
    monkeypatch.setattr("delab.stack.status", lambda names: [down])
    with pytest.raises(StackError) as caught:
        require("kafka")
    assert "\n" not in caught.value.message
    assert "make up" in caught.value.message


def test_cli_failure_is_one_line_without_traceback(empty_state, monkeypatch, busy_port):
    monkeypatch.setenv("DELAB_S3_PORT", str(busy_port))
    result = CliRunner().invoke(app, ["up", "s3"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("error:")]
    assert len(error_lines) == 1 and "DELAB_S3_PORT" in error_lines[0]
    assert "Traceback" not in result.output


def test_namespace_prefixes_every_resource():
    ns = namespace("m03.l02")
    assert ns.prefix == "m03_l02"
    assert ns.topic("orders") == "m03_l02.orders"
    assert ns.table("Late Events") == "m03_l02_late_events"
    assert ns.key("raw/a.json") == "m03_l02/raw/a.json"
    assert ns.s3_uri("x") == f"s3://{config.s3().bucket}/m03_l02/x"
    assert namespace("03_streaming/02").prefix == "n03_streaming_02"
    with pytest.raises(StackError):
        namespace("--")


def test_kafka_cluster_ids_never_look_like_an_option():
    from delab.stack.services.kafka import kafka_cluster_id

    ids = {kafka_cluster_id() for _ in range(3000)}
    assert len(ids) == 3000 and all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_every_service_has_its_own_module_and_probe_and_none_named_means_the_core():
    from delab.stack import services
    from delab.stack.services.base import NativeService

    for name, service in services.SERVICES.items():
        assert type(service).__module__ == f"delab.stack.services.{name}"
        assert type(service).probe is not NativeService.probe, f"{name} has no probe of its own"
        for dep in service.depends_on:
            assert list(services.NAMES).index(dep) < list(services.NAMES).index(name)
    assert manager.resolve(None) == list(services.CORE)
    assert set(services.CORE) | set(services.ON_DEMAND) == set(services.NAMES)
