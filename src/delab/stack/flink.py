"""PyFlink clients of the stack's Flink cluster (run in the delab-flink kernel).

``table_environment()`` / ``stream_environment()`` return environments that submit jobs to the standalone
cluster (not a mini-cluster inside the kernel). The Kafka, Iceberg and JDBC connectors are on the classpath of the
cluster and of the client's gateway, and the S3 filesystem plugin is configured for the stack's object store::

    from delab.stack import flink
    t_env = flink.table_environment()
    t_env.execute_sql(flink.iceberg_catalog_sql("lake"))
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from delab import config
from delab.stack import layout
from delab.stack.errors import MissingPrerequisite
from delab.stack.services import SERVICES

#: The interpreter of Python UDF workers inside the docker profile's TaskManager (infra/docker/Dockerfile, flink).
DOCKER_PYTHON = "/opt/venv/bin/python"


def connector_jars() -> list[Path]:
    """The connector jars (Kafka, Iceberg + AWS bundle, Hadoop client, PostgreSQL JDBC). They are on the classpath
    of the cluster's JVMs and of PyFlink's gateway (see ``client_env``), so jobs need no ``pipeline.jars``."""
    folder = layout.build_path("flink", "classpath", what="the Flink connector jars")
    return [Path(path) for path in sorted(glob.glob(str(folder / "*.jar")))]


def client_env() -> dict[str, str]:
    """Environment variables a PyFlink client needs before its Java gateway starts."""
    env = SERVICES["flink"].env()  # type: ignore[attr-defined]
    for key in ("FLINK_LIB_DIR", "FLINK_PID_DIR", "JVM_ARGS", "PATH"):
        env.pop(key, None)  # the client keeps the wheel's own lib/ and the kernel's PATH
    return env


def configure_client() -> None:
    """Point PyFlink at the stack's config and plugins; call before the first PyFlink environment is created."""
    if config.profile() == "docker":
        # the containers run the native profile's settings (same ports, same S3 endpoint): write the client's copy
        SERVICES["flink"].prepare()
    if not (layout.conf_dir("flink") / "config.yaml").exists():
        raise MissingPrerequisite("the Flink cluster has never started here: run delab.stack.require('flink') first")
    os.environ.update(client_env())


def configuration(parallelism: int = 1) -> dict[str, str]:
    """Settings that send jobs to the stack's cluster."""
    return {
        "execution.target": "remote",
        "rest.address": config.HOST,
        "rest.port": str(config.port("flink")),
        "parallelism.default": str(parallelism),
        "python.executable": DOCKER_PYTHON if config.profile() == "docker" else str(layout.flink_python()),
    }


def _init_filesystems() -> None:
    # PyFlink's gateway never initialises Flink's filesystems from the config and plugins folder (the `flink`
    # CLI does): without this, s3:// paths fail on the client side (e.g. the filesystem sink's staging folder).
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    conf = jvm.org.apache.flink.configuration.GlobalConfiguration.loadConfiguration(str(layout.conf_dir("flink")))
    plugins = jvm.org.apache.flink.core.plugin.PluginUtils.createPluginManagerFromRootFolder(conf)
    jvm.org.apache.flink.core.fs.FileSystem.initialize(conf, plugins)


_PINNED: dict[str, Any] = {}


