"""Checks of lab 07.07 (platform components): right answers pass, realistic wrong ones are rejected with their own
hint. e1 and e2 plan terraform_data steps only (no service); e3 writes a real Iceberg table (marked stack)."""

from __future__ import annotations

import pytest

from delab.checks.m07 import l07_platform as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.iac import module_source

# ------------------------------------------------------------------------------------ e1: a second connector

CONNECTOR_GOOD = f"""
module "customers_cdc" {{
  source = "{module_source("cdc_connector")}"

  name        = "m07_l07_customers"
  connect_url = var.stack.connect_url
  database = {{
    host   = var.stack.pg_host
    port   = var.stack.pg_port
    dbname = module.app.database
    user   = var.stack.cdc_user
  }}
  tables                 = ["public.customers"]
  topic_prefix           = local.topic_prefix
  publication_name       = "m07_l07_customers_pub"
  publication_autocreate = "disabled"
}}
"""


def _rejected(check, answer) -> WrongAnswer:
    with pytest.raises(WrongAnswer) as failed:
        check(answer)
    return failed.value


def test_connector_accepts_the_right_answer():
    checks.customers_connector_check(CONNECTOR_GOOD)


def test_connector_accepts_default_slot_and_publication():
    answer = CONNECTOR_GOOD.replace('  publication_name       = "m07_l07_customers_pub"\n', "")
    checks.customers_connector_check(answer)


def test_connector_rejects_a_shared_slot():
    answer = CONNECTOR_GOOD.replace("tables  ", 'slot_name = "m07_l07_orders"\n  tables  ')
    assert "one reader" in _rejected(checks.customers_connector_check, answer).hint


def test_connector_rejects_the_all_tables_publication():
    answer = CONNECTOR_GOOD.replace('"m07_l07_customers_pub"', '"dbz_publication"')
    verdict = _rejected(checks.customers_connector_check, answer)
    assert "FOR ALL TABLES" in verdict.message and "validation" in verdict.hint


def test_connector_rejects_the_orders_publication():
    answer = CONNECTOR_GOOD.replace('"m07_l07_customers_pub"', '"m07_l07_orders_pub"')
    assert "its own" in _rejected(checks.customers_connector_check, answer).hint


def test_connector_rejects_capturing_orders_again():
    answer = CONNECTOR_GOOD.replace('["public.customers"]', '["public.orders", "public.customers"]')
    assert "twice" in _rejected(checks.customers_connector_check, answer).hint


def test_connector_rejects_another_topic_prefix():
    answer = CONNECTOR_GOOD.replace("topic_prefix           = local.topic_prefix", 'topic_prefix = "customers"')
    assert "topics module" in _rejected(checks.customers_connector_check, answer).hint


def test_connector_rejects_autocreated_publication():
    answer = CONNECTOR_GOOD.replace('"disabled"', '"filtered"')
    assert "owner" in _rejected(checks.customers_connector_check, answer).hint


def test_connector_rejects_text_that_is_not_a_module():
    assert "module" in _rejected(checks.customers_connector_check, "customers please").hint


def test_connector_placeholder_is_not_solved_yet():
    with pytest.raises(NotSolvedYet):
        checks.customers_connector_check(...)


# ---------------------------------------------------------------------------------------- e2: the subject

SUBJECTS_GOOD = f"""
module "customer_subjects" {{
  source       = "{module_source("schema_subjects")}"
  registry_url = var.stack.registry_url
  subjects = {{
    "${{local.topic_prefix}}.public.customers-value" = {{
      compatibility = "BACKWARD"
      schema = jsonencode({{
        type = "record", name = "Customer", namespace = "m07_l07"
        fields = [
          {{ name = "id", type = "int" }},
          {{ name = "name", type = "string" }},
          {{ name = "country", type = "string" }},
          {{ name = "email", type = ["null", "string"], default = null }},
        ]
      }})
    }}
  }}
}}
"""


def test_subjects_accept_the_right_answer():
    checks.customers_subjects_check(SUBJECTS_GOOD)


def test_subjects_accept_full_transitive():
    checks.customers_subjects_check(SUBJECTS_GOOD.replace('"BACKWARD"', '"FULL_TRANSITIVE"'))


