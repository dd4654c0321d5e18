"""Data contracts for lab 05.02: the shop's orders contract in the Open Data Contract Standard (ODCS v3.2),
tested with datacontract-cli against the stack's Postgres table and Kafka topic, compared between versions for
breaking changes, and enforced at write time by a producer that routes violations to a dead-letter topic.

Why these helpers exist rather than the CLI alone:

* ``parse`` validates a contract against the ODCS JSON Schema bundled with datacontract-cli, once per process.
  datacontract-cli re-checks that (large) JSON Schema against its own metaschema on *every* parse — seconds per
  contract on a busy machine — although the schema ships with the package and never changes.
* ``test`` points a contract's ``servers`` at the lab's own Postgres schema / Kafka topic (the grader runs each
  learner in a namespace of their own) and returns the checks as a table.
"""

from __future__ import annotations

import contextlib
import copy
import json
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd
import yaml

from delab import config

API_VERSION = "v3.2.0"

#: the shop's order statuses and channels (delab.datasets.shop)
STATUSES = ["placed", "shipped", "delivered", "cancelled", "returned"]
CHANNELS = ["web", "app", "marketplace"]


class ContractError(ValueError):
    """A contract that is not valid ODCS (the message lists the first problems)."""


@lru_cache(maxsize=4)
def _validator(api_version: str):
    import jsonschema

    name = f"odcs-{api_version.lstrip('v')}.schema.json"
    try:
        text = resources.files("datacontract").joinpath("schemas", name).read_text()
    except FileNotFoundError:
        raise ContractError(f"apiVersion {api_version!r} is not an ODCS version datacontract-cli knows") from None
    # unevaluatedProperties makes jsonschema exponentially slow on nested schemas (datacontract-cli drops it too);
    # the pydantic model below still rejects unknown fields where it matters.
    schema = json.loads(text, object_hook=lambda o: {k: v for k, v in o.items() if k != "unevaluatedProperties"})
    return jsonschema.validators.validator_for(schema)(schema)


def as_dict(contract: str | dict) -> dict:
    """A contract given as YAML text or a dict, as a dict (copied)."""
    if isinstance(contract, str):
        try:
            loaded = yaml.safe_load(contract)
        except yaml.YAMLError as error:
            raise ContractError(f"not YAML: {str(error).splitlines()[0]}") from None
    else:
        loaded = copy.deepcopy(contract)
    if not isinstance(loaded, dict):
        raise ContractError(f"a contract is a YAML mapping, not {type(loaded).__name__}")
    return loaded


