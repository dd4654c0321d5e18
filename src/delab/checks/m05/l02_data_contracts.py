"""Checks of lab 05.02 (data contracts): an ODCS contract tested with datacontract-cli on a real table and topic
(and on defective copies it must reject), breaking-change predictions graded against datacontract-cli's own
verdicts, a producer that enforces the contract with a dead-letter route on real Kafka topics, and a dbt model
contract that dbt enforces at build time on the stack's Postgres.

Scratch data lives in the Postgres schema ``<lab schema>_check`` and in topics ``…check.<uuid>`` deleted
afterwards.
"""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta

import pandas as pd
import yaml

from delab.contracts import dbt_models, odcs
from delab.grading import WrongAnswer, exercise, learner_code

# ------------------------------------------------------------------------------------------- the contract

#: the defective copies a contract must reject: name -> (how to make it from good orders, message, hint)
_DEFECTS = {
    "duplicates": (
        lambda o: pd.concat([o, o.head(3)], ignore_index=True),
        "a table with the same order_id on two rows passed your contract",
        "say which column identifies an order (primaryKey / unique).",
    ),
    "no_customer": (
        lambda o: o.assign(customer_id=o.customer_id.where(o.index % 40 != 0)),
        "a table with orders that have no customer_id passed your contract",
        "which columns must always have a value? (required)",
    ),
    "unknown_status": (
        lambda o: o.assign(status=o.status.where(o.index % 25 != 0, "pending")),
        "a table with the status 'pending' passed your contract",
        "list the values status may take (enum).",
    ),
    "stale": (
        lambda o: o.assign(order_ts=o.order_ts - timedelta(hours=3)),
        "a table whose newest order is three hours old passed your contract",
        "a freshness service level on orders.order_ts (value and unit) fails stale data.",
    ),
    "empty": (
        lambda o: o.head(0),
        "an empty table passed your contract",
        "a quality rule on the number of rows (rowCount).",
    ),
}


def _summary(checks: pd.DataFrame, limit: int = 2) -> str:
    bad = odcs.failed(checks)
    return "; ".join(
        f"{row.check} ({row.result}{': ' + str(row.reason)[:80] if row.reason else ''})"
        for row in bad.head(limit).itertuples()
    )


def _hard_failures(checks: pd.DataFrame) -> pd.DataFrame:
    return checks[checks.result.isin(["failed", "error"])]


def _static_parts(contract: dict) -> None:
    team = contract.get("team") or {}
    members = team.get("members") if isinstance(team, dict) else team
    if not any(str((m or {}).get("role", "")).lower() == "owner" for m in members or [] if isinstance(m, dict)):
        raise WrongAnswer(
            "the contract names no owner.",
            hint="team: {name: ..., members: [{username: ..., role: owner}]} — who is called when it breaks.",
        )
    if not (contract.get("description") or {}).get("purpose"):
        raise WrongAnswer(
            "the contract does not say what the data is for.", hint="description: {purpose: ..., usage: ...}"
        )
    schemas = contract.get("schema") or []
    orders = next((s for s in schemas if isinstance(s, dict) and s.get("name") == "orders"), None)
    if orders is None:
        raise WrongAnswer(
            "the contract has no schema object named orders.",
            hint="schema: [{name: orders, physicalName: orders, ...}]",
        )
    names = {p.get("name") for p in orders.get("properties") or [] if isinstance(p, dict)}
    missing = [c for c in ("order_id", "customer_id", "order_ts", "channel", "status", "coupon_code") if c not in names]
    if missing:
        raise WrongAnswer(
            f"the orders schema does not describe: {', '.join(missing)}.", hint="one property per column of the table."
        )
    slas = {s.get("property"): s for s in contract.get("slaProperties") or [] if isinstance(s, dict)}
    if "latency" not in slas or slas["latency"].get("value") is None:
        raise WrongAnswer(
            "the contract has no latency service level.",
            hint="slaProperties: a property latency with a value and a unit (5 minutes).",
        )


