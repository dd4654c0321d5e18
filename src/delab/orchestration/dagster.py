"""Dagster pieces for the labs: two resources built from delab.config, and a lineage drawing.

* ``ShopPostgres`` — a ``ConfigurableResource`` for the stack's Postgres: its fields are the connection settings
  (config, visible in the UI), ``query(sql)`` is what assets call. ``ShopPostgres.from_config()`` fills it from
  delab.config (``DELAB_POSTGRES_*`` override).
* ``ObjectStore`` — the same for the S3 object store: ``put_bytes``, ``get_bytes``, ``list_keys``.
* ``lineage(defs)`` lists the asset graph's edges; ``draw_lineage(defs)`` draws it, one column per depth.

Everything runs in-process (``materialize``, ``execute_in_process``): no daemon, no webserver. Importing this
module imports Dagster, so checks import it inside their functions.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

import dagster as dg
import pandas as pd

from delab import config

# Dagster closes its per-run event loop with run_until_complete(), which cannot run inside Jupyter's own loop:
# the coroutine it leaves behind only triggers this warning (dagster 1.13, execution/context_creation_job.py).
warnings.filterwarnings("ignore", message="coroutine 'BaseEventLoop.shutdown_asyncgens' was never awaited")


def instance(log_level: str = "INFO") -> dg.DagsterInstance:
    """An in-memory Dagster instance (where runs and events are recorded) whose runs log at ``log_level``.

    Without one, ``materialize`` makes an instance per call that prints every engine event at DEBUG. ``dagster
    dev`` uses a persistent instance under ``DAGSTER_HOME`` instead, to keep the history of runs.
    """
    return dg.DagsterInstance.ephemeral(settings={"python_logs": {"python_log_level": log_level}})


class ShopPostgres(dg.ConfigurableResource):
    """The shop's Postgres. Fields are the resource's config; ``query`` returns a DataFrame."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    @classmethod
    def from_config(cls) -> ShopPostgres:
        pg = config.postgres()
        return cls(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Run one query and return its rows as a DataFrame (column names from the query)."""
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.dbname
        ) as conn:
            cursor = conn.execute(sql, params)
            columns = [c.name for c in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=columns)


class ObjectStore(dg.ConfigurableResource):
    """An S3-compatible object store and one bucket of it."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str
    bucket: str

    @classmethod
    def from_config(cls) -> ObjectStore:
        s3 = config.s3()
        return cls(
            endpoint=s3.endpoint,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            region=s3.region,
            bucket=s3.bucket,
        )

    def client(self):
        """A boto3 S3 client (path-style addressing, as local object stores need), made once per settings."""
        return _s3_client(self.endpoint, self.access_key, self.secret_key, self.region)

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key``; returns the object's s3:// URI."""
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)
        return f"s3://{self.bucket}/{key}"

    def get_bytes(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under a prefix, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@functools.cache
def _s3_client(endpoint: str, access_key: str, secret_key: str, region: str):
    # building a boto3 client costs ~0.3 s (botocore loads its service models): one per settings is enough
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(s3={"addressing_style": "path"}),
    )


def show_source(obj: Any):
    """Display an object's source code in the notebook (how a resource is written, say)."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


# ---------------------------------------------------------------------------------------------- lineage


def lineage(defs: dg.Definitions) -> list[tuple[str, str]]:
    """The asset graph's edges, (upstream, downstream), read from the Definitions' resolved asset graph."""
    graph = defs.resolve_asset_graph()
    edges = []
    for key in graph.get_all_asset_keys():
        edges += [(parent.to_user_string(), key.to_user_string()) for parent in graph.get(key).parent_keys]
    return sorted(edges)


def _depths(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    depth = dict.fromkeys(nodes, 0)
    for _ in nodes:  # longest path from a root; the graph is acyclic, so |nodes| passes are enough
        for up, down in edges:
            depth[down] = max(depth[down], depth[up] + 1)
    return depth


def draw_lineage(defs: dg.Definitions, highlight: set[str] | frozenset[str] = frozenset(), ax=None):
    """Draw the asset graph left to right (roots first); ``highlight`` colours some assets."""
    import matplotlib.pyplot as plt

    edges = lineage(defs)
    nodes = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
    depth = _depths(nodes, edges)
    columns: dict[int, list[str]] = {}
    for node in sorted(nodes, key=lambda n: (depth[n], n)):
        columns.setdefault(depth[node], []).append(node)
    where = {}
    for x, members in columns.items():
        for i, node in enumerate(members):
            where[node] = (x * 3.0, (len(members) - 1) / 2 - i)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.6 * (len(columns) + 1), 1.0 + 0.9 * max(map(len, columns.values()))))
    for up, down in edges:
        ax.annotate(
            "",
            xy=where[down],
            xytext=where[up],
            arrowprops={"arrowstyle": "-|>", "color": "#888", "shrinkA": 38, "shrinkB": 38},
        )
    for node, (x, y) in where.items():
        colour = "#f4a259" if node in highlight else "#bcd4e6"
        ax.text(x, y, node, ha="center", va="center", bbox={"boxstyle": "round", "fc": colour, "ec": "#456"})
    ax.set_xlim(-1.8, 3.0 * max(columns) + 1.8)
    ax.set_ylim(min(y for _, y in where.values()) - 0.8, max(y for _, y in where.values()) + 0.8)
    ax.axis("off")
    return ax
