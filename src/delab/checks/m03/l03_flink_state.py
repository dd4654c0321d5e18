"""Checks of lab 03.03 (stateful PyFlink): each runs the learner's process function as a DataStream job on the
stack's cluster over the lab's clicks topic and compares what it emitted with a pandas model replayed over the
same messages (``delab.streaming.flink_state``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from delab.grading import WrongAnswer, exercise

JOB_PREFIX = "m03_l03"


def _callable(fn: Any, what: str) -> None:
    if not callable(fn):
        raise WrongAnswer(f"expected a function {what}.")


def _run(stream: Any, job: str) -> list:
    from delab.streaming import flink_jobs, flink_state

    try:
        return flink_state.collect(stream, f"{JOB_PREFIX} {job}")
    except NotImplementedError:
        raise
    except Exception as error:  # the job failed: usually the learner's Python raised
        message = flink_jobs.flink_error(error)
        if "NotImplementedError" in str(error):
            raise NotImplementedError from None
        raise WrongAnswer(
            f"the job failed: {message}",
            hint="test your function's logic on a few rows by hand; the TaskManager log has the Python traceback.",
        ) from None


def _clicks(topic: str) -> pd.DataFrame:
    from delab.streaming import windows

    return windows.clicks_from_topic(topic)


@exercise("m03.l03.e1")
def keyed_running_count(number_click, t_env, topic: str) -> None:
    """Keyed ValueState numbers each click within its session: 1, 2, 3 … per session_id."""
    from pyflink.common import Types

    from delab.streaming import flink_state

    _callable(number_click, "number_click(self, row, ctx)")
    function = flink_state.keyed_function(number_click, state={"count": Types.LONG()}, name="RunningCount")()
    stream = flink_state.clicks_stream(t_env, topic)
    keyed = stream.key_by(lambda row: row.session_id, key_type=Types.LONG())
    rows = _run(keyed.process(function, output_type=Types.PICKLED_BYTE_ARRAY()), "e1 running count")
    if not rows or not all(isinstance(r, tuple) and len(r) == 2 for r in rows):
        raise WrongAnswer("expected one (event_id, n) tuple per click.", hint="yield row.event_id, n")
    got = pd.DataFrame(rows, columns=["event_id", "n_got"])
    want = flink_state.running_counts(_clicks(topic)).merge(got, on="event_id", how="left")
    if len(got) != len(want):
        raise WrongAnswer(f"your function emitted {len(got)} rows for {len(want)} clicks.", hint="one per click.")
    if (want.n_got == want.n).all():
        return
    if (want.n_got == want.n - 1).all():
        raise WrongAnswer("every number is one too small.", hint="the first click of a session is number 1.")
    if (want.n_got == range(1, len(want) + 1)).all():
        raise WrongAnswer(
            "your count runs across all sessions.",
            hint="a Python attribute is shared by every key: keep the count in keyed state (ValueState).",
        )
    raise WrongAnswer(
        f"{int((want.n_got != want.n).sum())} of {len(want)} numbers differ.",
        hint="read the session's count from state, add one, update the state, yield it.",
    )


@exercise("m03.l03.e2")
def session_end_timer(on_click, on_session_timer, t_env, topic: str) -> None:
    """An event-time timer 3 minutes after a session's latest click emits its summary and clears the state."""
    from pyflink.common import Types

    from delab.streaming import flink_state

    _callable(on_click, "on_click(self, row, ctx)")
    _callable(on_session_timer, "on_session_timer(self, timestamp, ctx)")
    session_state = {"session": Types.PICKLED_BYTE_ARRAY()}
    function = flink_state.keyed_function(on_click, on_session_timer, session_state, name="SessionEnd")()
    stream = flink_state.clicks_stream(t_env, topic)
    keyed = stream.key_by(lambda row: row.session_id, key_type=Types.LONG())
    rows = _run(keyed.process(function, output_type=Types.PICKLED_BYTE_ARRAY()), "e2 session timer")
    clicks = _clicks(topic)
    if not rows:
        raise WrongAnswer(
            "no session was emitted.",
            hint="a processing-time timer minutes ahead never fires in a job that ends after seconds: use event "
            "time (register_event_time_timer).",
        )
    if not all(isinstance(r, tuple) and len(r) == 4 for r in rows):
        raise WrongAnswer("expected (session_id, events, first, last) tuples.", hint="yield them from on_timer.")
    got = pd.DataFrame(rows, columns=["session_id", "events", "first", "last"]).astype("int64")
    want = flink_state.session_summaries(clicks)
    if int(got.events.sum()) != len(clicks):
        raise WrongAnswer(
            f"your summaries count {int(got.events.sum())} clicks; the topic has {len(clicks)}.",
            hint="clear the state when the timer fires (and only then), so no click is counted twice or lost.",
        )
    key = ["session_id", "events", "first", "last"]
    if sorted(map(tuple, got[key].to_numpy())) == sorted(map(tuple, want[key].to_numpy())):
        return
    if len(got) > len(want):
        raise WrongAnswer(
            f"you emitted {len(got)} summaries; the sessions make {len(want)}.",
            hint="a later click must move the timer: delete the old one and register last + GAP.",
        )
    raise WrongAnswer(
        f"{len(set(map(tuple, got[key].to_numpy())) ^ set(map(tuple, want[key].to_numpy())))} summaries differ.",
        hint="events = clicks in the state; first/last = smallest/largest event time (ctx.timestamp()).",
    )


@exercise("m03.l03.e3")
def late_side_output(route_click, t_env, topic: str) -> None:
    """Clicks behind the watermark go to the 'late' side output; every other click to the main output."""
    from pyflink.common import Types

    from delab.streaming import flink_state

    _callable(route_click, "route_click(self, row, ctx)")
    function = flink_state.process_function(route_click, name="RouteLate")()
    stream = flink_state.clicks_stream(t_env, topic)
    routed = stream.process(function, output_type=Types.PICKLED_BYTE_ARRAY())
    main = routed.map(lambda row: ("main", int(row.event_id)), output_type=Types.PICKLED_BYTE_ARRAY())
    late = routed.get_side_output(flink_state.late_tag()).map(
        lambda row: ("late", int(row.event_id)), output_type=Types.PICKLED_BYTE_ARRAY()
    )
    rows = _run(main.union(late), "e3 late side output")
    clicks = _clicks(topic)
    got_late = {event for where, event in rows if where == "late"}
    got_main = {event for where, event in rows if where == "main"}
    if len(rows) != len(clicks) or got_late & got_main:
        raise WrongAnswer(
            f"{len(rows)} clicks came out for {len(clicks)} in: each click must go to exactly one output.",
            hint="yield the row, or yield (late_tag, row) — not both.",
        )
    strict, inclusive = flink_state.late_events(clicks), flink_state.late_events(clicks, inclusive=True)
    if got_late in (strict, inclusive):
        return
    if not got_late:
        raise WrongAnswer(
            f"no click went to the side output; {len(strict)} arrived behind the watermark.",
            hint="compare ctx.timestamp() with ctx.timer_service().current_watermark(), and yield late_tag, row.",
        )
    if got_late == set(clicks.event_id.astype(int)) - strict:
        raise WrongAnswer("you sent the on-time clicks to the side output.", hint="late = event time < watermark.")
    raise WrongAnswer(
        f"you flagged {len(got_late)} clicks as late; {len(strict)} arrived behind the watermark.",
        hint="late means: its event time (ctx.timestamp()) is below the current watermark when it arrives.",
    )
