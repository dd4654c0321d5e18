"""Checks of lab 05.01 (schema registry): reading the Confluent wire format, compatibility predictions graded
against the registry's own verdicts, and an evolved schema that old and new consumers both read.

Every check talks to the real registry (Apicurio, Confluent-compatible API) and, for the last one, to Kafka; its
scratch subjects live under ``m05_l01.check`` and are deleted afterwards.
"""

from __future__ import annotations

import copy
import json
import uuid

from delab.contracts import registry as reg
from delab.grading import WrongAnswer, exercise, learner_code

CHECK_PREFIX = "m05_l01.check"


# ------------------------------------------------------------------------------------------- wire format


@learner_code("read_frame")
def _read(fn, value: bytes):
    return fn(value)


def _framed_samples(client) -> dict[str, bytes]:
    """One message per format, made by confluent-kafka's own serializers against the registry."""
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    def ctx(name: str) -> SerializationContext:
        return SerializationContext(f"{CHECK_PREFIX}.frames.{name}", MessageField.VALUE)

    order = {"order_id": 7, "customer_id": 3, "quantity": 2, "amount": 19.9, "status": "placed", "currency": "EUR"}
    click = {"event_id": 1, "customer_id": 3, "event_type": "checkout", "product_id": 5, "event_time": "2026-03-02"}
    payment_class = reg.payment_message_class()
    return {
        "Avro": AvroSerializer(client, json.dumps(reg.ORDER_V1))(order, ctx("orders")),
        "JSON Schema": JSONSerializer(json.dumps(reg.CLICK_JSON_SCHEMA), client)(click, ctx("clicks")),
        "Protobuf": ProtobufSerializer(payment_class, client, {"use.deprecated.format": False})(
            payment_class(payment_id=1, order_id=7, amount=19.9, method="card"), ctx("payments")
        ),
    }


@exercise("m05.l01.e1")
def wire_format(read_frame) -> None:
    """read_frame splits a Confluent-framed message into its schema id and payload, and refuses unframed bytes."""
    client = reg.client()
    try:
        samples = _framed_samples(client)
        for fmt, value in samples.items():
            expected = (int.from_bytes(value[1:5], "big"), value[5:])
            got = _read(read_frame, value)
            if not isinstance(got, tuple) or len(got) != 2:
                raise WrongAnswer(
                    f"read_frame returned {type(got).__name__} {str(got)[:60]}; expected a (schema_id, payload) pair.",
                    hint="return a tuple: the schema id as an int, then the bytes after the header.",
                )
            schema_id, payload = got
            if schema_id != expected[0]:
                little = int.from_bytes(value[1:5], "little")
                hint = (
                    "the id is in network byte order (big-endian)."
                    if schema_id == little
                    else "the header is one magic byte (0) followed by the 4-byte schema id."
                )
                raise WrongAnswer(
                    f"for a {fmt} message read_frame says schema id {schema_id}; the registry gave it id "
                    f"{expected[0]}.",
                    hint=hint,
                )
            if bytes(payload) != expected[1]:
                raise WrongAnswer(
                    f"for a {fmt} message the payload you return is {len(payload)} bytes, expected "
                    f"{len(expected[1])} (everything after the header).",
                    hint="the header is exactly 5 bytes: 1 magic byte + 4 bytes of schema id.",
                )
        for label, value in (("plain JSON", b'{"order_id": 7}'), ("a 3-byte message", b"\x00\x00\x01")):
            try:
                got = _read_unframed(read_frame, value)
            except ValueError:
                continue
            raise WrongAnswer(
                f"read_frame accepted {label} ({value[:16]!r}) and returned {str(got)[:60]}.",
                hint="a framed message starts with the magic byte 0 and has at least 5 bytes: raise ValueError "
                "otherwise, so a consumer does not decode garbage.",
            )
    finally:
        reg.delete_subjects(client, f"{CHECK_PREFIX}.frames.")


