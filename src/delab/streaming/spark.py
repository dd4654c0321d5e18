"""Spark Structured Streaming on a laptop: a local SparkSession with the Kafka source and sink, offline.

The Kafka connector is not part of the pyspark wheel. ``infra/native/spark/pom.xml`` resolves it (with its
closure minus what pyspark already ships) into ``<build>/spark/jars`` at ``make setup``; the session loads those
files through ``spark.jars`` — no ``spark.jars.packages``, no download at run time.

    from delab.streaming import spark as lab_spark
    spark = lab_spark.session("m03_l06")
    raw = spark.readStream.format("kafka").options(**lab_spark.kafka_options(topic)).load()
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from delab import config
from delab.stack import layout
from delab.stack.errors import MissingPrerequisite
from delab.stack.services import base as native


def connector_jars() -> list[str]:
    """The Spark Kafka connector's jars from the build folder (a one-line error when `make setup` has not run)."""
    folder = layout.build_path("spark", "jars", what="Spark's Kafka connector")
    jars = sorted(glob.glob(str(folder / "*.jar")))
    if not any("spark-sql-kafka" in Path(j).name for j in jars):
        raise MissingPrerequisite(f"Spark's Kafka connector is missing from {folder}: {layout.INSTALL_HINT}")
    return jars


def _cds() -> list[str]:
    import pyspark

    jars = glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "*.jar")) + connector_jars()
    return native.cds_flags("spark-driver", jars)


def session(app: str, shuffle_partitions: int = 2, extra: dict[str, str] | None = None):
    """A local[2] SparkSession for a lab: driver and block manager on 127.0.0.1, no web UI, 2 shuffle
    partitions, the Kafka connector on the class path, scratch space under the lab's folder. Reuses the
    kernel's running session if there is one (Spark allows one per JVM) and applies the SQL settings to it."""
    from pyspark.sql import SparkSession

    home = layout.java_home()
    if home:
        os.environ.setdefault("JAVA_HOME", str(home))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ["SPARK_LOCAL_IP"] = config.HOST
    scratch = config.lab_dir("spark_scratch")
    settings = {
        "spark.master": "local[2]",
        "spark.app.name": app,
        "spark.jars": ",".join(connector_jars()),
        "spark.driver.bindAddress": config.HOST,
        "spark.driver.host": config.HOST,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.default.parallelism": "2",
        "spark.driver.memory": os.environ.get("DELAB_SPARK_DRIVER_MEMORY", "768m"),
        # the same start-up trades as the stack's JVMs: C1 only, the serial collector, and a class-data archive
        # recorded when the first session's JVM exits (a driver start then costs about half: 8 s instead of 14)
        "spark.driver.extraJavaOptions": " ".join([*native.fast_start_flags(), *_cds()]),
        "spark.local.dir": str(scratch),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
        **(extra or {}),
    }
    builder = SparkSession.builder
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    for key, value in settings.items():  # a reused session: the SQL settings still apply
        if key.startswith("spark.sql.") and key != "spark.sql.warehouse.dir":
            spark.conf.set(key, value)
    return spark


def kafka_options(topic: str, bootstrap: str | None = None, **extra: Any) -> dict[str, str]:
    """Options of the Kafka source for one topic, from its earliest offset."""
    options = {
        "kafka.bootstrap.servers": bootstrap or config.kafka().bootstrap_servers,
        "subscribe": topic,
        "startingOffsets": "earliest",
    }
    options.update({key: str(value) for key, value in extra.items()})
    return options


def order_events(start: int = 0, limit: int = 600) -> list[dict]:
    """Order events from the shop (seed 7, scale 0.25), in order-id order: order_id, customer_id, channel,
    amount (the sum of its lines) and order_ts (ISO text, UTC), ready to be sent as JSON."""
    from delab import datasets

    shop = datasets.cached(7, 0.25)
    orders = shop.orders.drop_duplicates("order_id").sort_values("order_id").iloc[start : start + limit]
    lines = shop.order_items
    amounts = (lines.quantity * lines.unit_price).groupby(lines.order_id).sum().round(2)
    return [
        {
            "order_id": int(row.order_id),
            "customer_id": int(row.customer_id),
            "channel": str(row.channel),
            "amount": float(amounts.get(row.order_id, 0.0)),
            "order_ts": row.order_ts.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        for row in orders.itertuples()
    ]


def progress_table(query) -> Any:
    """One row per micro-batch of a query (``recentProgress``): batch id, input rows, rows/s and the time the
    batch took, as a pandas DataFrame."""
    import pandas as pd

    rows = [
        {
            "batch": p["batchId"],
            "input rows": p["numInputRows"],
            "rows/s": round(p.get("processedRowsPerSecond") or 0.0, 1),
            "duration ms": p.get("durationMs", {}).get("triggerExecution"),
            "trigger at": p["timestamp"][11:23],
        }
        for p in query.recentProgress
    ]
    return pd.DataFrame(rows, columns=["batch", "input rows", "rows/s", "duration ms", "trigger at"])


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, every: float = 0.25) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; returns whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def checkpoint_tree(folder: Path | str) -> list[str]:
    """The files of a streaming checkpoint, relative to it (offsets/N, commits/N, sources/…, metadata)."""
    root = Path(folder)
    return sorted(
        str(path.relative_to(root)) for path in root.rglob("*") if path.is_file() and not path.name.startswith(".")
    )
