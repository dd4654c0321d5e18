"""Checks of lab 03.03 (stateful PyFlink): each runs a real DataStream job on the stack's Flink cluster."""

from __future__ import annotations

import pytest

from delab import datasets, stack
from delab.checks.m03 import l03_flink_state as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.streaming import flink_jobs, flink_state

pytestmark = pytest.mark.stack
GAP = flink_state.GAP_MS


@pytest.fixture(scope="module")
def lab():
    ns = stack.namespace("m03_l03_tests")
    topics = flink_jobs.fresh_topics(ns, ["clicks"])
    arrivals = datasets.shop(seed=3, scale=0.02).clicks.sort_values("ingest_time", kind="stable").head(600)
    flink_jobs.produce_json(topics["clicks"], flink_jobs.click_events(arrivals))
    _, t_env = flink_state.environments("m03_l03 tests")
    return t_env, topics["clicks"]


def number_click(self, row, ctx):
    n = (self.count.value() or 0) + 1
    self.count.update(n)
    yield row.event_id, n


def number_from_zero(self, row, ctx):
    n = self.count.value() or 0
    self.count.update(n + 1)
    yield row.event_id, n


def number_with_an_attribute(self, row, ctx):
    self.seen = getattr(self, "seen", 0) + 1
    yield row.event_id, self.seen


def test_running_count_right_answer(lab):
    checks.keyed_running_count(number_click, *lab)


def test_running_count_rejects_off_by_one(lab):
    with pytest.raises(WrongAnswer, match="one too small"):
        checks.keyed_running_count(number_from_zero, *lab)


def test_running_count_rejects_a_python_attribute(lab):
    with pytest.raises(WrongAnswer, match="across all sessions"):
        checks.keyed_running_count(number_with_an_attribute, *lab)


def test_running_count_placeholder(lab):
    def number_click(self, row, ctx):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.keyed_running_count(number_click, *lab)


def make_on_click(anchor: str = "last", delete: bool = True, processing_time: bool = False):
    def on_click(self, row, ctx):
        ts = ctx.timestamp()
        session = self.session.value()
        if session is None:
            session = [0, ts, ts]
        elif delete:
            ctx.timer_service().delete_event_time_timer((session[2] if anchor == "last" else session[1]) + GAP)
        session = [session[0] + 1, min(session[1], ts), max(session[2], ts)]
        self.session.update(session)
        due = (session[2] if anchor == "last" else session[1]) + GAP
        if processing_time:
            ctx.timer_service().register_processing_time_timer(ctx.timer_service().current_processing_time() + GAP)
        else:
            ctx.timer_service().register_event_time_timer(due)

    return on_click


def on_session_timer(self, timestamp, ctx):
    session = self.session.value()
    if session is None:
        return
    self.session.clear()
    yield ctx.get_current_key(), session[0], session[1], session[2]


def test_session_timer_right_answer(lab):
    checks.session_end_timer(make_on_click(), on_session_timer, *lab)


def test_session_timer_rejects_a_timer_that_does_not_move(lab):
    with pytest.raises(WrongAnswer, match="summaries"):
        checks.session_end_timer(make_on_click(anchor="first"), on_session_timer, *lab)


def test_session_timer_rejects_timers_never_deleted(lab):
    with pytest.raises(WrongAnswer, match="delete the old one"):
        checks.session_end_timer(make_on_click(delete=False), on_session_timer, *lab)


def test_session_timer_rejects_processing_time(lab):
    with pytest.raises(WrongAnswer, match="processing-time timer"):
        checks.session_end_timer(make_on_click(processing_time=True), on_session_timer, *lab)


def make_route(compare: str = "<"):
    def route_click(self, row, ctx):
        watermark = ctx.timer_service().current_watermark()
        late = ctx.timestamp() < watermark if compare == "<" else ctx.timestamp() > watermark
        if compare == "never":
            late = False
        if late:
            yield flink_state.late_tag(), row
        else:
            yield row

    return route_click


def test_late_right_answer(lab):
    checks.late_side_output(make_route(), *lab)


def test_late_rejects_the_inverted_test(lab):
    with pytest.raises(WrongAnswer, match="on-time clicks"):
        checks.late_side_output(make_route(">"), *lab)


def test_late_rejects_no_side_output(lab):
    with pytest.raises(WrongAnswer, match="no click went to the side output"):
        checks.late_side_output(make_route("never"), *lab)


def test_checks_want_functions(lab):
    with pytest.raises(WrongAnswer, match="expected a function"):
        checks.late_side_output("route_click", *lab)