def parse(contract: str | dict):
    """Validate a contract (YAML text or dict) against the ODCS JSON Schema; return datacontract-cli's model."""
    from open_data_contract_standard.model import OpenDataContractStandard
    from pydantic import ValidationError

    data = json.loads(json.dumps(as_dict(contract), default=str))  # YAML dates → strings, as JSON Schema expects
    if data.get("kind") != "DataContract" or not str(data.get("apiVersion", "")).startswith("v3"):
        raise ContractError("an ODCS contract starts with apiVersion: v3.x.y and kind: DataContract")
    errors = sorted(_validator(str(data["apiVersion"])).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        shown = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:120]}" for e in errors[:3])
        raise ContractError(f"not valid ODCS {data['apiVersion']}: {shown}")
    try:
        return OpenDataContractStandard.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise ContractError(f"not valid ODCS: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


# ------------------------------------------------------------------------------------------------ servers


def servers(schema: str) -> list[dict]:
    """The contract's ``servers`` block for this stack: the warehouse (Postgres ``schema``) and the stream (Kafka)."""
    pg, kafka = config.postgres(), config.kafka()
    return [
        {
            "server": "warehouse",
            "type": "postgres",
            "host": pg.host,
            "port": pg.port,
            "database": pg.database,
            "schema": schema,
            "environment": "lab",
        },
        {"server": "stream", "type": "kafka", "host": kafka.bootstrap_servers, "format": "json", "environment": "lab"},
    ]


def _credentials() -> dict:
    pg = config.postgres()
    return {"postgres_username": pg.user, "postgres_password": pg.password}


def test(contract: str | dict, server: str, *, schema: str | None = None, topic: str | None = None) -> pd.DataFrame:
    """Run ``datacontract test`` on one server of the contract; one row per check (name, type, field, result, reason).

    ``schema`` reads the Postgres table from another schema, ``topic`` reads another Kafka topic: the contract
    names the dataset, the lab decides where its copy lives. The run's overall result is in ``.attrs["result"]``.
    """
    from datacontract.config import Config
    from datacontract.data_contract import DataContract

    model = parse(contract)
    names = [s.server for s in model.servers or []]
    if server not in names:
        raise ContractError(f"the contract has no server {server!r} (it has: {', '.join(names) or 'none'})")
    if topic is not None:
        model = model.model_copy(deep=True)
        for schema_object in model.schema_ or []:
            schema_object.physicalName = topic
    settings = _credentials() | ({"postgres_schema": schema} if schema else {})
    run = DataContract(data_contract=model, server=server, config=Config(**settings)).test()
    rows = [
        {
            "check": check.name,
            "type": check.type,
            "field": check.field,
            "result": str(getattr(check.result, "value", check.result)),
            "reason": check.reason,
        }
        for check in run.checks
    ]
    frame = pd.DataFrame(rows, columns=["check", "type", "field", "result", "reason"])
    frame.attrs["result"] = str(getattr(run.result, "value", run.result))
    return frame


def failed(checks: pd.DataFrame) -> pd.DataFrame:
    """The checks of a ``test`` run that did not pass (failed, warning or error)."""
    return checks[~checks.result.isin(["passed", "info"])]


# --------------------------------------------------------------------------------------------- the orders data


def clean_orders(n: int = 400, now: datetime | None = None) -> pd.DataFrame:
    """``n`` orders of the shop without its injected defects, re-timed so the newest was placed minutes ago."""
    from delab import datasets

    shop = datasets.shop(scale=0.1)
    bad = set(shop.defects.loc[shop.defects.table == "orders", "key"])
    orders = shop.orders[~shop.orders.order_id.isin(bad)].drop_duplicates("order_id")
    orders = orders.sort_values("order_id").head(n).reset_index(drop=True)
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    shift = pd.Timestamp(now - timedelta(minutes=5)) - orders.order_ts.max()
    orders["order_ts"] = (orders.order_ts + shift).dt.floor("s")
    return orders[["order_id", "customer_id", "order_ts", "channel", "status", "coupon_code"]]


def load_table(orders: pd.DataFrame, schema: str) -> int:
    """(Re)create ``<schema>.orders`` in the stack's Postgres with these rows; returns the row count."""
    from delab import datasets

    return datasets.to_postgres({"orders": orders}, schema)["orders"]


def as_messages(orders: pd.DataFrame) -> list[dict]:
    """Orders as the JSON records the producers write (timestamps as ISO-8601 UTC text, no NaN)."""
    frame = orders.copy()
    frame["order_ts"] = frame.order_ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        {key: (None if isinstance(value, float) and value != value else value) for key, value in row.items()}
        for row in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]


def publish(topic: str, records: list[dict]) -> None:
    """(Re)create ``topic`` and write the records as JSON (key = order_id); waits for the acks."""
    from confluent_kafka import Producer

    from delab.contracts import registry

    registry.recreate_topic(topic)
    producer = Producer({"bootstrap.servers": config.kafka().bootstrap_servers, "linger.ms": 5})
    for record in records:
        producer.produce(topic, value=json.dumps(record).encode(), key=str(record.get("order_id")).encode())
    if producer.flush(30) != 0:
        raise RuntimeError(f"{topic}: some messages were not acknowledged within 30 s")


# --------------------------------------------------------------------------------------------- versions


def breaking_verdict(old: str | dict, new: str | dict, perspective: str = "consumer") -> tuple[bool, list[str]]:
    """datacontract-cli's verdict on ``old`` → ``new``: (breaking?, the messages of the breaking entries)."""
    from datacontract.data_contract import DataContract

    result = DataContract(data_contract=parse(old)).breaking(
        DataContract(data_contract=parse(new)), perspective=perspective
    )
    messages = [entry.message for entry in result.entries if str(entry.level.value) == "error"]
    return bool(result.is_breaking), messages


def json_schema(contract: str | dict, schema_name: str = "orders") -> dict:
    """The JSON Schema of one schema object of the contract (``datacontract export --format jsonschema``)."""
    from datacontract.data_contract import DataContract

    exported = DataContract(data_contract=parse(contract)).export("jsonschema", schema_name=schema_name)
    return json.loads(exported) if isinstance(exported, str) else exported


