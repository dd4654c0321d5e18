"""Lab 03.03 (stateful PyFlink): a DataStream environment on the stack's cluster, the clickstream as a stream
with event time and watermarks, and independent pandas models of what keyed state, event-time timers and a
late-data side output must produce.

The Python functions of a DataStream job run in a worker of this process (PyFlink's loopback mode), which is how
PyFlink runs Python code submitted from a notebook. ``python.fn-execution.bundle.size = 1`` makes the Python
operator see every watermark right after the record that raised it, so which events are late — and when timers
fire — is exactly what a replay of the topic predicts.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from delab import config
from delab.streaming import flink_jobs, windows

GAP_MS = 3 * 60 * 1000  # a visit ends after 3 minutes without a click
DELAY = windows.WATERMARK_DELAY


def environments(job_name: str) -> tuple[Any, Any]:
    """A StreamExecutionEnvironment whose jobs run on the stack's cluster, and a StreamTableEnvironment on it."""
    from pyflink.table import StreamTableEnvironment

    from delab.stack import flink

    job_name = flink_jobs.owned(job_name)
    env = flink.stream_environment(1, {"pipeline.name": job_name, "python.fn-execution.bundle.size": "1"})
    t_env = StreamTableEnvironment.create(env)
    flink.pin_planner_threads(t_env)
    t_env.get_config().set("pipeline.name", job_name)
    return env, t_env


def clicks_stream(t_env: Any, topic: str) -> Any:
    """The clicks of ``topic`` as a DataStream of Rows whose timestamps are their event time, with the
    watermark ``max event time - 5 minutes`` emitted after every event."""
    t_env.execute_sql("DROP TEMPORARY TABLE IF EXISTS clicks")
    ddl = windows.clicks_ddl(topic, config.kafka().bootstrap_servers).replace("CREATE TABLE", "CREATE TEMPORARY TABLE")
    t_env.execute_sql(ddl)
    return t_env.to_data_stream(t_env.from_path("clicks"))


def collect(stream: Any, job_name: str, limit: int = 100_000) -> list:
    """Run the job on the cluster and return everything ``stream`` emitted (bounded sources end the job)."""
    with stream.execute_and_collect(flink_jobs.owned(job_name)) as results:
        return [row for _, row in zip(range(limit), results, strict=False)]


def millis(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


# -------------------------------------------------------------------------------------------------- models


def running_counts(clicks: pd.DataFrame) -> pd.DataFrame:
    """event_id, session_id and the event's number within its session, in arrival order (1, 2, 3 …)."""
    out = clicks[["event_id", "session_id"]].copy()
    out["n"] = out.groupby("session_id").cumcount() + 1
    return out


def session_summaries(clicks: pd.DataFrame, gap_ms: int = GAP_MS) -> pd.DataFrame:
    """What an event-time timer at ``last event + gap`` emits per session: session_id, events, first, last
    (epoch ms). A session whose timer fired is cleared: a later (late) event of it starts a new summary."""
    watermarks = windows.arrival_watermarks(clicks.event_time, DELAY)
    state: dict[int, list[int]] = {}
    fired: list[tuple] = []
    for row, watermark in zip(clicks.itertuples(), watermarks, strict=True):
        if not pd.isna(watermark):
            w = millis(watermark)
            for key in [k for k, s in state.items() if s[2] + gap_ms <= w]:
                fired.append((key, *state.pop(key)))
        ts = millis(row.event_time)
        count, first, last = state.get(row.session_id, [0, ts, ts])
        state[row.session_id] = [count + 1, min(first, ts), max(last, ts)]
    fired += [(key, *s) for key, s in state.items()]  # the end of the input fires every timer left
    return pd.DataFrame(fired, columns=["session_id", "events", "first", "last"])


def late_events(clicks: pd.DataFrame, inclusive: bool = False) -> set[int]:
    """Event ids whose event time is behind the watermark when they arrive (``<``, or ``<=`` if inclusive)."""
    watermarks = windows.arrival_watermarks(clicks.event_time, DELAY)
    behind = clicks.event_time <= watermarks if inclusive else clicks.event_time < watermarks
    return set(clicks.event_id[behind.fillna(False)].astype(int))


def late_tag() -> Any:
    """The side output for late events (``yield late_tag(), row`` in a ProcessFunction)."""
    from pyflink.common import Types
    from pyflink.datastream import OutputTag

    return OutputTag("late", Types.PICKLED_BYTE_ARRAY())


def keyed_function(
    process_element: Any, on_timer: Any = None, state: dict[str, Any] | None = None, name: str = "KeyedFunction"
) -> Any:
    """A KeyedProcessFunction class from plain functions: ``process_element(self, row, ctx)`` (and
    ``on_timer(self, timestamp, ctx)``), with one ValueState attribute per entry of ``state``
    (``{"count": Types.LONG()}`` gives ``self.count``), created in ``open``."""
    from pyflink.datastream import KeyedProcessFunction
    from pyflink.datastream.state import ValueStateDescriptor

    states = dict(state or {})

    def open(self: Any, runtime_context: Any) -> None:
        for attribute, type_info in states.items():
            setattr(self, attribute, runtime_context.get_state(ValueStateDescriptor(attribute, type_info)))

    body: dict[str, Any] = {"open": open, "process_element": process_element}
    if on_timer is not None:
        body["on_timer"] = on_timer
    return type(name, (KeyedProcessFunction,), body)


def process_function(process_element: Any, name: str = "Function") -> Any:
    """A (non-keyed) ProcessFunction class from ``process_element(self, row, ctx)``."""
    from pyflink.datastream import ProcessFunction

    return type(name, (ProcessFunction,), {"process_element": process_element})
