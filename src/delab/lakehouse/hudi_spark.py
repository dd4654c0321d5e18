"""Apache Hudi written by Hudi itself: Spark jobs with Hudi's bundle, on the stack's object store.

Hudi's writers are its Spark, Flink and Java clients. The only Hudi Spark bundle served to this project is
``hudi-spark3.5-bundle_2.12`` (infra/native/hudi/pom.xml), which needs Spark 3.5 / Scala 2.12, while the main
kernel has pyspark 4. So pyspark 3.5 lives in the Flink environment (docs/environments.md) and a lab in the main
kernel hands it a *job*: the batches to write (Parquet files in the lab's folder), the tables and their Hudi
options. The job runs in that environment's Python as a subprocess — one Spark session, local[2], driver on
127.0.0.1 — writes and upserts each table on ``s3://`` (Hadoop's s3a filesystem pointed at the stack's object
store), and answers with what happened (each commit's instant, seconds, rows)::

    from delab.lakehouse import hudi_spark
    job = hudi_spark.HudiJob(batches=[first_week, changes], tables=[
        hudi_spark.HudiTableSpec("orders_cow", uri, "COPY_ON_WRITE", record_key="order_id",
                                 precombine_field="order_ts", partition_field="channel")])
    result = hudi_spark.run(job)

Read the tables back with hudi-rs (``storage.hudi_table(uri)``: snapshot, time travel, incremental queries) in
any kernel, and list their timeline with ``timeline(uri)``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from delab.grading import LabFeedback

TABLE_TYPES = ("COPY_ON_WRITE", "MERGE_ON_READ")


class HudiJobError(LabFeedback):
    """The Spark job that writes Hudi failed: shown as one line."""

    label = "Hudi Spark job failed"


@dataclass(frozen=True)
class HudiTableSpec:
    """One Hudi table a job writes: where, which type, and its keys."""

    name: str
    uri: str
    table_type: str = "COPY_ON_WRITE"
    record_key: str = "id"
    precombine_field: str = "ts"
    partition_field: str = ""
    extra_options: dict[str, str] = field(default_factory=dict)

    def options(self) -> dict[str, str]:
        """The ``hoodie.*`` write options Spark's ``df.write.format("hudi")`` gets for this table."""
        return write_options(
            self.name, self.table_type, self.record_key, self.precombine_field, self.partition_field
        ) | dict(self.extra_options)


def write_options(
    table_name: str, table_type: str, record_key: str, precombine_field: str, partition_field: str = ""
) -> dict[str, str]:
    """Hudi's Spark datasource options for an upsert into ``table_name``.

    Hudi's metadata table (an index of files and column statistics kept as a Hudi table under
    ``.hoodie/metadata``, on by default) is off: on tables of a few files it only adds its own commits, which
    tripled the time of a first write here. The embedded timeline server is off too (it would listen on every
    interface; markers are then written directly to storage), and shuffles use the two cores of local[2]."""
    if table_type not in TABLE_TYPES:
        raise ValueError(f"table_type must be one of {TABLE_TYPES}, not {table_type!r}")
    options = {
        "hoodie.table.name": table_name,
        "hoodie.datasource.write.table.type": table_type,
        "hoodie.datasource.write.operation": "upsert",
        "hoodie.datasource.write.recordkey.field": record_key,
        "hoodie.datasource.write.precombine.field": precombine_field,
        "hoodie.datasource.write.partitionpath.field": partition_field,
        "hoodie.datasource.write.hive_style_partitioning": "true",
        "hoodie.metadata.enable": "false",
        "hoodie.embed.timeline.server": "false",
        "hoodie.write.markers.type": "DIRECT",
        "hoodie.upsert.shuffle.parallelism": "2",
        "hoodie.insert.shuffle.parallelism": "2",
        "hoodie.bulkinsert.shuffle.parallelism": "2",
        "hoodie.datasource.write.reconcile.schema": "false",
    }
    if not partition_field:
        options["hoodie.datasource.write.keygenerator.class"] = "org.apache.hudi.keygen.NonpartitionedKeyGenerator"
    return options


