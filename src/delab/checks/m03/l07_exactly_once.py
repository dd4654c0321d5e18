"""Checks of lab 03.07 (backpressure and exactly-once): a producer benchmark that really measures, Flink
backpressure read from the REST metrics, a Kafka transaction that leaves nothing visible when it fails, and an
exactly-once Flink job that survived a TaskManager crash with nothing lost or duplicated. Every check re-reads
the broker or the cluster itself."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from delab import config
from delab.grading import WrongAnswer, exercise, learner_code

JOB_PREFIX = "m03_l07"
KEYS = ("messages/s", "p50 ms", "p99 ms")


def _topic(name: str) -> str:
    from delab.stack import namespace
    from delab.streaming import flink_jobs

    ns = namespace("m03_l07_check")
    topic = ns.topic(f"{name}.{uuid.uuid4().hex[:6]}")
    admin = flink_jobs._admin()  # keep the client alive until the topic exists
    admin.create_topics([_new_topic(topic)])[topic].result()
    return topic


def _new_topic(name: str) -> Any:
    from confluent_kafka.admin import NewTopic

    return NewTopic(name, num_partitions=1, replication_factor=1)


def _count(topic: str, isolation: str = "read_committed") -> int:
    from delab.streaming import flink_jobs

    return len(flink_jobs.read_json(topic, isolation=isolation))


def _visible(topic: str, expected: int, timeout: float = 15.0) -> int:
    """How many messages read_committed readers see, waiting up to ``timeout`` for ``expected``: the transaction
    coordinator answers a commit before its markers reach the partitions, so a reader right after
    commit_transaction() may briefly see nothing of the batch."""
    deadline = time.monotonic() + timeout
    while True:
        seen = _count(topic)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


# ------------------------------------------------------------------------------------------ e1 producer bench

#: (n, settings, rate) of the check's two runs. In the burst, one message per request and one request at a time
#: make the broker's round trips, not the Python loop, the length of the run: flush() then lasts most of it (on
#: an idle or a busy machine alike), so a clock stopped before flush() is far off. The paced run is long (0.6 s)
#: next to the time any machine needs to hand 600 messages to produce().
PRODUCER_RUNS = (
    (500, {"linger.ms": 5, "batch.num.messages": 1, "max.in.flight.requests.per.connection": 1}, None),
    (600, {"linger.ms": 50}, 1000),
)


class _ProducerLog:
    """What the learner's producers did, recorded by the check: each Producer's configuration, when each message
    was handed to produce(), when each delivery report reached the learner's code (one partition: reports come
    in produce order), and how often poll() was called before flush(). Ratios of these, never absolute times,
    decide the verdicts: they hold on a busy machine as on an idle one."""

    def __init__(self) -> None:
        self.configs: list[dict] = []
        self.produced: list[float] = []
        self.reported: list[float] = []
        self.polls_before_flush = 0
        self.flushing = False

    def latencies_ms(self, from_first: bool = False) -> list[float]:
        """Per message: report - produce() (or - the first produce(), to see latencies counted from the start)."""
        return [
            (reported - (self.produced[0] if from_first else produced)) * 1000
            for produced, reported in zip(self.produced, self.reported, strict=False)
        ]


def _observed_producer_class(log: _ProducerLog) -> type:
    from confluent_kafka import Producer

    class ObservedProducer(Producer):
        def __init__(self, conf: dict | None = None, **kwargs: Any) -> None:
            conf = dict(conf or {}, **kwargs)
            log.configs.append(dict(conf))
            self._conf_on_delivery = conf.get("on_delivery")
            super().__init__(conf)

        def produce(self, *args: Any, **kwargs: Any) -> Any:
            args = list(args)
            if len(args) > 4:  # produce(topic, value, key, partition, on_delivery, ...)
                own = args[4]
                del args[4:5]
            else:
                own = kwargs.pop("on_delivery", None) or kwargs.pop("callback", None)
            learners = own or self._conf_on_delivery

            def report(error: Any, message: Any) -> None:
                log.reported.append(time.perf_counter())
                if learners is not None:
                    learners(error, message)

            log.produced.append(time.perf_counter())
            return super().produce(*args, on_delivery=report, **kwargs)

        def poll(self, *args: Any, **kwargs: Any) -> Any:
            if not log.flushing:
                log.polls_before_flush += 1
            return super().poll(*args, **kwargs)

        def flush(self, *args: Any, **kwargs: Any) -> Any:
            log.flushing = True
            return super().flush(*args, **kwargs)

    return ObservedProducer


@contextlib.contextmanager
def _observing_producers(fn: Any, log: _ProducerLog) -> Iterator[None]:
    """Within the block, ``confluent_kafka.Producer`` (and the name the learner's function sees) is the check's
    observed subclass."""
    import confluent_kafka

    original = confluent_kafka.Producer
    observed = _observed_producer_class(log)
    names = getattr(fn, "__globals__", {})
    rebound = [name for name, value in names.items() if value is original]
    confluent_kafka.Producer = observed
    for name in rebound:
        names[name] = observed
    try:
        yield
    finally:
        confluent_kafka.Producer = original
        for name in rebound:
            names[name] = original


@learner_code("measure_producer")
def _measure(fn, topic: str, n: int, settings: dict, rate: float | None) -> Any:
    return fn(topic, n, settings, rate)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@exercise("m03.l07.e1")
def producer_measurement(measure_producer) -> None:
    """measure_producer sends n messages, waits for every acknowledgement and reports throughput and latency."""
    if not callable(measure_producer):
        raise WrongAnswer("expected a function measure_producer(topic, n, settings, rate=None).")
    for n, settings, rate in PRODUCER_RUNS:
        topic = _topic("bench")
        log = _ProducerLog()
        started = time.perf_counter()
        with _observing_producers(measure_producer, log):
            result = _measure(measure_producer, topic, n, dict(settings), rate)
        wall = time.perf_counter() - started
        _judge_producer_run(result, log, topic, n, settings, rate, wall)


def _judge_producer_run(result: Any, log: _ProducerLog, topic: str, n: int, settings: dict, rate, wall: float):
    if not isinstance(result, dict) or not all(key in result for key in KEYS):
        raise WrongAnswer(f"return a dict with the keys {list(KEYS)}.", hint="one number per key.")
    if not log.configs:
        raise WrongAnswer(
            "measure_producer built no confluent-kafka Producer.",
            hint="build Producer({'bootstrap.servers': ..., **settings}) inside the function, one per call.",
        )
    unused = {key: value for key, value in settings.items() if any(str(c.get(key)) != str(value) for c in log.configs)}
    if unused:
        raise WrongAnswer(
            f"your Producer was built without {unused}: your latencies are as if linger were shorter.",
            hint="build the Producer from bootstrap.servers plus the settings you were given.",
        )
    arrived = _count(topic)
    if len(log.reported) < n or arrived != n:
        raise WrongAnswer(
            f"{min(arrived, len(log.reported))} of {n} messages had reached the topic (delivery report) when "
            "measure_producer returned.",
            hint="produce() only queues a message: wait for every delivery report before you stop the clock.",
        )
    try:
        throughput, p50, p99 = (float(result[key]) for key in KEYS)
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"the values must be numbers; you returned {result!r}.", hint="leave the units in the keys."
        ) from None
    # the run, as the check saw it: from the first produce() to the last delivery report
    span = log.reported[-1] - log.produced[0]
    if not throughput >= 0.95 * n / wall:  # the learner's clock runs inside the check's: never longer
        raise WrongAnswer(
            f"you report {throughput:.0f} messages/s but the call sent {n} in {wall:.2f} s "
            f"(at least {n / wall:.0f}/s).",
            hint="messages per second = n / the seconds between the first produce() and the last delivery.",
        )
    if throughput > 1.05 * n / span + 1:
        raise WrongAnswer(
            f"you report {throughput:.0f} messages/s, but from the first produce() to the last delivery report "
            f"{n} messages took {span:.2f} s ({n / span:.0f}/s): your clock stopped before the last delivery.",
            hint="stop the clock after flush() has returned: until then messages are still on their way.",
        )
    if not 0 <= p50 <= p99 <= wall * 1000 * 1.05:
        raise WrongAnswer(
            f"p50 = {p50}, p99 = {p99} ms do not fit a run of {wall * 1000:.0f} ms.",
            hint="per message: delivery time - send time, in milliseconds; p50 <= p99.",
        )
    reference = _percentile(log.latencies_ms(), 0.5)  # your own clock reads at least this much per message
    if p50 < 0.5 * reference:
        raise WrongAnswer(
            f"with {settings}, your median latency is {p50} ms, but the delivery reports came a median "
            f"{reference:.1f} ms after produce().",
            hint="are you measuring in seconds? Or timing produce() instead of the delivery report?",
        )
    if not rate:
        return
    if log.produced[-1] - log.produced[0] < 0.5 * (n - 1) / rate:
        raise WrongAnswer(
            f"{n} messages at {rate}/s should take {(n - 1) / rate:.1f} s to hand over; yours took "
            f"{log.produced[-1] - log.produced[0]:.2f} s.",
            hint="with a rate, message i is due i / rate seconds after the start: sleep until then.",
        )
    if log.polls_before_flush == 0:
        raise WrongAnswer(
            "your latencies grow through the run: with no poll() before flush(), every delivery report reached "
            "your callback only in flush(), at the end.",
            hint="poll(0) after each produce() so reports reach your callback as they arrive.",
        )
    from_start = _percentile(log.latencies_ms(from_first=True), 0.5)
    if p50 > (reference + from_start) / 2:
        raise WrongAnswer(
            f"your latencies grow through the run (median {p50:.0f} ms, p99 {p99:.0f} ms): they are counted from "
            f"the start of the run (median {from_start:.0f} ms), not per message ({reference:.0f} ms).",
            hint="time each message from its own produce() to its delivery report.",
        )


# ------------------------------------------------------------------------------------------- e2 backpressure


@learner_code("backpressure_by_vertex")
def _backpressure(fn, job_id: str) -> Any:
    return fn(job_id)


@exercise("m03.l07.e2")
def backpressure_reading(backpressure_by_vertex, job_id: str) -> None:
    """The backpressured time of each vertex, read from Flink's REST metrics while the slow operator throttles."""
    from delab.streaming import exactly_once, flink_jobs

    if not callable(backpressure_by_vertex):
        raise WrongAnswer("expected a function backpressure_by_vertex(job_id).")
    if flink_jobs.job_state(job_id) != "RUNNING":
        raise WrongAnswer("the throttled job is not running.", hint="run the cell that starts it again.")
    got = _backpressure(backpressure_by_vertex, job_id)
    vertices = flink_jobs.vertices(job_id)
    names = {v["name"] for v in vertices}
    if not isinstance(got, dict):
        raise WrongAnswer("return a dict {vertex name: backpressured ms per second}.")
    if set(got) == {v["id"] for v in vertices}:
        raise WrongAnswer("your keys are vertex ids.", hint="key the dict by each vertex's name.")
    if set(got) != names:
        raise WrongAnswer(f"expected one entry per vertex: {sorted(names)}; you gave {sorted(map(str, got))}.")
    try:
        values = {name: float(got[name]) for name in names}
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"the values must be numbers (milliseconds per second); you returned {got!r}.",
            hint="float() of the aggregate Flink returns.",
        ) from None
    # the job reads a skewed topic: one source subtask is held back, the other is idle, so the aggregates over
    # a vertex's subtasks differ (max = 2 x avg, min = 0) and the one the learner read can be told
    pressure = {
        v["name"]: exactly_once.vertex_metrics(job_id, v["id"], "backPressuredTimeMsPerSecond") for v in vertices
    }
    busy = {v["name"]: exactly_once.vertex_metric(job_id, v["id"], "busyTimeMsPerSecond") for v in vertices}

    def near(value: float, reference: float) -> bool:  # NaN (a metric the vertex does not report) only matches NaN
        return value != value if reference != reference else abs(value - reference) <= 250

    def closest(name: str) -> str:  # the aggregate of this vertex the learner's figure is nearest to
        figures = {key: pressure[name][key] for key in ("max", "avg", "min", "sum")}
        figures = {key: value for key, value in figures.items() if value == value}  # NaN: not reported
        return min(figures, key=lambda key: abs(values[name] - figures[key]), default="max")  # ties go to max

    off = [name for name in names if not near(values[name], pressure[name]["max"])]
    skewed = max(names, key=lambda name: pressure[name]["max"] - pressure[name]["avg"])
    if not off and closest(skewed) in ("avg", "min") and pressure[skewed]["avg"] < pressure[skewed]["max"]:
        off = [skewed]  # within the tolerance of the max, yet nearer another aggregate: a lightly loaded run
    if not off:
        try:
            elsewhere = _backpressure(backpressure_by_vertex, "0" * 32)  # a job id that does not exist
        except WrongAnswer:
            elsewhere = None  # a reader of the REST API fails here: there is no such job
        if elsewhere == got:
            raise WrongAnswer(
                "your function returns the same figures for a job that does not exist.",
                hint="read the metrics of the job_id you are given from the REST API; never copy them from an output.",
            )
        return
    if all(near(values[name], busy[name]) for name in names):
        raise WrongAnswer(
            "those are the busy times, not the backpressured times.",
            hint="a vertex is backpressured when it waits for its downstream; busy when it works.",
        )
    aggregate = closest(skewed)
    if aggregate in ("avg", "min", "sum") and all(near(values[name], pressure[name][aggregate]) for name in names):
        what = {"avg": "the average", "min": "the minimum", "sum": "the sum"}[aggregate]
        raise WrongAnswer(
            f"{skewed}: you report {values[skewed]:.0f} ms/s, {what} over its subtasks; its most backpressured "
            f"subtask waits {pressure[skewed]['max']:.0f} ms/s.",
            hint="the topic is skewed: one subtask waits, the other is idle. Take the `max` over the subtasks — "
            "the average hides the subtask that holds the job back.",
        )
    raise WrongAnswer(
        f"{off[0]}: you report {values[off[0]]:.0f} ms/s, Flink reports {pressure[off[0]]['max']:.0f} ms/s.",
        hint="read backPressuredTimeMsPerSecond of each vertex (max over its subtasks) in milliseconds per second.",
    )


