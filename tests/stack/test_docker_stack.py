"""The docker profile's containers, checked for what the compose file promises (``DELAB_STACK=docker``; run by
scripts/ci-docker after `delab stack up`). The service round trips themselves are test_native_stack.py's, which
run against either profile."""

from __future__ import annotations

import json
import subprocess

import pytest

from delab import config
from delab.stack import docker, up

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("stack")]


@pytest.fixture(scope="module")
def containers() -> list[dict]:
    if config.profile() != "docker" or docker.check_engine():
        pytest.skip("docker profile with an answering engine only")
    up()
    ids = docker.run("ps", "-q", capture=True).stdout.split()
    out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_every_core_service_runs_its_own_built_image(containers):
    services = {c["Config"]["Labels"]["com.docker.compose.service"]: c["Config"]["Image"] for c in containers}
    assert set(services) >= {name for names in docker.CORE_SERVICES.values() for name in names}
    assert all(image.startswith("delab/") for image in services.values()), services


def test_published_ports_are_loopback_and_follow_the_port_table(containers):
    published = {}
    for container in containers:
        service = container["Config"]["Labels"]["com.docker.compose.service"]
        for bindings in (container["NetworkSettings"]["Ports"] or {}).values():
            for binding in bindings or []:
                assert binding["HostIp"] == "127.0.0.1", f"{service} publishes on {binding['HostIp']}"
                published.setdefault(service, set()).add(int(binding["HostPort"]))
    for name in ("kafka", "postgres", "s3"):
        assert config.port(name) in published[name]


def test_host_network_services_listen_on_loopback_only(containers):
    # Connect and Flink share the host's network: their ports must be bound to 127.0.0.1, never 0.0.0.0
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    for name in ("connect", "flink", "flink_rpc"):
        port = config.port(name)
        local = [line.split()[3] for line in out.splitlines() if line.split()[3].endswith(f":{port}")]
        loopback = ("127.0.0.1:", "[::ffff:127.0.0.1]:")  # a JVM's IPv4 socket on a dual-stack machine
        assert local and all(address.startswith(loopback) for address in local), (name, local)
