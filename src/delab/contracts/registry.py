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

    # a timeout: without one, a request the registry never answers (seen once while it was starting) waits forever
    return SchemaRegistryClient({"url": config.schema_registry().ccompat_url, "timeout": 30})


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


def registry_verdicts(registry, prefix: str, changes: dict[str, tuple[str, ...]] | None = None) -> dict:
    """The registry's verdict on every change of ``SCHEMA_CHANGES`` for the modes asked (``MODES_ASKED`` unless
    given): ``{change: {mode: accepted}}``. One scratch subject per change under ``prefix``, deleted after.

    Non-transitive modes use the compatibility endpoint (it tests against the latest version only); transitive
    modes are judged by a real registration, because that endpoint ignores the history beyond ``latest``.
    """
    out: dict[str, dict[str, bool]] = {}
    for change, modes in (changes or MODES_ASKED).items():
        versions = SCHEMA_CHANGES[change]
        subject = f"{prefix}.{change}-value"
        delete_subjects(registry, subject)
        try:
            for version in versions[:-1]:
                registry.register_schema(subject, avro(version))
            out[change] = {}
            for mode in modes:
                if mode.endswith("_TRANSITIVE"):
                    out[change][mode] = registry_verdict(registry, f"{subject}.{mode.lower()}", versions, mode)
                else:
                    registry.set_compatibility(subject_name=subject, level=mode)
                    out[change][mode] = bool(registry.test_compatibility(subject, avro(versions[-1])))
        finally:
            delete_subjects(registry, subject)
    return out


# ------------------------------------------------------------------------------------- Kafka with the registry


def recreate_topic(topic: str, partitions: int = 1) -> None:
    """Delete ``topic`` if it exists and create it empty (a lab's re-run starts from nothing)."""
    import time

    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": config.kafka().bootstrap_servers})
    if topic in admin.list_topics(timeout=10).topics:
        admin.delete_topics([topic])[topic].result(timeout=30)
        deadline = time.monotonic() + 30
        while topic in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
            time.sleep(0.2)
    deadline = time.monotonic() + 30
    while True:
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)
            return
        except Exception as error:  # "marked for deletion" right after a delete: try again shortly
            if "exists" not in str(error).lower() and "deletion" not in str(error).lower():
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def produce(topic: str, serializer, records: list, key=None) -> None:
    """Serialize each record with a registry-aware serializer and produce it to ``topic`` (waits for acks)."""
    from confluent_kafka import Producer
    from confluent_kafka.serialization import MessageField, SerializationContext

    producer = Producer({"bootstrap.servers": config.kafka().bootstrap_servers, "linger.ms": 5})
    context = SerializationContext(topic, MessageField.VALUE)
    for record in records:
        producer.produce(topic, value=serializer(record, context), key=key)
    if producer.flush(30) != 0:
        raise RuntimeError(f"{topic}: some messages were not acknowledged within 30 s")


def raw_values(topic: str, timeout: float = 15.0) -> list[bytes]:
    """Every message value of a (small) topic from the beginning, as the bytes on the wire."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka().bootstrap_servers,
            "group.id": f"delab-raw-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        values: list[bytes] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout
        while len(done) < len(ends) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            values.append(message.value())
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
        return values
    finally:
        consumer.close()


def read_topic(topic: str, deserializer) -> list:
    """Every value of ``topic`` decoded by a registry-aware deserializer (an "old" or a "new" consumer)."""
    from confluent_kafka.serialization import MessageField, SerializationContext

    context = SerializationContext(topic, MessageField.VALUE)
    return [deserializer(value, context) for value in raw_values(topic)]