# ------------------------------------------------------------------------------------------- e3 transactions


def _transactional_producer() -> Any:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": config.kafka().bootstrap_servers,
            "transactional.id": f"m03_l07_check_{uuid.uuid4().hex[:8]}",
        }
    )
    producer.init_transactions(10)
    return producer


class _Unserialisable:
    def __repr__(self) -> str:
        return "<a value json cannot encode>"


TOO_LARGE = "x" * 2_000_000  # JSON-encodes fine; produce() refuses it (above message.max.bytes, 1 MB)


@exercise("m03.l07.e3")
def transaction_all_or_nothing(publish_in_transaction) -> None:
    """A batch is published in one Kafka transaction: all of it is visible to read_committed readers, or none."""
    if not callable(publish_in_transaction):
        raise WrongAnswer("expected a function publish_in_transaction(producer, topic, rows).")
    topic = _topic("txn")
    good = [{"seq": i, "amount": i * 1.5} for i in range(20)]
    producer = _transactional_producer()
    try:
        publish_in_transaction(producer, topic, good)
    except NotImplementedError:
        raise
    except Exception as error:
        raise WrongAnswer(f"publish_in_transaction failed on a good batch: {type(error).__name__}: {error}") from None
    seen = _visible(topic, len(good))
    if seen != len(good):
        raise WrongAnswer(
            f"after a good batch of {len(good)}, read_committed readers see {seen} messages.",
            hint="commit the transaction at the end of the batch.",
        )
    # two batches that fail at their 7th row: one JSON cannot encode (before anything is sent), and one whose
    # 7th message produce() refuses (too large) inside the open transaction
    unencodable = [{"seq": 100 + i, "amount": 1.0} for i in range(10)]
    unencodable[6] = {"seq": 106, "amount": _Unserialisable()}
    oversized = [{"seq": 200 + i, "amount": 1.0} for i in range(10)]
    oversized[6] = {"seq": 206, "amount": 1.0, "note": TOO_LARGE}
    failures = (
        (unencodable, "a batch that failed at its 7th row", "whose 7th row could not be encoded"),
        (oversized, "a batch whose 7th message the broker refused (too large)", "whose 7th message produce() refused"),
    )
    for committed_batches, (batch, what, failed) in enumerate(failures, start=1):
        visible = committed_batches * len(good)
        try:
            publish_in_transaction(producer, topic, batch)
        except NotImplementedError:
            raise
        except Exception:
            raised = True
        else:
            raised = False
        leaked = _count(topic) - visible
        if leaked > 0:
            raise WrongAnswer(
                f"{what} left {leaked} of its rows visible to read_committed readers.",
                hint="on an error, abort the transaction — never commit in a finally block.",
            )
        if not raised:
            raise WrongAnswer(
                "the failed batch was swallowed silently.", hint="abort, then re-raise so the caller knows."
            )
        _start_again(publish_in_transaction, producer, topic, good, failed)
        if _visible(topic, visible + len(good)) != visible + len(good):
            raise WrongAnswer("the batch after an aborted one did not become visible.", hint="commit it.")


