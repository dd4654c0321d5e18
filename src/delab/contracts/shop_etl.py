"""The shop's small ETL of lab 05.04, each job a real piece of work on the stack (SQL in Postgres, Parquet and
CSV written to S3) that declares what it reads and writes — with schema and column-lineage facets — so a
``run_job(client, name, inputs, outputs, work)`` wrapper can emit its OpenLineage run events.

Inputs are described from the catalog (``lineage.table_dataset``); outputs carry the columns the job writes and
where each comes from (``{column: [(namespace, dataset, column, transformation)]}``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from delab import clients, config
from delab.contracts import lineage


@dataclass
class Job:
    """One job of the ETL: its name, what it reads and writes (OpenLineage datasets) and the work itself."""

    name: str
    inputs: list
    outputs: list
    work: Callable[[], Any]


def s3_namespace() -> str:
    """The OpenLineage namespace of the stack's bucket (``s3://bucket``)."""
    return f"s3://{config.s3().bucket}"


def jobs(conn, schema: str, prefix: str) -> list[Job]:
    """The shop's jobs over ``schema`` (customers, orders, order_items loaded) writing S3 objects under ``prefix``,
    in run order; the last one fails (it reads a column the customers table does not have)."""
    pg, s3 = lineage.pg_namespace(), s3_namespace()

    def src(table: str, column: str, kind: str = "IDENTITY") -> tuple[str, str, str, str]:
        return (pg, lineage.pg_name(schema, table), column, kind)

    def table(name: str) -> Any:
        return lineage.table_dataset(conn, schema, name)

    def out(name: str, columns: dict, column_lineage: dict, namespace: str = pg) -> Any:
        full = lineage.pg_name(schema, name) if namespace == pg else name
        return lineage.dataset(namespace, full, columns, column_lineage, output=True)

    def enrich() -> None:
        conn.execute(f"DROP TABLE IF EXISTS {schema}.orders_enriched")
        conn.execute(
            f"""CREATE TABLE {schema}.orders_enriched AS
                SELECT o.order_id, o.customer_id, c.country, o.order_ts, sum(i.quantity * i.unit_price) AS amount
                  FROM {schema}.orders o JOIN {schema}.customers c USING (customer_id)
                  JOIN {schema}.order_items i USING (order_id)
                 WHERE o.status <> 'cancelled' GROUP BY 1, 2, 3, 4"""
        )

    def revenue() -> None:
        conn.execute(f"DROP TABLE IF EXISTS {schema}.revenue_by_country")
        conn.execute(
            f"""CREATE TABLE {schema}.revenue_by_country AS
                SELECT country, count(DISTINCT order_id) AS orders, round(sum(amount)::numeric, 2) AS revenue
                  FROM {schema}.orders_enriched GROUP BY country"""
        )

    def put(key: str, data: bytes) -> None:
        clients.s3().put_object(Bucket=config.s3().bucket, Key=key, Body=data)

    def customer_value() -> None:
        import pandas as pd

        frame = pd.DataFrame(
            conn.execute(
                f"""SELECT c.customer_id, c.segment, c.country, coalesce(sum(e.amount), 0) AS lifetime_value
                      FROM {schema}.customers c LEFT JOIN {schema}.orders_enriched e USING (customer_id)
                     GROUP BY 1, 2, 3 ORDER BY 1"""
            ).fetchall(),
            columns=["customer_id", "segment", "country", "lifetime_value"],
        ).astype({"lifetime_value": float})
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        put(f"{prefix}/customer_value.parquet", buffer.getvalue())

    def country_report() -> None:
        rows = conn.execute(
            f"""SELECT country, round(100 * revenue / sum(revenue) OVER (), 1) FROM {schema}.revenue_by_country
                 ORDER BY 2 DESC"""
        ).fetchall()
        put(
            f"{prefix}/reports/revenue_share.csv",
            ("country,revenue_share\n" + "".join(f"{c},{s}\n" for c, s in rows)).encode(),
        )

    def churn() -> None:
        conn.execute(f"SELECT customer_id, now() - last_login AS idle FROM {schema}.customers").fetchall()

    enriched = lineage.pg_name(schema, "orders_enriched")
    by_country = lineage.pg_name(schema, "revenue_by_country")
    return [
        Job(
            "enrich_orders",
            [table("orders"), table("customers"), table("order_items")],
            [
                out(
                    "orders_enriched",
                    {
                        "order_id": "bigint",
                        "customer_id": "bigint",
                        "country": "text",
                        "order_ts": "timestamp",
                        "amount": "double precision",
                    },
                    {
                        "order_id": [src("orders", "order_id")],
                        "customer_id": [src("orders", "customer_id")],
                        "country": [src("customers", "country")],
                        "order_ts": [src("orders", "order_ts")],
                        "amount": [
                            src("order_items", "quantity", "TRANSFORMATION"),
                            src("order_items", "unit_price", "TRANSFORMATION"),
                        ],
                    },
                )
            ],
            enrich,
        ),
        Job(
            "revenue_by_country",
            [lineage.dataset(pg, enriched)],
            [
                out(
                    "revenue_by_country",
                    {"country": "text", "orders": "bigint", "revenue": "numeric"},
                    {
                        "country": [src("orders_enriched", "country")],
                        "orders": [src("orders_enriched", "order_id", "AGGREGATION")],
                        "revenue": [src("orders_enriched", "amount", "AGGREGATION")],
                    },
                )
            ],
            revenue,
        ),
        Job(
            "export_customer_value",
            [table("customers"), lineage.dataset(pg, enriched)],
            [
                out(
                    f"{prefix}/customer_value.parquet",
                    {"customer_id": "int64", "segment": "string", "country": "string", "lifetime_value": "double"},
                    {
                        "customer_id": [src("customers", "customer_id")],
                        "segment": [src("customers", "segment")],
                        "country": [src("customers", "country")],
                        "lifetime_value": [src("orders_enriched", "amount", "AGGREGATION")],
                    },
                    s3,
                )
            ],
            customer_value,
        ),
        Job(
            "country_report",
            [lineage.dataset(pg, by_country)],
            [
                out(
                    f"{prefix}/reports/revenue_share.csv",
                    {"country": "string", "revenue_share": "double"},
                    {
                        "country": [src("revenue_by_country", "country")],
                        "revenue_share": [src("revenue_by_country", "revenue", "TRANSFORMATION")],
                    },
                    s3,
                )
            ],
            country_report,
        ),
        Job(
            "churn_features",
            [table("customers")],
            [out("churn_features", {"customer_id": "bigint", "idle": "interval"}, {})],
            churn,
        ),
    ]


def run_all(run_job: Callable, client, job_list: list[Job]) -> dict[str, str]:
    """Run every job through ``run_job``; a failing job is reported (its FAIL event is the point) and the next
    jobs still run. Returns ``{job: run id or the error's first line}``."""
    outcome = {}
    for job in job_list:
        try:
            outcome[job.name] = run_job(client, job.name, job.inputs, job.outputs, job.work)
        except Exception as error:  # the job failed: its FAIL event is in the store
            outcome[job.name] = f"failed: {str(error).strip().splitlines()[0]}"
    return outcome
