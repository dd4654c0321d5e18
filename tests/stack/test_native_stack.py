"""Integration tests against the real native stack (``pytest -m stack``).

Two kinds:
- read-only round trips on the shared stack (the one `delab stack up` / .ci/run started; started here if not);
- lifecycle tests (kill by hand, port taken, down) on a private instance with its own state folder and ports,
  so they never disturb notebooks that use the shared stack at the same time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from delab import config
from delab.stack import (
    PortTaken,
    StackError,
    disrupt,
    down,
    kill,
    layout,
    manager,
    namespace,
    require,
    reset,
    status,
    up,
    usage,
)

pytestmark = [
    pytest.mark.stack,
    pytest.mark.xdist_group("stack"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # kafka-python uses importlib.resources.read_text
]

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def shared_stack():
    """The shared stack, started if it is not running (native), or checked (docker: scripts/ci-docker runs these
    round trips against the containers too)."""
    if config.profile() not in ("native", "docker"):
        pytest.skip("native and docker profiles only")
    return require() if config.profile() == "native" else up()


def test_up_twice_is_a_quick_no_op(shared_stack):
    before = {row.service: row.pids for row in shared_stack}
    started = time.monotonic()
    rows = up()
    assert time.monotonic() - started < 10
    assert all(row.state == "running" for row in rows)
    assert {row.service: row.pids for row in rows} == before


def test_kafka_round_trip(shared_stack):
    from kafka import KafkaConsumer, KafkaProducer

    topic = namespace("stack_tests").topic(f"roundtrip.{uuid.uuid4().hex[:6]}")
    bootstrap = config.kafka().bootstrap_servers
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(topic, b"hello").get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000
    )
    assert [record.value for record in consumer][:1] == [b"hello"]
    consumer.close()


def test_postgres_and_s3_round_trip(shared_stack):
    from delab import clients

    with clients.postgres() as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        assert conn.execute("SELECT rolreplication FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
    key = namespace("stack_tests").key(f"{uuid.uuid4().hex}.txt")
    s3 = clients.s3()
    s3.put_object(Bucket=config.s3().bucket, Key=key, Body=b"data")
    assert s3.get_object(Bucket=config.s3().bucket, Key=key)["Body"].read() == b"data"
    s3.delete_object(Bucket=config.s3().bucket, Key=key)


def test_debezium_emits_an_update_event(shared_stack):
    import requests
    from kafka import KafkaConsumer

    from delab import clients

    ns = namespace("stack_tests")
    run = uuid.uuid4().hex[:6]
    table, connector = ns.table(f"customers_{run}"), ns.connector(f"cdc_{run}")
    url = config.kafka().connect_url
    with clients.postgres() as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
        conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        conn.execute(f"INSERT INTO {table} VALUES (1, 'ada')")
    pg = config.postgres()
    body = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "database.hostname": pg.host,
        "database.port": str(pg.port),
        "database.user": pg.user,
        "database.password": pg.password,
        "database.dbname": pg.database,
        "topic.prefix": connector,
        "table.include.list": f"public.{table}",
        "slot.name": connector,
        "publication.name": "dbz_publication",
        "publication.autocreate.mode": "disabled",
    }
    try:
        requests.put(f"{url}/connectors/{connector}/config", json=body, timeout=30).raise_for_status()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = requests.get(f"{url}/connectors/{connector}/status", timeout=10).json()
            tasks = state.get("tasks", [])
            if tasks and tasks[0]["state"] == "RUNNING":
                break
            assert not tasks or tasks[0]["state"] != "FAILED", tasks[0].get("trace", "")[:500]
            time.sleep(0.5)
        consumer = KafkaConsumer(
            f"{connector}.public.{table}",
            bootstrap_servers=config.kafka().bootstrap_servers,
            auto_offset_reset="earliest",
            consumer_timeout_ms=1000,
        )
        with clients.postgres() as conn:
            conn.execute(f"UPDATE {table} SET name = 'ada lovelace' WHERE id = 1")
        events, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline and not any(event["op"] == "u" for event in events):
            events += [json.loads(record.value) for record in consumer if record.value]
        consumer.close()
        update = next(event for event in events if event["op"] == "u")
        assert update["before"]["name"] == "ada" and update["after"]["name"] == "ada lovelace"
    finally:
        requests.delete(f"{url}/connectors/{connector}", timeout=30)
        with clients.postgres() as conn:
            active = "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active"
            for _ in range(40):  # the slot stays active for a moment after the connector goes
                if not conn.execute(active, [connector]).fetchone():
                    break
                time.sleep(0.5)
            drop = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s"
            conn.execute(drop, [connector])
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def test_flink_job_reads_kafka_and_writes_a_result(shared_stack):
    from kafka import KafkaConsumer, KafkaProducer

    ns = namespace("stack_tests")
    run = uuid.uuid4().hex[:6]
    source, sink = ns.topic(f"words.{run}"), ns.topic(f"counts.{run}")
    bootstrap = config.kafka().bootstrap_servers
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for word in ["to", "be", "or", "not", "to", "be"]:
        producer.send(source, json.dumps({"word": word}).encode())
    producer.flush()
    producer.close()
    job = subprocess.run(
        [str(layout.flink_python()), str(HERE / "flink_job.py"), "kafka", source, sink],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert job.returncode == 0, job.stderr[-2000:]
    consumer = KafkaConsumer(sink, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    counts = {json.loads(record.key)["word"]: json.loads(record.value)["n"] for record in consumer if record.value}
    consumer.close()
    assert counts == {"to": 2, "be": 2, "or": 1, "not": 1}


def test_flink_writes_iceberg_and_s3_files(shared_stack):
    from delab import clients

    ns = namespace("stack_tests")
    table = ns.table(f"t_{uuid.uuid4().hex[:6]}")
    job = subprocess.run(
        [str(layout.flink_python()), str(HERE / "flink_job.py"), "iceberg", ns.schema, table],
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert job.returncode == 0, job.stderr[-2000:]
        assert "rows 3" in job.stdout
        assert any(key.endswith(".parquet") for key in clients.s3_keys(f"warehouse/{ns.schema}/{table}/data/"))
        assert clients.s3_keys(f"{ns.schema}/{table}_files/")
    finally:  # forget the table: its catalog row and its objects
        clients.s3_delete_prefix(f"warehouse/{ns.schema}/{table}/")
        clients.s3_delete_prefix(f"{ns.schema}/{table}_files/")
        with clients.postgres() as conn:
            if conn.execute("SELECT to_regclass('iceberg_tables')").fetchone() != (None,):
                conn.execute("DELETE FROM iceberg_tables WHERE table_name = %s", [table])


# --- lifecycle on a private instance ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory):
    """Kafka, Postgres and S3 (and Flink for one test) under their own stack folder and ports: the shared stack
    is untouched."""
    if config.profile() != "native":
        pytest.skip("native profile only")
    build = layout.build_dir()
    saved = dict(os.environ)
    os.environ.update(
        {
            "DELAB_STACK": "native",
            "DELAB_STACK_DIR": str(tmp_path_factory.mktemp("private-stack")),
            "DELAB_STACK_BUILD_DIR": str(build),
        }
    )
    for name in ("kafka", "kafka_controller", "postgres", "s3", "flink", "flink_rpc"):
        os.environ[f"DELAB_{name.upper()}_PORT"] = str(_free_port())
    try:
        yield ["kafka", "postgres", "s3"]
    finally:
        reset()
        os.environ.clear()
        os.environ.update(saved)


def _stack_processes(marker: str) -> list[int]:
    """Pids whose command line mentions marker (a state folder)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_private_up_then_up_again(private_stack):
    rows = up(private_stack)
    assert [row.state for row in rows] == ["running"] * 3
    started = time.monotonic()
    again = up(private_stack)
    assert time.monotonic() - started < 10
    assert [row.pids for row in again] == [row.pids for row in rows]


