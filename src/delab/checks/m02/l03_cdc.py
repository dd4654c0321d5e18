"""Checks of lab 02.03 (log-based CDC with Debezium): the connector is registered for real and must snapshot the
table; event descriptions are compared with the envelope of the real topic; the WAL parser is run on lines the
check produces itself through its own test_decoding slot (so the expected values are the ones it wrote); the
apply function must make a replica equal to the source, twice over."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from delab import clients
from delab.grading import WrongAnswer, exercise, learner_code

SCHEMA = "m02_l03"
TABLE = f"{SCHEMA}.customers"
REPLICA = f"{SCHEMA}.customers_replica"
CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"


def _split(value: str) -> list[str]:
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _static_connector_problems(name: str, config: dict) -> None:
    if not isinstance(config, dict):
        raise WrongAnswer(f"expected a dict of connector settings, got {type(config).__name__}.")
    if config.get("connector.class") != CONNECTOR_CLASS:
        raise WrongAnswer(
            f"connector.class is {config.get('connector.class')!r}.",
            hint="Kafka Connect instantiates this class: use cdc.CONNECTOR_CLASS, Debezium's Postgres connector.",
        )
    missing = [k for k in ("database.hostname", "database.port", "database.user", "database.dbname") if k not in config]
    if missing:
        raise WrongAnswer(f"the connection settings {missing} are missing.", hint="merge in cdc.connection_settings().")
    plugin = config.get("plugin.name", "decoderbufs")
    if plugin != "pgoutput":
        raise WrongAnswer(
            f"plugin.name is {plugin!r}"
            + (" (Debezium's default)" if "plugin.name" not in config else "")
            + ": that output plugin is not installed in this Postgres.",
            hint="use the logical decoding plugin built into Postgres 10+, the one logical replication uses.",
        )
    if str(config.get("topic.prefix")) != name:
        raise WrongAnswer(
            f"topic.prefix is {config.get('topic.prefix')!r}, not the connector's name {name!r}.",
            hint="the prefix names the topics (<prefix>.<schema>.<table>) and must be unique per connector.",
        )
    # Debezium reads each entry as a regular expression matched against the whole <schema>.<table> name, so an
    # escaped dot or anchors are the same answer
    tables = [
        t.removeprefix("^").removesuffix("$").replace("\\.", ".") for t in _split(config.get("table.include.list", ""))
    ]
    if not tables:
        raise WrongAnswer(
            "table.include.list is missing: the connector would capture every table of the database.",
            hint="list the one table this lab captures.",
        )
    if tables != [TABLE]:
        unqualified = [t for t in tables if "." not in t]
        raise WrongAnswer(
            f"table.include.list is {tables}, not just {TABLE!r}.",
            hint="Debezium matches <schema>.<table> (regular expressions): qualify the name with its schema."
            if unqualified
            else "capture only this lab's customers table.",
        )
    slot = config.get("slot.name", "debezium")
    if slot != name:
        raise WrongAnswer(
            f"slot.name is {slot!r}" + (" (the default)" if "slot.name" not in config else "") + f", not {name!r}.",
            hint="each connector needs a replication slot of its own; name it after the connector.",
        )
    publication = config.get("publication.name", "dbz_publication")
    mode = config.get("publication.autocreate.mode", "all_tables")
    if publication == "dbz_publication" or publication != f"{name}_pub":
        raise WrongAnswer(
            f"publication.name is {publication!r}, not {name}_pub.",
            hint="dbz_publication is shared and publishes every table of the database; give this connector its own.",
        )
    if mode != "filtered":
        raise WrongAnswer(
            f"publication.autocreate.mode is {mode!r}"
            + (" (the default)" if "publication.autocreate.mode" not in config else "")
            + (
                ": creating a publication FOR ALL TABLES needs a superuser."
                if mode == "all_tables"
                else ": the publication would have to exist already."
            ),
            hint="let Debezium create the publication for the captured tables only.",
        )
    snapshot = config.get("snapshot.mode", "initial")
    if snapshot == "initial_only":
        raise WrongAnswer(
            "snapshot.mode is 'initial_only': the connector would stop after the snapshot and never stream changes.",
            hint="the connector should read the existing rows first, then stream changes.",
        )
    if snapshot not in ("initial", "always", "when_needed"):
        raise WrongAnswer(
            f"snapshot.mode is {snapshot!r}: the rows already in the table would never reach the topic.",
            hint="the connector should read the existing rows first, then stream changes.",
        )


@exercise("m02.l03.e1")
def cdc_connector(name: str, connector_config: dict) -> None:
    """A Debezium connector on its own slot and publication snapshots the table, then streams."""
    from delab.loading import cdc

    _static_connector_problems(name, connector_config)
    try:
        cdc.register(name, connector_config)
    except RuntimeError as error:
        raise WrongAnswer(
            f"{str(error)[:300]}", hint="read the connector's error: `delab stack logs connect`."
        ) from None
    with clients.postgres() as conn:
        publication = conn.execute(
            "SELECT array_agg(schemaname || '.' || tablename) FROM pg_publication_tables WHERE pubname = %s",
            [f"{name}_pub"],
        ).fetchone()[0]
    if publication != [TABLE]:
        raise WrongAnswer(f"the publication {name}_pub holds {publication}, not just {TABLE}.")
    topic = cdc.change_topic(connector_config, TABLE)
    try:  # Debezium marks the snapshot's last record with source.snapshot = "last"
        events = cdc.wait_for(
            topic,
            lambda ms: any(m.op == "r" and m.value["source"].get("snapshot") == "last" for m in ms),
            timeout=60,
            what=f"the end of the snapshot of {TABLE}",
        )
    except TimeoutError as error:
        raise WrongAnswer(str(error)) from None
    # every customer in the table now was either read by the snapshot or inserted (op c) while streaming; this
    # holds when the check runs again later, after the lab has changed the table
    snapshot_keys = {m.key["customer_id"] for m in events if m.op == "r"}
    inserted_keys = {m.key["customer_id"] for m in events if m.op == "c"}
    with clients.postgres() as conn:
        table_keys = {row[0] for row in conn.execute(f"SELECT customer_id FROM {TABLE}")}
    unseen = table_keys - snapshot_keys - inserted_keys
    if unseen:
        raise WrongAnswer(
            f"{len(unseen)} of the table's {len(table_keys)} customers are on the topic neither from the snapshot "
            "nor as inserts.",
            hint="the connector should read the existing rows first (a snapshot), then stream changes.",
        )


# ------------------------------------------------------------------------------------------- the envelope

KINDS = {"r": "snapshot", "c": "insert", "u": "update", "d": "delete"}


def _a(kind: str) -> str:
    """'an update', 'a delete': the article for a record kind."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def expected_description(message) -> tuple[str, int]:
    if message.value is None:
        return "tombstone", int(message.key["customer_id"])
    return KINDS[message.value["op"]], int(message.key["customer_id"])


