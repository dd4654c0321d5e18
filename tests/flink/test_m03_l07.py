"""Checks of lab 03.07 (backpressure and exactly-once) against the real broker and Flink cluster — including a
real TaskManager crash under an exactly-once job."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import Producer

from delab import config, stack
from delab.checks.m03 import l07_exactly_once as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.streaming import exactly_once, flink_jobs

pytestmark = pytest.mark.stack
BOOTSTRAP = config.kafka().bootstrap_servers


def make_measure(
    flush: bool = True,
    unit: float = 1000,
    pace: bool = True,
    from_start: bool = False,
    poll: bool = True,
    use_settings: bool = True,
    clock_before_flush: bool = False,
):
    def measure_producer(topic, n, settings, rate=None):
        producer = Producer({"bootstrap.servers": BOOTSTRAP, **(settings if use_settings else {})})
        latencies = []
        started = time.perf_counter()
        for i in range(n):
            if rate and pace:
                time.sleep(max(0.0, started + i / rate - time.perf_counter()))
            sent_at = started if from_start else time.perf_counter()
            producer.produce(
                topic,
                json.dumps({"seq": i}),
                on_delivery=lambda e, m, t=sent_at: latencies.append((time.perf_counter() - t) * unit),
            )
            if poll:
                producer.poll(0)
        elapsed = time.perf_counter() - started
        if flush:
            producer.flush(30)
        if not clock_before_flush:
            elapsed = time.perf_counter() - started
        if not latencies:
            latencies = [0.0]
        return {"messages/s": n / elapsed, **exactly_once.latency_summary(latencies)}

    return measure_producer


def test_producer_right_answer():
    checks.producer_measurement(make_measure())


def test_producer_rejects_stopping_before_delivery():
    with pytest.raises(WrongAnswer, match="reached the topic"):
        checks.producer_measurement(make_measure(flush=False))


def test_producer_accepts_librdkafkas_own_latency_and_a_producer_wide_callback():
    def measure_producer(topic, n, settings, rate=None):
        latencies = []
        conf = {"bootstrap.servers": BOOTSTRAP, **settings}
        producer = Producer({**conf, "on_delivery": lambda e, m: latencies.append(m.latency() * 1000)})
        started = time.perf_counter()
        for i in range(n):
            if rate:
                time.sleep(max(0.0, started + i / rate - time.perf_counter()))
            producer.produce(topic, json.dumps({"seq": i}))
            producer.poll(0)
        producer.flush(30)
        return {"messages/s": n / (time.perf_counter() - started), **exactly_once.latency_summary(latencies)}

    checks.producer_measurement(measure_producer)


def test_producer_rejects_stopping_the_clock_before_flush():
    # used to pass: the throughput was only bounded from below
    with pytest.raises(WrongAnswer, match="clock stopped before the last delivery"):
        checks.producer_measurement(make_measure(clock_before_flush=True))


def test_producer_rejects_a_producer_built_outside_the_function():
    shared = Producer({"bootstrap.servers": BOOTSTRAP})

    def measure_producer(topic, n, settings, rate=None):
        for i in range(n):
            shared.produce(topic, json.dumps({"seq": i}))
        shared.flush(30)
        return {"messages/s": 1.0, "p50 ms": 1.0, "p99 ms": 1.0}

    with pytest.raises(WrongAnswer, match="built no confluent-kafka Producer"):
        checks.producer_measurement(measure_producer)


def test_producer_rejects_latency_in_seconds():
    with pytest.raises(WrongAnswer, match="measuring in seconds"):
        checks.producer_measurement(make_measure(unit=1))


def test_producer_rejects_ignoring_the_rate():
    with pytest.raises(WrongAnswer, match="sleep until then"):
        checks.producer_measurement(make_measure(pace=False))


def test_producer_rejects_latency_counted_from_the_start_of_the_run():
    # used to pass: p50 ~ half the run, p99 ~ the run, both "fit a run"
    with pytest.raises(WrongAnswer, match="grow through the run"):
        checks.producer_measurement(make_measure(from_start=True))


def test_producer_rejects_delivery_reports_read_only_at_flush():
    # used to pass: without poll(0) every report reaches the callback in flush(), at the end of the run
    with pytest.raises(WrongAnswer, match="grow through the run"):
        checks.producer_measurement(make_measure(poll=False))


def test_producer_says_when_the_settings_were_not_used():
    # used to ask "are you measuring in seconds?"
    with pytest.raises(WrongAnswer, match="as if linger were shorter"):
        checks.producer_measurement(make_measure(use_settings=False))


def test_producer_says_the_values_must_be_numbers():
    # used to crash the check with ValueError
    def with_units(topic, n, settings, rate=None):
        result = make_measure()(topic, n, settings, rate)
        return {key: f"{value} {key.split()[-1]}" for key, value in result.items()}

    with pytest.raises(WrongAnswer, match="must be numbers"):
        checks.producer_measurement(with_units)


def test_producer_placeholder():
    with pytest.raises(NotSolvedYet):
        checks.producer_measurement(...)


@pytest.fixture(scope="module")
def throttled_job():
    t_env = flink_jobs.table_environment("m03_l07 tests throttled")
    topic = stack.namespace("m03_l07_tests").topic(f"skewed.{uuid.uuid4().hex[:6]}")
    job_id = exactly_once.start_throttled_job(t_env, "m03_l07 tests throttled", topic)
    exactly_once.wait_for_metrics(job_id)
    yield job_id
    flink_jobs.cancel_jobs("m03_l07 tests throttled")


def reading(metric: str, key: str = "name", aggregate: str = "max"):
    def backpressure_by_vertex(job_id):
        return {
            v[key]: exactly_once.vertex_metrics(job_id, v["id"], metric)[aggregate] for v in flink_jobs.vertices(job_id)
        }

    return backpressure_by_vertex


def test_backpressure_right_answer(throttled_job):
    checks.backpressure_reading(reading("backPressuredTimeMsPerSecond"), throttled_job)


def test_throttled_job_is_skewed(throttled_job):
    # what lets the check tell the aggregates apart: one source subtask waits, the other has nothing to read
    pressure = [
        exactly_once.vertex_metrics(throttled_job, v["id"], "backPressuredTimeMsPerSecond")
        for v in flink_jobs.vertices(throttled_job)
    ]
    assert any(p["max"] > 500 and p["min"] < p["max"] / 4 for p in pressure), pressure


def test_backpressure_rejects_the_average_over_subtasks(throttled_job):
    # used to pass: with one subtask per vertex, the average was the maximum
    with pytest.raises(WrongAnswer, match="the average over its subtasks"):
        checks.backpressure_reading(reading("backPressuredTimeMsPerSecond", aggregate="avg"), throttled_job)


def test_backpressure_rejects_the_minimum_over_subtasks(throttled_job):
    with pytest.raises(WrongAnswer, match="the minimum over its subtasks"):
        checks.backpressure_reading(reading("backPressuredTimeMsPerSecond", aggregate="min"), throttled_job)


def test_backpressure_says_when_values_are_not_numbers(throttled_job):
    def backpressure_by_vertex(job_id):
        return {v["name"]: "high" for v in flink_jobs.vertices(job_id)}

    with pytest.raises(WrongAnswer, match="must be numbers"):
        checks.backpressure_reading(backpressure_by_vertex, throttled_job)


def test_backpressure_rejects_busy_time(throttled_job):
    with pytest.raises(WrongAnswer, match="busy times"):
        checks.backpressure_reading(reading("busyTimeMsPerSecond"), throttled_job)


def test_backpressure_rejects_vertex_ids(throttled_job):
    with pytest.raises(WrongAnswer, match="vertex ids"):
        checks.backpressure_reading(reading("backPressuredTimeMsPerSecond", key="id"), throttled_job)


def test_backpressure_rejects_figures_copied_from_an_output(throttled_job):
    # used to pass: the right dict, typed in, whatever the job
    copied = reading("backPressuredTimeMsPerSecond")(throttled_job)
    with pytest.raises(WrongAnswer, match="job that does not exist"):
        checks.backpressure_reading(lambda job_id: dict(copied), throttled_job)


def test_backpressure_placeholder(throttled_job):
    def backpressure_by_vertex(job_id):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.backpressure_reading(backpressure_by_vertex, throttled_job)


def publish(commit_in_finally: bool = False, reraise: bool = True):
    def publish_in_transaction(producer, topic, rows):
        producer.begin_transaction()
        try:
            for row in rows:
                producer.produce(topic, json.dumps(row))
            if not commit_in_finally:
                producer.commit_transaction(30)
        except Exception:
            if commit_in_finally:
                raise
            producer.abort_transaction(30)
            if reraise:
                raise
        finally:
            if commit_in_finally:
                producer.commit_transaction(30)

    return publish_in_transaction


def test_transaction_right_answer():
    checks.transaction_all_or_nothing(publish())


def test_transaction_rejects_commit_in_finally():
    with pytest.raises(WrongAnswer, match="visible to read_committed"):
        checks.transaction_all_or_nothing(publish(commit_in_finally=True))


def test_transaction_rejects_a_swallowed_error():
    with pytest.raises(WrongAnswer, match="swallowed"):
        checks.transaction_all_or_nothing(publish(reraise=False))


def test_transaction_rejects_no_abort_when_rows_are_encoded_first():
    # used to pass: the encoding error came before begin_transaction(), so nothing was ever left open
    def encode_first(producer, topic, rows):
        payloads = [json.dumps(row) for row in rows]
        producer.begin_transaction()
        for payload in payloads:
            producer.produce(topic, payload)
        producer.commit_transaction(30)

    with pytest.raises(WrongAnswer, match="cannot start a new transaction"):
        checks.transaction_all_or_nothing(encode_first)


def test_transaction_accepts_encoding_first_with_an_abort():
    def encode_first(producer, topic, rows):
        payloads = [json.dumps(row) for row in rows]
        producer.begin_transaction()
        try:
            for payload in payloads:
                producer.produce(topic, payload)
            producer.commit_transaction(30)
        except Exception:
            producer.abort_transaction(30)
            raise

    checks.transaction_all_or_nothing(encode_first)


def test_transaction_rejects_no_transaction():
    def plain(producer, topic, rows):
        for row in rows:
            producer.produce(topic, json.dumps(row))
        producer.flush()

    with pytest.raises(WrongAnswer, match="failed on a good batch"):
        checks.transaction_all_or_nothing(plain)


SINK = {
    "sink.delivery-guarantee": "exactly-once",
    "sink.transactional-id-prefix": "m03-l07-tests-ledger",
    "properties.transaction.timeout.ms": "60000",
}


def checkpointing(ns):
    return {
        "execution.checkpointing.interval": "1 s",
        "execution.checkpointing.dir": ns.s3_uri("checkpoints"),
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "30",
        "restart-strategy.fixed-delay.delay": "1 s",
    }


def test_options_accept_other_spellings():
    # used to fail: "0.5 s" read as checkpointing off; the deprecated key state.checkpoints.dir (Flink 2.1 reads it)
    ns = stack.namespace("m03_l07_tests")
    assert checks.checkpoint_problem({**checkpointing(ns), "execution.checkpointing.interval": "0.5 s"}) == ""
    legacy = {k: v for k, v in checkpointing(ns).items() if k != "execution.checkpointing.dir"}
    assert checks.checkpoint_problem({**legacy, "state.checkpoints.dir": ns.s3_uri("checkpoints")}) == ""
    assert checks.sink_option_problem({**SINK, "properties.transaction.timeout.ms": 60000}) == ""


def test_options_say_the_timeout_is_milliseconds():
    # used to crash the check with ValueError
    assert "milliseconds" in checks.sink_option_problem({**SINK, "properties.transaction.timeout.ms": "60 s"})


@pytest.fixture(scope="module")
def crashed_ledger():
    """The lab's scenario for real: an exactly-once job, its TaskManager SIGKILLed mid-run, recovered."""
    ns = stack.namespace("m03_l07_tests")
    topics = flink_jobs.fresh_topics(ns, ["payments", "ledger"])
    t_env = flink_jobs.table_environment("m03_l07 tests ledger")
    for key, value in checkpointing(ns).items():
        t_env.get_config().set(key, value)
    job_id = exactly_once.ledger_job(t_env, topics, SINK, "m03_l07 tests ledger")
    feeder = exactly_once.Feeder(topics["payments"], rate=200).start()
    try:
        exactly_once.wait_for_checkpoint(job_id, after=1)
        with stack.disrupt("flink"):
            stack.kill("flink-taskmanager")
        exactly_once.wait_for_restore(job_id)
        time.sleep(1)
    finally:
        sent = feeder.stop()
    exactly_once.wait_for_output(topics["ledger"], sent)
    yield job_id, sent, topics, ns
    flink_jobs.cancel_jobs("m03_l07 tests ledger")


