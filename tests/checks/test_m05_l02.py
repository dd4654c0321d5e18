"""Checks of lab 05.02 (data contracts), against the real Postgres and Kafka: right answers pass, realistic wrong
ones are rejected with their own hint."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from delab import stack
from delab.checks.m05 import l02_data_contracts as checks
from delab.grading import NotSolvedYet, WrongAnswer

pytestmark = pytest.mark.stack

SOURCE = Path(__file__).parents[2] / "solutions" / "05_contracts_quality" / "02_data_contracts.py"
SCHEMA = "m05_l02_test"
TOPIC = "m05_l02_test.orders"


def _solution(name: str) -> str:
    return re.search(rf'^{name} = """(.*?)"""', SOURCE.read_text(), re.S | re.M).group(1)


@pytest.fixture(scope="module", autouse=True)
def services():
    stack.require("kafka", "postgres", quiet=True)


# ------------------------------------------------------------------------------------------- e1 contract


def _contract(edit=None) -> str:
    data = yaml.safe_load(_solution("orders_contract"))
    if edit:
        edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def _prop(data: dict, name: str) -> dict:
    return next(p for p in data["schema"][0]["properties"] if p["name"] == name)


def test_orders_contract_accepts_the_solution():
    checks.orders_contract(_contract(), SCHEMA, TOPIC)


def test_orders_contract_rejects_a_contract_without_a_key():
    def no_key(data):
        for field in ("unique", "primaryKey"):
            _prop(data, "order_id").pop(field)

    with pytest.raises(WrongAnswer, match="same order_id") as error:
        checks.orders_contract(_contract(no_key), SCHEMA, TOPIC)
    assert "primaryKey" in error.value.hint


def test_orders_contract_rejects_a_lax_freshness_and_a_missing_enum():
    def daily(data):
        data["slaProperties"][0].update(value=1, unit="d")

    with pytest.raises(WrongAnswer, match="three hours old"):
        checks.orders_contract(_contract(daily), SCHEMA, TOPIC)

    with pytest.raises(WrongAnswer, match="'pending'"):
        checks.orders_contract(_contract(lambda d: _prop(d, "status").pop("enum")), SCHEMA, TOPIC)


def test_orders_contract_rejects_a_contract_stricter_than_the_data():
    def integer_ts(data):
        _prop(data, "coupon_code")["required"] = True  # most orders have no coupon

    with pytest.raises(WrongAnswer, match="fails on the good orders table"):
        checks.orders_contract(_contract(integer_ts), SCHEMA, TOPIC)


def test_orders_contract_rejects_invalid_odcs_and_a_missing_owner():
    with pytest.raises(WrongAnswer, match="not valid ODCS"):
        checks.orders_contract(_contract(lambda d: d.update(slaProperties={"freshness": "1h"})), SCHEMA, TOPIC)
    with pytest.raises(WrongAnswer, match="no owner"):
        checks.orders_contract(_contract(lambda d: d.pop("team")), SCHEMA, TOPIC)
    with pytest.raises(WrongAnswer, match="latency"):
        checks.orders_contract(_contract(lambda d: d["slaProperties"].pop()), SCHEMA, TOPIC)


def test_orders_contract_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.orders_contract(..., SCHEMA, TOPIC)


# ------------------------------------------------------------------------------------------- e2 versions

RIGHT = {
    "drop_coupon_code": {"consumer": True, "producer": False},
    "rename_customer_id": {"consumer": True, "producer": True},
    "add_optional_column": {"consumer": False, "producer": True},
    "order_id_to_string": {"consumer": True, "producer": True},
    "customer_id_optional": {"consumer": True, "producer": False},
    "add_status_value": {"consumer": True, "producer": False},
    "remove_status_value": {"consumer": False, "producer": True},
    "describe_better": {"consumer": False, "producer": False},
    "relax_freshness": {"consumer": True, "producer": False},
    "tighten_freshness": {"consumer": False, "producer": True},
}


def test_breaking_predictions_accepts_the_verdicts():
    checks.breaking_predictions(copy.deepcopy(RIGHT))


def test_breaking_predictions_names_swapped_perspectives():
    swapped = {n: {"consumer": v["producer"], "producer": v["consumer"]} for n, v in RIGHT.items()}
    with pytest.raises(WrongAnswer, match="exchanged"):
        checks.breaking_predictions(swapped)


def test_breaking_predictions_names_the_changes_that_are_off():
    only_removals = copy.deepcopy(RIGHT)
    only_removals["add_status_value"]["consumer"] = False  # "adding a value cannot hurt anyone"
    only_removals["add_optional_column"]["producer"] = False
    with pytest.raises(WrongAnswer, match="add_optional_column, add_status_value") as error:
        checks.breaking_predictions(only_removals)
    assert "loosens" in error.value.hint


def test_breaking_predictions_wants_every_change_with_both_sides():
    with pytest.raises(WrongAnswer, match="no prediction for: tighten_freshness"):
        checks.breaking_predictions({k: v for k, v in RIGHT.items() if k != "tighten_freshness"})
    with pytest.raises(WrongAnswer, match="describe_better"):
        checks.breaking_predictions({**RIGHT, "describe_better": False})


# --------------------------------------------------------------------------------------- e3 enforced producer


def produce_orders(producer, records, topic, dead_letter_topic, schema):
    validator = Draft7Validator(schema)
    sent = rejected = 0
    for record in records:
        value = json.dumps(record).encode()
        errors = list(validator.iter_errors(record))
        if errors:
            producer.produce(dead_letter_topic, value=value, headers={"contract-violation": errors[0].message})
            rejected += 1
        else:
            producer.produce(topic, value=value)
            sent += 1
    producer.flush(30)
    return sent, rejected


def produce_checking_required_only(producer, records, topic, dead_letter_topic, schema):
    sent = rejected = 0
    for record in records:
        value = json.dumps(record).encode()
        missing = [c for c in schema["required"] if record.get(c) is None]
        if missing:
            producer.produce(dead_letter_topic, value=value, headers={"contract-violation": f"missing {missing}"})
            rejected += 1
        else:
            producer.produce(topic, value=value)
            sent += 1
    producer.flush(30)
    return sent, rejected


def produce_dropping_bad_ones(producer, records, topic, dead_letter_topic, schema):
    validator = Draft7Validator(schema)
    good = [r for r in records if validator.is_valid(r)]
    for record in good:
        producer.produce(topic, value=json.dumps(record).encode())
    producer.flush(30)
    return len(good), len(records) - len(good)


def produce_without_reason(producer, records, topic, dead_letter_topic, schema):
    validator = Draft7Validator(schema)
    for record in records:
        target = topic if validator.is_valid(record) else dead_letter_topic
        producer.produce(target, value=json.dumps(record).encode())
    producer.flush(30)
    return 5, 4


def test_enforced_producer_accepts_a_dead_letter_route():
    checks.enforced_producer(produce_orders)


def test_enforced_producer_rejects_partial_validation_and_silent_drops():
    with pytest.raises(WrongAnswer, match="reached the orders topic") as error:
        checks.enforced_producer(produce_checking_required_only)
    assert "whole JSON Schema" in error.value.hint
    with pytest.raises(WrongAnswer, match="dead-letter topic holds 0"):
        checks.enforced_producer(produce_dropping_bad_ones)
    with pytest.raises(WrongAnswer, match="no contract-violation header"):
        checks.enforced_producer(produce_without_reason)


def test_enforced_producer_turns_a_crash_into_one_line():
    def crashing(producer, records, topic, dead_letter_topic, schema):
        raise KeyError("order_ts")

    with pytest.raises(WrongAnswer, match="produce_orders failed with KeyError"):
        checks.enforced_producer(crashing)


# ------------------------------------------------------------------------------------------- e4 dbt contract


def _model_yaml(edit=None) -> str:
    data = yaml.safe_load(_solution("fct_orders_yaml"))
    if edit:
        edit(data["models"][0])
    return yaml.safe_dump(data, sort_keys=False)


def _column(model: dict, name: str) -> dict:
    return next(c for c in model["columns"] if c["name"] == name)


def test_dbt_model_contract_accepts_the_solution():
    checks.dbt_model_contract(_model_yaml(), SCHEMA)


def test_dbt_model_contract_rejects_a_contract_that_is_not_enforced():
    with pytest.raises(WrongAnswer, match="turned customer_id into text") as error:
        checks.dbt_model_contract(_model_yaml(lambda m: m["config"].pop("contract")), SCHEMA)
    assert "enforced" in error.value.hint


def test_dbt_model_contract_rejects_wrong_types_and_missing_constraints():
    with pytest.raises(WrongAnswer, match="refuses fct_orders as written"):
        checks.dbt_model_contract(_model_yaml(lambda m: _column(m, "order_ts").update(data_type="date")), SCHEMA)
    with pytest.raises(WrongAnswer, match="no customer_id"):
        checks.dbt_model_contract(_model_yaml(lambda m: _column(m, "customer_id").pop("constraints")), SCHEMA)
    with pytest.raises(WrongAnswer, match="same order_id"):
        checks.dbt_model_contract(
            _model_yaml(lambda m: _column(m, "order_id").update(constraints=[{"type": "not_null"}])), SCHEMA
        )
    with pytest.raises(WrongAnswer, match="no model fct_orders"):
        checks.dbt_model_contract("version: 2\nmodels: []\n", SCHEMA)