@dataclass
class HudiJob:
    """What to write: every batch, in order, upserted into every table."""

    batches: list[Any]  # pyarrow Tables
    tables: list[HudiTableSpec]


@dataclass(frozen=True)
class HudiCommit:
    table: str
    batch: int
    instant: str
    seconds: float
    rows_in: int


@dataclass(frozen=True)
class HudiJobResult:
    commits: list[HudiCommit]
    session_seconds: float
    total_seconds: float

    def commits_of(self, table: str) -> list[HudiCommit]:
        return [c for c in self.commits if c.table == table]


def timeline(uri: str) -> list[dict[str, Any]]:
    """The table's timeline as Hudi 1.x stores it in ``.hoodie/timeline/``: one row per instant with its action
    and the states it went through (``requested``, ``inflight``, then ``<instant>_<completion time>.<action>``
    once completed), oldest first. The metadata table's own timeline is left out."""
    from delab.lakehouse import storage

    prefix = storage.s3_key(uri).rstrip("/") + "/.hoodie/timeline/"
    instants: dict[str, dict[str, Any]] = {}
    for key in storage.objects_under(uri):
        if not key.startswith(prefix) or "/" in key[len(prefix) :] or key == prefix:
            continue
        name = key[len(prefix) :]
        stem, _, rest = name.partition(".")
        requested, _, completed = stem.partition("_")
        row = instants.setdefault(requested, {"instant": requested, "action": "", "states": [], "completed": None})
        if completed:
            row["action"], row["completed"] = rest, completed
            row["states"].append("completed")
        elif rest.endswith("requested"):
            row["action"] = row["action"] or rest.removesuffix(".requested")
            row["states"].insert(0, "requested")
        else:
            row["states"].insert(1 if "requested" in row["states"] else 0, "inflight")
    return [instants[k] for k in sorted(instants)]


def jars() -> list[str]:
    """Hudi's Spark 3.5 bundle and the s3a filesystem jars from the build folder (`make setup` puts them there)."""
    from delab.stack import layout
    from delab.stack.errors import MissingPrerequisite

    folder = layout.build_path("hudi", "jars", what="Apache Hudi's Spark bundle")
    found = sorted(str(p) for p in folder.glob("*.jar"))
    if not any("hudi-spark" in Path(j).name for j in found):
        raise MissingPrerequisite(f"Hudi's Spark bundle is missing from {folder}: {layout.INSTALL_HINT}")
    return found