def test_crash_right_answer(crashed_ledger):
    job_id, sent, topics, ns = crashed_ledger
    checks.exactly_once_after_crash(SINK, checkpointing(ns), job_id, sent, topics)


def test_crash_rejects_an_at_least_once_sink(crashed_ledger):
    job_id, sent, topics, ns = crashed_ledger
    options = {**SINK, "sink.delivery-guarantee": "at-least-once"}
    with pytest.raises(WrongAnswer, match="written twice"):
        checks.exactly_once_after_crash(options, checkpointing(ns), job_id, sent, topics)


def test_crash_rejects_no_checkpoints(crashed_ledger):
    job_id, sent, topics, ns = crashed_ledger
    settings = {k: v for k, v in checkpointing(ns).items() if k != "execution.checkpointing.interval"}
    with pytest.raises(WrongAnswer, match="checkpointing is off"):
        checks.exactly_once_after_crash(SINK, settings, job_id, sent, topics)


def test_crash_rejects_the_default_one_hour_transaction_timeout(crashed_ledger):
    job_id, sent, topics, ns = crashed_ledger
    options = {k: v for k, v in SINK.items() if not k.startswith("properties.")}
    with pytest.raises(WrongAnswer, match=r"transaction\.max\.timeout\.ms"):
        checks.exactly_once_after_crash(options, checkpointing(ns), job_id, sent, topics)


def test_crash_detects_missing_payments(crashed_ledger):
    job_id, sent, topics, ns = crashed_ledger
    with pytest.raises(WrongAnswer, match="missing from the committed ledger"):
        checks.exactly_once_after_crash(SINK, checkpointing(ns), job_id, sent + 5, topics)


def test_crash_detects_duplicates(crashed_ledger):
    job_id, sent, topics, ns = crashed_ledger
    duplicated = flink_jobs.fresh_topics(stack.namespace("m03_l07_tests_dups"), ["ledger"])
    rows = flink_jobs.read_json(topics["ledger"])
    flink_jobs.produce_json(duplicated["ledger"], rows + rows[:3])
    with pytest.raises(WrongAnswer, match="3 duplicates"):
        checks.exactly_once_after_crash(SINK, checkpointing(ns), job_id, sent, duplicated)


def test_crash_placeholder(crashed_ledger):
    job_id, sent, topics, _ = crashed_ledger
    with pytest.raises(NotSolvedYet):
        checks.exactly_once_after_crash(..., ..., job_id, sent, topics)