@exercise("m02.l03.e2")
def cdc_describe_change(describe_change: Callable, topic: str) -> None:
    """Every record of the change topic is described with the right kind and customer."""
    from delab.loading import cdc

    messages = cdc.read_topic(topic)
    kinds_present = {expected_description(m)[0] for m in messages}
    if not {"snapshot", "insert", "update", "delete", "tombstone"} <= kinds_present:
        raise WrongAnswer(
            f"the topic {topic} holds only these kinds of record: {sorted(kinds_present)}.",
            hint="run the cells above first (they insert, update and delete customer 9001).",
        )
    for message in messages:
        want = expected_description(message)
        try:
            got = describe_change(message)
        except NotImplementedError:
            raise
        except Exception as error:
            raise WrongAnswer(
                f"your function fails on {_a(want[0])} record ({type(error).__name__}: {error}).",
                hint="a tombstone has a key but value None; a delete has after = None."
                if want[0] in ("tombstone", "delete")
                else "look at this record's key and value in a cell of its own.",
            ) from None
        if not isinstance(got, tuple) or len(got) != 2:
            raise WrongAnswer(f"expected a (kind, customer_id) tuple, got {got!r}.")
        kind, customer = got
        if kind != want[0]:
            hint = {
                "snapshot": "op r is a row read by the snapshot: it existed before the connector started.",
                "tombstone": "a record whose value is None is a tombstone.",
            }.get(want[0], "the kind follows from the op field: c, u, d, r.")
            raise WrongAnswer(
                f"{_a(want[0]).capitalize()} record (offset {message.offset}) was described as {kind!r}.", hint=hint
            )
        if customer != want[1]:
            raise WrongAnswer(
                f"the {want[0]} record at offset {message.offset} is about customer {want[1]}, not {customer!r}.",
                hint="the key carries the customer_id of every record, even tombstones; a delete has no after.",
            )


# --------------------------------------------------------------------------------------------- the WAL

#: The rows the check writes through its own slot: names with spaces and quotes, a NULL, a number, a timestamp.
WAL_ROWS = [
    (1, "Ada O'Hara Lovelace", None, "12.50", "2026-11-28 10:15:00"),
    (2, "Alan Turing", "alan@example.org", "7", "2026-11-28 10:16:30"),
]