def _read_unframed(fn, value: bytes):
    """Call the learner's function on bytes it must refuse: ValueError passes through, other errors are wrong."""
    try:
        return fn(value)
    except ValueError:
        raise
    except Exception as error:
        raise WrongAnswer(
            f"on unframed bytes read_frame raised {type(error).__name__}: {str(error)[:80]}",
            hint="refuse unframed bytes with ValueError (a message that says what is wrong).",
        ) from None


# ---------------------------------------------------------------------------------------- compatibility


def _swapped(predictions: dict, truth: dict) -> bool:
    """True when the predictions are the truth with BACKWARD and FORWARD exchanged (a classic mix-up)."""
    for change, modes in truth.items():
        if "FORWARD" not in modes:
            continue
        if predictions[change]["BACKWARD"] != modes["FORWARD"] or predictions[change]["FORWARD"] != modes["BACKWARD"]:
            return False
    return True


@exercise("m05.l01.e2")
def compatibility_predictions(predictions) -> None:
    """Your compatibility predictions agree with the registry's own verdict on every change and mode."""
    if not isinstance(predictions, dict):
        raise WrongAnswer(
            f"predictions is a {type(predictions).__name__}; expected a dict {{change: {{mode: True/False}}}}.",
            hint="start from the template in the cell: one entry per change of SCHEMA_CHANGES.",
        )
    missing = [
        f"{change}/{mode}"
        for change, modes in reg.MODES_ASKED.items()
        for mode in modes
        if not isinstance(predictions.get(change), dict) or not isinstance(predictions[change].get(mode), bool)
    ]
    if missing:
        raise WrongAnswer(
            f"no True/False prediction for {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}.",
            hint="every change of MODES_ASKED needs a bool for each of its modes (True = the registry accepts it).",
        )
    truth = reg.registry_verdicts(reg.client(), f"{CHECK_PREFIX}.compat")
    wrong = [
        (change, mode)
        for change, modes in truth.items()
        for mode, ok in modes.items()
        if predictions[change][mode] != ok
    ]
    if not wrong:
        return
    if _swapped(predictions, truth):
        raise WrongAnswer(
            f"{len(wrong)} predictions are off: your BACKWARD and FORWARD columns are exchanged.",
            hint="BACKWARD = the NEW schema can read data written with the OLD one (upgrade consumers first); "
            "FORWARD = the OLD schema can read data written with the NEW one (upgrade producers first).",
        )
    if wrong == [("drop_a_default_later", "BACKWARD_TRANSITIVE")]:
        raise WrongAnswer(
            "only the transitive prediction is off.",
            hint="a TRANSITIVE mode compares the new version with every earlier version, not just the latest: "
            "could a reader with v3 decode data written with v1?",
        )
    changes = sorted({change for change, _ in wrong})
    raise WrongAnswer(
        f"{len(wrong)} of {sum(len(m) for m in truth.values())} predictions disagree with the registry, for "
        f"{', '.join(changes)}.",
        hint="for each mode ask who reads whose data: a reader fills a field it lacks in the data from its own "
        "default, ignores fields it does not know, and may promote int to long but never the reverse.",
    )


# ----------------------------------------------------------------------------------------- evolution


def _fields(schema: dict) -> dict[str, dict]:
    return {field["name"]: field for field in schema.get("fields", []) if isinstance(field, dict)}


OLD_RECORDS = [
    {"order_id": 1, "customer_id": 10, "quantity": 1, "amount": 12.5, "status": "placed", "currency": "EUR"},
    {"order_id": 2, "customer_id": 11, "quantity": 3, "amount": 30.0, "status": "shipped", "currency": "GBP"},
]
NEW_EXTRA = [{"coupon_code": "SPRING10", "channel": "app"}, {"coupon_code": None, "channel": "marketplace"}]