@exercise("m05.l02.e1")
def orders_contract(contract: str, schema: str, topic: str) -> None:
    """The orders contract is valid ODCS, passes on the real table and topic, and fails on each defective copy."""
    try:
        odcs.parse(contract)
        data = odcs.as_dict(contract)
    except odcs.ContractError as error:
        raise WrongAnswer(
            str(error), hint="compare with the ODCS fields in the table above (apiVersion: v3.2.0)."
        ) from None
    _static_parts(data)
    deployed = {**data, "servers": odcs.servers(schema)}
    good = odcs.clean_orders()
    scratch = f"{schema}_check"
    odcs.load_table(good, scratch)
    checks = _run_test(deployed, "warehouse", schema=scratch)
    if len(_hard_failures(checks)):
        raise WrongAnswer(
            f"your contract fails on the good orders table: {_summary(_hard_failures(checks))}",
            hint="the contract must describe the data as it is: types like the table's (bigint, timestamp, text).",
        )
    stream_topic = f"{topic}.check.{uuid.uuid4().hex[:8]}"
    try:
        odcs.publish(stream_topic, odcs.as_messages(good))
        checks = _run_test(deployed, "stream", topic=stream_topic)
    finally:
        odcs.delete_topics([stream_topic])
    if len(_hard_failures(checks)):
        raise WrongAnswer(
            f"your contract fails on the good orders topic: {_summary(_hard_failures(checks))}",
            hint="the topic's JSON orders are checked on logical types (integer, timestamp, string).",
        )
    for make, message, hint in _DEFECTS.values():
        odcs.load_table(make(good.copy()), scratch)
        checks = _run_test(deployed, "warehouse", schema=scratch)
        if not len(_hard_failures(checks)):
            raise WrongAnswer(message + ".", hint=hint)


@learner_code("datacontract test with your contract")
def _run_test(contract: dict, server: str, **where) -> pd.DataFrame:
    return odcs.test(contract, server, **where)


# ------------------------------------------------------------------------------------------------ versions

#: the contract the version exercise compares against (only what the changes touch)
VERSIONED: dict = {
    "apiVersion": odcs.API_VERSION,
    "kind": "DataContract",
    "id": "urn:datacontract:shop:orders",
    "version": "1.0.0",
    "status": "active",
    "schema": [
        {
            "name": "orders",
            "physicalName": "orders",
            "properties": [
                {
                    "name": "order_id",
                    "logicalType": "integer",
                    "physicalType": "bigint",
                    "required": True,
                    "unique": True,
                },
                {"name": "customer_id", "logicalType": "integer", "physicalType": "bigint", "required": True},
                {"name": "order_ts", "logicalType": "timestamp", "physicalType": "timestamp", "required": True},
                {
                    "name": "channel",
                    "logicalType": "string",
                    "physicalType": "text",
                    "required": True,
                    "enum": [{"value": v} for v in odcs.CHANNELS],
                },
                {
                    "name": "status",
                    "logicalType": "string",
                    "physicalType": "text",
                    "required": True,
                    "enum": [{"value": v} for v in odcs.STATUSES],
                },
                {"name": "coupon_code", "logicalType": "string", "physicalType": "text", "required": False},
            ],
        }
    ],
    "slaProperties": [{"property": "freshness", "value": 1, "unit": "h", "element": "orders.order_ts"}],
}

PERSPECTIVES = ("consumer", "producer")


