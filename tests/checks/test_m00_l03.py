"""Checks of lab 00.03 (your stack), against the real services: right answers pass, realistic wrong ones fail."""

from __future__ import annotations

import json
import uuid

import pytest

from delab import clients, config, datasets, stack
from delab.checks import m00
from delab.grading import NotSolvedYet, WrongAnswer

pytestmark = pytest.mark.stack
NS = "m00_l03"


@pytest.fixture(scope="module", autouse=True)
def services():
    stack.require("kafka", "connect", "postgres", "s3", "flink", quiet=True)


def topic(name: str) -> str:
    return f"{NS}.tests.{name}.{uuid.uuid4().hex[:6]}"


def producer_fn(key=True, as_json=True, twice_encoded=False):
    def produce(topic_name, events):
        producer = clients.kafka_producer()
        for event in events:
            value = json.dumps(event).encode() if as_json else str(event).encode()
            if twice_encoded:
                value = json.dumps(json.dumps(event)).encode()
            producer.send(topic_name, key=str(event["session_id"]).encode() if key else None, value=value)
        producer.flush()
        producer.close()

    return produce


def test_produce_accepts_keyed_json():
    m00.produce_events(producer_fn(), topic("ok"))


def test_produce_rejects_missing_keys():
    with pytest.raises(WrongAnswer, match="no key"):
        m00.produce_events(producer_fn(key=False), topic("nokey"))


def test_produce_rejects_python_repr_values():
    with pytest.raises(WrongAnswer, match="not JSON"):
        m00.produce_events(producer_fn(as_json=False), topic("repr"))


def test_produce_rejects_json_encoded_twice():
    # used to crash: the values decode to strings, not objects
    with pytest.raises(WrongAnswer, match="not an event object"):
        m00.produce_events(producer_fn(twice_encoded=True), topic("twice"))


def test_produce_rejects_sending_nothing():
    with pytest.raises(WrongAnswer, match="holds 0 messages"):
        m00.produce_events(lambda t, e: None, topic("none"))


@pytest.fixture(scope="module")
def shop_in_postgres():
    shop = m00.shop()
    datasets.to_postgres(
        {"customers": shop.customers, "orders": shop.orders.drop_duplicates("order_id")},
        schema=NS,
        primary_keys={"customers": ["customer_id"], "orders": ["order_id"]},
    )


COUNTRY_SQL = """SELECT {country} AS country, count({what}) AS orders
FROM m00_l03.orders o JOIN m00_l03.customers c USING (customer_id) GROUP BY 1 ORDER BY orders DESC, country"""


def test_orders_per_country_accepts_solution(shop_in_postgres):
    m00.orders_per_country(COUNTRY_SQL.format(country="upper(c.country)", what="*"))


def test_orders_per_country_rejects_unnormalised_codes(shop_in_postgres):
    with pytest.raises(WrongAnswer, match="lower case"):
        m00.orders_per_country(COUNTRY_SQL.format(country="c.country", what="*"))


def test_orders_per_country_rejects_counting_customers(shop_in_postgres):
    with pytest.raises(WrongAnswer, match="differ"):
        m00.orders_per_country(COUNTRY_SQL.format(country="upper(c.country)", what="DISTINCT c.customer_id"))


def test_orders_per_country_rejects_typed_in_counts(shop_in_postgres):
    # the right table typed in: used to pass; the check now also runs it with 3 more orders in one country
    want = m00.expected_orders_per_country()
    rows = ", ".join(f"('{country}', {orders})" for country, orders in zip(want.country, want.orders, strict=True))
    sql = f"SELECT country, orders FROM (VALUES {rows}) AS t (country, orders) ORDER BY orders DESC, country"
    with pytest.raises(WrongAnswer, match="3 more orders from"):
        m00.orders_per_country(sql)
    with clients.postgres() as conn:  # the check's extra orders and customer were rolled back
        assert conn.execute("SELECT count(*) FROM m00_l03.orders").fetchone()[0] == len(
            m00.shop().orders.drop_duplicates("order_id")
        )
        assert conn.execute("SELECT count(*) FROM m00_l03.customers").fetchone()[0] == len(m00.shop().customers)


def test_orders_per_country_says_when_counts_are_text(shop_in_postgres):
    # used to crash in astype(int)
    with pytest.raises(WrongAnswer, match="whole numbers"):
        m00.orders_per_country(
            COUNTRY_SQL.format(country="upper(c.country)", what="*").replace(
                "count(*) AS orders", "count(*) || ' orders' AS orders"
            )
        )


