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


def _python_error(error: BaseException) -> tuple[str, str]:
    """The learner's Python exception inside a failed job ('TypeError: …') and the function that raised it.

    Python functions run in the notebook's process (loopback worker); the Java error carries their traceback."""
    java = getattr(error, "java_exception", None)
    seen = 0
    while java is not None and seen < 30:
        text = str(java.getMessage() or "")
        if "Traceback (most recent call last)" in text:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            where = [line.rsplit(" in ", 1)[-1] for line in lines if line.startswith("File ") and " in " in line]
            return lines[-1][:300], (where[-1] if where else "")
        java, seen = java.getCause(), seen + 1
    return "", ""


class _CountingState:
    """A ValueState that counts its updates: tells keyed state from per-key data kept in a Python attribute."""

    def __init__(self, state: Any) -> None:
        self.state, self.writes = state, 0

    def value(self) -> Any:
        return self.state.value()

    def update(self, value: Any) -> None:
        self.writes += 1
        self.state.update(value)

    def clear(self) -> None:
        self.writes += 1
        self.state.clear()


def _traced(process_element: Any, on_timer: Any, state: dict[str, Any], name: str) -> Any:
    """The learner's KeyedProcessFunction, whose outputs come tagged: ("element" | "timer", timer time, output,
    writes to its state so far) — so a check can tell when (and from where) each output was emitted."""
    from delab.streaming import flink_state

    (attribute,) = state
    base = flink_state.keyed_function(process_element, on_timer, state, name=name)

    def open(self: Any, runtime_context: Any) -> None:
        base.open(self, runtime_context)
        setattr(self, attribute, _CountingState(getattr(self, attribute)))

    def traced_element(self: Any, row: Any, ctx: Any) -> Any:
        for out in process_element(self, row, ctx) or ():
            yield "element", None, out, getattr(self, attribute).writes

    def traced_timer(self: Any, timestamp: int, ctx: Any) -> Any:
        for out in on_timer(self, timestamp, ctx) or ():
            yield "timer", timestamp, out, getattr(self, attribute).writes

    body = {"open": open, "process_element": traced_element}
    if on_timer is not None:
        body["on_timer"] = traced_timer
    return type(name, (base,), body)


def _run(stream: Any, job: str, explain: Any = None) -> list:
    """Run the job; a Python error in the learner's function becomes one line saying which error and where."""
    from delab.streaming import flink_jobs, flink_state

    try:
        return flink_state.collect(stream, f"{JOB_PREFIX} {job}")
    except NotImplementedError:
        raise
    except Exception as error:  # the job failed: usually the learner's Python raised
        if "NotImplementedError" in str(error):
            raise NotImplementedError from None
        python_error, where = _python_error(error)
        if not python_error:
            raise WrongAnswer(
                f"the job failed: {flink_jobs.flink_error(error)}",
                hint="run the cell again; if it fails the same way, the Flink UI shows the job's exception.",
            ) from None
        hint = (explain and explain(python_error, where)) or (
            "run your function's logic by hand on two clicks of one session: what does the state hold at each step?"
        )
        raise WrongAnswer(f"your function raised {python_error} (in {where}).", hint=hint) from None


def _pairs(outputs: list, size: int, what: str) -> list:
    """The outputs as tuples of ``size`` (a list is fine too); a clear message when they are something else."""
    bad = [out for out in outputs if not (isinstance(out, (tuple, list)) and len(out) == size)]
    if bad and all(not isinstance(out, (tuple, list)) for out in bad):
        raise WrongAnswer(
            f"your function emitted single values (like {bad[0]!r}), not {what} tuples.",
            hint="a process function yields each output; a returned tuple is read as separate outputs.",
        )
    if bad:
        raise WrongAnswer(f"expected {what} tuples; got {bad[0]!r}.", hint=f"yield one {what} tuple per output.")
    return [tuple(out) for out in outputs]


def _clicks(topic: str) -> pd.DataFrame:
    from delab.streaming import windows

    return windows.clicks_from_topic(topic)


@exercise("m03.l03.e1")
def keyed_running_count(number_click, t_env, topic: str) -> None:
    """Keyed ValueState numbers each click within its session: 1, 2, 3 … per session_id."""
    from pyflink.common import Types

    from delab.streaming import flink_state

    _callable(number_click, "number_click(self, row, ctx)")
    function = _traced(number_click, None, {"count": Types.LONG()}, name="RunningCount")()
    stream = flink_state.clicks_stream(t_env, topic)
    keyed = stream.key_by(lambda row: row.session_id, key_type=Types.LONG())
    rows = _run(keyed.process(function, output_type=Types.PICKLED_BYTE_ARRAY()), "e1 running count", _explain_count)
    clicks = _clicks(topic)
    if not rows:
        raise WrongAnswer("your function emitted nothing.", hint="yield (row.event_id, n) for every click.")
    got = pd.DataFrame(_pairs([out for _, _, out, _ in rows], 2, "(event_id, n)"), columns=["event_id", "n_got"])
    unknown = set(got.event_id) - set(clicks.event_id)
    if unknown:
        raise WrongAnswer(
            f"{len(unknown)} of the ids you emitted are no click's event_id (like {next(iter(unknown))!r}).",
            hint="the first element of each pair identifies the click: its event_id.",
        )
    repeated = got.event_id[got.event_id.duplicated()]
    if len(repeated):
        raise WrongAnswer(
            f"{repeated.nunique()} ids appear in more than one of your pairs (like {repeated.iloc[0]!r}).",
            hint="the first element of each pair identifies the click: its event_id.",
        )
    if len(got) != len(clicks):
        raise WrongAnswer(
            f"your function emitted {len(got)} pairs for {len(clicks)} clicks.", hint="yield exactly one per click."
        )
    want = flink_state.running_counts(clicks).merge(got, on="event_id", how="left")
    if (want.n_got == want.n).all() and max(writes for *_, writes in rows) == 0:
        raise WrongAnswer(
            "right numbers, but your function never updated self.count: they live in a Python attribute.",
            hint="only keyed state is checkpointed and restored after a failure: read and update self.count.",
        )
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


