"""Checks of lab 03.01 (Kafka fundamentals with kafka-python), against the stack's real broker.

Each check builds its own fresh topic under ``m03_l01.check.*``, runs the learner's code on it and reads the
result back from Kafka, so nothing depends on what the notebook did before.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from delab.grading import WrongAnswer, exercise, learner_code
from delab.streaming import kafka_basics as kb

PREFIX = "m03_l01.check"


def _topic(name: str, partitions: int) -> str:
    return kb.create_topic(f"{PREFIX}.{name}.{uuid.uuid4().hex[:6]}", partitions)


def sample_clicks(limit: int = 240) -> list[dict]:
    """The first clicks of the shop's clickstream in arrival order (ingest time), as JSON-ready dicts."""
    from delab import datasets

    clicks = datasets.cached(7, 0.25).clicks.sort_values(["ingest_time", "event_id"]).head(limit)
    return [
        {
            "event_id": int(row.event_id),
            "session_id": int(row.session_id),
            "event_type": str(row.event_type),
            "event_time": str(row.event_time),
        }
        for row in clicks.itertuples()
    ]


# ------------------------------------------------------------------------------------------ e1: keyed clicks


@contextmanager
def _watched_producers() -> Iterator[list]:
    """While it is open, the producers ``kb.producer()`` makes remember the future of every ``send``. The
    producers stay referenced until the block ends (a producer dropped by the learner's function is not closed,
    and so not flushed, by the garbage collector before the check looks), and are flushed on the way out."""
    real, made, sends = kb.producer, [], []

    def watched(*args, **kwargs):
        out = real(*args, **kwargs)
        send = out.send

        def remembered_send(*a, **kw):
            future = send(*a, **kw)
            sends.append(future)
            return future

        out.send = remembered_send
        made.append(out)
        return out

    kb.producer = watched
    try:
        yield sends
    finally:
        kb.producer = real
        for out in made:
            del out.send  # the producer's own method again
            if not out._closed:
                out.flush(timeout=15)


@exercise("m03.l01.e1")
def keyed_clicks(produce_clicks: Callable[[str, list[dict]], None]) -> None:
    """Keyed by session: each session in one partition, its events in the order they were sent."""
    topic = _topic("keyed", 3)
    clicks = sample_clicks()
    with _watched_producers() as sends:
        learner_code("produce_clicks(topic, clicks)")(produce_clicks)(topic, clicks)
        in_flight = sum(1 for future in sends if not future.is_done)
    if in_flight:
        raise WrongAnswer(
            f"{in_flight} of {len(sends)} messages were still on their way to the broker when produce_clicks returned.",
            hint="send() only queues a message in the producer: wait until its queue is delivered before returning.",
        )
    got = kb.read_topic(topic)
    if len(got) == 0:
        raise WrongAnswer(
            "the topic holds 0 messages after produce_clicks returned.",
            hint="send() only queues a message in the producer: make sure the queue is delivered before returning.",
        )
    if len(got) != len(clicks):
        raise WrongAnswer(
            f"the topic holds {len(got)} messages; {len(clicks)} clicks were given.",
            hint="send each click exactly once, and deliver the producer's queue before returning.",
        )
    try:
        values = [json.loads(v) for v in got["value"]]
    except (TypeError, ValueError):
        raise WrongAnswer(
            "the message values are not JSON.", hint="json.dumps(click).encode() turns a dict into JSON bytes."
        ) from None
    if not all(isinstance(v, dict) for v in values):
        kind = type(next(v for v in values if not isinstance(v, dict))).__name__
        raise WrongAnswer(
            f"the message values are JSON {'strings' if kind == 'str' else kind + 's'}, not JSON objects.",
            hint="encode each click once: json.dumps of the dict itself, then bytes.",
        )
    by_id = {c["event_id"]: c for c in clicks}
    not_clicks = [v for v in values if by_id.get(v.get("event_id")) != v]
    if not_clicks:
        raise WrongAnswer(
            f"{len(not_clicks)} message values are not the click they stand for, e.g. {not_clicks[0]}.",
            hint="send each event dict whole, every field unchanged, as the message value.",
        )
    if got["key"].isna().any():
        raise WrongAnswer(
            f"{int(got['key'].isna().sum())} messages have no key: Kafka spreads keyless messages over partitions.",
            hint="give each message a key (bytes) naming what must stay in order.",
        )
    got = got.assign(event_id=[v.get("event_id") for v in values], session_id=[v.get("session_id") for v in values])
    wrong_keys = got[got["key"] != got["session_id"].astype(str)]
    if len(wrong_keys):
        row = wrong_keys.iloc[0]
        raise WrongAnswer(
            f"{len(wrong_keys)} messages are keyed by something other than their session: event {row.event_id} "
            f"of session {row.session_id} has the key {row.key!r}.",
            hint="the key decides the partition, so it must be the thing whose events need to stay in order.",
        )
    spread = got.groupby("session_id")["partition"].nunique()
    if (spread > 1).any():
        raise WrongAnswer(
            f"session {int(spread[spread > 1].index[0])} is spread over several partitions.",
            hint="messages with the same key always go to the same partition; did you set a partition yourself?",
        )
    sent_order = {c["event_id"]: i for i, c in enumerate(clicks)}
    for session, events in got.sort_values(["partition", "offset"]).groupby("session_id"):
        order = [sent_order.get(e) for e in events["event_id"]]
        if order != sorted(order):
            raise WrongAnswer(
                f"the events of session {session} are not stored in the order of the `clicks` list.",
                hint="send the clicks in the order given (sorting by event time reorders what arrived).",
            )


