"""`delab doctor` in the docker profile: each missing piece is one line with its fix (no engine needed)."""

from __future__ import annotations

import socket
import subprocess

import pytest

from delab import config
from delab.stack import docker


@pytest.fixture(autouse=True)
def docker_profile(monkeypatch, tmp_path):
    monkeypatch.setenv("DELAB_STACK", "docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")


def test_no_docker_cli_says_how_to_get_an_engine(monkeypatch):
    monkeypatch.setattr(docker.shutil, "which", lambda name: None)
    problem = docker.check_engine()
    assert problem and "no docker CLI" in problem and "scripts/docker-engine install" in problem


def test_an_engine_that_does_not_answer_names_the_socket_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(docker.shutil, "which", lambda name: "/usr/bin/docker")
    problem = docker.check_engine()
    assert problem and f"{tmp_path}/nothing.sock" in problem and "Docker Desktop" in problem


def test_a_missing_compose_plugin_says_how_to_build_it(monkeypatch):
    monkeypatch.setattr(docker.shutil, "which", lambda name: "/usr/bin/docker")
    failed = subprocess.CompletedProcess(["docker"], 1, "", "docker: 'compose' is not a docker command.")
    monkeypatch.setattr(docker.subprocess, "run", lambda *a, **k: failed)
    problem = docker.check_compose_plugin()
    assert problem and "scripts/docker-engine plugin" in problem


def test_a_working_compose_plugin_is_ok(monkeypatch):
    monkeypatch.setattr(docker.shutil, "which", lambda name: "/usr/bin/docker")
    monkeypatch.setattr(docker.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(["docker"], 0, "5.6.0"))
    assert docker.check_compose_plugin() is None


def test_a_taken_port_is_one_line_with_the_variable_to_change(monkeypatch):
    with socket.socket() as holder:
        holder.bind((config.HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setenv("DELAB_POSTGRES_PORT", str(port))
        problems = docker.check_ports(["postgres", "s3"])
    assert len(problems) == 1 or all(str(port) not in line for line in problems[1:])
    assert f"127.0.0.1:{port}" in problems[0] and "export DELAB_POSTGRES_PORT=" in problems[0]


def test_ports_of_other_services_are_not_checked(monkeypatch):
    with socket.socket() as holder:
        holder.bind((config.HOST, 0))
        holder.listen()
        monkeypatch.setenv("DELAB_MLFLOW_PORT", str(holder.getsockname()[1]))
        assert not [line for line in docker.check_ports(["kafka"]) if "mlflow" in line]
