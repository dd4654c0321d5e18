"""Checks of lab 03.04 (windowed aggregations in Flink SQL): each runs the learner's INSERT as a job on the
stack's cluster, reads what it wrote to Kafka, and compares it with an independent pandas model of the windows
(``delab.streaming.windows``) replayed over the very messages of the source topic."""

from __future__ import annotations

import pandas as pd

from delab.checks.m03._flinksql import _insert_into
from delab.grading import WrongAnswer, exercise

JOB_PREFIX = "m03_l04"
HOUR, QUARTER, GAP = pd.Timedelta(hours=1), pd.Timedelta(minutes=15), pd.Timedelta(minutes=30)
MS = pd.Timedelta(milliseconds=1)


def _window_time_as_end(lengths: set, size: pd.Timedelta) -> None:
    if lengths == {size - MS}:
        raise WrongAnswer(
            "your window_end is 1 ms before the window's end: you wrote window_time there.",
            hint="window_time is the window's last instant (end - 1 ms), the rowtime for later operators.",
        )


def _counts_too_low(got: pd.Series, want: pd.Series) -> None:
    """Every count at most what it should be, some lower: clicks or windows were left out."""
    if got.isna().any() and (got.dropna() == want[got.notna()]).all() and want[got.isna()].notna().all():
        raise WrongAnswer(
            f"{int(got.isna().sum())} windows are missing; the counts of the others are right.",
            hint="every window that holds at least one click is a row of the result: filter nothing out.",
        )
    if (got.fillna(0) <= want.fillna(0)).all() and (got.fillna(0) < want.fillna(0)).any():
        raise WrongAnswer(
            f"your counts add up to {int(got.sum())} clicks; the windows hold {int(want.sum())}.",
            hint="count every click of the window: COUNT(DISTINCT …) counts fewer, COUNT(column) skips its NULLs.",
        )


def _run(t_env, sql: str, topic: str, exercise_name: str) -> pd.DataFrame:
    from delab.streaming import flink_jobs

    since = flink_jobs.end_offsets(topic)
    try:
        flink_jobs.run_insert(t_env, sql, f"{JOB_PREFIX} {exercise_name}")
    except Exception as error:  # Flink refused the SQL or the job failed: say why in one line
        raise WrongAnswer(
            f"Flink could not run your INSERT: {flink_jobs.flink_error(error)}",
            hint="run the statement with t_env.execute_sql(...) in a cell of its own to see the whole error.",
        ) from None
    return flink_jobs.read_frame(topic, since)


def _clicks(topics: dict) -> pd.DataFrame:
    from delab.streaming import windows

    return windows.clicks_from_topic(topics["clicks"])


def _lengths(frame: pd.DataFrame) -> set[pd.Timedelta]:
    return set(frame.window_end - frame.window_start) if len(frame) else set()


def _columns(frame: pd.DataFrame, want: list[str]) -> None:
    missing = [c for c in want if c not in frame.columns]
    if len(frame) == 0:
        raise WrongAnswer("the job wrote nothing to the sink topic.", hint="does your SELECT read the clicks table?")
    if missing:
        raise WrongAnswer(f"the sink rows lack {missing}.", hint="select the columns in the sink table's order.")


@exercise("m03.l04.e1")
def tumbling_window_counts(t_env, per_hour_sql, topics: dict) -> None:
    """Hourly tumbling windows count the clicks of each event type, late events dropped by the watermark."""
    from delab.streaming import windows

    _insert_into(per_hour_sql, "clicks_per_hour")
    got = _run(t_env, per_hour_sql, topics["per_hour"], "e1 tumbling")
    _columns(got, ["window_start", "window_end", "event_type", "events"])
    lengths = _lengths(got)
    _window_time_as_end(lengths, HOUR)
    if lengths != {HOUR}:
        raise WrongAnswer(
            f"your windows last {sorted(str(x) for x in lengths)}, not one hour.",
            hint="the window's size is the last argument of TUMBLE.",
        )
    starts = got.window_start.drop_duplicates().sort_values()
    if len(starts) > 1 and (starts.diff().dropna() < HOUR).any():
        raise WrongAnswer("your hourly windows overlap.", hint="tumbling windows never overlap: TUMBLE, not HOP.")
    if got.event_type.isna().any() or got.duplicated(["window_start", "event_type"]).any():
        raise WrongAnswer(
            "expected one row per window and event type.", hint="GROUP BY window_start, window_end, event_type."
        )
    want, _ = windows.tumbling_expected(_clicks(topics), HOUR, ["event_type"])
    merged = want.merge(got, on=["window_start", "window_end", "event_type"], how="outer", suffixes=("", "_got"))
    wrong = merged[merged.events != merged.events_got]
    if len(wrong):
        _counts_too_low(merged.events_got, merged.events)
        raise WrongAnswer(
            f"{len(wrong)} of {len(merged)} (window, event type) counts differ from the events in the topic.",
            hint="count the clicks of each hour and event type, by event time (when they happened), not arrival.",
        )