def _start_again(publish_in_transaction, producer: Any, topic: str, rows: list[dict], failed: str) -> None:
    try:
        publish_in_transaction(producer, topic, rows)
    except Exception as error:
        raise WrongAnswer(
            f"after a batch {failed}, the producer cannot start a new transaction: {type(error).__name__}: {error}",
            hint="abort the failed transaction (abort_transaction()) before you re-raise: it readies the producer.",
        ) from None


# --------------------------------------------------------------------------------------------- e4 crash proof


def sink_option_problem(sink_options: dict) -> str:
    """Why these Kafka sink options cannot give exactly-once output ('' when they can)."""
    if not isinstance(sink_options, dict):
        return "expected a dict of Kafka sink options."
    guarantee = str(sink_options.get("sink.delivery-guarantee", "at-least-once")).lower()
    if guarantee != "exactly-once":
        return f"the sink's delivery guarantee is {guarantee!r}: replayed records after a restart are written twice."
    prefix = str(sink_options.get("sink.transactional-id-prefix", ""))
    if not prefix:
        return "an exactly-once sink needs 'sink.transactional-id-prefix' (unique per job) to fence old producers."
    try:
        timeout = int(sink_options.get("properties.transaction.timeout.ms", 3_600_000))
    except (TypeError, ValueError):
        return "properties.transaction.timeout.ms is a Kafka producer setting: a number of milliseconds."
    if timeout > 900_000:
        return (
            f"transaction.timeout.ms = {timeout} is above the broker's transaction.max.timeout.ms (15 minutes): "
            "the producer is refused."
        )
    return ""