def test_subjects_reject_a_subject_named_after_the_table():
    answer = SUBJECTS_GOOD.replace('"${local.topic_prefix}.public.customers-value"', '"customers-value"')
    assert "full name" in _rejected(checks.customers_subjects_check, answer).hint


def test_subjects_reject_compatibility_none():
    answer = SUBJECTS_GOOD.replace('"BACKWARD"', '"NONE"')
    assert "NONE lets any schema in" in _rejected(checks.customers_subjects_check, answer).hint


def test_subjects_reject_forward():
    answer = SUBJECTS_GOOD.replace('"BACKWARD"', '"FORWARD"')
    assert "old readers" in _rejected(checks.customers_subjects_check, answer).hint


def test_subjects_reject_a_lower_case_mode_through_the_module():
    answer = SUBJECTS_GOOD.replace('"BACKWARD"', '"backward"')
    assert "validation" in _rejected(checks.customers_subjects_check, answer).hint


def test_subjects_reject_a_required_email():
    answer = SUBJECTS_GOOD.replace('type = ["null", "string"], default = null', 'type = "string"')
    assert "default = null" in _rejected(checks.customers_subjects_check, answer).hint


def test_subjects_reject_a_missing_column():
    answer = SUBJECTS_GOOD.replace('{ name = "country", type = "string" },\n', "")
    assert "one field per column" in _rejected(checks.customers_subjects_check, answer).hint


# ------------------------------------------------------------------------------- e3: landing change events


def _land_right(table, messages):
    import pyarrow as pa
    from pyiceberg.expressions import In

    last = {}
    for message in messages:
        if message.value is not None:
            last[message.key["id"]] = message.value
    upserts = [event["after"] for event in last.values() if event["op"] != "d"]
    deleted = [key for key, event in last.items() if event["op"] == "d"]
    if upserts:
        table.upsert(pa.Table.from_pylist(upserts, schema=table.schema().as_arrow()), join_cols=["id"])
    if deleted:
        table.delete(In("id", deleted))


def _land_appending(table, messages):
    import pyarrow as pa

    rows = [m.value["after"] for m in messages if m.value is not None and m.value["after"]]
    table.append(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()))


def _land_ignoring_deletes(table, messages):
    import pyarrow as pa

    last = {m.key["id"]: m.value["after"] for m in messages if m.value is not None and m.value["op"] != "d"}
    table.upsert(pa.Table.from_pylist(list(last.values()), schema=table.schema().as_arrow()), join_cols=["id"])


def _land_deletes_last(table, messages):
    """Upserts every key's last non-delete event, then deletes every key ever deleted: order ignored."""
    import pyarrow as pa
    from pyiceberg.expressions import In

    last = {m.key["id"]: m.value["after"] for m in messages if m.value is not None and m.value["op"] != "d"}
    deleted = [m.key["id"] for m in messages if m.value is not None and m.value["op"] == "d"]
    table.upsert(pa.Table.from_pylist(list(last.values()), schema=table.schema().as_arrow()), join_cols=["id"])
    table.delete(In("id", deleted))


def _land_crashing_on_tombstones(table, messages):
    for message in messages:
        message.value["op"]  # a tombstone's value is None


@pytest.mark.stack
def test_landing_accepts_the_right_answer():
    checks.land_changes_check(_land_right)


@pytest.mark.stack
def test_landing_rejects_appending_every_event():
    assert "replace the row" in _rejected(checks.land_changes_check, _land_appending).hint


@pytest.mark.stack
def test_landing_rejects_ignoring_deletes():
    assert "removes the key" in _rejected(checks.land_changes_check, _land_ignoring_deletes).hint


@pytest.mark.stack
def test_landing_rejects_deletes_applied_out_of_order():
    assert "last one decides" in _rejected(checks.land_changes_check, _land_deletes_last).hint


@pytest.mark.stack
def test_landing_turns_a_crash_into_a_verdict():
    verdict = _rejected(checks.land_changes_check, _land_crashing_on_tombstones)
    assert "land_changes" in verdict.message
