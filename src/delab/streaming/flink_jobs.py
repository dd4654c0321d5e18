"""Run the Flink labs' jobs on the shared cluster: feed Kafka topics, submit and cancel named jobs, read the
results and the cluster's REST metrics.

The cluster is shared by every notebook, so each lab names its jobs with its prefix (``m03_l04 tumbling``),
cancels leftovers of an earlier run when it starts and its own jobs when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any

import pandas as pd

from delab import config
from delab.stack import Namespace

TERMINAL = ("FINISHED", "CANCELED", "FAILED")


# ------------------------------------------------------------------------------------------------ REST API


def rest(path: str, method: str = "GET", timeout: float = 10, **kwargs: Any) -> Any:
    """Call the Flink REST API (``/jobs/overview``, ``/jobs/<id>/checkpoints`` …) and return its JSON."""
    import requests

    response = requests.request(method, f"{config.flink().rest_url}{path}", timeout=timeout, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else {}


def jobs(prefix: str = "") -> list[dict]:
    """The cluster's jobs (newest first) whose name starts with ``prefix``."""
    found = [job for job in rest("/jobs/overview")["jobs"] if job["name"].startswith(prefix)]
    return sorted(found, key=lambda job: job["start-time"], reverse=True)


def job_state(job_id: str) -> str:
    return rest(f"/jobs/{job_id}")["state"]


def wait_for_state(job_id: str, states: Iterable[str], timeout: float = 120) -> str:
    """Wait until the job is in one of ``states`` (or any terminal one); return the state."""
    wanted = set(states) | set(TERMINAL)
    deadline = time.monotonic() + timeout
    while True:
        state = job_state(job_id)
        if state in wanted or time.monotonic() > deadline:
            return state
        time.sleep(0.3)


#: the tag ``owned()`` appends to a job name: which process submitted the job, on which machine
OWNER_TAG = re.compile(r" \[pid (?P<pid>\d+) on (?P<host>[^\]]+)\]$")


def owned(job_name: str) -> str:
    """``job_name`` tagged with the process that submits it (``"m03_l04 tumbling [pid 4242 on laptop]"``), so
    that ``cancel_jobs`` of one run leaves the live jobs of another alone: a check or a test running while the
    learner re-runs the notebook, the same lab open in a second kernel. Names still start with the lab's prefix."""
    return job_name if OWNER_TAG.search(job_name) else f"{job_name} [pid {os.getpid()} on {socket.gethostname()}]"