def pin_planner_threads(t_env: Any) -> None:
    """Make the Table API planner usable from every py4j connection of this process (FLINK-23020).

    Calcite keeps the planner's metadata provider in a ThreadLocal that Flink sets only on the Java thread that
    created the planner. py4j serves each Python connection with its own Java thread, and opens a new connection
    whenever a cell is interrupted or another Python thread (a garbage collection, a Kafka client) uses the
    gateway at the same time; planning on that thread then fails with ``NullPointerException:
    metadataHandlerProvider``. This sets the provider on every idle connection's thread and on each new one.
    """
    from py4j.java_gateway import get_command_part
    from py4j.protocol import CALL_COMMAND_NAME, END_COMMAND_PART
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    client = gateway._gateway_client
    if getattr(client, "_delab_pinned", False):
        return
    jvm = gateway.jvm
    j_tenv = getattr(t_env, "_j_tenv", t_env)
    loader = j_tenv.getPlanner().getClass().getClassLoader()

    def planner_class(name: str) -> Any:
        return jvm.java.lang.Class.forName(name, True, loader)

    module = planner_class("org.apache.flink.table.planner.plan.metadata.FlinkDefaultRelMetadataProvider$")
    flink_provider = module.getField("MODULE$").get(None).INSTANCE()
    param_types = gateway.new_array(jvm.java.lang.Class, 1)
    param_types[0] = planner_class("org.apache.calcite.rel.metadata.RelMetadataProvider")
    args = gateway.new_array(jvm.java.lang.Object, 1)
    args[0] = flink_provider
    janino = planner_class("org.apache.calcite.rel.metadata.JaninoRelMetadataProvider")
    provider = janino.getMethod("of", param_types).invoke(None, args)
    thread_local = planner_class("org.apache.calcite.rel.metadata.RelMetadataQueryBase").getField("THREAD_PROVIDERS")
    thread_local = thread_local.get(None)
    _PINNED.update(provider=provider, thread_local=thread_local)  # keep both alive on the Java side
    command = CALL_COMMAND_NAME + thread_local._target_id + "\nset\n" + get_command_part(provider) + END_COMMAND_PART

    def pin(connection: Any) -> Any:
        connection.send_command(command)  # runs on the Java thread that serves this connection
        return connection

    create = client._create_connection
    client._create_connection = lambda: pin(create())
    idle = []
    while True:  # the idle connections, taken out so that no other thread uses one meanwhile
        try:
            idle.append(client.deque.pop())
        except IndexError:
            break
    for connection in reversed(idle):
        client._give_back_connection(pin(connection))
    client._delab_pinned = True


def table_environment(streaming: bool = True, parallelism: int = 1) -> Any:
    """A TableEnvironment whose jobs run on the stack's Flink cluster."""
    configure_client()
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    for key, value in configuration(parallelism).items():
        conf.set_string(key, value)
    builder = EnvironmentSettings.new_instance()
    builder = builder.in_streaming_mode() if streaming else builder.in_batch_mode()
    t_env = TableEnvironment.create(builder.with_configuration(conf).build())
    pin_planner_threads(t_env)
    _init_filesystems()
    return t_env


def stream_environment(parallelism: int = 1, settings: dict[str, str] | None = None) -> Any:
    """A StreamExecutionEnvironment whose jobs run on the stack's Flink cluster.

    Built with the Java constructor ``new StreamExecutionEnvironment(conf)``, which honours
    ``execution.target: remote``; PyFlink's ``get_execution_environment(conf)`` would start a local mini-cluster
    for ``execute_and_collect`` instead. Python functions of the job run in a loopback worker inside this process
    (kept alive by the kernel), which is how PyFlink runs code defined in a notebook. ``settings`` are extra
    configuration entries (``pipeline.name``, ``python.fn-execution.bundle.size`` …).
    """
    configure_client()
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.fn_execution.beam.beam_worker_pool_service import BeamFnLoopbackWorkerPoolServicer
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    conf = gateway.jvm.org.apache.flink.configuration.Configuration()
    entries = {
        **configuration(parallelism),
        "python.loopback-server.address": BeamFnLoopbackWorkerPoolServicer().start(),
        **(settings or {}),
    }
    for key, value in entries.items():
        conf.setString(key, value)
    env = StreamExecutionEnvironment(
        gateway.jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment(conf)
    )
    _init_filesystems()
    return env


def iceberg_catalog_sql(name: str = "lake", warehouse: str | None = None) -> str:
    """``CREATE CATALOG`` for an Iceberg JDBC catalog in the stack's Postgres with data in its object store."""
    pg, s3 = config.postgres(), config.s3()
    options = {
        "type": "iceberg",
        "catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        "uri": f"jdbc:postgresql://{pg.host}:{pg.port}/{pg.database}",
        "jdbc.user": pg.user,
        "jdbc.password": pg.password,
        "jdbc.schema-version": "V1",  # with view support
        "warehouse": warehouse or f"s3://{s3.bucket}/warehouse",
        "io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        "s3.endpoint": s3.endpoint,
        "s3.path-style-access": "true",
        "s3.access-key-id": s3.access_key,
        "s3.secret-access-key": s3.secret_key,
        "client.region": s3.region,
    }
    body = ",\n  ".join(f"'{key}' = '{value}'" for key, value in options.items())
    return f"CREATE CATALOG IF NOT EXISTS {name} WITH (\n  {body}\n)"
