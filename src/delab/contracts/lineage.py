"""An OpenLineage collector for lab 05.04 (groundwork): an HTTP receiver of the project that accepts the events
openlineage-python's ``HttpTransport`` POSTs, and stores them as a lineage graph in Postgres — events, dataset
edges (job reads X, writes Y) and column edges (from the ColumnLineage facet) — with recursive queries for
impact analysis (downstream) and root-cause tracing (upstream).

Marquez, the reference OpenLineage server, is not published on Maven Central (only its Java client is), so the
stack cannot run it; this store keeps the same model as Marquez (jobs, runs, datasets, dataset versions through
events) in three tables and accepts the same endpoint (``POST /api/v1/lineage``), so a job pointed at it would
work unchanged against Marquez.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from delab import clients
from delab.localhttp import LocalHTTPService

ENDPOINT = "api/v1/lineage"
#: the ``producer`` of every event the labs emit (OpenLineage wants a URI naming the code that emitted it)
PRODUCER = "https://github.com/delab/data-engineering-labs"


def create_store(conn, schema: str) -> None:
    """(Re)create the lineage store in ``schema``: events, dataset edges and column edges."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.execute(f"DROP TABLE IF EXISTS {schema}.lineage_events, {schema}.dataset_edges, {schema}.column_edges")
    conn.execute(
        f"""CREATE TABLE {schema}.lineage_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
              run_id uuid NOT NULL, event_type text, job text NOT NULL, event_time timestamptz NOT NULL,
              payload jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())"""
    )
    conn.execute(
        f"""CREATE TABLE {schema}.dataset_edges (job text NOT NULL, source text NOT NULL, target text NOT NULL,
              PRIMARY KEY (job, source, target))"""
    )
    conn.execute(
        f"""CREATE TABLE {schema}.column_edges (source text NOT NULL, source_field text NOT NULL,
              target text NOT NULL, target_field text NOT NULL, transformation text,
              PRIMARY KEY (source, source_field, target, target_field))"""
    )


def _name(dataset: dict) -> str:
    return f"{dataset['namespace']}/{dataset['name']}"


def store_event(conn, schema: str, event: dict) -> None:
    """Keep one event and the edges it declares (idempotent: an edge seen again is not duplicated)."""
    job = f"{event['job']['namespace']}/{event['job']['name']}"
    with conn.transaction():
        conn.execute(
            f"""INSERT INTO {schema}.lineage_events (run_id, event_type, job, event_time, payload)
                VALUES (%s, %s, %s, %s, %s)""",
            (event["run"]["runId"], event.get("eventType"), job, event["eventTime"], json.dumps(event)),
        )
        if event.get("eventType") not in (None, "COMPLETE"):
            return  # the graph is what completed runs did
        for source in event.get("inputs") or []:
            for target in event.get("outputs") or []:
                conn.execute(
                    f"INSERT INTO {schema}.dataset_edges VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (job, _name(source), _name(target)),
                )
        for target in event.get("outputs") or []:
            facet = (target.get("facets") or {}).get("columnLineage") or {}
            for field, spec in (facet.get("fields") or {}).items():
                for source in spec.get("inputFields") or []:
                    kinds = [t.get("subtype") or t.get("type") for t in source.get("transformations") or []]
                    conn.execute(
                        f"""INSERT INTO {schema}.column_edges VALUES (%s, %s, %s, %s, %s)
                            ON CONFLICT DO NOTHING""",
                        (_name(source), source["field"], _name(target), field, ",".join(k for k in kinds if k)),
                    )


class LineageReceiver(LocalHTTPService):
    """``POST /api/v1/lineage``: each OpenLineage event is stored in Postgres as it arrives (the transport is real
    HTTP; point ``HttpConfig(url=receiver.base_url)`` at it)."""

    path = f"/{ENDPOINT}"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.errors: list[str] = []
        super().__init__()

    @property
    def base_url(self) -> str:
        return self.url.removesuffix(self.path)

    def respond(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method != "POST" or not path.startswith(self.path):
            return 404, {"error": "POST OpenLineage events to /api/v1/lineage"}
        try:
            event = json.loads(body)
            with clients.postgres() as conn:
                store_event(conn, self.schema, event)
        except Exception as error:  # a bad event is refused, not fatal to the receiver
            self.errors.append(f"{type(error).__name__}: {error}")
            return 400, {"error": str(error)[:200]}
        return 201, {"stored": True}


def http_client(receiver: LineageReceiver):
    """An ``OpenLineageClient`` whose ``HttpTransport`` posts to the receiver."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    return OpenLineageClient(transport=HttpTransport(HttpConfig(url=receiver.base_url, endpoint=ENDPOINT)))


def dataset(
    namespace: str,
    name: str,
    columns: dict[str, str] | None = None,
    lineage: dict | None = None,
    *,
    output: bool = False,
):
    """An Input/OutputDataset with a schema facet (``columns`` name -> type) and, for an output, a column
    lineage facet from ``lineage``: ``{field: [(source namespace, source name, source field, transformation)]}``
    (transformation: IDENTITY, TRANSFORMATION, AGGREGATION, MASKED…)."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import column_lineage_dataset, schema_dataset

    facets: dict[str, Any] = {}
    if columns:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=c, type=t) for c, t in columns.items()]
        )
    if lineage:
        fields = {}
        for field, sources in lineage.items():
            fields[field] = column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace=ns,
                        name=name_,
                        field=source_field,
                        transformations=[
                            column_lineage_dataset.Transformation(
                                type="DIRECT" if kind in ("IDENTITY", "TRANSFORMATION", "AGGREGATION") else "INDIRECT",
                                subtype=kind,
                            )
                        ],
                    )
                    for ns, name_, source_field, kind in sources
                ]
            )
        facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields)
    cls = OutputDataset if output else InputDataset
    return cls(namespace=namespace, name=name, facets=facets)