# ------------------------------------------------------------------------------------------- e2: consumer lag


OTHER_TOPIC_COMMITTED = 4  # where the lag group stands on the other topic it reads


def _lag_fixture() -> tuple[str, str, dict[int, int], dict[int, int]]:
    """A 4-partition topic with 30/20/10/6 messages and a group that committed 12/20/3 on its first three
    partitions (lag 18/0/7/6: the fourth was never committed, so the group would read it from the start). The
    same group also committed on another topic, as a group reading two topics does."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    topic, other = _topic("lag", 4), _topic("lag_other", 4)
    group = f"{PREFIX}.lag.{uuid.uuid4().hex[:6]}"
    counts, committed = {0: 30, 1: 20, 2: 10, 3: 6}, {0: 12, 1: 20, 2: 3}
    out = kb.producer()
    for partition, n in counts.items():
        for i in range(n):
            out.send(topic, value=str(i).encode(), partition=partition)
            out.send(other, value=str(i).encode(), partition=partition)
    out.flush()
    out.close()
    client = kb.admin()
    try:
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in committed.items()}
        offsets |= {TopicPartition(other, p): OffsetAndMetadata(OTHER_TOPIC_COMMITTED, "", -1) for p in counts}
        client.alter_group_offsets(group, offsets)
    finally:
        client.close()
    return topic, group, kb.end_offsets(topic), kb.committed_offsets(group, topic)


@exercise("m03.l01.e2")
def consumer_lag(lag_by_partition: Callable[[str, str], dict[int, int]]) -> None:
    """Lag per partition: log-end offset minus the group's committed offset."""
    import pandas as pd

    topic, group, ends, committed = _lag_fixture()
    want = {p: ends[p] - committed.get(p, 0) for p in ends}
    answer = learner_code("lag_by_partition(group, topic)")(lag_by_partition)(group, topic)
    if isinstance(answer, pd.Series):
        answer = answer.to_dict()
    if isinstance(answer, int | float):
        raise WrongAnswer(
            "got one number; expected a dict partition -> lag.",
            hint="lag is per partition: each partition has its own end offset and its own committed offset.",
        )
    if not isinstance(answer, dict):
        raise WrongAnswer(f"expected a dict partition -> lag, got a {type(answer).__name__}.")
    got = {getattr(k, "partition", k): v for k, v in answer.items()}
    never = sorted(set(ends) - set(committed))  # partitions the group never committed on
    if sorted(got) != sorted(want):
        missing = sorted(set(want) - set(got))
        raise WrongAnswer(
            f"got partitions {sorted(got)}; the topic has {sorted(want)}"
            + (f" (partition {never[0]} was never committed by the group)." if set(missing) & set(never) else "."),
            hint="ask for every partition of the topic, not only the ones the group committed.",
        )
    not_numbers = sorted(p for p, v in got.items() if isinstance(v, bool) or not isinstance(v, int | float))
    if not_numbers:
        raise WrongAnswer(
            f"the lag of partition(s) {not_numbers} is {got[not_numbers[0]]!r}, not a number.",
            hint="a partition the group never committed on has no committed offset: count it from the start."
            if set(not_numbers) <= set(never)
            else "return each partition's lag as an int.",
        )
    got = {p: int(v) for p, v in got.items()}
    if got == want:
        return
    if got == {p: ends[p] for p in ends}:
        raise WrongAnswer(
            "these are the log-end offsets, not the lag.",
            hint="lag = how far the group is behind: subtract what it has committed.",
        )
    if got == {p: committed.get(p, 0) for p in ends}:
        raise WrongAnswer(
            "these are the committed offsets, not the lag.",
            hint="lag = distance from the committed offset to the end of the partition.",
        )
    off = {got[p] - want[p] for p in committed if not want[p] == got[p] == 0}  # clamping a lag of 0 is fine
    if off in ({1}, {-1}):
        raise WrongAnswer(
            "off by one on every partition.",
            hint="a committed offset is the next offset to read, and the end offset is the next one to be written.",
        )
    foreign = sorted(p for p in want if got[p] != want[p] and got[p] == ends[p] - OTHER_TOPIC_COMMITTED)
    if foreign:
        raise WrongAnswer(
            f"the lag of partition(s) {foreign} uses an offset the group committed on another topic.",
            hint="the group's committed offsets cover every topic it reads: keep only this topic's partitions.",
        )
    if all(got[p] == want[p] for p in committed):
        raise WrongAnswer(
            f"the lag of partition(s) {never}, which the group never committed on, is off: got "
            f"{[got[p] for p in never]}.",
            hint="without a committed offset the group would read that partition from its start.",
        )
    wrong = sorted(p for p in want if got[p] != want[p])
    raise WrongAnswer(f"the lag of partition(s) {wrong} is off.", hint="lag = end offset - committed offset.")