@exercise("m05.l02.e2")
def breaking_predictions(predictions: dict) -> None:
    """Your breaking-change predictions match datacontract-cli's verdicts, for consumers and for the producer."""
    if not isinstance(predictions, dict):
        raise WrongAnswer(
            "expected a dict {change: {'consumer': bool, 'producer': bool}}.",
            hint="one entry per change of odcs.CHANGES.",
        )
    missing = [name for name in odcs.CHANGES if name not in predictions]
    if missing:
        raise WrongAnswer(f"no prediction for: {', '.join(missing)}.", hint="one entry per change of odcs.CHANGES.")
    for name in odcs.CHANGES:
        cell = predictions[name]
        if not isinstance(cell, dict) or any(not isinstance(cell.get(p), bool) for p in PERSPECTIVES):
            raise WrongAnswer(
                f"the prediction for {name} is {cell!r}.",
                hint="each change gets {'consumer': True/False, 'producer': True/False}.",
            )
    verdicts = odcs.breaking_verdicts(VERSIONED)
    wrong = [name for name in odcs.CHANGES if any(predictions[name][p] != verdicts[name][p] for p in PERSPECTIVES)]
    if not wrong:
        return
    swapped = all(
        predictions[n]["consumer"] == verdicts[n]["producer"] and predictions[n]["producer"] == verdicts[n]["consumer"]
        for n in odcs.CHANGES
    )
    if swapped:
        raise WrongAnswer(
            "your predictions are right with consumer and producer exchanged.",
            hint="consumers are hurt by what they may now receive; the producer by what it must now deliver.",
        )
    wrong_side = {p for n in wrong for p in PERSPECTIVES if predictions[n][p] != verdicts[n][p]}
    hint = (
        "a change that loosens the data (new values, optional columns, removed columns, a laxer SLA) breaks consumers;"
        " one that tightens it breaks the producer; a type change breaks both; descriptions break no one."
    )
    raise WrongAnswer(
        f"off for {len(wrong)} change(s): {', '.join(wrong)} (the {' and '.join(sorted(wrong_side))} side).", hint=hint
    )


# -------------------------------------------------------------------------------------- enforced producer

_VALID = [
    {
        "order_id": 90001 + i,
        "customer_id": 7 + i,
        "order_ts": f"2026-03-20T10:0{i}:00Z",
        "channel": "web",
        "status": "placed",
        "coupon_code": None,
    }
    for i in range(5)
]
#: invalid orders, each with what is wrong
_INVALID = [
    ({**_VALID[0], "order_id": 90101, "customer_id": None}, "no customer"),
    ({**_VALID[0], "order_id": 90102, "status": "pending"}, "an unknown status"),
    ({**_VALID[0], "order_id": "A-90103"}, "an order_id that is not an integer"),
    ({k: v for k, v in {**_VALID[0], "order_id": 90104}.items() if k != "channel"}, "no channel"),
]


def _batch() -> list[dict]:
    """Valid and invalid orders interleaved (an invalid one first: a producer must go on after it)."""
    out: list[dict] = []
    for index, valid in enumerate(_VALID):
        if index < len(_INVALID):
            out.append(copy.deepcopy(_INVALID[index][0]))
        out.append(copy.deepcopy(valid))
    return out


@learner_code("produce_orders")
def _produce(fn, *args):
    return fn(*args)


@exercise("m05.l02.e3")
def enforced_producer(produce_orders) -> None:
    """Valid orders reach the topic unchanged; every invalid one goes to the dead-letter topic with its reason."""
    from confluent_kafka import Producer

    from delab import config, stack

    base = stack.namespace("m05_l02").topic(f"check.{uuid.uuid4().hex[:8]}")
    topic, dead = f"{base}.orders", f"{base}.dead-letter"
    try:
        for name in (topic, dead):
            odcs.publish(name, [])
        schema = odcs.json_schema(VERSIONED)
        producer = Producer({"bootstrap.servers": config.kafka().bootstrap_servers})
        returned = _produce(produce_orders, producer, _batch(), topic, dead, schema)
        producer.flush(30)
        delivered = odcs.read_json_topic(topic)
        rejected = odcs.read_json_topic(dead)
    finally:
        odcs.delete_topics([topic, dead])
    valid_ids = [r["order_id"] for r in _VALID]
    got_ids = [v.get("order_id") if isinstance(v, dict) else v for v, _ in delivered]
    for record, what in _INVALID:
        if record["order_id"] in got_ids:
            raise WrongAnswer(
                f"an order with {what} reached the orders topic.",
                hint="validate each record against the whole JSON Schema (types, required, enum), not a chosen part.",
            )
    if sorted(map(str, got_ids)) != sorted(map(str, valid_ids)):
        raise WrongAnswer(
            f"the orders topic holds {len(got_ids)} orders; the {len(valid_ids)} valid ones, once each, were expected.",
            hint="after an invalid record, go on with the next one; send each valid record once.",
        )
    if [v for v, _ in delivered] != [{**r} for r in _VALID]:
        raise WrongAnswer(
            "the valid orders on the topic are not the records you were given, as JSON.",
            hint="json.dumps(record).encode() — no extra fields, no str(dict).",
        )
    if len(rejected) != len(_INVALID):
        raise WrongAnswer(
            f"the dead-letter topic holds {len(rejected)} messages for {len(_INVALID)} invalid orders.",
            hint="an invalid record is not dropped: it goes to dead_letter_topic, once.",
        )
    if any(not headers.get("contract-violation") for _, headers in rejected):
        raise WrongAnswer(
            "a dead-letter message has no contract-violation header.",
            hint="headers={'contract-violation': <the first error message>} — whoever repairs it needs the reason.",
        )
    if not (isinstance(returned, tuple | list) and list(returned) == [len(_VALID), len(_INVALID)]):
        raise WrongAnswer(
            f"produce_orders returned {returned!r}; expected (sent, rejected) = ({len(_VALID)}, {len(_INVALID)}).",
            hint="count both routes and return them as a tuple.",
        )


