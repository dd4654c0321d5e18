"""Checks of lab 07.07 (data platform components as code): a second CDC connector, a registry subject, and the
landing of change events in an Iceberg table.

e1 and e2 plan the learner's module block in a scratch root next to what the lab's root holds (the orders
connector; ``module.app`` and the topics replaced by a stub module with the same outputs), so they need no
service: the modules are ``terraform_data`` steps whose provisioners never run in a plan. e3 runs the learner's
function on a real Iceberg table (the stack's catalog and object store), fresh at every call.
"""

from __future__ import annotations

import json
from typing import Any

from delab.checks.m07 import scratch
from delab.grading import WrongAnswer, exercise, learner_code
from delab.iac import Tofu, TofuError, module_source, write_root

LAB = "m07_l07"
TOPIC_PREFIX = f"{LAB}_cdc"
DATABASE = f"{LAB}_shop"
ORDERS_CONNECTOR = f"{LAB}_orders"

#: the context of the lab's root that a learner's block refers to (var.stack, local.topic_prefix, module.app)
CONTEXT_TF = """
variable "stack" {{
  type = object({{
    connect_url = string, registry_url = string, pg_host = string, pg_port = number, cdc_user = string
  }})
  default = {{
    connect_url  = "http://127.0.0.1:18083"
    registry_url = "http://127.0.0.1:18085/apis/ccompat/v7"
    pg_host      = "127.0.0.1"
    pg_port      = 15432
    cdc_user     = "delab"
  }}
}}

locals {{
  tables       = ["public.orders"]
  topic_prefix = "{topic_prefix}"
}}

# a stand-in with the outputs of the lab's postgres_app_database call
module "app" {{
  source = "./app"
}}

module "cdc" {{
  source = "{cdc_source}"

  name        = "{orders}"
  connect_url = var.stack.connect_url
  database = {{
    host = var.stack.pg_host, port = var.stack.pg_port, dbname = module.app.database, user = var.stack.cdc_user
  }}
  tables                 = local.tables
  topic_prefix           = local.topic_prefix
  publication_name       = "{orders}_pub"
  publication_autocreate = "disabled"
}}
"""

APP_STUB_TF = f"""
output "database" {{
  value = "{DATABASE}"
}}
output "owner" {{
  value = "{DATABASE}_owner"
}}
"""


def _plan_with(name: str, block: str) -> dict[str, Any]:
    """Plan the lab's context plus the learner's block in a fresh scratch root; the plan as JSON."""
    folder = scratch(LAB, name)
    main = CONTEXT_TF.format(
        topic_prefix=TOPIC_PREFIX, cdc_source=module_source("cdc_connector"), orders=ORDERS_CONNECTOR
    )
    write_root(folder, main, providers=(), files={"learner.tf": block, "app/main.tf": APP_STUB_TF})
    tofu = Tofu(folder)
    tofu.init()
    return tofu.plan().json


def _planned_inputs(plan: dict[str, Any], resource: str, skip_module: str | None = None) -> dict[str, dict]:
    """The planned ``input`` of every terraform_data.<resource>, by address (``skip_module``'s left out)."""
    found = {}
    for change in plan.get("resource_changes", []):
        if change.get("type") != "terraform_data" or change.get("name") != resource:
            continue
        if skip_module and change["address"].startswith(f"module.{skip_module}."):
            continue
        found[change["address"]] = (change["change"].get("after") or {}).get("input") or {}
    return found


def _hcl_answer(answer: Any, what: str) -> str:
    if not isinstance(answer, str) or "module" not in answer or "source" not in answer:
        raise WrongAnswer(
            f"{what} should be the HCL text of a module block.",
            hint='module "<name>" { source = "…", <the module\'s variables> = … }',
        )
    return answer


