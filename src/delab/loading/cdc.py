"""Change data capture with Debezium on the stack's Kafka Connect: register a Postgres connector, read its change
events, and clean up after it (connector, replication slot, publication, topics).

Every connector of these labs gets its **own** filtered publication (``publication.autocreate.mode=filtered``:
Debezium creates ``<name>_pub FOR TABLE <table.include.list>``, which the table owner may do) and its own
replication slot (``slot.name=<name>``). A deleted connector leaves its slot behind, and a slot holds WAL until it
is dropped: :func:`remove` and :func:`cleanup` drop both. See docs/loading.md for why not ``dbz_publication``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from delab import clients, config

CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"


@dataclass(frozen=True)
class Message:
    """One Kafka record with its key and value decoded from JSON (``None`` stays ``None``: a tombstone)."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    headers: dict[str, bytes] = field(default_factory=dict)

    @property
    def op(self) -> str | None:
        """The Debezium operation (r, c, u, d) or None for a tombstone / a non-Debezium record."""
        return self.value.get("op") if isinstance(self.value, dict) else None


def connection_settings() -> dict[str, str]:
    """The ``database.*`` settings of a connector for the stack's Postgres (as the learner role)."""
    pg = config.postgres()
    return {
        "database.hostname": pg.host,
        "database.port": str(pg.port),
        "database.user": pg.user,
        "database.password": pg.password,
        "database.dbname": pg.database,
    }


def json_converters() -> dict[str, str]:
    """Plain JSON keys and values (no embedded schema): what the labs read."""
    return {
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
    }


def postgres_connector(name: str, tables: Iterable[str], snapshot_mode: str = "initial", **extra: str) -> dict:
    """A complete Debezium Postgres connector config: pgoutput, its own slot and filtered publication, JSON."""
    return {
        "connector.class": CONNECTOR_CLASS,
        **connection_settings(),
        "plugin.name": "pgoutput",
        "topic.prefix": name,
        "table.include.list": ",".join(tables),
        "slot.name": name,
        "publication.name": f"{name}_pub",
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": snapshot_mode,
        **json_converters(),
        **extra,
    }


def change_topic(connector_config: dict, table: str) -> str:
    """The topic Debezium writes a table's changes to: ``<topic.prefix>.<schema>.<table>``."""
    return f"{connector_config['topic.prefix']}.{table}"


def register(name: str, connector_config: dict, timeout: float = 60.0) -> dict:
    """Create (or update) the connector and wait until it and its task run; returns Connect's status."""
    return clients.connect_put(name, connector_config, timeout=timeout)


def connector_status(name: str) -> dict | None:
    """Connect's status of a connector, or None if there is no such connector."""
    import requests

    response = requests.get(f"{config.kafka().connect_url}/connectors/{name}/status", timeout=10)
    return None if response.status_code == 404 else response.json()


def wait_offsets_committed(name: str, timeout: float = 60.0) -> list[dict]:
    """Wait until Connect has committed at least one source offset for the connector (its REST ``/offsets``,
    KIP-875), and return them. Killing Connect before its first offset flush would make the restarted connector
    snapshot the table again (``op = r``) instead of resuming the stream: wait for this before a crash test."""
    import time

    import requests

    deadline = time.monotonic() + timeout
    url = f"{config.kafka().connect_url}/connectors/{name}/offsets"
    while True:
        try:
            offsets = requests.get(url, timeout=10).json().get("offsets") or []
        except (requests.RequestException, ValueError, AttributeError):
            offsets = []
        if offsets:
            return offsets
        if time.monotonic() > deadline:
            raise TimeoutError(f"Connect committed no offset for {name} within {timeout:.0f} s: is its task running?")
        time.sleep(0.25)


def connectors() -> list[str]:
    import requests

    return requests.get(f"{config.kafka().connect_url}/connectors", timeout=10).json()


def drop_slot(slot: str, conn=None, timeout: float = 20.0) -> bool:
    """Drop a replication slot once nothing reads it any more; True if one was dropped."""
    own = conn is None
    conn = conn or clients.postgres()
    try:
        deadline = time.monotonic() + timeout
        while True:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()
            if row is None:
                return False
            if not row[0]:
                break
            if time.monotonic() > deadline:  # a reader still holds it: stop it, as Connect just did
                conn.execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s", [slot]
                )
            time.sleep(0.2)
        conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
        return True
    finally:
        if own:
            conn.close()


def remove(name: str, slot: str | None = None, publication: str | None = None) -> None:
    """Delete a connector, then drop its replication slot (else it holds WAL) and its publication."""
    import requests

    requests.delete(f"{config.kafka().connect_url}/connectors/{name}", timeout=30)
    with clients.postgres() as conn:
        drop_slot(slot or name, conn)
        conn.execute(f'DROP PUBLICATION IF EXISTS "{publication or name + "_pub"}"')


