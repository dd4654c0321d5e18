# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 05.01 · A schema registry: Avro, Protobuf and JSON Schema on Kafka
#
# **You will:**
# - register the shop's schemas in a real registry (Apicurio Registry, through the Confluent-compatible API) in
#   the three formats: Avro for orders, Protobuf for payments, JSON Schema for clicks;
# - produce with the registry-aware serializers and take a message apart byte by byte: magic byte, schema id,
#   payload;
# - predict which schema changes each compatibility mode (BACKWARD, FORWARD, FULL and their TRANSITIVE forms)
#   allows, and compare with the registry's verdicts;
# - watch the registry refuse a producer's incompatible change, then evolve the orders topic so that old and new
#   consumers both keep reading it.
#
# *Needs:* Kafka and the schema registry (both started for you; the registry starts on first use, ~15 s).
# Kernel: `delab`. About 35 minutes.

# %%
import copy
import io
import json

import fastavro
import pandas as pd
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import SerializationError

from delab import check, config, stack
from delab.contracts import registry as reg

stack.require("kafka", "registry")
ns = stack.namespace("m05_l01")
registry = reg.client()  # confluent-kafka's SchemaRegistryClient on the registry's Confluent-compatible API
reg.delete_subjects(registry, f"{ns.prefix}.")  # an earlier run's subjects: start clean
orders_topic, payments_topic, clicks_topic = ns.topic("orders"), ns.topic("payments"), ns.topic("clicks")
for topic in (orders_topic, payments_topic, clicks_topic):
    reg.recreate_topic(topic)
print("registry:", config.schema_registry().ccompat_url)

# %% [markdown]
# ## Subjects, versions and ids
# A registry stores schemas under **subjects**. With the default *topic name strategy* a topic's values use the
# subject `<topic>-value` (and its keys `<topic>-key`). Each subject keeps an ordered list of **versions**;
# every distinct schema also gets a registry-wide **id**, and that id — not the schema — travels with each
# message. The registry here is Apicurio Registry, speaking the same REST API as Confluent's: the client below is
# the one you would point at Confluent Cloud or a self-managed Confluent registry.
#
# Register the orders schema (Avro), the payments message (Protobuf) and the clicks schema (JSON Schema):

# %%
print(json.dumps(reg.ORDER_V1, indent=1)[:400], "…")
print(reg.PAYMENT_PROTO)

order_id = registry.register_schema(f"{orders_topic}-value", reg.avro(reg.ORDER_V1))
payment_id = registry.register_schema(f"{payments_topic}-value", Schema(reg.PAYMENT_PROTO, "PROTOBUF"))
click_id = registry.register_schema(f"{clicks_topic}-value", Schema(json.dumps(reg.CLICK_JSON_SCHEMA), "JSON"))
pd.DataFrame(
    [
        {"subject": s, "version": v.version, "id": v.schema_id, "type": v.schema.schema_type}
        for s in sorted(registry.get_subjects())
        if s.startswith(ns.prefix)
        for v in [registry.get_latest_version(s)]
    ]
)

# %% [markdown]
# Registering the same schema again is a no-op that returns the same id — producers rely on that at start-up.

# %%
assert registry.register_schema(f"{orders_topic}-value", reg.avro(reg.ORDER_V1)) == order_id
registry.get_versions(f"{orders_topic}-value")

# %% [markdown]
# ## Serializers and the wire format
# confluent-kafka's serializers look the schema up (or register it), encode the record and prepend a 5-byte
# header. Produce a few orders, payments and clicks:

# %%
orders = [
    {"order_id": i, "customer_id": 100 + i, "quantity": 1 + i % 3, "amount": 9.5 * (i + 1), "status": "placed"}
    for i in range(5)
]
reg.produce(orders_topic, AvroSerializer(registry, json.dumps(reg.ORDER_V1)), orders)

Payment = reg.payment_message_class()  # what `protoc --python_out` would have generated
payments = [Payment(payment_id=i, order_id=i, amount=9.5 * (i + 1), method="card") for i in range(5)]
reg.produce(payments_topic, ProtobufSerializer(Payment, registry, {"use.deprecated.format": False}), payments)

clicks = [
    {"event_id": i, "customer_id": 100 + i, "event_type": "product_view", "product_id": 7, "event_time": "2026-03-02"}
    for i in range(5)
]
reg.produce(clicks_topic, JSONSerializer(json.dumps(reg.CLICK_JSON_SCHEMA), registry), clicks)

raw = {topic: reg.raw_values(topic) for topic in (orders_topic, payments_topic, clicks_topic)}
for topic, values in raw.items():
    first = values[0]
    print(f"{topic:18} {len(first):3} bytes  header {first[:5].hex(' ')}  then {first[5:21].hex(' ')} …")