def checkpoint_problem(settings: dict) -> str:
    """Why these job settings cannot give exactly-once recovery ('' when they can)."""
    if not isinstance(settings, dict):
        return "expected a dict of job settings."
    interval = str(settings.get("execution.checkpointing.interval", "")).strip()
    number = re.match(r"[\d.]+", interval)
    if not number or float(number.group()) == 0:
        return "checkpointing is off: the exactly-once sink only commits on checkpoints, so nothing is ever visible."
    where = str(settings.get("execution.checkpointing.dir", settings.get("state.checkpoints.dir", "")))
    if not where.startswith(("s3://", "file:/")):
        return "checkpoints need a durable place: an s3:// or file:/ URI in execution.checkpointing.dir."
    if str(settings.get("restart-strategy.type", "")).lower() in ("none", "disable", "off"):
        return "with the restart strategy off, the job fails for good when its TaskManager dies."
    return ""


@exercise("m03.l07.e4")
def exactly_once_after_crash(sink_options, checkpoint_settings, job_id: str, sent: int, topics: dict) -> None:
    """The ledger job lost its TaskManager mid-run, restarted from a checkpoint, and its committed output holds
    every payment exactly once."""
    from delab.streaming import exactly_once, flink_jobs

    for problem in (sink_option_problem(sink_options), checkpoint_problem(checkpoint_settings)):
        if problem:
            raise WrongAnswer(problem)
    try:
        job = flink_jobs.rest(f"/jobs/{job_id}")
    except Exception:
        raise WrongAnswer(f"no job {job_id} on the cluster.", hint="run the cells that start and crash it.") from None
    if not job["name"].startswith(JOB_PREFIX):
        raise WrongAnswer(f"job {job['name']!r} is not this lab's ledger job.")
    counts = exactly_once.checkpoint_counts(job_id)
    if counts["restored"] == 0:
        raise WrongAnswer(
            "the job was never restored from a checkpoint: it did not crash, or it started from scratch.",
            hint="run the crash cell: kill the TaskManager inside stack.disrupt('flink').",
        )
    if not isinstance(sent, int) or sent <= 0:
        raise WrongAnswer("`sent` should be how many payments the feeder sent (feeder.stop()).")
    audit = exactly_once.audit(sent, flink_jobs.read_json(topics["ledger"], isolation="read_committed"))
    if audit["lost"]:
        raise WrongAnswer(
            f"{audit['lost']} of {sent} payments are missing from the committed ledger.",
            hint="wait until the job caught up (and a checkpoint committed) before you read.",
        )
    if audit["duplicates"] or audit["unexpected"]:
        raise WrongAnswer(
            f"the committed ledger holds {audit['duplicates']} duplicates and {audit['unexpected']} unknown rows.",
            hint="read with isolation.level=read_committed, and let only checkpoints commit the sink.",
        )