def run(job: HudiJob, timeout: float = 600) -> HudiJobResult:
    """Run ``job`` in the Flink environment's Python (pyspark 3.5) and wait for it; one line on failure.

    ``timeout`` is only a safety net: the lab's job (4 writes) took 2-3 min on 2 cores at a load average of
    40-50 (2026-12); it has not been timed on an idle machine yet (docs/bench.md)."""
    import pyarrow.parquet as pq

    from delab import config
    from delab.stack import layout

    if not job.batches or not job.tables:
        raise HudiJobError("a Hudi job needs at least one batch and one table.")
    folder = config.lab_dir("hudi_spark") / uuid.uuid4().hex[:8]
    folder.mkdir(parents=True)
    paths = []
    for index, batch in enumerate(job.batches):
        path = folder / f"batch-{index}.parquet"
        pq.write_table(batch, path)
        paths.append(str(path))
    spec = {
        "batches": paths,
        "tables": [asdict(t) | {"options": t.options()} for t in job.tables],
        "jars": jars(),
        "scratch": str(folder),
    }
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [str(layout.flink_python()), "-m", "delab.lakehouse.hudi_spark"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise HudiJobError(f"the Spark job did not finish within {timeout:.0f} s") from None
    finally:
        for path in paths:
            Path(path).unlink(missing_ok=True)
    if done.returncode != 0:
        raise HudiJobError(_first_cause(done.stderr), hint="the full Java trace is in the job's stderr")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return HudiJobResult(
        commits=[HudiCommit(**c) for c in answer["commits"]],
        session_seconds=answer["session_seconds"],
        total_seconds=round(time.perf_counter() - started, 1),
    )


def _first_cause(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for marker in ("org.apache.hudi", "Caused by:", "Exception:", "Error"):
        for line in lines:
            if marker in line:
                return line[:400]
    return (lines[-1] if lines else "no output")[:400]


# ------------------------------------------------------------------------------ the job (Flink environment)


def spark_session(jar_paths: list[str], scratch: str) -> Any:
    """A local[2] Spark 3.5 session with Hudi's extensions and ``s3://`` mapped to the stack's object store."""
    from pyspark.sql import SparkSession

    from delab import config
    from delab.stack import layout
    from delab.stack.services import base as native

    home = layout.java_home()
    if home:
        os.environ.setdefault("JAVA_HOME", str(home))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["SPARK_LOCAL_IP"] = config.HOST
    s3 = config.s3()
    endpoint = s3.endpoint
    s3a = {
        "endpoint": endpoint,
        "endpoint.region": s3.region,
        "path.style.access": "true",
        "connection.ssl.enabled": str(endpoint.startswith("https://")).lower(),
        "access.key": s3.access_key,
        "secret.key": s3.secret_key,
        "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        # keep directory markers: deleting them after each write is a multi-object delete that the S3 gateway
        # refused and Hadoop 3.3 retried for minutes (RUN here)
        "directory.marker.retention": "keep",
    }
    settings = {
        "spark.master": "local[2]",
        "spark.app.name": "delab-hudi",
        "spark.jars": ",".join(jar_paths),
        "spark.driver.bindAddress": config.HOST,
        "spark.driver.host": config.HOST,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.driver.memory": os.environ.get("DELAB_SPARK_DRIVER_MEMORY", "768m"),
        # the stack's JVM start-up trades (C1 only, serial GC); no class-data archive: recording one for Spark's
        # and Hudi's 400 MB of jars at the JVM's exit cost more than the job on a loaded machine
        "spark.driver.extraJavaOptions": " ".join(native.fast_start_flags()),
        "spark.local.dir": scratch,
        "spark.sql.warehouse.dir": f"{scratch}/warehouse",
        "spark.sql.session.timeZone": "UTC",
        # pyarrow's zone-less timestamps would be read as TIMESTAMP_NTZ, a type Hudi 1.0's Avro schema refuses
        "spark.sql.parquet.inferTimestampNTZ.enabled": "false",
        # what Hudi's Spark quick start asks for
        "spark.serializer": "org.apache.spark.serializer.KryoSerializer",
        "spark.sql.extensions": "org.apache.spark.sql.hudi.HoodieSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.hudi.catalog.HoodieCatalog",
        "spark.kryo.registrator": "org.apache.spark.HoodieSparkKryoRegistrar",
        **{f"spark.hadoop.fs.s3a.{k}": v for k, v in s3a.items()},
        # the same filesystem for s3:// (what hudi-rs and the labs' URIs use)
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }
    builder = SparkSession.builder
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _latest_instant(spark: Any, uri: str) -> str:
    """The instant of the table's newest commit: every row a commit writes carries it in _hoodie_commit_time."""
    return spark.read.format("hudi").load(uri).selectExpr("max(_hoodie_commit_time)").first()[0]


def _job(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    spark = spark_session(spec["jars"], spec["scratch"])
    session_seconds = round(time.perf_counter() - started, 1)
    commits = []
    try:
        batches = [spark.read.parquet(path) for path in spec["batches"]]
        for table in spec["tables"]:
            for index, batch in enumerate(batches):
                rows = batch.count()
                began = time.perf_counter()
                batch.write.format("hudi").options(**table["options"]).mode("append").save(table["uri"])
                seconds = round(time.perf_counter() - began, 2)
                instant = _latest_instant(spark, table["uri"])
                commits.append(
                    {"table": table["name"], "batch": index, "instant": instant, "seconds": seconds, "rows_in": rows}
                )
    finally:
        spark.stop()
    return {"commits": commits, "session_seconds": session_seconds}


def main() -> None:
    """Entry point of ``python -m delab.lakehouse.hudi_spark`` (the job spec as JSON on stdin)."""
    spec = json.loads(sys.stdin.read())
    print(json.dumps(_job(spec)))


if __name__ == "__main__":
    main()
