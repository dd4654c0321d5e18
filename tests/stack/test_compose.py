"""Parity of the docker profile with the native one: infra/docker (compose.yaml, Dockerfile, the entrypoints'
settings) must use the versions, ports, credentials and settings of delab.config and infra/native. Runs without a
Docker engine; scripts/ci-docker then runs the labs against the built containers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from delab import config
from delab.stack import docker, layout
from delab.stack.services import SERVICES

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "infra" / "docker"
NATIVE = ROOT / "infra" / "native"
COMPOSE_TEXT = (DOCKER / "compose.yaml").read_text()
DOCKERFILE = (DOCKER / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE_TEXT)["services"]


def pom_property(name: str) -> str:
    match = re.search(rf"<{re.escape(name)}>([^<]+)</", (NATIVE / "pom.xml").read_text())
    assert match, name
    return match.group(1)


def pins(path: Path) -> dict[str, str]:
    """name -> version of a pip requirements/lock file."""
    return {m[0].lower(): m[1] for m in re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", path.read_text(), re.M)}


def versions_env() -> dict[str, str]:
    return dict(line.split("=", 1) for line in (DOCKER / "versions.env").read_text().splitlines() if "=" in line)


def env_of(service: dict) -> dict[str, str]:
    return {key: str(value) for key, value in service.get("environment", {}).items()}


def test_every_base_image_is_official_and_pinned_by_tag():
    stages = set(re.findall(r"^FROM \S+ AS (\S+)", DOCKERFILE, re.M))
    go_version = re.search(r"^ARG GO_VERSION=(\S+)", DOCKERFILE, re.M).group(1)
    bases = {
        image.replace("${GO_VERSION}", go_version)
        for image in re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
        if image not in stages
    }
    assert bases == {"debian:bookworm-slim", "debian:trixie-slim", f"golang:{go_version}-bookworm"}
    assert go_version == versions_env()["GO_VERSION"]


def test_every_service_image_is_built_here_or_labelled_optional(services):
    for name, svc in services.items():
        image = svc["image"]
        tag = image.rpartition(":")[2]
        assert tag and tag != "latest" and "/" not in tag, f"{name}: {image} is not pinned by tag"
        if name == "minio":
            continue
        assert image.startswith("delab/"), f"{name} uses a pulled image {image}"
        built = svc.get("build") or next(s["build"] for s in services.values() if s["image"] == image and "build" in s)
        assert built["dockerfile"] == "infra/docker/Dockerfile" and built["target"] in DOCKERFILE


def test_nothing_names_an_architecture():
    for path in [*DOCKER.rglob("*"), ROOT / "scripts" / "docker-engine", ROOT / "scripts" / "ci-docker"]:
        if path.is_file() and path.suffix not in (".txt",):
            text = path.read_text()
            assert not re.search(r"amd64|x86_64|aarch64|arm64", text), f"{path} names an architecture"


def test_every_port_variable_is_a_port_of_the_table_with_its_default():
    found = re.findall(r"\$\{DELAB_([A-Z0-9_]+)_PORT:-(\d+)\}", COMPOSE_TEXT)
    assert found
    for name, default in found:
        assert name.lower() in config.DEFAULT_PORTS, f"DELAB_{name}_PORT is not in delab.config's port table"
        assert int(default) == config.DEFAULT_PORTS[name.lower()], f"DELAB_{name}_PORT default {default}"
    assert not re.search(r"\$\{DELAB_[A-Z0-9_]+_PORT\}", COMPOSE_TEXT), "a port variable without its default"


def test_docker_module_names_the_variables_compose_reads(monkeypatch):
    monkeypatch.setenv("DELAB_PORT_OFFSET", "80")
    env = docker.compose_env()
    for name in docker.PUBLISHED.values():
        for port_name in name:
            variable = docker.port_variable(port_name)
            assert f"${{{variable}:-" in COMPOSE_TEXT, f"compose never reads {variable}"
            assert env[variable] == str(config.DEFAULT_PORTS[port_name] + 80)
    assert docker.project_name() == "delab-o80"


def test_published_ports_bind_loopback_only(services):
    for name, svc in services.items():
        for entry in svc.get("ports", []):
            assert str(entry).startswith("127.0.0.1:"), f"{name} publishes {entry}"
    for name in ("connect", "flink-jobmanager", "flink-taskmanager"):
        assert services[name]["network_mode"] == "host" and "ports" not in services[name]
    assert "bind-host: 127.0.0.1" in (DOCKER / "flink" / "settings.yaml").read_text()
    assert services["connect"]["environment"]["CONNECT_LISTENERS"].startswith("http://127.0.0.1:")


def test_on_demand_services_and_minio_are_behind_profiles(services):
    assert services["registry"]["profiles"] == services["mlflow"]["profiles"] == [docker.ON_DEMAND_PROFILE]
    assert services["minio"]["profiles"] == ["minio"]
    assert "optional" in COMPOSE_TEXT.split("minio:")[0].rsplit("# ----", 1)[1]
    core = {name for names in docker.CORE_SERVICES.values() for name in names}
    assert core == {name for name, svc in services.items() if "profiles" not in svc}


def test_versions_match_the_native_profile(services):
    kafka, debezium = pom_property("kafka.version"), pom_property("debezium.version")
    assert services["kafka"]["image"] == f"delab/kafka:{kafka}"
    assert services["connect"]["image"] == f"delab/connect:{kafka}-debezium-{debezium.removesuffix('.Final')}"
    assert "-f /src/infra/native/pom.xml" in DOCKERFILE  # the jars come from the native profile's poms
    flink = (NATIVE / "FLINK_VERSION").read_text().strip()
    assert services["flink-jobmanager"]["image"] == services["flink-taskmanager"]["image"] == f"delab/flink:{flink}"
    image_pins, lock = pins(DOCKER / "flink" / "requirements.txt"), pins(ROOT / "requirements" / "flink.lock")
    assert image_pins["apache-flink"] == flink
    assert {name: version for name, version in image_pins.items() if lock.get(name) != version} == {}
    tools = dict(line.split() for line in (NATIVE / "go-tools.txt").read_text().splitlines() if line[:1] not in "#")
    versitygw = tools["github.com/versity/versitygw/cmd/versitygw"]
    args = yaml.safe_load(COMPOSE_TEXT)["x-build"]["args"]
    assert args["VERSITYGW_VERSION"] == versitygw and services["s3"]["image"] == f"delab/versitygw:{versitygw}"
    assert args["GO_VERSION"] == versions_env()["GO_VERSION"]
    assert args["APICURIO_VERSION"] == pom_property("apicurio.registry.version")
    assert services["registry"]["image"] == f"delab/apicurio-registry:{args['APICURIO_VERSION']}"
    mlflow = pins(DOCKER / "mlflow" / "requirements.txt")
    assert services["mlflow"]["image"] == f"delab/mlflow:{mlflow['mlflow']}"
    mlops = ROOT / "requirements" / "mlops.lock"
    if mlops.exists():  # the server runs the versions of the labs' MLflow kernel
        lock = pins(mlops)
        assert {name: version for name, version in mlflow.items() if lock.get(name) != version} == {}


def test_credentials_match_delab_config(services):
    s3, pg = config.S3(), config.Postgres()
    assert env_of(services["s3"]) == {"ROOT_ACCESS_KEY": s3.access_key, "ROOT_SECRET_KEY": s3.secret_key}
    flink = env_of(services["flink-jobmanager"])
    assert (flink["S3_ACCESS_KEY"], flink["S3_SECRET_KEY"]) == (s3.access_key, s3.secret_key)
    mlflow = env_of(services["mlflow"])
    assert (mlflow["AWS_ACCESS_KEY_ID"], mlflow["AWS_SECRET_ACCESS_KEY"]) == (s3.access_key, s3.secret_key)
    command = services["mlflow"]["command"]
    ml = config.MLflow()
    assert f"--backend-store-uri=postgresql://{pg.user}:{pg.password}@postgres:5432/{ml.database}" in command
    assert f"--artifacts-destination=s3://{s3.bucket}/{ml.artifacts_prefix}" in command
    registry = env_of(services["registry"])
    assert registry["APICURIO_DATASOURCE_USERNAME"] == pg.user
    assert registry["APICURIO_DATASOURCE_PASSWORD"] == pg.password
    assert registry["APICURIO_DATASOURCE_URL"].endswith(f"/{config.SchemaRegistry.database}")
    init = (DOCKER / "postgres" / "initdb.d" / "10-delab.sql").read_text()
    from delab.stack.services.postgres import LEARNER_ROLE_ATTRIBUTES

    assert f"CREATE ROLE {pg.user} {LEARNER_ROLE_ATTRIBUTES} PASSWORD '{pg.password}'" in init
    assert f"CREATE DATABASE {pg.database} OWNER {pg.user}" in init
    assert "CREATE PUBLICATION dbz_publication FOR ALL TABLES" in init
    from delab.stack.services.postgres import LOG_LINE_PREFIX, LOG_STATEMENTS_FUNCTION

    assert (
        LOG_STATEMENTS_FUNCTION + ";\nGRANT EXECUTE ON FUNCTION public.delab_log_statements(text, text) TO delab;"
        in init
    )
    assert f"log_line_prefix={LOG_LINE_PREFIX}" in services["postgres"]["command"]
    for database in (config.SchemaRegistry.database, config.MLflow.database):
        assert f"CREATE DATABASE {database} OWNER {pg.user}" in init
    assert services["postgres"]["healthcheck"]["test"][-4:] == ["-U", pg.user, "-d", pg.database]


def test_postgres_settings_match_native():
    script = (DOCKER / "postgres" / "postgres.sh").read_text()
    for setting in ("wal_level = logical", "max_replication_slots = 10", "max_wal_senders = 10"):
        assert setting in script
    assert "postgresql-15" in DOCKERFILE


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_broker_settings_match_native(services):
    native_props = properties(SERVICES["kafka"].properties())
    env = env_of(services["kafka"])
    docker_props = {key[6:].lower().replace("_", "."): val for key, val in env.items() if key != "KAFKA_HEAP_OPTS"}
    # where the broker listens and keeps data differs by design (container listeners, a volume)
    placement = {
        "listeners",
        "advertised.listeners",
        "log.dirs",
        "listener.security.protocol.map",
        "inter.broker.listener.name",
        "controller.quorum.bootstrap.servers",
    }
    expected = {key: value for key, value in native_props.items() if key not in placement}
    assert {key: docker_props.get(key) for key in expected} == expected


def test_connect_worker_settings_match_native(services, monkeypatch, tmp_path):
    for name in [name for name in os.environ if name == "DELAB_PORT_OFFSET" or name.endswith("_PORT")]:
        monkeypatch.delenv(name)  # compared with the compose file's defaults: a checkout on its own ports too
    monkeypatch.setattr(layout, "build_path", lambda *parts, what="": tmp_path.joinpath(*parts))
    native_props = properties(SERVICES["connect"].properties())
    env = env_of(services["connect"])
    ports = config.DEFAULT_PORTS

    def resolved(value: str) -> str:  # compose's ${DELAB_X_PORT:-N} as the default N
        return re.sub(r"\$\{DELAB_([A-Z_]+)_PORT:-(\d+)\}", lambda m: str(ports[m[1].lower()]), value)

    docker_props = {
        key[8:].lower().replace("_", "."): resolved(val) for key, val in env.items() if key[:8] == "CONNECT_"
    }
    assert set(docker_props) == set(native_props)
    differ = {key for key in native_props if docker_props[key] != native_props[key]}
    assert differ == {"plugin.path"}  # the image's plugin folder
    assert docker_props["plugin.path"] == "/opt/connect-plugins"


def test_flink_settings_match_native(monkeypatch, tmp_path):
    monkeypatch.setattr(layout, "flink_python", lambda: tmp_path / "python")
    native_settings = SERVICES["flink"].settings()
    docker_settings = yaml.safe_load((DOCKER / "flink" / "settings.yaml").read_text())

    def flat(tree: dict, prefix: str = "") -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in tree.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    native_flat, docker_flat = flat(native_settings), flat(docker_settings)
    # where a file or a port lives differs by design; every other setting is the native profile's
    placement = ("io.tmp", "web.upload", "execution.checkpointing", "python.executable", "s3.", ".port")
    for key, value in native_flat.items():
        if not any(part in key for part in placement):
            assert docker_flat.get(key) == value, key
    assert docker_flat["jobmanager.rpc.port"] == "${FLINK_RPC_PORT}"
    assert docker_flat["rest.port"] == "${FLINK_REST_PORT}"
