"""delab.loading.cdc, sync and errors against the real stack: a connector on its own slot and filtered
publication leaves nothing behind after remove(); cleanup() removes a crashed run's leftovers; at-least-once
delivery re-sends what was not committed; consumer lag is read from Kafka."""

from __future__ import annotations

import uuid

import pytest

from delab import clients, stack
from delab.loading import cdc, errors, sync

pytestmark = pytest.mark.stack
SCHEMA = "h_cdc_tests"


@pytest.fixture(scope="module")
def table():
    stack.require("kafka", "connect", "postgres")
    with clients.postgres() as pg:
        pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        pg.execute(f"CREATE SCHEMA {SCHEMA}")
        pg.execute(f"CREATE TABLE {SCHEMA}.items (id int PRIMARY KEY, name text)")
        pg.execute(f"INSERT INTO {SCHEMA}.items SELECT g, 'item ' || g FROM generate_series(1, 25) g")
    yield f"{SCHEMA}.items"
    with clients.postgres() as pg:
        pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def slots_and_publications(name: str) -> tuple[list, list]:
    with clients.postgres() as pg:
        slots = pg.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name = %s", [name]).fetchall()
        pubs = pg.execute("SELECT pubname FROM pg_publication WHERE pubname = %s", [f"{name}_pub"]).fetchall()
    return slots, pubs


def test_connector_snapshots_streams_and_leaves_nothing_behind(table):
    name = f"{SCHEMA}_{uuid.uuid4().hex[:6]}"
    config = cdc.postgres_connector(name, [table])
    cdc.register(name, config)
    topic = cdc.change_topic(config, table)
    try:
        snapshot = cdc.wait_for_snapshot(topic, 25)
        assert {m.key["id"] for m in snapshot if m.op == "r"} == set(range(1, 26))
        with clients.postgres() as pg:
            pg.execute(f"DELETE FROM {table} WHERE id = 25")
        events = cdc.wait_for(topic, lambda ms: any(m.key == {"id": 25} and m.value is None for m in ms))
        assert [m.op for m in events if m.key == {"id": 25}][-2:] == ["d", None]  # delete, then tombstone
        with clients.postgres() as pg:
            published = pg.execute(
                "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
                [f"{name}_pub"],
            ).fetchall()
        assert published == [(table,)]  # filtered: only the captured table
    finally:
        cdc.remove(name)
    assert slots_and_publications(name) == ([], [])
    assert name not in cdc.connectors()


def test_cleanup_removes_a_crashed_runs_leftovers(table):
    prefix = f"{SCHEMA}_left"
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    config = cdc.postgres_connector(name, [table], snapshot_mode="no_data")
    cdc.register(name, config)
    errors.produce(f"{prefix}.scratch", [(b"k", b"v")])
    gone = cdc.cleanup(prefix)
    assert gone["connectors"] == [name] and gone["slots"] == [name]
    assert f"{prefix}.scratch" in gone["topics"]
    assert slots_and_publications(name) == ([], [])


def test_deliver_is_at_least_once_and_lag_is_measured():
    stack.require("kafka")
    topic = f"{SCHEMA}.deliver.{uuid.uuid4().hex[:6]}"
    group = f"{topic}.group"
    errors.produce(topic, [(str(i).encode(), str(i).encode()) for i in range(10)])
    seen: list[int] = []
    assert sync.deliver(topic, group, lambda m: seen.append(m.value), crash_after=4) == 4
    assert errors.consumer_lag(group, topic) == 10  # a crash before the commit: nothing committed
    assert sync.deliver(topic, group, lambda m: seen.append(m.value)) == 10
    assert seen == [0, 1, 2, 3, *range(10)]  # the first four twice
    assert errors.consumer_lag(group, topic) == 0
    cdc.delete_topics([topic])