def _explain_count(error: str, where: str) -> str | None:
    if "NoneType" in error:
        return "value() is None for a session's first click: start from 0 (or 1) when there is no state yet."
    return None


@exercise("m03.l03.e2")
def session_end_timer(on_click, on_session_timer, t_env, topic: str) -> None:
    """An event-time timer 3 minutes after a session's latest click emits its summary and clears the state."""
    from pyflink.common import Types

    from delab.streaming import flink_state

    _callable(on_click, "on_click(self, row, ctx)")
    _callable(on_session_timer, "on_session_timer(self, timestamp, ctx)")
    gap = flink_state.GAP_MS

    def explain(error: str, where: str) -> str | None:
        if "NoneType" in error and where == getattr(on_session_timer, "__name__", None):
            return (
                "a timer fired for a session with no state: delete the old timer when a click moves it "
                "(or ignore a timer that is not the session's last + GAP)."
            )
        if "NoneType" in error:
            return "self.session.value() is None for a session's first click: start its list then."
        return None

    function = _traced(on_click, on_session_timer, {"session": Types.PICKLED_BYTE_ARRAY()}, name="SessionEnd")()
    stream = flink_state.clicks_stream(t_env, topic)
    keyed = stream.key_by(lambda row: row.session_id, key_type=Types.LONG())
    rows = _run(keyed.process(function, output_type=Types.PICKLED_BYTE_ARRAY()), "e2 session timer", explain)
    clicks = _clicks(topic)
    from_clicks = [out for where, _, out, _ in rows if where == "element"]
    if from_clicks:
        raise WrongAnswer(
            f"on_click emitted {len(from_clicks)} rows (like {from_clicks[0]!r}).",
            hint="on_click only updates the state and the timer; the summary goes out from on_session_timer.",
        )
    if not rows:
        raise WrongAnswer(
            "no session was emitted.",
            hint="a processing-time timer minutes ahead never fires in a job that ends after seconds: use event "
            "time (register_event_time_timer).",
        )
    summaries = _pairs([out for _, _, out, _ in rows], 4, "(session_id, events, first, last)")
    if max(writes for *_, writes in rows) == 0:
        raise WrongAnswer(
            "your functions never wrote self.session: the visits live somewhere else (a Python attribute?).",
            hint="only keyed state is per session, checkpointed and restored: keep the visit in self.session.",
        )
    got = pd.DataFrame(summaries, columns=["session_id", "events", "first", "last"])
    got["fired_at"] = [timestamp for _, timestamp, _, _ in rows]
    try:
        got = got.astype("int64")
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"expected whole numbers in (session_id, events, first, last); got {summaries[0]!r}.",
            hint="first and last are event times in epoch milliseconds, as ctx.timestamp() gives them.",
        ) from None
    if (got["last"] == got.fired_at).mean() > 0.5:
        raise WrongAnswer(
            "the 'last' of your summaries is the time the timer fired, not the session's latest click.",
            hint="last = the largest event time of the session's clicks, kept in the state.",
        )
    offset = (got.fired_at - got["last"]).value_counts().index[0]  # the usual delay from last click to timer
    if offset != gap and (got.fired_at - got["last"] == offset).mean() > 0.5:
        raise WrongAnswer(
            f"your timers fire {offset:,} ms after a session's last click; a visit ends {gap:,} ms (3 minutes) "
            "after it.",
            hint="register the timer at last + GAP exactly (event times and timers are epoch milliseconds).",
        )
    want = flink_state.session_summaries(clicks)
    if int(got.events.sum()) != len(clicks):
        raise WrongAnswer(
            f"your summaries count {int(got.events.sum())} clicks; the topic has {len(clicks)}.",
            hint="clear the state when the timer fires (and only then), so no click is counted twice or lost.",
        )
    key = ["session_id", "events", "first", "last"]
    got_set, want_set = sorted(map(tuple, got[key].to_numpy())), sorted(map(tuple, want[key].to_numpy()))
    if got_set != want_set and len(got) > len(want):
        raise WrongAnswer(
            f"you emitted {len(got)} summaries; the sessions make {len(want)}.",
            hint="a later click must move the timer: delete the old one and register last + GAP.",
        )
    if got_set != want_set:
        raise WrongAnswer(
            f"{len(set(got_set) ^ set(want_set))} summaries differ.",
            hint="events = clicks in the state; first/last = smallest/largest event time (ctx.timestamp()).",
        )
    early = got[got.fired_at != got["last"] + gap]
    if len(early):
        raise WrongAnswer(
            f"{len(early)} sessions ended on a timer that was not at their last (latest) click + GAP.",
            hint="clicks arrive out of order: an older click must not pull the timer back; time it from the "
            "session's latest event time.",
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
    if len(rows) < len(clicks) and not got_late & got_main:
        raise WrongAnswer(
            f"{len(clicks) - len(rows)} of {len(clicks)} clicks came out of neither output.",
            hint="yield every click: the late ones with the lab's LATE tag (the side output read downstream).",
        )
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