def _wal_probe_lines(timeout: float = 20.0) -> tuple[list[str], list[dict]]:
    """Make known changes through a fresh temporary test_decoding slot; return its lines and what they mean."""
    from delab.loading import cdc

    table = f"{SCHEMA}.wal_probe"
    slot = f"{SCHEMA}_probe_{uuid.uuid4().hex[:6]}"
    cols = ["id", "name", "email", "amount", "seen_at"]
    with clients.postgres() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(
            f"CREATE TABLE {table} (id int PRIMARY KEY, name text, email text, amount numeric, seen_at timestamp)"
        )
        cdc.create_wal_slot(conn, slot, "test_decoding")
        expected = []
        for row in WAL_ROWS:
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)", row)
            expected.append(
                {"op": "INSERT", "before": None, "after": dict(zip(cols, [str(row[0]), *row[1:]], strict=True))}
            )
        conn.execute(f"UPDATE {table} SET email = 'ada@example.org' WHERE id = 1")
        after = dict(expected[0]["after"], email="ada@example.org")
        expected.append({"op": "UPDATE", "before": None, "after": after})
        conn.execute(f"DELETE FROM {table} WHERE id = 2")
        expected.append({"op": "DELETE", "before": {"id": "2"}, "after": None})
        conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        conn.execute(f"UPDATE {table} SET name = 'Ada ''Countess'' Lovelace' WHERE id = 1")
        expected.append({"op": "UPDATE", "before": after, "after": dict(after, name="Ada 'Countess' Lovelace")})
        conn.execute(f"DELETE FROM {table} WHERE id = 1")
        expected.append({"op": "DELETE", "before": expected[-1]["after"], "after": None})
        for change in expected:
            change["table"] = table
        deadline, rows = time.monotonic() + timeout, []
        while True:  # get_changes consumes what it returns: keep every batch
            rows += conn.execute(
                "SELECT xid::text, data FROM pg_logical_slot_get_changes(%s, NULL, NULL)", [slot]
            ).fetchall()
            ours = {xid for xid, data in rows if data.startswith(f"table {table}:")}
            lines = [data for xid, data in rows if xid in ours]
            if sum(line.startswith("table") for line in lines) >= len(expected) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
        conn.execute(f"DROP TABLE {table}")
    return lines, expected


@exercise("m02.l03.e3")
def cdc_parse_wal(parse_wal_line: Callable, wal_lines: list[str]) -> None:
    """test_decoding lines become the changes that were really made (quotes, NULLs, old and new rows)."""
    parse = learner_code("parse_wal_line")(parse_wal_line)
    for line in wal_lines:
        result = parse(line)
        if line.startswith(("BEGIN", "COMMIT")) and result is not None:
            raise WrongAnswer(f"{line!r} gave {result!r}.", hint="BEGIN and COMMIT lines are not changes: return None.")
        if line.startswith("table") and not (
            isinstance(result, dict) and {"table", "op", "before", "after"} <= set(result)
        ):
            raise WrongAnswer(
                f"a change line gave {result!r}.", hint="return a dict with the keys table, op, before, after."
            )
    lines, expected = _wal_probe_lines()
    changes = [line for line in lines if line.startswith("table")]
    if len(changes) != len(expected):
        raise WrongAnswer(f"the check's own slot returned {len(changes)} changes, expected {len(expected)}: retry.")
    for line, want in zip(changes, expected, strict=True):
        got = parse(line)
        if not isinstance(got, dict):
            raise WrongAnswer(
                f"for the line {line!r} you returned {got!r}, not a change.",
                hint="every 'table …' line is a change: a value can hold spaces, quotes ('') or be null.",
            )
        for part in ("table", "op", "before", "after"):
            if got.get(part) != want[part]:
                raise WrongAnswer(
                    f"for the line {line!r} your {part} is {got.get(part)!r}, but the change made was {want[part]!r}.",
                    hint=_wal_hint(part, got.get(part), want[part]),
                )


def _wal_hint(part: str, got, want) -> str:
    if part in ("before", "after") and isinstance(got, dict) and isinstance(want, dict):
        if set(got) != set(want):
            return "a value can contain spaces: split on the column pattern name[type]:value, not on blanks."
        for key in want:
            if want[key] is None and got[key] is not None:
                return "an SQL null is printed as null without quotes: make it None."
            if isinstance(got[key], str) and got[key].startswith("'"):
                return "strip the quotes around text values."
            if isinstance(got[key], str) and "''" in got[key]:
                return "a quote inside a text value is doubled (''): turn it back into one."
        return "values are strings exactly as printed, without quotes."
    if part in ("before", "after"):
        return "INSERT fills after, DELETE before; an UPDATE fills before only when the line has old-key:."
    return "the line reads: table <schema>.<table>: <OP>: <columns>."