def _validation_message(output: str) -> str | None:
    """The error_message of the validation rule that failed, from tofu's full output (None if none failed)."""
    lines = [line.strip(" │╷╵").strip() for line in output.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("This was checked by the validation rule"):
            paragraph: list[str] = []
            for previous in reversed(lines[:i]):
                if not previous:
                    if paragraph:
                        break
                    continue
                paragraph.insert(0, previous)
            return " ".join(paragraph)
    return None


def _module_refused(error: TofuError) -> WrongAnswer:
    reason = _validation_message(error.output)
    if reason:
        return WrongAnswer(
            f"the module refused a value: {reason}",
            hint="the module's validation says why; read the variable's description in its variables.tf.",
        )
    message = error.message
    if "Unsupported argument" in message or "Missing required argument" in message:
        return WrongAnswer(
            f"tofu plan: {message}", hint="the module's variables are in its variables.tf: use those names."
        )
    return WrongAnswer(f"tofu could not plan your block: {message}", hint="check the HCL (braces, quotes, =).")


# ------------------------------------------------------------------------------- e1: a second connector


@exercise("m07.l07.e1")
def customers_connector_check(customers_connector) -> None:
    """the customers connector has its own slot and publication, reads only customers and writes to the
    platform's topic prefix."""
    block = _hcl_answer(customers_connector, "customers_connector")
    try:
        plan = _plan_with("customers_connector", block)
    except TofuError as error:
        raise _module_refused(error) from None
    ours = _planned_inputs(plan, "connector", skip_module="cdc")
    if not ours:
        raise WrongAnswer(
            "the plan has no connector besides the orders one.",
            hint="call the cdc_connector module (source = iac.module_source('cdc_connector')).",
        )
    if len(ours) > 1:
        raise WrongAnswer(f"the plan has {len(ours)} new connectors.", hint="one connector, for customers.")
    spec = next(iter(ours.values()))
    settings = spec.get("config", {})
    tables = [t for t in str(settings.get("table.include.list", "")).split(",") if t]
    if spec.get("name") == ORDERS_CONNECTOR:
        raise WrongAnswer(
            f"your connector is called {ORDERS_CONNECTOR}, like the orders one.",
            hint="Connect knows connectors by name: a second PUT of that name rewrites the first connector.",
        )
    if spec.get("slot") == ORDERS_CONNECTOR:
        raise WrongAnswer(
            f"both connectors read the replication slot {ORDERS_CONNECTOR}.",
            hint="a slot has one reader and one position: whichever connector confirms a change first makes the "
            "other one lose it. Leave slot_name unset (it defaults to the connector's name) or pick another.",
        )
    if spec.get("publication") == f"{ORDERS_CONNECTOR}_pub":
        raise WrongAnswer(
            "both connectors read the orders connector's publication.",
            hint="a publication decides which tables' changes a slot is sent; give each connector its own.",
        )
    if "public.orders" in tables:
        raise WrongAnswer(
            "your connector captures public.orders too.",
            hint="orders already has its connector: a table captured twice writes every change twice to its topic.",
        )
    if tables != ["public.customers"]:
        raise WrongAnswer(
            f"your connector captures {tables}.",
            hint="the shop asked for one table, written <schema>.<table> as the include list wants it.",
        )
    if settings.get("topic.prefix") != TOPIC_PREFIX:
        raise WrongAnswer(
            f"changes would go to {settings.get('topic.prefix')}.public.customers.",
            hint="that topic is not the one the topics module makes: use the root's topic prefix (a local).",
        )
    if settings.get("database.dbname") != DATABASE:
        raise WrongAnswer(
            f"your connector reads database {settings.get('database.dbname')}.",
            hint="the customers table lives in the application database: use the app module's output.",
        )
    if settings.get("publication.autocreate.mode") != "disabled":
        raise WrongAnswer(
            "your connector would let Debezium create its publication (filtered).",
            hint="only a table's owner may publish it, and the CDC login owns nothing here: the application's "
            "owner publishes customers, as it did orders.",
        )


# ----------------------------------------------------------------------------------- e2: the subject

CUSTOMER_COLUMNS = {
    "id": ("int", False),
    "name": ("string", False),
    "country": ("string", False),
    "email": ("string", True),
}
READER_SAFE_MODES = {"BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"}


def _field_type(field: dict) -> tuple[str, bool]:
    kind = field.get("type")
    if isinstance(kind, list):
        others = [k for k in kind if k != "null"]
        return (others[0] if len(others) == 1 and isinstance(others[0], str) else str(others)), "null" in kind
    return (kind if isinstance(kind, str) else str(kind)), False


@exercise("m07.l07.e2")
def customers_subjects_check(customers_subjects) -> None:
    """the customers topic's value subject is named by the TopicNameStrategy, protects readers and describes
    the table's columns."""
    import fastavro

    block = _hcl_answer(customers_subjects, "customers_subjects")
    try:
        plan = _plan_with("customers_subjects", block)
    except TofuError as error:
        raise _module_refused(error) from None
    versions = _planned_inputs(plan, "version")
    if not versions:
        raise WrongAnswer("the plan registers no subject.", hint="call the schema_subjects module with one subject.")
    want = f"{TOPIC_PREFIX}.public.customers-value"
    spec = versions.get(f'module.customer_subjects.terraform_data.version["{want}"]') or next(iter(versions.values()))
    subject = spec.get("subject", "")
    if subject != want:
        if subject.endswith("-key"):
            hint = 'the key subject describes {"id": …}; the rows are the topic\'s values.'
        elif subject.endswith("customers-value"):
            hint = "the TopicNameStrategy uses the topic's full name, prefix and schema included."
        else:
            hint = "subject = <the change topic's name>-value."
        raise WrongAnswer(f"the subject is {subject!r}.", hint=hint)
    mode = spec.get("compatibility")
    if mode not in READER_SAFE_MODES:
        hint = (
            "NONE lets any schema in: a new field without a default would break the sink reading old rows."
            if mode == "NONE"
            else "FORWARD protects old readers of new data; the sink reads old rows with the newest schema."
        )
        raise WrongAnswer(f"compatibility {mode} does not protect the sink.", hint=hint)
    try:
        schema = json.loads(spec.get("schema", ""))
        fastavro.parse_schema(schema)
    except Exception as error:  # whatever the parser says is the learner's feedback
        raise WrongAnswer(
            f"the schema is not valid Avro: {str(error)[:200]}",
            hint='an Avro record: {type = "record", name = …, fields = [...]}',
        ) from None
    fields = (
        {f.get("name"): f for f in schema.get("fields", []) if isinstance(f, dict)} if isinstance(schema, dict) else {}
    )
    missing = [column for column in CUSTOMER_COLUMNS if column not in fields]
    if missing:
        raise WrongAnswer(f"the schema has no field {', '.join(missing)}.", hint="one field per column of the table.")
    for column, (kind, nullable) in CUSTOMER_COLUMNS.items():
        got_kind, got_nullable = _field_type(fields[column])
        if got_kind != kind and not (kind == "int" and got_kind == "long"):
            raise WrongAnswer(f"field {column} is {got_kind}.", hint=f"the column's type maps to Avro {kind}.")
        if nullable and (not got_nullable or "default" not in fields[column] or fields[column]["default"] is not None):
            raise WrongAnswer(
                f"field {column} cannot hold the NULLs the column allows (or has no null default).",
                hint='a nullable column is type = ["null", "<type>"] with default = null.',
            )
        if not nullable and got_nullable:
            raise WrongAnswer(
                f"field {column} accepts null, but the column is NOT NULL.",
                hint="make the contract as strict as the table: NOT NULL columns are plain types.",
            )


# -------------------------------------------------------------------------- e3: landing change events

CHECK_NAMESPACE = f"{LAB}_checks"


def _event(offset: int, op: str | None, key: int, after: dict | None = None) -> Any:
    from delab.loading.cdc import Message

    if op is None:  # a tombstone
        return Message("checks", 0, offset, {"id": key}, None)
    before = {"id": key, "customer": None, "amount_cents": None, "status": None} if op == "d" else None
    return Message("checks", 0, offset, {"id": key}, {"op": op, "before": before, "after": after})


def _row(key: int, customer: str, cents: int, status: str) -> dict:
    return {"id": key, "customer": customer, "amount_cents": cents, "status": status}


def change_events() -> tuple[list, list[dict]]:
    """A snapshot then changes (an update, a delete with its tombstone, a key deleted and inserted again, a key
    updated twice) and the rows the source holds afterwards."""
    script = [
        ("r", _row(1, "ada", 100, "new")),
        ("r", _row(2, "grace", 200, "new")),
        ("r", _row(3, "linus", 300, "new")),
        ("c", _row(4, "barbara", 400, "new")),
        ("u", _row(2, "grace", 200, "paid")),
        ("d", 1),
        (None, 1),
        ("c", _row(5, "edsger", 500, "new")),
        ("u", _row(5, "edsger", 550, "new")),
        ("d", 3),
        (None, 3),
        ("c", _row(3, "linus", 333, "new")),
        ("u", _row(5, "edsger", 555, "paid")),
        ("u", _row(4, "barbara", 444, "paid")),
    ]
    events = []
    for offset, (op, payload) in enumerate(script):
        if op in ("d", None):
            events.append(_event(offset, op, payload))
        else:
            events.append(_event(offset, op, payload["id"], payload))
    final = [_row(2, "grace", 200, "paid"), _row(3, "linus", 333, "new"), _row(4, "barbara", 444, "paid"),
             _row(5, "edsger", 555, "paid")]  # fmt: skip
    return events, final


def fresh_table() -> Any:
    """An empty Iceberg table like the lab's orders table, in the checks' namespace of the stack's catalog."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import IntegerType, NestedField, StringType

    from delab import lakehouse

    catalog = lakehouse.catalog()
    lakehouse.fresh_namespace(catalog, CHECK_NAMESPACE)
    schema = Schema(
        NestedField(1, "id", IntegerType(), required=True),
        NestedField(2, "customer", StringType(), required=True),
        NestedField(3, "amount_cents", IntegerType(), required=True),
        NestedField(4, "status", StringType(), required=True),
    )
    return catalog.create_table(f"{CHECK_NAMESPACE}.orders", schema=schema)


@learner_code("land_changes")
def _run_landing(land_changes, table, events) -> None:
    land_changes(table, list(events))


@exercise("m07.l07.e3")
def land_changes_check(land_changes) -> None:
    """land_changes leaves the Iceberg table holding exactly the source's rows: last event per key, deletes
    applied, a re-inserted key present."""
    if not callable(land_changes):
        raise WrongAnswer(
            "land_changes should be a function (table, messages).", hint="def land_changes(table, messages): …"
        )
    events, want = change_events()
    table = fresh_table()
    _run_landing(land_changes, table, events)
    rows = sorted(table.refresh().scan().to_arrow().to_pylist(), key=lambda r: (r["id"], str(r)))
    if rows == want:
        return
    ids = [row["id"] for row in rows]
    by_id = {row["id"]: row for row in rows}
    if len(ids) != len(set(ids)):
        raise WrongAnswer(
            f"the table holds {len(rows)} rows for {len(set(ids))} keys.",
            hint="appending every event keeps each version of a row: an update must replace the row with its key.",
        )
    if 1 in by_id:
        raise WrongAnswer(
            "order 1 was deleted at the source but is still in the table.", hint="op 'd' removes the key."
        )
    if 3 not in by_id:
        raise WrongAnswer(
            "order 3 was deleted and then inserted again, but it is missing.",
            hint="events of a key are applied in order: the last one decides (a later create undoes a delete).",
        )
    if by_id.get(5, {}).get("amount_cents") != 555 or by_id.get(4, {}).get("status") != "paid":
        raise WrongAnswer(
            "a row does not show its latest change.", hint="for each key, the event with the highest offset wins."
        )
    raise WrongAnswer(f"the table holds {rows}, the source {want}.", hint="compare op, before and after per key.")
