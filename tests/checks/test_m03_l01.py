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


def test_keyed_clicks_rejects_returning_before_delivery():
    with pytest.raises(WrongAnswer, match="still on their way to the broker"):
        checks.keyed_clicks(producer_fn(flush=False))


def test_keyed_clicks_rejects_double_encoded_json():
    def produce(topic, events):
        out = kb.producer()
        for event in events:
            out.send(topic, key=str(event["session_id"]).encode(), value=json.dumps(json.dumps(event)).encode())
        out.flush()

    with pytest.raises(WrongAnswer, match="JSON strings, not JSON objects"):
        checks.keyed_clicks(produce)


def test_keyed_clicks_rejects_values_that_are_not_the_click():
    def produce(topic, events):
        out = kb.producer()
        for event in events:
            ids = {"event_id": event["event_id"], "session_id": event["session_id"]}
            out.send(topic, key=str(event["session_id"]).encode(), value=json.dumps(ids).encode())
        out.flush()

    with pytest.raises(WrongAnswer, match="not the click they stand for"):
        checks.keyed_clicks(produce)


def test_keyed_clicks_accepts_serializers_and_close():
    def produce(topic, events):
        out = kb.producer(key_serializer=lambda k: str(k).encode(), value_serializer=lambda v: json.dumps(v).encode())
        for event in events:
            out.send(topic, key=event["session_id"], value=event)
        out.close()

    checks.keyed_clicks(produce)


def test_keyed_clicks_accepts_waiting_on_each_send():
    def produce(topic, events):
        out = kb.producer()
        sent = [out.send(topic, key=str(e["session_id"]).encode(), value=json.dumps(e).encode()) for e in events]
        for future in sent:
            future.get(timeout=10)

    checks.keyed_clicks(produce)


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


def test_consumer_lag_rejects_skipping_a_never_committed_partition():
    def committed_partitions_only(group, topic):
        ends, committed = kb.end_offsets(topic), kb.committed_offsets(group, topic)
        return {p: ends[p] - offset for p, offset in committed.items()}

    with pytest.raises(WrongAnswer, match=r"the topic has \[0, 1, 2, 3\] \(partition 3 was never committed"):
        checks.consumer_lag(committed_partitions_only)


def test_consumer_lag_rejects_offsets_of_another_topic():
    def every_topic_mixed(group, topic):
        client = kb.admin()
        offsets = client.list_group_offsets({group: None})[group]
        client.close()
        committed = {tp.partition: meta.offset for tp, meta in offsets.items()}  # no filter on the topic
        ends = kb.end_offsets(topic)
        return {p: ends[p] - committed.get(p, 0) for p in ends}

    with pytest.raises(WrongAnswer, match="committed on another topic"):
        checks.consumer_lag(every_topic_mixed)


def test_consumer_lag_rejects_off_by_one_upwards():
    with pytest.raises(WrongAnswer, match="off by one"):
        checks.consumer_lag(lag_fn(lambda end, committed: end - committed + 1))


def test_consumer_lag_rejects_zero_for_a_never_committed_partition():
    def zero_when_uncommitted(group, topic):
        ends, committed = kb.end_offsets(topic), kb.committed_offsets(group, topic)
        return {p: ends[p] - committed[p] if p in committed else 0 for p in ends}

    with pytest.raises(WrongAnswer, match="never committed on, is off"):
        checks.consumer_lag(zero_when_uncommitted)


def test_consumer_lag_accepts_a_group_consumers_committed_and_a_series():
    from kafka import KafkaConsumer, TopicPartition

    from delab import config

    def via_group_consumer(group, topic):
        consumer = KafkaConsumer(
            bootstrap_servers=config.kafka().bootstrap_servers, group_id=group, enable_auto_commit=False
        )
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            ends = consumer.end_offsets(parts)
            return {tp.partition: ends[tp] - (consumer.committed(tp) or 0) for tp in parts}
        finally:
            consumer.close(autocommit=False)

    checks.consumer_lag(via_group_consumer)
    checks.consumer_lag(lambda group, topic: kb.lag_table(group, topic).set_index("partition")["lag"])


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
    with pytest.raises(WrongAnswer, match="has committed nothing"):
        checks.at_least_once(never_commits)


def test_at_least_once_rejects_swallowing_the_crash():
    with pytest.raises(WrongAnswer, match="caught the simulated crash"):
        checks.at_least_once(swallows_crash)


def commit_each_before(consumer, records, process):
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
        process(record)


def commit_last_offset(consumer, records, process):
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    for record in records:
        process(record)
    last = records[-1]
    consumer.commit({TopicPartition(last.topic, last.partition): OffsetAndMetadata(last.offset, "", -1)})


def commit_async_after(consumer, records, process):
    for record in records:
        process(record)
    consumer.commit_async()


def test_at_least_once_rejects_committing_each_record_before_processing_it():
    with pytest.raises(WrongAnswer, match="1 of 40 messages were never processed"):
        checks.at_least_once(commit_each_before)


def test_at_least_once_rejects_committing_the_last_offset_instead_of_the_next():
    with pytest.raises(WrongAnswer, match="still 1 short of the end"):
        checks.at_least_once(commit_last_offset)


def test_at_least_once_accepts_an_asynchronous_commit_after_the_batch():
    checks.at_least_once(commit_async_after)


def test_at_least_once_placeholder_is_not_solved():
    def handle_batch(consumer, records, process):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.at_least_once(handle_batch)
