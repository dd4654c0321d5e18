"""Checks of lab 05.01 (schema registry), against the real registry and Kafka: right answers pass, realistic
wrong ones are rejected with their own hint."""

from __future__ import annotations

import copy

import pytest

from delab import stack
from delab.checks.m05 import l01_schema_registry as checks
from delab.contracts import registry as reg
from delab.grading import NotSolvedYet, WrongAnswer

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module", autouse=True)
def registry_running():
    stack.require("kafka", "registry", quiet=True)


def read_frame(value: bytes) -> tuple[int, bytes]:
    if len(value) < 5 or value[0] != 0:
        raise ValueError("not a Confluent-framed message")
    return int.from_bytes(value[1:5], "big"), value[5:]


def read_frame_little_endian(value: bytes) -> tuple[int, bytes]:
    if len(value) < 5 or value[0] != 0:
        raise ValueError("not framed")
    return int.from_bytes(value[1:5], "little"), value[5:]


def read_frame_header_of_four(value: bytes) -> tuple[int, bytes]:
    if len(value) < 5 or value[0] != 0:
        raise ValueError("not framed")
    return int.from_bytes(value[1:5], "big"), value[4:]


def read_frame_trusting(value: bytes) -> tuple[int, bytes]:
    return int.from_bytes(value[1:5], "big"), value[5:]


def test_wire_format_accepts_the_right_split():
    checks.wire_format(read_frame)


def test_wire_format_rejects_byte_order_and_header_length():
    with pytest.raises(WrongAnswer, match="big-endian"):
        checks.wire_format(read_frame_little_endian)
    with pytest.raises(WrongAnswer, match="exactly 5 bytes"):
        checks.wire_format(read_frame_header_of_four)


def test_wire_format_rejects_a_reader_that_trusts_any_bytes_and_the_stub():
    with pytest.raises(WrongAnswer, match="accepted plain JSON"):
        checks.wire_format(read_frame_trusting)

    def stub(value):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.wire_format(stub)


RIGHT = {
    "add_optional_field": {"BACKWARD": True, "FORWARD": True, "FULL": True},
    "add_required_field": {"BACKWARD": False, "FORWARD": True, "FULL": False},
    "remove_field_with_default": {"BACKWARD": True, "FORWARD": True, "FULL": True},
    "remove_required_field": {"BACKWARD": True, "FORWARD": False, "FULL": False},
    "widen_int_to_long": {"BACKWARD": True, "FORWARD": False, "FULL": False},
    "rename_field": {"BACKWARD": False, "FORWARD": False, "FULL": False},
    "change_string_to_int": {"BACKWARD": False, "FORWARD": False, "FULL": False},
    "drop_a_default_later": {"BACKWARD": True, "BACKWARD_TRANSITIVE": False},
}


def test_predictions_that_match_the_registry_pass():
    checks.compatibility_predictions(RIGHT)


def test_predictions_with_backward_and_forward_swapped_are_named():
    swapped = copy.deepcopy(RIGHT)
    for modes in swapped.values():
        if "FORWARD" in modes:
            modes["BACKWARD"], modes["FORWARD"] = modes["FORWARD"], modes["BACKWARD"]
    with pytest.raises(WrongAnswer, match="exchanged"):
        checks.compatibility_predictions(swapped)


def test_predictions_that_ignore_transitivity_or_defaults_are_rejected():
    not_transitive = copy.deepcopy(RIGHT)
    not_transitive["drop_a_default_later"]["BACKWARD_TRANSITIVE"] = True
    with pytest.raises(WrongAnswer, match="transitive"):
        checks.compatibility_predictions(not_transitive)
    additions_always_fine = copy.deepcopy(RIGHT)
    additions_always_fine["add_required_field"] = {"BACKWARD": True, "FORWARD": True, "FULL": True}
    with pytest.raises(WrongAnswer, match="for add_required_field"):
        checks.compatibility_predictions(additions_always_fine)
    with pytest.raises(WrongAnswer, match="no True/False prediction"):
        checks.compatibility_predictions({"add_optional_field": {"BACKWARD": True}})
    with pytest.raises(NotSolvedYet):
        checks.compatibility_predictions(...)


def order_v2(**channel_changes) -> dict:
    schema = copy.deepcopy(reg.ORDER_V1)
    schema["fields"] += [
        {"name": "coupon_code", "type": ["null", "string"], "default": None},
        {"name": "channel", "type": "string", "default": "web", **channel_changes},
    ]
    return schema


def test_an_evolution_both_consumers_read_passes():
    checks.evolved_orders_schema(order_v2())


def test_an_added_field_without_default_is_refused_by_the_registry():
    schema = order_v2()
    del schema["fields"][-1]["default"]
    with pytest.raises(WrongAnswer, match="refused v2 under FULL_TRANSITIVE"):
        checks.evolved_orders_schema(schema)


def test_a_wrong_default_and_a_renamed_field_are_rejected():
    with pytest.raises(WrongAnswer, match="expected None and 'web'"):
        checks.evolved_orders_schema(order_v2(default="app"))
    renamed = order_v2()
    renamed["fields"][3] = {**renamed["fields"][3], "name": "total"}
    with pytest.raises(WrongAnswer, match="drops the v1 field 'amount'"):
        checks.evolved_orders_schema(renamed)
    not_nullable = order_v2()
    not_nullable["fields"][-2] = {"name": "coupon_code", "type": "string", "default": ""}
    with pytest.raises(WrongAnswer, match="union with null"):
        checks.evolved_orders_schema(not_nullable)
