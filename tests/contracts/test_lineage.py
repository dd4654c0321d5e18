"""The OpenLineage collector (groundwork for lab 05.04): events sent by openlineage-python's HttpTransport to the
project's receiver land in Postgres as a graph, and impact/root-cause queries walk it."""

from __future__ import annotations

import pytest

from delab import clients, stack
from delab.contracts import lineage

pytestmark = pytest.mark.stack
SCHEMA = "m05_l04_test"
PG = "postgres://shop"


@pytest.fixture(scope="module")
def graph():
    stack.require("postgres", quiet=True)
    with clients.postgres() as conn:
        lineage.create_store(conn, SCHEMA)
    receiver = lineage.LineageReceiver(SCHEMA)
    client = lineage.http_client(receiver)
    enrich = [
        lineage.dataset(PG, "shop.orders", {"order_id": "bigint", "customer_id": "bigint"}),
        lineage.dataset(PG, "shop.customers", {"customer_id": "bigint", "country": "text", "email": "text"}),
        lineage.dataset(PG, "shop.order_items", {"order_id": "bigint", "quantity": "int", "unit_price": "float"}),
    ]
    enriched = lineage.dataset(
        PG,
        "mart.orders_enriched",
        {"order_id": "bigint", "country": "text", "amount": "float"},
        {
            "order_id": [(PG, "shop.orders", "order_id", "IDENTITY")],
            "country": [(PG, "shop.customers", "country", "IDENTITY")],
            "amount": [
                (PG, "shop.order_items", "quantity", "TRANSFORMATION"),
                (PG, "shop.order_items", "unit_price", "TRANSFORMATION"),
            ],
        },
        output=True,
    )
    lineage.emit_run(client, "delab", "enrich_orders", enrich, [enriched])
    revenue = lineage.dataset(
        PG,
        "mart.revenue_by_country",
        {"country": "text", "revenue": "float"},
        {
            "country": [(PG, "mart.orders_enriched", "country", "IDENTITY")],
            "revenue": [(PG, "mart.orders_enriched", "amount", "AGGREGATION")],
        },
        output=True,
    )
    lineage.emit_run(client, "delab", "revenue_by_country", [lineage.dataset(PG, "mart.orders_enriched")], [revenue])
    yield receiver
    receiver.stop()


def test_events_arrive_over_http_and_are_stored(graph):
    assert graph.errors == []
    with clients.postgres() as conn:
        events = conn.execute(f"SELECT event_type, count(*) FROM {SCHEMA}.lineage_events GROUP BY 1").fetchall()
        edges = conn.execute(f"SELECT count(*) FROM {SCHEMA}.dataset_edges").fetchone()[0]
    assert dict(events) == {"START": 2, "COMPLETE": 2}
    assert edges == 4  # three inputs -> enriched, enriched -> revenue


def test_impact_and_root_cause_walk_the_column_graph(graph):
    with clients.postgres() as conn:
        impact = lineage.downstream(conn, SCHEMA, f"{PG}/shop.customers", "country")
        cause = lineage.upstream(conn, SCHEMA, f"{PG}/mart.revenue_by_country", "revenue")
        untouched = lineage.downstream(conn, SCHEMA, f"{PG}/shop.customers", "email")
    assert impact == [(f"{PG}/mart.orders_enriched", "country", 1), (f"{PG}/mart.revenue_by_country", "country", 2)]
    assert cause == [
        (f"{PG}/mart.orders_enriched", "amount", 1),
        (f"{PG}/shop.order_items", "quantity", 2),
        (f"{PG}/shop.order_items", "unit_price", 2),
    ]
    assert untouched == []


def test_a_malformed_event_is_refused_without_stopping_the_receiver(graph):
    import requests

    answer = requests.post(graph.url, json={"eventType": "COMPLETE"}, timeout=5)
    assert answer.status_code == 400
    assert requests.post(graph.url, data=b"not json", timeout=5).status_code == 400
    graph.errors.clear()