def test_status_tells_the_truth_after_a_kill_and_require_restarts(private_stack):
    up(["s3"])
    [before] = status(["s3"])
    os.kill(before.pids[0], signal.SIGKILL)
    time.sleep(0.5)
    [after] = status(["s3"])
    assert after.state == "stopped" and "killed or crashed" in after.detail
    [restarted] = require("s3", quiet=True)
    assert restarted.state == "running" and restarted.pids != before.pids


def test_a_killed_taskmanager_makes_flink_degraded_and_require_replaces_only_it(private_stack):
    up(["flink"])
    jobmanager = manager._read_pid("flink-jobmanager")
    killed = manager.kill("flink-taskmanager")
    [row] = status(["flink"])
    assert row.state == "degraded" and "flink-taskmanager" in row.detail
    [row] = require("flink", quiet=True)
    assert row.state == "running" and len(row.pids) == 2
    assert manager._read_pid("flink-jobmanager") == jobmanager and killed not in row.pids
    down(["flink"])
    assert not manager.process_alive("flink-jobmanager") and not manager.process_alive("flink-taskmanager")


def test_disrupt_waits_for_other_users_then_restarts_what_it_broke(private_stack):
    up(["s3"])
    code = "from delab import stack; stack.require('s3', quiet=True); print('using', flush=True); input()"
    user = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert user.stdout.readline().strip() == "using"
    assert usage.holders("s3") == [user.pid]
    entered = threading.Event()

    def fault() -> None:
        with disrupt("s3"):
            entered.set()
            kill("s3")
            # meanwhile a newcomer's require() waits for the disruption to end (here: gives up after 1 s)
            late = subprocess.run(
                [sys.executable, "-c", "from delab import stack; stack.require('s3', quiet=True)"],
                env={**os.environ, "DELAB_DISRUPT_WAIT": "1"},
                capture_output=True,
                text=True,
            )
            assert late.returncode != 0 and "being stopped on purpose" in late.stdout + late.stderr

    worker = threading.Thread(target=fault)
    worker.start()
    assert not entered.wait(2), "disrupt() must wait while another process uses the service"
    user.communicate("\n", timeout=30)
    worker.join(60)
    assert entered.is_set() and not worker.is_alive()
    [row] = status(["s3"])
    assert row.state == "running"