def topics(prefix: str) -> list[str]:
    """Topics whose names start with ``prefix``."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=config.kafka().bootstrap_servers)
    try:
        return sorted(t for t in consumer.topics() if t.startswith(prefix))
    finally:
        consumer.close()


def delete_topics(names: list[str]) -> None:
    """Delete topics (asynchronous on the broker: reuse of the same names right away is not safe)."""
    if not names:
        return
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=config.kafka().bootstrap_servers)
    try:
        admin.delete_topics(names, timeout_ms=30_000)
    finally:
        admin.close()


def cleanup(prefix: str) -> dict[str, list[str]]:
    """Remove everything an earlier run under ``prefix`` left: connectors, their slots and publications, topics.

    Labs name each run's connector and topics with a fresh suffix, so this never races a topic being deleted.
    """
    gone: dict[str, list[str]] = {"connectors": [], "slots": [], "topics": []}
    import requests

    base = config.kafka().connect_url
    for name in connectors():
        if name.startswith(prefix):
            requests.delete(f"{base}/connectors/{name}", timeout=30)
            gone["connectors"].append(name)
    with clients.postgres() as conn:
        slots = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s AND database = current_database()",
            [prefix.replace("_", r"\_") + "%"],
        ).fetchall()
        for (slot,) in slots:
            if drop_slot(slot, conn):
                gone["slots"].append(slot)
        publications = conn.execute(
            "SELECT pubname FROM pg_publication WHERE pubname LIKE %s", [prefix.replace("_", r"\_") + "%"]
        ).fetchall()
        for (publication,) in publications:
            conn.execute(f'DROP PUBLICATION IF EXISTS "{publication}"')
    gone["topics"] = topics(prefix)
    delete_topics(gone["topics"])
    return gone


def blocking_transactions(conn=None) -> list[tuple]:
    """Other sessions with a transaction open for more than 5 s: creating a logical slot waits for them."""
    own = conn is None
    conn = conn or clients.postgres()
    try:
        return conn.execute(
            """SELECT pid, usename, state, round(extract(epoch FROM now() - xact_start))::int AS seconds,
                      left(query, 80)
               FROM pg_stat_activity
               WHERE xact_start < now() - interval '5 seconds' AND pid <> pg_backend_pid()
                 AND backend_type = 'client backend' AND datname = current_database()
               ORDER BY xact_start"""
        ).fetchall()
    finally:
        if own:
            conn.close()


def create_wal_slot(conn, name: str, plugin: str = "test_decoding", timeout_s: int = 30) -> None:
    """Create a *temporary* logical slot on ``conn`` (dropped when that session ends).

    Slot creation waits until every transaction running at that moment has finished; if another session keeps
    one open, this fails after ``timeout_s`` with a line naming it, instead of hanging.
    """
    import psycopg

    conn.execute(f"SET statement_timeout = '{int(timeout_s)}s'")
    try:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, %s, temporary => true)", [name, plugin])
    except psycopg.errors.QueryCanceled:
        raise RuntimeError(
            f"creating the slot {name} waited {timeout_s} s for other sessions' open transactions to end: "
            f"{blocking_transactions()}. Commit or roll them back (pg_terminate_backend(pid) ends an idle one) "
            "and run the cell again."
        ) from None
    finally:
        conn.execute("RESET statement_timeout")


# ---------------------------------------------------------------------------------------------- reading topics


def _decode(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def read_topic(topic: str, group: str | None = None, timeout: float = 10.0, decode: bool = True) -> list[Message]:
    """Every record of a topic up to its current end (all partitions, each in offset order); [] if it is missing.

    With ``group``, reads from that consumer group's committed offsets instead of the beginning, and commits.
    ``decode=False`` keeps keys and values as raw bytes.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka().bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if group is None:
            consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in assigned) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                out += [
                    Message(
                        tp.topic,
                        tp.partition,
                        r.offset,
                        _decode(r.key) if decode else r.key,
                        _decode(r.value) if decode else r.value,
                        {k: v for k, v in (r.headers or [])},
                    )
                    for r in records
                    if r.offset < ends[tp]
                ]
        if group is not None:
            consumer.commit()
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close()


def wait_for(
    topic: str, done: Callable[[list[Message]], bool], timeout: float = 60.0, what: str = "the expected events"
) -> list[Message]:
    """Poll a topic until ``done(messages)`` holds (Debezium publishes a moment after a commit); returns them."""
    deadline = time.monotonic() + timeout
    while True:
        messages = read_topic(topic)
        if done(messages):
            return messages
        if time.monotonic() > deadline:
            blockers = blocking_transactions()
            raise TimeoutError(
                f"{what} did not arrive on {topic} within {timeout:.0f} s ({len(messages)} records there): "
                + (
                    f"a new connector's slot waits for these open transactions to end: {blockers}"
                    if blockers
                    else "is the connector running? (delab stack logs connect)"
                )
            )
        time.sleep(0.3)


def wait_for_snapshot(topic: str, rows: int, timeout: float = 60.0) -> list[Message]:
    """Wait until the initial snapshot (``op = r``) of a table of ``rows`` rows is on its topic."""
    return wait_for(topic, lambda ms: sum(m.op == "r" for m in ms) >= rows, timeout, what=f"a snapshot of {rows} rows")
