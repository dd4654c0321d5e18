"""The schema registry: Apicurio Registry (Apache-2.0) with its Confluent-compatible API, stored in Postgres.

On demand: ``stack.require("registry")`` or ``delab stack up registry`` starts it (it is not part of the core
stack). Clients use the Confluent API at ``config.schema_registry().ccompat_url`` — confluent-kafka's
``SchemaRegistryClient`` and its Avro/Protobuf/JSON Schema serializers, as against Confluent's own registry.
"""

from __future__ import annotations

import os
from pathlib import Path

from delab import config
from delab.stack import layout
from delab.stack.errors import MissingPrerequisite, ServiceFailed
from delab.stack.probes import ProbeFailed, http_json
from delab.stack.services.base import HOST, NativeService, ProcessSpec, fast_start_flags, wait_for_dependency
from delab.stack.services.postgres import probe_postgres

#: Apicurio Registry 3.x is built for Java 21 (class file 65): Java 17 fails with UnsupportedClassVersionError
JAVA_MINIMUM = 21
JAVA_OVERRIDE = "DELAB_REGISTRY_JAVA_HOME"
JAVA_HINT = (
    f"the schema registry (Apicurio Registry) needs Java {JAVA_MINIMUM}+: install one beside Java 17 (Debian/Ubuntu: "
    "a Temurin 21 or 25 package; macOS: brew install openjdk@21; conda: conda install -c conda-forge openjdk=21) "
    f"and, if it is not found by itself, export {JAVA_OVERRIDE}=<its home>"
)


def registry_java_home() -> Path:
    """A JDK of Java 21+ for the registry (``$DELAB_REGISTRY_JAVA_HOME``, ``$JAVA_HOME``, PATH, the usual JVM
    folders); a one-line MissingPrerequisite naming what to install when there is none."""
    home = layout.find_java_home(JAVA_MINIMUM, JAVA_OVERRIDE)
    if home is None:
        raise MissingPrerequisite(JAVA_HINT)
    return home


def probe_registry() -> None:
    """Ready on the management port, and the Confluent-compatible API answers with the three schema formats."""
    registry = config.schema_registry()
    health = http_json(f"{registry.management_url.rstrip('/')}/health/ready")
    if not isinstance(health, dict) or health.get("status") != "UP":
        raise ProbeFailed(f"/health/ready says {health!r:.120}")
    types = http_json(f"{registry.ccompat_url}/schemas/types")
    if not isinstance(types, list) or not {"AVRO", "PROTOBUF", "JSON"} <= set(types):
        raise ProbeFailed(f"the Confluent-compatible API lists schema types {types!r:.120}")


def ensure_database(name: str) -> None:
    """Create the registry's own Postgres database (owned by the learner role) if it is missing."""
    import psycopg

    pg = config.postgres()
    try:
        with psycopg.connect(
            host=pg.host,
            port=pg.port,
            user=pg.user,
            password=pg.password,
            dbname=pg.database,
            connect_timeout=5,
            autocommit=True,
        ) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as error:
        raise ServiceFailed(f"creating the registry's database {name!r} failed: {str(error).strip()}") from None


class Registry(NativeService):
    """Apicurio Registry's Quarkus server bundle (``java -jar quarkus-run.jar``) on Java 21+, Postgres storage."""

    name = "registry"
    on_demand = True
    depends_on = ("postgres",)
    start_timeout = 120.0
    heap = os.environ.get("DELAB_REGISTRY_HEAP", "256m")

    def ports(self) -> dict[str, int]:
        return {
            "schema_registry": config.port("schema_registry"),
            "schema_registry_management": config.port("schema_registry_management"),
        }

    def endpoint(self) -> str:
        return config.schema_registry().ccompat_url

    def ui_url(self) -> str | None:
        return f"{config.schema_registry().url}/apis/registry/v3/system/info"

    def prepare(self) -> None:
        registry_java_home()
        layout.build_path("registry", "quarkus-run.jar", what="the schema registry (Apicurio bundle)")
        # Postgres listens before its bootstrap has made the learner role (a fresh cluster): wait for it
        wait_for_dependency(self.name, probe_postgres, "postgres")
        ensure_database(config.schema_registry().database)
        layout.data_dir("registry").mkdir(parents=True, exist_ok=True)

    def system_properties(self) -> list[str]:
        """Quarkus and Apicurio settings, as -D flags (the bundle reads no file of ours)."""
        pg, registry = config.postgres(), config.schema_registry()
        settings = {
            "quarkus.http.host": HOST,
            "quarkus.http.port": config.port("schema_registry"),
            # readiness and metrics live on the management interface (default port 9000: taken too often)
            "quarkus.management.host": HOST,
            "quarkus.management.port": config.port("schema_registry_management"),
            "apicurio.storage.kind": "sql",
            "apicurio.storage.sql.kind": "postgresql",
            "apicurio.datasource.url": f"jdbc:postgresql://{pg.host}:{pg.port}/{registry.database}",
            "apicurio.datasource.username": pg.user,
            "apicurio.datasource.password": pg.password,
            # labs delete their own subjects to run again from a clean slate (Apicurio refuses deletes by default)
            "apicurio.rest.deletion.group.enabled": "true",
            "apicurio.rest.deletion.artifact.enabled": "true",
            "apicurio.rest.deletion.artifact-version.enabled": "true",
            "quarkus.log.console.color": "false",
        }
        return [f"-D{key}={value}" for key, value in settings.items()]

    def processes(self) -> list[ProcessSpec]:
        home = registry_java_home()
        bundle = layout.build_path("registry", "quarkus-run.jar", what="the schema registry (Apicurio bundle)")
        return [
            ProcessSpec(
                "registry",
                [
                    str(home / "bin" / "java"),
                    "-Xms64m",
                    f"-Xmx{self.heap}",
                    *fast_start_flags(),
                    "-XX:+ExitOnOutOfMemoryError",
                    "-Djava.awt.headless=true",
                    *self.system_properties(),
                    "-jar",
                    str(bundle),
                ],
                env={"JAVA_HOME": str(home)},
                cwd=layout.data_dir("registry"),
            )
        ]

    def probe(self) -> None:
        probe_registry()