# %% [markdown]
# Every message starts with the **magic byte** `00`, then the **schema id** in 4 bytes, big-endian (network
# byte order). After the header: the Avro binary encoding (no field names: the reader needs the schema), the
# Protobuf message preceded by its *message index* (`00` = the first message of the .proto file), or plain JSON
# text for JSON Schema. The consumer reads the id, fetches the schema once (and caches it), and decodes.
#
# ### Exercise 1 — take a message apart
# Write `read_frame(value)` returning `(schema_id, payload)`: the id as an `int`, the payload as the bytes
# after the header. Bytes that are not a framed message (too short, or not starting with the magic byte) must
# raise `ValueError` — a consumer that decodes garbage does more harm than one that stops.


# %%
### BEGIN SOLUTION
def read_frame(value: bytes) -> tuple[int, bytes]:
    """Split a Confluent-framed message into its schema id and payload."""
    if len(value) < 5 or value[0] != 0:
        raise ValueError(f"not a schema-registry framed message: {value[:8]!r}")
    return int.from_bytes(value[1:5], "big"), value[5:]


### END SOLUTION


# %%
check.m05.wire_format(read_frame)

# %% [markdown]
# With the id and the payload, decoding an Avro order needs nothing but the schema fetched by id — this is what
# `AvroDeserializer` does inside:

# %%


schema_id, payload = read_frame(raw[orders_topic][0])
writer_schema = fastavro.parse_schema(json.loads(registry.get_schema(schema_id).schema_str))
print(schema_id, fastavro.schemaless_reader(io.BytesIO(payload), writer_schema))
print(reg.read_topic(payments_topic, ProtobufDeserializer(Payment, {"use.deprecated.format": False}))[0])
print(reg.read_topic(clicks_topic, JSONDeserializer(json.dumps(reg.CLICK_JSON_SCHEMA)))[0])

# %% [markdown]
# JSON Schema also **validates** on the producer side: a click with an unknown event type never reaches Kafka.

# %%
try:
    reg.produce(
        clicks_topic, JSONSerializer(json.dumps(reg.CLICK_JSON_SCHEMA), registry), [{**clicks[0], "event_type": "buy"}]
    )
except SerializationError as error:
    print("refused by the serializer:", str(error)[:120])

# %% [markdown]
# ## Compatibility modes
# Schemas change. The registry checks each new version of a subject against the earlier ones, by the subject's
# **compatibility level**:
#
# | level | the new schema must… | so you upgrade first… |
# |---|---|---|
# | `BACKWARD` (Confluent's default) | read data written with the previous schema | the consumers |
# | `FORWARD` | have its data readable by the previous schema | the producers |
# | `FULL` | both | either, in any order |
# | `…_TRANSITIVE` | the same, against **every** earlier version, not just the latest | |
# | `NONE` | nothing is checked | (you coordinate by hand) |
#
# Avro's resolution rules decide "can read": a reader ignores fields it does not know, fills a field missing
# from the data with **its own default** (no default: error), and may promote `int` → `long` → `double`.
#
# ### Exercise 2 — predict the registry's verdicts
# `reg.SCHEMA_CHANGES` lists changes to the orders schema (each a list of versions registered in order; the
# last one is judged). For each change and each mode of `reg.MODES_ASKED`, predict whether the registry
# **accepts** the last version (`True`) or refuses it (`False`). The check asks the registry itself.

# %%
pd.DataFrame(
    [
        {"change": name, "what changes": reg.describe_change(name), "modes asked": ", ".join(modes)}
        for name, modes in reg.MODES_ASKED.items()
    ]
)

# %%
### BEGIN SOLUTION
predictions = {
    "add_optional_field": {"BACKWARD": True, "FORWARD": True, "FULL": True},
    "add_required_field": {"BACKWARD": False, "FORWARD": True, "FULL": False},
    "remove_field_with_default": {"BACKWARD": True, "FORWARD": True, "FULL": True},
    "remove_required_field": {"BACKWARD": True, "FORWARD": False, "FULL": False},
    "widen_int_to_long": {"BACKWARD": True, "FORWARD": False, "FULL": False},
    "rename_field": {"BACKWARD": False, "FORWARD": False, "FULL": False},
    "change_string_to_int": {"BACKWARD": False, "FORWARD": False, "FULL": False},
    "drop_a_default_later": {"BACKWARD": True, "BACKWARD_TRANSITIVE": False},
}
### END SOLUTION

# %%
check.m05.compatibility_predictions(predictions)

# %% [markdown]
# The registry's verdicts, side by side (a `rename_field` passes only with an Avro `aliases` entry on the new
# field *and* a reader that honours aliases — safer to add a new field and retire the old one over two releases):