def read_json_topic(topic: str, timeout: float = 15.0) -> list[tuple[Any, dict]]:
    """Every message of ``topic`` as (value decoded from JSON or the raw bytes, headers as a dict of str)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka().bootstrap_servers,
            "group.id": f"delab-read-{topic}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        partitions = [TopicPartition(topic, p, 0) for p in sorted(metadata.partitions)]
        expected = sum(consumer.get_watermark_offsets(tp, timeout=timeout)[1] for tp in partitions)
        consumer.assign(partitions)
        out: list[tuple[Any, dict]] = []
        deadline = datetime.now().timestamp() + timeout
        while len(out) < expected and datetime.now().timestamp() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            try:
                value: Any = json.loads(message.value())
            except (TypeError, ValueError):
                value = message.value()
            headers = {
                k: (v.decode(errors="replace") if isinstance(v, bytes) else v) for k, v in message.headers() or []
            }
            out.append((value, headers))
        return out
    finally:
        consumer.close()


# ------------------------------------------------------------------------------- changes between versions


def _props(contract: dict) -> list[dict]:
    return contract["schema"][0]["properties"]


def _prop(contract: dict, name: str) -> dict:
    return next(p for p in _props(contract) if p.get("name") == name)


def _freshness(contract: dict) -> dict:
    return next(s for s in contract["slaProperties"] if s.get("property") == "freshness")


#: changes to the orders contract lab 05.02 asks about: name -> (what changes, how to apply it to a contract dict)
CHANGES: dict[str, tuple[str, Any]] = {
    "drop_coupon_code": ("the column coupon_code is removed", lambda c: _props(c).remove(_prop(c, "coupon_code"))),
    "rename_customer_id": (
        "customer_id is renamed buyer_id",
        lambda c: _prop(c, "customer_id").update(name="buyer_id"),
    ),
    "add_optional_column": (
        "a new column gift_note (text, not required)",
        lambda c: _props(c).append({"name": "gift_note", "logicalType": "string", "physicalType": "text"}),
    ),
    "order_id_to_string": (
        "order_id becomes a string",
        lambda c: _prop(c, "order_id").update(logicalType="string", physicalType="text"),
    ),
    "customer_id_optional": (
        "customer_id is no longer required",
        lambda c: _prop(c, "customer_id").update(required=False),
    ),
    "add_status_value": (
        "status may also be 'on_hold'",
        lambda c: _prop(c, "status")["enum"].append({"value": "on_hold"}),
    ),
    "remove_status_value": (
        "status may no longer be 'returned'",
        lambda c: _prop(c, "status").update(enum=[e for e in _prop(c, "status")["enum"] if e["value"] != "returned"]),
    ),
    "describe_better": (
        "order_ts gets a more precise description",
        lambda c: _prop(c, "order_ts").update(description="When the customer confirmed the order, UTC."),
    ),
    "relax_freshness": (
        "the freshness service level goes from 1 hour to 6 hours",
        lambda c: _freshness(c).update(value=6, unit="h"),
    ),
    "tighten_freshness": (
        "the freshness service level goes from 1 hour to 15 minutes",
        lambda c: _freshness(c).update(value=15, unit="m"),
    ),
}


def changed(contract: str | dict, change: str) -> dict:
    """A copy of the contract with one of ``CHANGES`` applied (and its version bumped)."""
    new = as_dict(contract)
    CHANGES[change][1](new)
    new["version"] = f"{new.get('version', '1.0.0')}-{change}"
    return new


def breaking_verdicts(contract: str | dict) -> dict[str, dict[str, bool]]:
    """datacontract-cli's verdict on every change of ``CHANGES``: {change: {"consumer": bool, "producer": bool}}."""
    return {
        name: {p: breaking_verdict(contract, changed(contract, name), p)[0] for p in ("consumer", "producer")}
        for name in CHANGES
    }


def delete_topics(topics: list[str]) -> None:
    """Delete scratch topics (those that exist); a check's clean-up."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": config.kafka().bootstrap_servers})
    existing = [t for t in topics if t in admin.list_topics(timeout=10).topics]
    for future in admin.delete_topics(existing).values() if existing else []:
        with contextlib.suppress(Exception):  # already gone: nothing to clean
            future.result(timeout=30)
