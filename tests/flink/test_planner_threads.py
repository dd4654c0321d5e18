"""FLINK-23020: the Table API planner fails with ``NullPointerException: metadataHandlerProvider`` when it runs on
a py4j connection other than the one that created it (after an interrupted cell, or when another Python thread
used the gateway meanwhile). CI hit it once in lab 03.03; ``stack.flink.pin_planner_threads`` prevents it."""

from pyflink.java_gateway import get_gateway

from delab.stack import flink
from delab.streaming import flink_state, windows


def _plan_on_a_new_connection(t_env) -> str:
    client = get_gateway()._gateway_client
    client.deque.append(client._create_connection())  # the next call goes to a fresh Java thread
    t_env.execute_sql("DROP TEMPORARY TABLE IF EXISTS clicks")
    t_env.execute_sql(
        windows.clicks_ddl("planner_threads", "127.0.0.1:1").replace("CREATE TABLE", "CREATE TEMPORARY TABLE")
    )
    return str(t_env.to_data_stream(t_env.from_path("clicks")).get_type())


def test_stream_table_environment_plans_on_every_connection():
    _, t_env = flink_state.environments("planner threads test")
    for _ in range(3):
        assert "session_id" in _plan_on_a_new_connection(t_env)


def test_table_environment_plans_on_every_connection():
    t_env = flink.table_environment()
    client = get_gateway()._gateway_client
    for _ in range(2):
        client.deque.append(client._create_connection())
        plan = t_env.sql_query("SELECT x + 1 AS y FROM (VALUES (1), (2)) AS t(x)").explain()
        assert "Calc" in plan or "Values" in plan
