"""Checks of lab 02.03 (Debezium CDC): right answers pass, realistic wrong ones are rejected. The connector, the
topic, the WAL and the replica are real (stack tests); the static connector-config mistakes need no service."""

from __future__ import annotations

import re
import uuid

import pytest

from delab import clients, datasets, stack
from delab.checks.m02 import l03_cdc as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.loading import cdc

TABLE = "m02_l03.customers"


def good_config(name: str) -> dict:
    return {
        "connector.class": cdc.CONNECTOR_CLASS,
        **cdc.connection_settings(),
        **cdc.json_converters(),
        "plugin.name": "pgoutput",
        "topic.prefix": name,
        "table.include.list": TABLE,
        "slot.name": name,
        "publication.name": f"{name}_pub",
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "initial",
    }


def without(config: dict, key: str) -> dict:
    return {k: v for k, v in config.items() if k != key}


# ---------------------------------------------------------------------------------- e1, static mistakes


def test_connector_rejects_default_plugin():
    name = "m02_l03_t"
    with pytest.raises(WrongAnswer, match="'decoderbufs' \\(Debezium's default\\)"):
        checks.cdc_connector(name, without(good_config(name), "plugin.name"))


def test_connector_rejects_missing_or_unqualified_table_list():
    name = "m02_l03_t"
    with pytest.raises(WrongAnswer, match="capture every table"):
        checks.cdc_connector(name, without(good_config(name), "table.include.list"))
    with pytest.raises(WrongAnswer, match="qualify the name with its schema"):
        checks.cdc_connector(name, {**good_config(name), "table.include.list": "customers"})


def test_connector_rejects_shared_publication_slot_and_no_snapshot():
    name = "m02_l03_t"
    shared = {**good_config(name), "publication.name": "dbz_publication", "publication.autocreate.mode": "disabled"}
    with pytest.raises(WrongAnswer, match="dbz_publication is shared"):
        checks.cdc_connector(name, shared)
    with pytest.raises(WrongAnswer, match="needs a superuser"):
        checks.cdc_connector(name, without(good_config(name), "publication.autocreate.mode"))
    with pytest.raises(WrongAnswer, match="'debezium' \\(the default\\)"):
        checks.cdc_connector(name, without(good_config(name), "slot.name"))
    with pytest.raises(WrongAnswer, match="would never reach the topic"):
        checks.cdc_connector(name, {**good_config(name), "snapshot.mode": "no_data"})
    with pytest.raises(WrongAnswer, match="never stream changes"):
        checks.cdc_connector(name, {**good_config(name), "snapshot.mode": "initial_only"})


def test_connector_placeholder():
    with pytest.raises(NotSolvedYet):
        checks.cdc_connector("m02_l03_t", ...)


# ------------------------------------------------------------------------------ with a real connector


@pytest.fixture(scope="module")
def change_topic():
    """The lab's table, a connector registered through the check, and the notebook's changes on its topic."""
    stack.require("kafka", "connect", "postgres")
    cdc.cleanup("m02_l03")
    customers = datasets.shop(seed=7, scale=0.25).customers.drop(columns="signup_at").head(200)
    datasets.to_postgres({"customers": customers}, schema="m02_l03", primary_keys={"customers": ["customer_id"]})
    name = f"m02_l03_test_{uuid.uuid4().hex[:6]}"
    config = good_config(name)
    checks.cdc_connector(name, config)  # e1's right answer
    topic = cdc.change_topic(config, TABLE)
    with clients.postgres() as pg:
        pg.execute(f"INSERT INTO {TABLE} VALUES (9001, 'Grace Hopper', 'grace@example.org', 'US', 'consumer')")
        pg.execute(f"UPDATE {TABLE} SET segment = 'business' WHERE customer_id = 9001")
        pg.execute(f"DELETE FROM {TABLE} WHERE customer_id = 9001")
        pg.execute(f"ALTER TABLE {TABLE} REPLICA IDENTITY FULL")
        pg.execute(f"UPDATE {TABLE} SET country = 'IE' WHERE customer_id = 7")
    cdc.wait_for(topic, lambda ms: any(m.op == "u" and m.key == {"customer_id": 7} for m in ms))
    yield topic
    cdc.remove(name)


KINDS = {"r": "snapshot", "c": "insert", "u": "update", "d": "delete"}


def describe_good(message):
    if message.value is None:
        return "tombstone", message.key["customer_id"]
    return KINDS[message.value["op"]], message.key["customer_id"]


def describe_snapshot_as_insert(message):
    kind, key = describe_good(message)
    return ("insert" if kind == "snapshot" else kind), key


def describe_from_after(message):
    return KINDS[message.value["op"]], message.value["after"]["customer_id"]


@pytest.mark.stack
def test_connector_check_again_after_the_table_changed(change_topic):
    # the fixture's changes (and an insert that stays) happened after the snapshot: checking the same connector
    # again still passes, an escaped-dot regular expression for the table is the same answer
    name = change_topic.split(".")[0]
    with clients.postgres() as pg:
        pg.execute(f"DELETE FROM {TABLE} WHERE customer_id = 9200")
        pg.execute(f"INSERT INTO {TABLE} VALUES (9200, 'Frances Allen', NULL, 'US', 'consumer')")
    cdc.wait_for(change_topic, lambda ms: any(m.op == "c" and m.key == {"customer_id": 9200} for m in ms))
    checks.cdc_connector(name, dict(good_config(name), **{"table.include.list": "m02_l03\\.customers"}))