# %%
verdicts = reg.registry_verdicts(registry, f"{ns.prefix}.verdicts")
pd.DataFrame(verdicts).T.fillna("")

# %% [markdown]
# A gotcha found while writing this lab: the *test compatibility* endpoint (`test_compatibility`) compares with
# **one** version (the latest) even when the subject is `BACKWARD_TRANSITIVE`; only a real registration applies
# the transitive rule. `registry_verdicts` judges transitive modes by registering.
#
# ## A producer whose change is refused
# The orders subject is at the default level. Set it to `FULL_TRANSITIVE` (what a shared, long-lived topic
# deserves), then let a producer with auto-registration on try a change that breaks old readers:

# %%
registry.set_compatibility(subject_name=f"{orders_topic}-value", level="FULL_TRANSITIVE")
breaking = copy.deepcopy(reg.ORDER_V1)
breaking["fields"].append({"name": "channel", "type": "string"})  # no default: old data cannot be read
try:
    reg.produce(orders_topic, AvroSerializer(registry, json.dumps(breaking)), [{**orders[0], "channel": "app"}])
except (SerializationError, SchemaRegistryError) as error:
    print("refused:", str(error)[:160])
print("versions of the subject:", registry.get_versions(f"{orders_topic}-value"))

# %% [markdown]
# The registry answered 409 (incompatible), the serializer raised, and nothing reached the topic: the contract
# held at write time.
#
# ### Exercise 3 — evolve the orders topic safely
# The shop now records a `coupon_code` (most orders have none) and the sales `channel`. Write `order_v2`, the
# next version of `reg.ORDER_V1`: keep every v1 field unchanged and add `coupon_code` (absent = `None`) and
# `channel` (a string; every order written before v2 came from the web shop, `"web"`). The check registers it
# under `FULL_TRANSITIVE`, produces v1 and v2 orders to one topic, and reads the topic with a v1 consumer and
# with a v2 consumer.

# %%
### BEGIN SOLUTION
order_v2 = {
    **reg.ORDER_V1,
    "fields": [
        *reg.ORDER_V1["fields"],
        {"name": "coupon_code", "type": ["null", "string"], "default": None},  # null first: the default's branch
        {"name": "channel", "type": "string", "default": "web"},  # what old orders read as
    ],
}
### END SOLUTION

# %%
check.m05.evolved_orders_schema(order_v2)

# %% [markdown]
# Now on the lab's own topic: register v2, produce with it, and read the whole topic with both consumers.

# %%
registry.register_schema(f"{orders_topic}-value", reg.avro(order_v2))
new_orders = [{**orders[0], "order_id": 50, "coupon_code": "SPRING10", "channel": "app"}]
reg.produce(orders_topic, AvroSerializer(registry, json.dumps(order_v2)), new_orders)
old_view = reg.read_topic(orders_topic, AvroDeserializer(registry, json.dumps(reg.ORDER_V1)))
new_view = reg.read_topic(orders_topic, AvroDeserializer(registry, json.dumps(order_v2)))
pd.concat([pd.DataFrame(old_view).assign(consumer="v1 reader"), pd.DataFrame(new_view).assign(consumer="v2 reader")])[
    ["consumer", "order_id", "amount", "coupon_code", "channel"]
]

# %% [markdown]
# The v1 reader sees every order, the new one included, without the fields it does not know; the v2 reader
# sees the old orders with `coupon_code=None, channel='web'` — filled in from the defaults — and the new one as
# written. Neither team had to wait for the other.
#
# ## Recap
# - A registry keeps schemas per subject, with versions and ids; messages carry only `00` + a 4-byte id.
# - Avro needs the writer's schema to decode; Protobuf adds message indexes; JSON Schema validates JSON text.
# - Compatibility levels say who can upgrade first; TRANSITIVE compares with the whole history. Defaults are
#   what make additions and removals safe.
# - A registry turns a breaking change into a refused registration at the producer — before any consumer breaks.
#
# **Going further:**
# - The same code runs against Confluent Cloud or a self-managed Confluent Schema Registry, AWS Glue Schema
#   Registry (through its own serializers) or Redpanda's built-in registry: point `DELAB_SCHEMA_REGISTRY_URL` at
#   it under the `external` profile (and add credentials to the client's config).
# - Apicurio's own API (`/apis/registry/v3`) adds groups, artifact references, rules per group and a web UI
#   (a separate `apicurio-registry-ui` bundle); `config.schema_registry().url` is its base.
# - Schema references (an Avro record or a .proto importing another subject), and the `RecordNameStrategy`
#   for several event types on one topic.
# - Data contracts (lab 05.02) go further than schemas: owners, semantics, quality rules and SLAs.