def belongs_to_another_live_process(job_name: str) -> bool:
    """Whether the job was submitted by a process other than this one that still runs (or by another machine).
    Jobs without the tag, of this process, or of a process that has ended (a restarted kernel) are fair game."""
    owner = OWNER_TAG.search(job_name)
    if owner is None:
        return False
    if owner["host"] != socket.gethostname():
        return True
    pid = int(owner["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


def cancel_jobs(prefix: str, timeout: float = 60) -> list[str]:
    """Cancel this lab's jobs that still run (leftovers of an earlier run); returns their ids. Jobs another live
    process submitted (a check or a test running meanwhile, a second kernel) are left alone."""
    if not prefix:
        raise ValueError("cancel_jobs needs the lab's prefix: never cancel other labs' jobs")
    running = [
        job["jid"]
        for job in jobs(prefix)
        if job["state"] not in TERMINAL and not belongs_to_another_live_process(job["name"])
    ]
    for job_id in running:
        rest(f"/jobs/{job_id}", method="PATCH", params={"mode": "cancel"})
    for job_id in running:
        wait_for_state(job_id, TERMINAL, timeout)
    return running


def vertices(job_id: str) -> list[dict]:
    """The job's operators chains (vertices) with their id, name, parallelism and record counts."""
    return rest(f"/jobs/{job_id}")["vertices"]


# --------------------------------------------------------------------------------------------- environments


def table_environment(job_name: str, parallelism: int = 1) -> Any:
    """A TableEnvironment on the stack's cluster whose jobs are called ``job_name`` (rename with ``name_jobs``)."""
    from delab.stack import flink

    t_env = flink.table_environment(streaming=True, parallelism=parallelism)
    name_jobs(t_env, job_name)
    return t_env


def name_jobs(env: Any, job_name: str) -> None:
    """Name the next jobs of a TableEnvironment (as they show in the Flink UI and ``jobs()``), tagged with this
    process (see ``owned``)."""
    env.get_config().set("pipeline.name", owned(job_name))


def run_insert(t_env: Any, statement: str, job_name: str, timeout: float = 180) -> str:
    """Submit one INSERT as a job named ``job_name``, wait until it finishes (bounded sources) and return its id."""
    name_jobs(t_env, job_name)
    result = t_env.execute_sql(statement)
    client = result.get_job_client()
    if client is None:
        raise ValueError("that statement started no job: give an INSERT INTO … SELECT …")
    job_id = str(client.get_job_id())
    state = wait_for_state(job_id, TERMINAL, timeout)
    if state != "FINISHED":
        if state not in TERMINAL:
            rest(f"/jobs/{job_id}", method="PATCH", params={"mode": "cancel"})
        raise RuntimeError(f"job {job_name!r} ended {state}: {failure_cause(job_id)}")
    return job_id


def failure_cause(job_id: str) -> str:
    """The first line of the job's root exception (empty when it did not fail)."""
    try:
        root = rest(f"/jobs/{job_id}/exceptions").get("exceptionHistory", {}).get("entries", [])
    except Exception:  # best effort, for a message
        return ""
    return root[0]["exceptionName"] + ": " + (root[0].get("stacktrace", "").splitlines() or [""])[0] if root else ""


# ---------------------------------------------------------------------------------------------------- Kafka


def _admin() -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": config.kafka().bootstrap_servers})


def fresh_topics(ns: Namespace, names: Iterable[str], partitions: int = 1) -> dict[str, str]:
    """New, empty topics for this run (``<prefix>.<name>.<run>``); topics of the lab's earlier runs are deleted."""
    from confluent_kafka.admin import NewTopic

    admin = _admin()
    old = [topic for topic in admin.list_topics(timeout=10).topics if topic.startswith(f"{ns.prefix}.")]
    if old:
        for future in admin.delete_topics(old, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # already gone
                future.result()
    run = uuid.uuid4().hex[:6]
    topics = {name: ns.topic(f"{name}.{run}") for name in names}
    created = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics.values()]
    )
    for future in created.values():
        future.result()
    return topics


def produce_json(topic: str, rows: Iterable[dict], key: str | None = None, **producer_config: Any) -> int:
    """Send each row as a JSON message (keyed by ``row[key]`` if given); returns how many were sent."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": config.kafka().bootstrap_servers, "linger.ms": 5, **producer_config})
    sent = 0
    for row in rows:
        value = json.dumps(row, default=str)
        producer.produce(topic, value=value, key=None if key is None else str(row[key]))
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
    if producer.flush(30) != 0:
        raise RuntimeError(f"could not deliver every message to {topic}: is Kafka up?")
    return sent


def end_offsets(topic: str) -> dict[int, int]:
    """The end offset of each partition (where the next message will go)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": config.kafka().bootstrap_servers, "group.id": "delab-offsets"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def read_json(
    topic: str, since: dict[int, int] | None = None, isolation: str = "read_committed", timeout: float = 30
) -> list[dict]:
    """Every JSON message of a topic (from the offsets ``since``, else the beginning) up to its current end.

    With ``isolation="read_committed"`` (the default) messages of open or aborted transactions are skipped.
    Tombstones (null values) come back as ``None``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka().bootstrap_servers,
            "group.id": f"delab-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends, assignment = {}, []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            start = max(low, (since or {}).get(p, low))
            if start < high:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, start))
        out: list[dict] = []
        if not assignment:
            return out
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        done: set[int] = set()
        while len(done) < len(ends) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error():
                    if message.error().code() == -191:  # partition EOF
                        done.add(message.partition())
                    continue
                value = message.value()
                out.append(None if value is None else json.loads(value))
                if message.offset() + 1 >= ends[message.partition()]:
                    done.add(message.partition())
            if len(done) < len(ends):  # with read_committed, transaction markers may end a partition early
                positions = consumer.position([TopicPartition(topic, p) for p in ends])
                done |= {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}
        return out
    finally:
        consumer.close()


def read_frame(topic: str, since: dict[int, int] | None = None, **kwargs: Any) -> pd.DataFrame:
    """``read_json`` as a DataFrame (window bounds parsed as timestamps)."""
    frame = pd.DataFrame([row for row in read_json(topic, since, **kwargs) if row is not None])
    for column in ("window_start", "window_end"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    return frame


def click_events(clicks: pd.DataFrame) -> list[dict]:
    """The shop's clicks as JSON-ready dicts in arrival order (event time as ``YYYY-MM-DD HH:MM:SS.mmm``)."""
    out = clicks.sort_values("ingest_time", kind="stable")
    return [
        {
            "event_id": int(row.event_id),
            "session_id": int(row.session_id),
            "customer_id": None if pd.isna(row.customer_id) else int(row.customer_id),
            "event_type": row.event_type,
            "product_id": None if pd.isna(row.product_id) else int(row.product_id),
            "event_time": row.event_time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        }
        for row in out.itertuples()
    ]


def flink_error(error: BaseException) -> str:
    """One telling line from a PyFlink/py4j error: the Java exception's own message, not 'calling o20.executeSql'."""
    java = getattr(error, "java_exception", None)
    text = java.toString() if java is not None else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "Exception:" in line and "calling o" not in line:
            return line.split("Exception: ", 1)[-1][:300] if line.count(":") > 1 else line[:300]
    return (lines[0] if lines else type(error).__name__)[:300]