def as_dict(obj) -> dict:
    """An OpenLineage event, dataset or facet as the JSON the transport sends (to look at it)."""
    from openlineage.client.serde import Serde

    return Serde.to_dict(obj)


def emit_run(client, job_namespace: str, job_name: str, inputs: list, outputs: list, failed: bool = False) -> str:
    """Emit START then COMPLETE (or FAIL) for one run of a job; returns the run id."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

    run = Run(runId=str(uuid.uuid4()))
    job = Job(namespace=job_namespace, name=job_name)
    for state in (RunState.START, RunState.FAIL if failed else RunState.COMPLETE):
        client.emit(
            RunEvent(
                eventType=state,
                eventTime=datetime.now(UTC).isoformat(),
                run=run,
                job=job,
                inputs=inputs,
                outputs=outputs,
                producer=PRODUCER,
            )
        )
    return run.runId


def downstream(conn, schema: str, source: str, field: str) -> list[tuple[str, str, int]]:
    """Impact analysis: every (dataset, column, hops) that depends on ``source.field``, transitively."""
    return conn.execute(
        f"""WITH RECURSIVE impact(target, target_field, hops) AS (
                SELECT target, target_field, 1 FROM {schema}.column_edges
                 WHERE source = %s AND source_field = %s
                UNION
                SELECT e.target, e.target_field, i.hops + 1 FROM {schema}.column_edges e
                  JOIN impact i ON e.source = i.target AND e.source_field = i.target_field
                 WHERE i.hops < 20)
            SELECT target, target_field, min(hops) FROM impact GROUP BY 1, 2 ORDER BY 3, 1, 2""",
        (source, field),
    ).fetchall()


def upstream(conn, schema: str, target: str, field: str) -> list[tuple[str, str, int]]:
    """Root-cause tracing: every (dataset, column, hops) that ``target.field`` is computed from, transitively."""
    return conn.execute(
        f"""WITH RECURSIVE cause(source, source_field, hops) AS (
                SELECT source, source_field, 1 FROM {schema}.column_edges
                 WHERE target = %s AND target_field = %s
                UNION
                SELECT e.source, e.source_field, c.hops + 1 FROM {schema}.column_edges e
                  JOIN cause c ON e.target = c.source AND e.target_field = c.source_field
                 WHERE c.hops < 20)
            SELECT source, source_field, min(hops) FROM cause GROUP BY 1, 2 ORDER BY 3, 1, 2""",
        (target, field),
    ).fetchall()


def pg_namespace() -> str:
    """The OpenLineage namespace of the stack's Postgres (the naming spec: ``postgres://host:port``)."""
    from delab import config

    pg = config.postgres()
    return f"postgres://{pg.host}:{pg.port}"


def pg_name(schema: str, table: str) -> str:
    """The OpenLineage dataset name of a Postgres table: ``database.schema.table``."""
    from delab import config

    return f"{config.postgres().database}.{schema}.{table}"


def table_dataset(conn, schema: str, table: str, lineage: dict | None = None, *, output: bool = False):
    """A dataset for the Postgres table ``schema.table`` whose schema facet is read from the catalog (the columns
    the table really has, in order) — a hand-written facet drifts from the table, this one cannot."""
    columns = conn.execute(
        """SELECT column_name, data_type FROM information_schema.columns
            WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position""",
        (schema, table),
    ).fetchall()
    return dataset(pg_namespace(), pg_name(schema, table), dict(columns), lineage, output=output)


def events(conn, schema: str):
    """The stored events, oldest first: run id, type, job, inputs and outputs (as dataset names)."""
    import pandas as pd

    rows = conn.execute(
        f"""SELECT run_id::text, event_type, job,
                   (SELECT coalesce(array_agg(i->>'name'), '{{}}') FROM jsonb_array_elements(payload->'inputs') i),
                   (SELECT coalesce(array_agg(o->>'name'), '{{}}') FROM jsonb_array_elements(payload->'outputs') o),
                   payload #>> '{{run,facets,errorMessage,message}}'
              FROM {schema}.lineage_events ORDER BY id"""
    ).fetchall()
    return pd.DataFrame(rows, columns=["run_id", "event_type", "job", "inputs", "outputs", "error"])


def dataset_graph(conn, schema: str):
    """The dataset-level graph (a networkx DiGraph, edges labelled with the job) for a picture."""
    import networkx as nx

    graph = nx.DiGraph()
    for job, source, target in conn.execute(f"SELECT job, source, target FROM {schema}.dataset_edges"):
        graph.add_edge(source.rsplit("/", 1)[-1], target.rsplit("/", 1)[-1], job=job.rsplit("/", 1)[-1])
    return graph
