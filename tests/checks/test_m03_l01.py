"""Checks of lab 03.01 (Kafka fundamentals), against the stack's real broker: right answers pass, realistic wrong
ones are rejected with the specific message, placeholders are "not solved yet"."""

from __future__ import annotations

import contextlib
import json

import pytest

from delab import stack
from delab.checks.m03 import l01_kafka as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.streaming import kafka_basics as kb

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module", autouse=True)
def kafka():
    stack.require("kafka", quiet=True)
    yield
    kb.drop_topics(checks.PREFIX)


# ------------------------------------------------------------------------------------------------- e1


def producer_fn(key=lambda e: str(e["session_id"]), as_json=True, flush=True, order=lambda events: events):
    def produce(topic, events):
        out = kb.producer()
        for event in order(events):
            value = json.dumps(event).encode() if as_json else str(event).encode()
            k = key(event)
            out.send(topic, key=k.encode() if k is not None else None, value=value)
        if flush:
            out.flush()
            out.close()

    return produce


def test_keyed_clicks_accepts_session_keys():
    checks.keyed_clicks(producer_fn())


def test_keyed_clicks_rejects_missing_keys():
    with pytest.raises(WrongAnswer, match="have no key"):
        checks.keyed_clicks(producer_fn(key=lambda e: None))


def test_keyed_clicks_rejects_event_id_keys():
    with pytest.raises(WrongAnswer, match="keyed by something other than their session"):
        checks.keyed_clicks(producer_fn(key=lambda e: str(e["event_id"])))


def test_keyed_clicks_rejects_reordering_by_event_time():
    by_event_time = producer_fn(order=lambda events: sorted(events, key=lambda e: e["event_time"]))
    with pytest.raises(WrongAnswer, match="not stored in the order"):
        checks.keyed_clicks(by_event_time)


def test_keyed_clicks_rejects_python_repr_values():
    with pytest.raises(WrongAnswer, match="not JSON"):
        checks.keyed_clicks(producer_fn(as_json=False))


def test_keyed_clicks_rejects_sending_nothing():
    with pytest.raises(WrongAnswer, match="holds 0 messages"):
        checks.keyed_clicks(lambda topic, events: None)


def test_keyed_clicks_placeholder_is_not_solved():
    def produce_clicks(topic, events):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.keyed_clicks(produce_clicks)
    with pytest.raises(NotSolvedYet):
        checks.keyed_clicks(...)


# ------------------------------------------------------------------------------------------------- e2


def lag_fn(formula):
    def lag_by_partition(group, topic):
        ends = kb.end_offsets(topic)
        committed = kb.committed_offsets(group, topic)
        return {p: formula(ends[p], committed.get(p, 0)) for p in ends}

    return lag_by_partition


def test_consumer_lag_accepts_end_minus_committed():
    checks.consumer_lag(lag_fn(lambda end, committed: end - committed))


def test_consumer_lag_rejects_end_offsets():
    with pytest.raises(WrongAnswer, match="log-end offsets, not the lag"):
        checks.consumer_lag(lag_fn(lambda end, committed: end))


def test_consumer_lag_rejects_committed_offsets():
    with pytest.raises(WrongAnswer, match="committed offsets, not the lag"):
        checks.consumer_lag(lag_fn(lambda end, committed: committed))


def test_consumer_lag_rejects_off_by_one():
    with pytest.raises(WrongAnswer, match="off by one"):
        checks.consumer_lag(lag_fn(lambda end, committed: end - committed - 1))


def test_consumer_lag_rejects_a_total():
    with pytest.raises(WrongAnswer, match="one number"):
        checks.consumer_lag(lambda group, topic: sum(lag_fn(lambda e, c: e - c)(group, topic).values()))


def test_consumer_lag_placeholder_is_not_solved():
    def lag_by_partition(group, topic):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.consumer_lag(lag_by_partition)


# ------------------------------------------------------------------------------------------------- e3


def process_then_commit(consumer, records, process):
    for record in records:
        process(record)
    consumer.commit()


def commit_each_after(consumer, records, process):
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    for record in records:
        process(record)
        tp = TopicPartition(record.topic, record.partition)
        consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})


def never_commits(consumer, records, process):
    for record in records:
        process(record)


def swallows_crash(consumer, records, process):
    for record in records:
        with contextlib.suppress(Exception):
            process(record)
    consumer.commit()


def test_at_least_once_accepts_commit_after_the_batch():
    checks.at_least_once(process_then_commit)


def test_at_least_once_accepts_commit_after_each_record():
    checks.at_least_once(commit_each_after)


def test_at_least_once_rejects_commit_before_processing():
    with pytest.raises(WrongAnswer, match="never processed"):
        checks.at_least_once(kb.commit_then_process)


def test_at_least_once_rejects_never_committing():
    with pytest.raises(WrongAnswer, match="still lags"):
        checks.at_least_once(never_commits)


def test_at_least_once_rejects_swallowing_the_crash():
    with pytest.raises(WrongAnswer, match="caught the simulated crash"):
        checks.at_least_once(swallows_crash)


def test_at_least_once_placeholder_is_not_solved():
    def handle_batch(consumer, records, process):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.at_least_once(handle_batch)