# ------------------------------------------------------------------------------------------------- apply


def _difference(conn) -> tuple[list, list, list]:
    src = {r[0]: r for r in conn.execute(f"SELECT * FROM {TABLE}").fetchall()}
    dst = {r[0]: r for r in conn.execute(f"SELECT * FROM {REPLICA}").fetchall()}
    missing = sorted(set(src) - set(dst))
    extra = sorted(set(dst) - set(src))
    different = sorted(k for k in set(src) & set(dst) if src[k] != dst[k])
    return missing, extra, different


def _say_difference(missing, extra, different, when: str) -> None:
    if not (missing or extra or different):
        return
    if extra and not missing and not different:
        raise WrongAnswer(
            f"{when}, the replica still has customers the source deleted: {extra[:5]}.",
            hint="a delete event (op d) must remove the row; its key says which.",
        )
    if missing and len(missing) > 100:
        raise WrongAnswer(
            f"{when}, {len(missing)} customers are missing from the replica.",
            hint="the snapshot's records (op r) are rows too: apply them like inserts.",
        )
    raise WrongAnswer(
        f"{when}, the replica differs from the source: missing {missing[:5]}, extra {extra[:5]}, "
        f"different {different[:5]}.",
        hint="inserts, updates and snapshot reads leave the row equal to `after`, whatever was there before.",
    )


_APPLY_HINTS = {
    "UniqueViolation": "the replica may already hold the key (the snapshot, a redelivered event): insert or update "
    "by key, so applying an event twice leaves the same row.",
}


@exercise("m02.l03.e4")
def cdc_apply_change(apply_change: Callable, topic: str) -> None:
    """Replaying the change topic makes the replica equal to the source, and replaying again changes nothing."""
    from delab.loading import cdc

    def apply(target, message) -> None:
        try:
            apply_change(target, message)
        except NotImplementedError:
            raise
        except Exception as error:
            kind = expected_description(message)[0]
            first = (str(error).strip().splitlines() or [""])[0]
            raise WrongAnswer(
                f"apply_change failed on {_a(kind)} record (offset {message.offset}) with {type(error).__name__}: "
                f"{first}",
                hint=_APPLY_HINTS.get(type(error).__name__)
                or (
                    "a tombstone has a key but value None; a delete has after = None."
                    if kind in ("tombstone", "delete")
                    else "run it on that record in a cell of its own to see the whole error."
                ),
            ) from None

    with clients.postgres() as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {REPLICA} (LIKE {TABLE} INCLUDING ALL)")
        # fresh changes while the connector streams: an insert, updates, an insert deleted again
        marker = uuid.uuid4().hex[:8]
        conn.execute(f"DELETE FROM {TABLE} WHERE customer_id IN (9100, 9101)")
        conn.execute(f"INSERT INTO {TABLE} VALUES (9100, 'Barbara Liskov', NULL, 'US', 'consumer')")
        conn.execute(f"INSERT INTO {TABLE} VALUES (9101, 'Niklaus Wirth', 'nw@example.org', 'CH', 'consumer')")
        conn.execute(f"UPDATE {TABLE} SET segment = 'business' WHERE customer_id IN (3, 9101)")
        conn.execute(f"DELETE FROM {TABLE} WHERE customer_id = 9101")
        conn.execute(f"UPDATE {TABLE} SET email = %s WHERE customer_id = 9100", [f"{marker}@example.org"])
        try:
            messages = cdc.wait_for(
                topic,
                lambda ms: any(
                    m.op == "u" and (m.value["after"] or {}).get("email") == f"{marker}@example.org" for m in ms
                ),
                timeout=60,
                what="the check's own changes",
            )
        except TimeoutError as error:
            raise WrongAnswer(str(error), hint="is the connector of exercise 1 still registered?") from None
        conn.execute(f"TRUNCATE {REPLICA}")
        with clients.postgres() as target:
            for message in messages:
                apply(target, message)
            _say_difference(*_difference(conn), when="after replaying the topic once")
            for message in messages[len(messages) // 2 :]:  # at-least-once: the second half comes again
                apply(target, message)
            _say_difference(*_difference(conn), when="after the second half of the topic was delivered again")