@exercise("m03.l04.e2")
def hopping_active_sessions(t_env, active_sessions_sql, topics: dict) -> None:
    """One-hour windows sliding every 15 minutes count the distinct sessions active in them."""
    from delab.streaming import windows

    _insert_into(active_sessions_sql, "active_sessions")
    got = _run(t_env, active_sessions_sql, topics["active_sessions"], "e2 hopping")
    _columns(got, ["window_start", "window_end", "sessions"])
    lengths = _lengths(got)
    _window_time_as_end(lengths, HOUR)
    if lengths != {HOUR}:
        raise WrongAnswer(
            f"your windows last {sorted(str(x) for x in lengths)}, not one hour.",
            hint="HOP(TABLE t, DESCRIPTOR(ts), slide, size): the slide comes first.",
        )
    starts = got.window_start.drop_duplicates().sort_values()
    if len(starts) > 1 and starts.diff().dropna().min() >= HOUR:
        raise WrongAnswer(
            "your one-hour windows do not overlap: they do not slide every 15 minutes.", hint="HOP, not TUMBLE."
        )
    slide = starts.diff().dropna().min() if len(starts) > 1 else QUARTER
    if slide != QUARTER:
        raise WrongAnswer(
            f"a new window starts every {slide.seconds // 60} minutes, not every 15.",
            hint="HOP(TABLE t, DESCRIPTOR(ts), slide, size): the slide is how often a window starts.",
        )
    clicks = _clicks(topics)
    want = windows.hopping_expected(clicks, HOUR, QUARTER)
    merged = want.merge(got, on=["window_start", "window_end"], how="outer", suffixes=("", "_got"))
    if (merged.sessions != merged.sessions_got).any():
        events = windows.hopping_expected(clicks.assign(session_id=range(len(clicks))), HOUR, QUARTER)
        if set(events.sessions) >= set(got.sessions) and got.sessions.sum() == events.sessions.sum():
            raise WrongAnswer(
                "you counted events, not sessions.", hint="a session with many clicks is still one session."
            )
        customers = windows.hopping_expected(clicks.assign(session_id=clicks.customer_id), HOUR, QUARTER)
        by_customer = customers.merge(got, on=["window_start", "window_end"], how="outer", suffixes=("", "_got"))
        if (by_customer.sessions.fillna(0) == by_customer.sessions_got.fillna(0)).all():
            raise WrongAnswer(
                "you counted distinct customers, not sessions.",
                hint="a customer can have several sessions, and anonymous clicks have sessions too.",
            )
        raise WrongAnswer(
            f"{int((merged.sessions != merged.sessions_got).sum())} of {len(merged)} windows have the wrong number "
            "of sessions.",
            hint="COUNT(DISTINCT session_id), grouped by the window's bounds only.",
        )


def _sessions_per_visit(clicks: pd.DataFrame, visits: pd.DataFrame) -> pd.Series:
    """For each visit (row of ``visits``), the distinct session ids among its customer's clicks in its window."""
    rows = visits.reset_index(drop=True).reset_index()
    inside = rows.merge(clicks[["customer_id", "session_id", "event_time"]], on="customer_id")
    inside = inside[(inside.event_time >= inside.window_start) & (inside.event_time < inside.window_end)]
    return inside.groupby("index").session_id.nunique().reindex(rows["index"], fill_value=0).set_axis(visits.index)


@exercise("m03.l04.e3")
def session_window_visits(t_env, visits_sql, topics: dict) -> None:
    """Session windows (30-minute gap) per known customer: one row per visit with its number of clicks."""
    from delab.streaming import windows

    _insert_into(visits_sql, "visits")
    got = _run(t_env, visits_sql, topics["visits"], "e3 sessions")
    _columns(got, ["customer_id", "window_start", "window_end", "events"])
    if got.customer_id.isna().any():
        raise WrongAnswer(
            "some visits have no customer: anonymous clicks were grouped together.",
            hint="keep only the clicks of known customers.",
        )
    clicks = _clicks(topics)
    want = windows.session_expected(clicks, GAP)
    keys = ["customer_id", "window_start", "window_end"]
    merged = want.merge(got, on=keys, how="outer", suffixes=("", "_got"))
    if (merged.events != merged.events_got).any():
        if _lengths(got) == {GAP}:
            raise WrongAnswer(
                "all your windows last exactly 30 minutes: fixed windows, not visits.",
                hint="a session window grows with each click and closes after 30 minutes without one.",
            )
        if (_sessions_per_visit(clicks, got) == got.events).all():
            raise WrongAnswer(
                "your counts look like sessions per visit, not clicks per visit.",
                hint="events is the number of clicks in the visit.",
            )
        _counts_too_low(merged.events_got, merged.events)
        for gap in (pd.Timedelta(minutes=m) for m in (5, 10, 15, 20, 45, 60)):
            if len(windows.session_expected(clicks, gap)) == len(got):
                raise WrongAnswer(
                    f"your visits look like sessions with a gap of {gap.seconds // 60} minutes, not 30.",
                    hint="the gap is the last argument of SESSION.",
                )
        by_session = windows.session_expected(clicks, GAP, key="session_id")
        if len(by_session) == len(got):
            raise WrongAnswer(
                "you split the windows by the site's session id, not by customer.",
                hint="PARTITION BY the customer inside SESSION(...).",
            )
        raise WrongAnswer(
            f"{int((merged.events != merged.events_got).sum())} of {len(merged)} visits differ "
            f"(you wrote {len(got)}, expected {len(want)}).",
            hint="one session window per customer (partitioned inside SESSION), and every click of the visit counted.",
        )