@exercise("m05.l01.e3")
def evolved_orders_schema(order_v2) -> None:
    """order_v2 is accepted under FULL_TRANSITIVE, and old and new consumers both read every order on the topic."""
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if not isinstance(order_v2, dict) or order_v2.get("type") != "record":
        raise WrongAnswer(
            "order_v2 is not an Avro record schema (a dict with type 'record').",
            hint="start from copy.deepcopy(registry.ORDER_V1) and append the two fields.",
        )
    fields, old = _fields(order_v2), _fields(reg.ORDER_V1)
    for name, field in old.items():
        if name not in fields or fields[name].get("type") != field["type"]:
            raise WrongAnswer(
                f"v2 changes or drops the v1 field {name!r}.",
                hint="keep every v1 field as it is; only add the two new ones.",
            )
    for name in ("coupon_code", "channel"):
        if name not in fields:
            raise WrongAnswer(f"v2 has no field {name!r}.", hint="add both coupon_code and channel.")
    client = reg.client()
    subject_base = f"{CHECK_PREFIX}.evolve.{uuid.uuid4().hex[:6]}"
    topic = f"{subject_base}.orders"
    subject = f"{topic}-value"
    try:
        client.register_schema(subject, reg.avro(reg.ORDER_V1))
        client.set_compatibility(subject_name=subject, level="FULL_TRANSITIVE")
        try:
            client.register_schema(subject, reg.avro(order_v2))
        except SchemaRegistryError as error:
            if error.http_status_code == 409:
                raise WrongAnswer(
                    "the registry refused v2 under FULL_TRANSITIVE (incompatible with v1).",
                    hint="under FULL, old readers must read new data and new readers old data: every added field "
                    "needs a default a reader can fill in.",
                ) from None
            raise WrongAnswer(
                f"the registry rejected v2 as a schema: {error.error_message[:160]}",
                hint="a union's default must match its FIRST branch (['null', 'string'] with default null).",
            ) from None
        except Exception as error:  # the client parses the schema first (fastavro)
            raise WrongAnswer(
                f"v2 is not a valid Avro schema: {str(error)[:160]}",
                hint="a union's default must match its FIRST branch (['null', 'string'] with default null).",
            ) from None
        coupon = fields["coupon_code"]
        if coupon.get("type") not in (["null", "string"], ["string", "null"]):
            raise WrongAnswer(
                f"coupon_code has type {json.dumps(coupon.get('type'))}; most orders have no coupon.",
                hint="a field that may be absent is a union with null.",
            )
        reg.recreate_topic(topic)
        new_records = [{**order, **extra} for order, extra in zip(OLD_RECORDS, NEW_EXTRA, strict=True)]
        old_producer = AvroSerializer(client, json.dumps(reg.ORDER_V1), conf={"auto.register.schemas": False})
        new_producer = AvroSerializer(client, json.dumps(order_v2), conf={"auto.register.schemas": False})
        reg.produce(topic, old_producer, OLD_RECORDS)
        reg.produce(topic, new_producer, copy.deepcopy(new_records))
        old_reader = reg.read_topic(topic, AvroDeserializer(client, json.dumps(reg.ORDER_V1)))
        new_reader = reg.read_topic(topic, AvroDeserializer(client, json.dumps(order_v2)))
        if old_reader != OLD_RECORDS + OLD_RECORDS:
            raise WrongAnswer(
                "a v1 consumer does not read the new orders as v1 orders.",
                hint="an old reader drops fields it does not know: keep the v1 fields unchanged.",
            )
        if new_reader[2:] != new_records:
            raise WrongAnswer(
                "a v2 consumer does not read the v2 orders back as written.", hint="check the new fields' types."
            )
        for record in new_reader[:2]:
            if record.get("coupon_code") is not None or record.get("channel") != "web":
                raise WrongAnswer(
                    f"a v2 consumer reads a v1 order with coupon_code={record.get('coupon_code')!r}, "
                    f"channel={record.get('channel')!r}; expected None and 'web'.",
                    hint="a reader fills a field missing from old data with the field's default: orders written "
                    "before v2 all came from the web shop.",
                )
    finally:
        reg.delete_subjects(client, subject_base)
        _delete_topic(topic)


def _delete_topic(topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    from delab import config

    admin = AdminClient({"bootstrap.servers": config.kafka().bootstrap_servers})
    if topic in admin.list_topics(timeout=10).topics:
        admin.delete_topics([topic])[topic].result(timeout=30)