@pytest.mark.stack
def test_describe_change(change_topic):
    checks.cdc_describe_change(describe_good, change_topic)
    with pytest.raises(WrongAnswer, match=r"A snapshot record .* was described as 'insert'"):
        checks.cdc_describe_change(describe_snapshot_as_insert, change_topic)
    with pytest.raises(WrongAnswer, match=r"fails on a (delete|tombstone) record"):
        checks.cdc_describe_change(describe_from_after, change_topic)


COLUMN = re.compile(r"(\w+)\[[^\]]+\]:('(?:[^']|'')*'|\S+)")


def columns_good(text):
    return {
        name: None if lit == "null" else lit[1:-1].replace("''", "'") if lit.startswith("'") else lit
        for name, lit in COLUMN.findall(text)
    }


def parse_good(line, columns=columns_good):
    if not line.startswith("table "):
        return None
    table, op, rest = line[6:].split(": ", 2)
    if op == "DELETE":
        return {"table": table, "op": op, "before": columns(rest), "after": None}
    if rest.startswith("old-key: "):
        old, new = rest[9:].split(" new-tuple: ")
        return {"table": table, "op": op, "before": columns(old), "after": columns(new)}
    return {"table": table, "op": op, "before": None, "after": columns(rest)}


def columns_split_on_blanks(text):
    pairs = [part.split(":", 1) for part in text.split(" ") if "[" in part and ":" in part]
    return {p[0].split("[")[0]: None if p[1] == "null" else p[1].strip("'") for p in pairs}


def columns_keep_quotes(text):
    return {name: None if lit == "null" else lit for name, lit in COLUMN.findall(text)}


def wal_lines():
    return [
        "BEGIN 1",
        "table m02_l03.customers: INSERT: customer_id[bigint]:1 name[text]:'A B' email[text]:null",
        "COMMIT 1",
    ]


@pytest.mark.stack
def test_parse_wal():
    stack.require("postgres")
    with clients.postgres() as pg:
        pg.execute("CREATE SCHEMA IF NOT EXISTS m02_l03")
    checks.cdc_parse_wal(parse_good, wal_lines())
    with pytest.raises(WrongAnswer, match="split on the column pattern"):
        checks.cdc_parse_wal(lambda line: parse_good(line, columns_split_on_blanks), wal_lines())
    with pytest.raises(WrongAnswer, match="strip the quotes"):
        checks.cdc_parse_wal(lambda line: parse_good(line, columns_keep_quotes), wal_lines())
    with pytest.raises(WrongAnswer, match="BEGIN and COMMIT"):
        checks.cdc_parse_wal(lambda line: parse_good(line) or {}, wal_lines())
    # used to crash (None.get): a parser for INSERT and DELETE lines only
    with pytest.raises(WrongAnswer, match="not a change"):
        checks.cdc_parse_wal(lambda line: None if ": UPDATE: " in line else parse_good(line), wal_lines())


def upsert(conn, row):
    cols = list(row)
    conn.execute(
        f"INSERT INTO m02_l03.customers_replica ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
        "ON CONFLICT (customer_id) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:]),
        [row[c] for c in cols],
    )


def apply_good(conn, message):
    if message.value is None:
        return
    if message.value["op"] == "d":
        conn.execute("DELETE FROM m02_l03.customers_replica WHERE customer_id = %s", [message.key["customer_id"]])
    else:
        upsert(conn, message.value["after"])


def apply_ignoring_deletes(conn, message):
    if message.value is not None and message.value["op"] != "d":
        upsert(conn, message.value["after"])


def apply_inserting(on_conflict=""):
    """Deletes by key, and inserts every other change's row: plainly, or with an ON CONFLICT clause."""

    def apply(conn, message):
        if message.value is None:
            return
        if message.value["op"] == "d":
            conn.execute("DELETE FROM m02_l03.customers_replica WHERE customer_id = %s", [message.key["customer_id"]])
            return
        row = message.value["after"]
        conn.execute(
            f"INSERT INTO m02_l03.customers_replica ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))}) "
            + on_conflict,
            list(row.values()),
        )

    return apply


apply_plain_insert = apply_inserting()
# an upsert that copies only some columns: the segment updates never reach the replica
apply_copying_the_email_only = apply_inserting("ON CONFLICT (customer_id) DO UPDATE SET email = EXCLUDED.email")


def apply_crashing_on_tombstones(conn, message):
    if message.value["op"] == "d":
        conn.execute("DELETE FROM m02_l03.customers_replica WHERE customer_id = %s", [message.key["customer_id"]])
    else:
        upsert(conn, message.value["after"])


@pytest.mark.stack
def test_apply_change(change_topic):
    checks.cdc_apply_change(apply_good, change_topic)
    with pytest.raises(WrongAnswer, match="still has customers the source deleted"):
        checks.cdc_apply_change(apply_ignoring_deletes, change_topic)
    with pytest.raises(WrongAnswer, match=r"apply_change failed on an? \w+ record .* with UniqueViolation") as failed:
        checks.cdc_apply_change(apply_plain_insert, change_topic)
    assert "insert or update by key" in failed.value.hint
    with pytest.raises(WrongAnswer, match=r"failed on a tombstone record .* TypeError"):
        checks.cdc_apply_change(apply_crashing_on_tombstones, change_topic)
    with pytest.raises(WrongAnswer, match=r"replica differs from the source: missing \[\], extra \[\], different \[\d"):
        checks.cdc_apply_change(apply_copying_the_email_only, change_topic)  # the check updates segment and email
    with pytest.raises(NotSolvedYet):
        checks.cdc_apply_change(..., change_topic)