def test_orders_per_country_rejects_counting_every_customer_row(shop_in_postgres):
    # customers LEFT JOIN orders with count(*): a customer without orders counts as one order (used to pass: every
    # customer of the shop has orders)
    sql = """SELECT upper(c.country) AS country, count(*) AS orders
    FROM m00_l03.customers c LEFT JOIN m00_l03.orders o USING (customer_id) GROUP BY 1 ORDER BY orders DESC, country"""
    with pytest.raises(WrongAnswer, match="has not ordered yet, your query counts one more order"):
        m00.orders_per_country(sql)


def test_object_round_trip_accepts_solution():
    def store(text):
        key = f"{NS}/reports/tests.csv"
        clients.s3().put_object(Bucket=config.s3().bucket, Key=key, Body=text.encode())
        return key

    m00.object_round_trip(store)


def test_object_round_trip_rejects_other_prefix_and_missing_key():
    def elsewhere(text):
        clients.s3().put_object(Bucket=config.s3().bucket, Key="reports/tests.csv", Body=text.encode())
        return "reports/tests.csv"

    with pytest.raises(WrongAnswer, match="outside this lab's prefix"):
        m00.object_round_trip(elsewhere)
    with pytest.raises(WrongAnswer, match="return the key"):
        m00.object_round_trip(lambda text: None)


def flink_ddl(source, sink):
    bootstrap = config.kafka().bootstrap_servers
    return [
        f"""CREATE TABLE clicks (event_id BIGINT, session_id BIGINT, event_type STRING, event_time STRING) WITH (
        'connector' = 'kafka', 'topic' = '{source}', 'properties.bootstrap.servers' = '{bootstrap}',
        'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset', 'format' = 'json')""",
        f"""CREATE TABLE event_counts (event_type STRING, events BIGINT, PRIMARY KEY (event_type) NOT ENFORCED)
        WITH ('connector' = 'upsert-kafka', 'topic' = '{sink}', 'properties.bootstrap.servers' = '{bootstrap}',
              'key.format' = 'json', 'value.format' = 'json')""",
    ]


@pytest.fixture(scope="module")
def clicks_topic():
    name = topic("clicks")
    producer_fn()(name, m00.session_events())
    return name


@pytest.mark.slow
def test_flink_counts_accepts_solution(clicks_topic):
    sink = topic("counts")
    sql = "INSERT INTO event_counts SELECT event_type, COUNT(*) FROM clicks GROUP BY event_type"
    m00.flink_counts(sql, flink_ddl(clicks_topic, sink), clicks_topic, sink)


@pytest.mark.slow
def test_flink_counts_rejects_counting_sessions(clicks_topic):
    sink = topic("sessions")
    sql = "INSERT INTO event_counts SELECT event_type, COUNT(DISTINCT session_id) FROM clicks GROUP BY event_type"
    with pytest.raises(WrongAnswer, match="counts differ"):
        m00.flink_counts(sql, flink_ddl(clicks_topic, sink), clicks_topic, sink)


def test_flink_counts_rejects_a_select_and_bad_sql(clicks_topic):
    with pytest.raises(WrongAnswer, match="INSERT INTO"):
        m00.flink_counts("SELECT * FROM clicks", flink_ddl(clicks_topic, "x"), clicks_topic, "x")
    with pytest.raises(NotSolvedYet):
        m00.flink_counts(..., flink_ddl(clicks_topic, "x"), clicks_topic, "x")


EVENT = {
    "op": "u",
    "before": {"customer_id": 1, "email": "a@example.com", "segment": "consumer", "name": "Ada Lovelace"},
    "after": {"customer_id": 1, "email": "b@example.org", "segment": "business", "name": "Ada Lovelace"},
}


def good_changes(event):
    before, after = event["before"], event["after"]
    return {c: (before[c], after[c]) for c in after if before[c] != after[c]}


def test_changed_columns_accepts_solution():
    m00.changed_columns(good_changes, EVENT)


def test_changed_columns_rejects_every_column():
    with pytest.raises(WrongAnswer, match="did not change"):
        m00.changed_columns(lambda e: {c: (e["before"][c], e["after"][c]) for c in e["after"]}, EVENT)


def test_changed_columns_rejects_swapped_values():
    with pytest.raises(WrongAnswer, match="swapped"):
        m00.changed_columns(lambda e: {c: (new, old) for c, (old, new) in good_changes(e).items()}, EVENT)


def test_changed_columns_rejects_a_hard_coded_answer():
    with pytest.raises(WrongAnswer, match="missing"):
        m00.changed_columns(
            lambda e: {"email": ("a@example.com", "b@example.org"), "segment": ("consumer", "business")}, EVENT
        )
