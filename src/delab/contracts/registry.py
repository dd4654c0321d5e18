"""The schema registry side of module 05: a Confluent-API client on the stack's registry, the shop's schemas in
the three formats (Avro, Protobuf, JSON Schema), and the schema changes lab 05.01 asks about.

Everything talks to the registry through its Confluent-compatible API (``config.schema_registry().ccompat_url``)
with confluent-kafka's own client and serializers, so the same code runs against Confluent's registry.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from typing import Any

from delab import config

COMPATIBILITY_LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)


def client():
    """A confluent-kafka SchemaRegistryClient on the stack's registry (Confluent-compatible API)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient({"url": config.schema_registry().ccompat_url})


def delete_subjects(registry, prefix: str) -> list[str]:
    """Delete (for good) every subject whose name starts with ``prefix``; a lab's clean slate."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    gone = []
    for subject in registry.get_subjects():
        if subject.startswith(prefix):
            for permanent in (False, True):  # Confluent's API: a soft delete first, then the permanent one
                with contextlib.suppress(SchemaRegistryError):
                    registry.delete_subject(subject, permanent=permanent)
            gone.append(subject)
    return gone


def avro(schema: dict) -> Any:
    """A registry ``Schema`` of type AVRO from a schema written as a Python dict."""
    from confluent_kafka.schema_registry import Schema

    return Schema(json.dumps(schema), "AVRO")


# --------------------------------------------------------------------------------------------- the shop's schemas

#: the orders topic's value, version 1 (what the producers of module 03 wrote, with a schema now)
ORDER_V1: dict = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "doc": "One order placed in the shop.",
    "fields": [
        {"name": "order_id", "type": "long"},
        {"name": "customer_id", "type": "long"},
        {"name": "quantity", "type": "int"},
        {"name": "amount", "type": "double", "doc": "order total"},
        {"name": "status", "type": "string"},
        {"name": "currency", "type": "string", "default": "EUR"},
    ],
}

#: the clicks topic's value as a JSON Schema (draft-07)
CLICK_JSON_SCHEMA: dict = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Click",
    "type": "object",
    "properties": {
        "event_id": {"type": "integer"},
        "customer_id": {"type": "integer"},
        "event_type": {"enum": ["page_view", "product_view", "add_to_cart", "checkout"]},
        "product_id": {"type": ["integer", "null"]},
        "event_time": {"type": "string", "format": "date-time"},
    },
    "required": ["event_id", "customer_id", "event_type", "event_time"],
    "additionalProperties": False,
}

#: the payments topic's value as a Protobuf message (proto3); ``payment_message_class`` builds it at run time
PAYMENT_PROTO = """syntax = "proto3";
package shop;

message Payment {
  int64 payment_id = 1;
  int64 order_id = 2;
  double amount = 3;
  string method = 4;
}
"""


def payment_message_class():
    """The ``shop.Payment`` Protobuf class, built from a descriptor at run time (what protoc would generate)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="shop/payment.proto", package="shop", syntax="proto3")
    message = proto.message_type.add(name="Payment")
    for number, (name, kind) in enumerate(
        [("payment_id", field.TYPE_INT64), ("order_id", field.TYPE_INT64), ("amount", field.TYPE_DOUBLE)], start=1
    ):
        message.field.add(name=name, number=number, type=kind, label=field.LABEL_OPTIONAL, json_name=name)
    message.field.add(name="method", number=4, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL, json_name="method")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Payment"))


# ------------------------------------------------------------------------------------------- schema changes


def _with_fields(base: dict, fields: list[dict]) -> dict:
    schema = copy.deepcopy(base)
    schema["fields"] = fields
    return schema


def _field(schema: dict, name: str) -> dict:
    return next(f for f in schema["fields"] if f["name"] == name)


def _changed(base: dict, field_name: str, **changes: Any) -> dict:
    return _with_fields(base, [{**f, **changes} if f["name"] == field_name else f for f in base["fields"]])


def _without(base: dict, name: str) -> dict:
    return _with_fields(base, [f for f in base["fields"] if f["name"] != name])


def _plus(base: dict, field: dict) -> dict:
    return _with_fields(base, [*base["fields"], field])


_COUPON = {"name": "coupon_code", "type": ["null", "string"], "default": None}
_CHANNEL = {"name": "channel", "type": "string"}

#: each change: the versions registered one after the other (the last is the one judged)
SCHEMA_CHANGES: dict[str, list[dict]] = {
    "add_optional_field": [ORDER_V1, _plus(ORDER_V1, _COUPON)],
    "add_required_field": [ORDER_V1, _plus(ORDER_V1, _CHANNEL)],
    "remove_field_with_default": [ORDER_V1, _without(ORDER_V1, "currency")],
    "remove_required_field": [ORDER_V1, _without(ORDER_V1, "status")],
    "widen_int_to_long": [ORDER_V1, _changed(ORDER_V1, "quantity", type="long")],
    "rename_field": [ORDER_V1, _changed(ORDER_V1, "amount", name="total")],
    "change_string_to_int": [ORDER_V1, _changed(ORDER_V1, "status", type="int")],
    # v2 adds a field with a default, v3 drops that default: each step alone is BACKWARD, v1 -> v3 is not
    "drop_a_default_later": [
        ORDER_V1,
        _plus(ORDER_V1, {"name": "channel", "type": "string", "default": "web"}),
        _plus(ORDER_V1, _CHANNEL),
    ],
}

#: the modes exercise 2 asks about for each change
MODES_ASKED: dict[str, tuple[str, ...]] = {
    **{name: ("BACKWARD", "FORWARD", "FULL") for name in SCHEMA_CHANGES if name != "drop_a_default_later"},
    "drop_a_default_later": ("BACKWARD", "BACKWARD_TRANSITIVE"),
}


def _default(field: dict) -> str:
    return f" default {json.dumps(field['default'])}" if "default" in field else ""


def describe_change(name: str) -> str:
    """One line saying what a change of ``SCHEMA_CHANGES`` does to the fields."""
    versions = SCHEMA_CHANGES[name]
    steps = []
    for before, after in itertools.pairwise(versions):
        old = {f["name"]: f for f in before["fields"]}
        new = {f["name"]: f for f in after["fields"]}
        parts = [f"+{n}: {json.dumps(new[n]['type'])}{_default(new[n])}" for n in new if n not in old]
        parts += [f"-{n}" for n in old if n not in new]
        parts += [
            f"~{n}: {json.dumps(old[n].get('type'))} -> {json.dumps(new[n].get('type'))}"
            + (" (default dropped)" if "default" in old[n] and "default" not in new[n] else "")
            for n in new
            if n in old and old[n] != new[n]
        ]
        steps.append(", ".join(parts))
    return " then ".join(steps)


def registry_verdict(registry, subject: str, versions: list[dict], mode: str) -> bool:
    """The registry's own verdict: in a fresh ``subject`` at compatibility ``mode``, register every version but
    the last, then try to register the last. True when the registry accepts it. The subject is deleted after."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    delete_subjects(registry, subject)
    try:
        for version in versions[:-1]:
            registry.register_schema(subject, avro(version))
            registry.set_compatibility(subject_name=subject, level=mode)
        try:
            registry.register_schema(subject, avro(versions[-1]))
        except SchemaRegistryError as error:
            if error.http_status_code == 409:  # incompatible with the subject's history
                return False
            raise
        return True
    finally:
        delete_subjects(registry, subject)