def test_release_gives_the_services_back_to_a_disrupter(private_stack):
    up(["s3"])
    code = (
        "from delab import stack; from delab.stack import usage; stack.require('s3', quiet=True); "
        "print('using', flush=True); input(); usage.release(); print('released', flush=True); input(); "
        "stack.require('s3', quiet=True); print('using again', flush=True); input()"
    )
    user = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert user.stdout.readline().strip() == "using"
        assert usage.holders("s3") == [user.pid]
        user.stdin.write("\n")
        user.stdin.flush()
        assert user.stdout.readline().strip() == "released"
        assert usage.holders("s3") == []  # still running, but a disrupt() would not wait for it any more
        user.stdin.write("\n")
        user.stdin.flush()
        assert user.stdout.readline().strip() == "using again"
        assert usage.holders("s3") == [user.pid]
    finally:
        user.communicate("\n", timeout=30)


def test_kill_names_what_it_knows(private_stack):
    with pytest.raises(StackError, match="one of: kafka"):
        manager.kill("zookeeper")


def test_port_taken_is_one_line(private_stack):
    down(["s3"])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", config.port("s3")))
        squatter.listen()
        [row] = status(["s3"])
        assert row.state == "port taken"
        with pytest.raises(PortTaken) as caught:
            require("s3", quiet=True)
    assert "\n" not in caught.value.message and "DELAB_S3_PORT" in caught.value.message
    assert caught.value._render_traceback_() == [f"StackError: {caught.value.message}"]


def test_down_leaves_no_process(private_stack):
    up(private_stack)
    state = str(layout.stack_dir())
    cluster = str(layout.data_dir("postgres").resolve())
    assert _stack_processes(state)
    down()
    time.sleep(1)  # PostgreSQL's children leave right after the postmaster
    assert _stack_processes(state) == [] and _stack_processes(cluster) == []
    assert all(row.state == "stopped" for row in status(private_stack))
    assert not list((layout.run_dir() / "pids").glob("*.pid"))
    assert manager.port_free(config.port("kafka"))