# ---------------------------------------------------------------------------------------- e3: at-least-once


@exercise("m03.l01.e3")
def at_least_once(handle_batch: kb.Handler) -> None:
    """A consumer crashed between processing and committing loses nothing (at-least-once)."""
    topic, group = _topic("crash", 1), f"{PREFIX}.crash.{uuid.uuid4().hex[:6]}"
    kb.fill_numbered(topic, 40)
    # The crash hits *while* the 15th message is processed (stricter than the notebook's demo, which crashes just
    # after it): a handler that commits each record before processing it loses that record.
    report = learner_code("the crash run of handle_batch")(kb.run_with_crash)(
        handle_batch, topic, group, crash_after=15, batch_size=10, mid_processing=True
    )
    if sum(report.processed.values()) == 0:
        raise WrongAnswer("no message was processed.", hint="call process(record) for every record of the batch.")
    if not report.crash_escaped:
        raise WrongAnswer(
            "your handler caught the simulated crash and carried on.",
            hint="the crash stands for the process dying: let exceptions from process() propagate.",
        )
    if report.lost:
        raise WrongAnswer(
            f"{report.lost} of {report.messages} messages were never processed after the crash and restart.",
            hint="what was committed is never delivered again: commit a batch only once it has been processed.",
        )
    lag = kb.lag_table(group, topic)
    behind = int(lag["lag"].sum())
    if behind == report.messages:
        raise WrongAnswer(
            f"after the restart drained the topic the group has committed nothing: yet another restart would "
            f"process all {behind} messages again.",
            hint="commit the consumer's offsets once a batch is processed.",
        )
    if behind > 0:
        raise WrongAnswer(
            f"after the restart drained the topic the group's committed offset is still {behind} short of the end: "
            "a restart would process those messages again.",
            hint="commit after every batch; a committed offset is the next one to read, not the last one processed.",
        )