# ------------------------------------------------------------------------------------------ dbt contract

#: model SQL variants the contract must refuse: (sql, message, hint)
_REFUSED_SQL = [
    (
        dbt_models.DRIFTED_SQL,
        "dbt built fct_orders after its query turned customer_id into text",
        "the YAML is only documentation until the model's config says contract: {enforced: true}.",
    ),
    (
        dbt_models.MODEL_SQL.replace(
            "customer_id,", "case when order_id % 40 = 0 then null else customer_id end as customer_id,"
        ),
        "dbt built fct_orders with orders that have no customer_id",
        "an enforced contract can also create the table with constraints: not_null on customer_id.",
    ),
    (
        dbt_models.MODEL_SQL + "union all\n(" + dbt_models.MODEL_SQL.strip() + " limit 3)\n",
        "dbt built fct_orders with the same order_id on two rows",
        "a primary_key constraint on order_id (Postgres enforces it when the table is filled).",
    ),
]


@exercise("m05.l02.e4")
def dbt_model_contract(model_yaml: str, schema: str) -> None:
    """dbt builds fct_orders as written, and refuses it with a changed type, missing customers or duplicate ids."""
    try:
        parsed = yaml.safe_load(model_yaml) if isinstance(model_yaml, str) else model_yaml
    except yaml.YAMLError as error:
        raise WrongAnswer(
            f"not YAML: {str(error).splitlines()[0]}", hint="indentation is part of YAML's syntax."
        ) from None
    models = (parsed or {}).get("models") if isinstance(parsed, dict) else None
    if not models or not any(isinstance(m, dict) and m.get("name") == "fct_orders" for m in models):
        raise WrongAnswer(
            "the YAML declares no model fct_orders.", hint="version: 2, then models: [{name: fct_orders, ...}]"
        )
    scratch = f"{schema}_check"
    odcs.load_table(odcs.clean_orders(), scratch)
    root = dbt_models.project(
        "orders_contract_check",
        scratch,
        {"models/fct_orders.sql": dbt_models.MODEL_SQL, "models/fct_orders.yml": parsed},
    )
    first = dbt_models.build(root, scratch)
    if not first.success:
        detail = next(
            (m for m in first.messages if "mismatch" in m or "rror" in m), first.messages[-1] if first.messages else ""
        )
        raise WrongAnswer(
            f"dbt refuses fct_orders as written: {' '.join(detail.split())[:300]}",
            hint="declare each column the query returns, with the type Postgres gives it (bigint, timestamp, text).",
        )
    for sql, message, hint in _REFUSED_SQL:
        if dbt_models.build(root, scratch, sql=sql).success:
            raise WrongAnswer(message + ".", hint=hint)
