"""infra/docker/compose.yaml cannot run on a machine without a Docker engine: check that it agrees with
delab.config and with the native profile's pins instead (ports, credentials, versions, pinned images)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from delab import config

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "infra" / "docker"
NATIVE = ROOT / "infra" / "native"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def pom_property(name: str) -> str:
    match = re.search(rf"<{re.escape(name)}>([^<]+)</", (NATIVE / "pom.xml").read_text())
    assert match, name
    return match.group(1)


def dockerfiles(services: dict) -> list[Path]:
    return sorted({DOCKER.parent.parent / svc["build"]["dockerfile"] for svc in services.values() if "build" in svc})


def host_ports(service: dict) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port."""
    out = []
    for entry in service.get("ports", []):
        ip, host, container = str(entry).split(":")
        out.append((ip, int(host), int(container)))
    return out


def test_every_image_is_pinned_by_tag(services):
    images = [svc["image"] for svc in services.values()]
    froms = [
        line.split()[1]
        for path in dockerfiles(services)
        for line in path.read_text().splitlines()
        if line.startswith("FROM ")
    ]
    for image in images + froms:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, f"{image} is not pinned by tag"


def test_every_host_port_binds_loopback_only(services):
    for name, svc in services.items():
        for ip, _, _ in host_ports(svc):
            assert ip == "127.0.0.1", f"{name} publishes a port on {ip}"


@pytest.mark.parametrize(
    ("service", "port_name"),
    [("kafka", "kafka"), ("connect", "connect"), ("postgres", "postgres"), ("s3", "s3"), ("flink-jobmanager", "flink")],
)
def test_ports_match_delab_config(services, service, port_name):
    assert config.DEFAULT_PORTS[port_name] in [host for _, host, _ in host_ports(services[service])]


def test_every_default_service_has_a_healthcheck_and_named_volumes(compose, services):
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no healthcheck"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in compose["volumes"], f"{name}: volume {source} not named"


def test_minio_is_optional_and_pinned(services):
    minio = services["minio"]
    assert minio["profiles"] == ["minio"]
    assert minio["image"].startswith("quay.io/minio/minio:RELEASE.")
    s3 = config.S3()
    assert minio["environment"]["MINIO_ROOT_USER"] == s3.access_key
    assert minio["environment"]["MINIO_ROOT_PASSWORD"] == s3.secret_key


def test_credentials_match_delab_config(services):
    s3 = config.S3()
    assert services["s3"]["environment"] == {"ROOT_ACCESS_KEY": s3.access_key, "ROOT_SECRET_KEY": s3.secret_key}
    flink_settings = yaml.safe_load((DOCKER / "flink" / "settings.yaml").read_text())
    assert flink_settings["s3"]["access-key"] == s3.access_key
    assert flink_settings["s3"]["secret-key"] == s3.secret_key
    pg = config.Postgres()
    init = (DOCKER / "postgres" / "initdb.d" / "10-delab.sql").read_text()
    assert f"CREATE ROLE {pg.user} LOGIN REPLICATION" in init and f"PASSWORD '{pg.password}'" in init
    assert f"CREATE DATABASE {pg.database} OWNER {pg.user}" in init
    assert "CREATE PUBLICATION dbz_publication FOR ALL TABLES" in init
    assert f"-U {pg.user} -d {pg.database}" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_postgres_runs_with_logical_wal(services):
    assert "wal_level=logical" in services["postgres"]["command"]
    assert services["postgres"]["image"].startswith("postgres:15")


def test_versions_match_the_native_profile(services):
    kafka_version = pom_property("kafka.version")
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    connect_dockerfile = (DOCKER / "connect" / "Dockerfile").read_text()
    assert f"FROM apache/kafka:{kafka_version}" in connect_dockerfile
    assert "infra/native" in connect_dockerfile  # Debezium jars come from the native pom
    flink_version = (NATIVE / "FLINK_VERSION").read_text().strip()
    assert pom_property("flink.version") == flink_version
    assert services["flink-jobmanager"]["build"]["args"]["FLINK_VERSION"] == flink_version
    assert (
        services["flink-jobmanager"]["image"]
        == services["flink-taskmanager"]["image"]
        == f"delab/flink:{flink_version}"
    )
    pins = dict(line.split() for line in (NATIVE / "go-tools.txt").read_text().splitlines() if line and line[0] != "#")
    versitygw = pins["github.com/versity/versitygw/cmd/versitygw"]
    assert services["s3"]["build"]["args"]["VERSITYGW_VERSION"] == versitygw
    assert services["s3"]["image"] == f"delab/versitygw:{versitygw}"


def test_connect_worker_settings_match_native(services):
    props = dict(
        line.split("=", 1)
        for line in (DOCKER / "connect" / "connect-distributed.properties").read_text().splitlines()
        if line and not line.startswith("#")
    )
    port = config.DEFAULT_PORTS["connect"]
    assert props["listeners"].endswith(f":{port}") and props["rest.advertised.port"] == str(port)
    assert props["plugin.path"] == "/opt/connect-plugins"
    assert props["bootstrap.servers"] == "kafka:29092"
    assert f"{port}:{port}" in services["connect"]["ports"][0]
