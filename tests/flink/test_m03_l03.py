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


def number_in_a_dict(self, row, ctx):
    counts = self.__dict__.setdefault("counts", {})
    counts[row.session_id] = counts.get(row.session_id, 0) + 1
    yield row.event_id, counts[row.session_id]


def test_running_count_rejects_a_dict_attribute_per_session(lab):
    # used to pass: right numbers, but kept in a Python dict that no checkpoint saves
    with pytest.raises(WrongAnswer, match=r"never updated self\.count"):
        checks.keyed_running_count(number_in_a_dict, *lab)


def test_running_count_accepts_a_list(lab):
    # used to fail: "expected one (event_id, n) tuple per click"
    def number_click(self, row, ctx):
        current = self.count.value()
        n = 1 if current is None else current + 1
        self.count.update(n)
        yield [row["event_id"], n]

    checks.keyed_running_count(number_click, *lab)


def test_running_count_explains_a_returned_pair(lab):
    def number_click(self, row, ctx):
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        return row.event_id, n

    with pytest.raises(WrongAnswer, match="single values"):
        checks.keyed_running_count(number_click, *lab)


def test_running_count_says_when_the_id_is_not_the_event_id(lab):
    # used to say "your function emitted 600 rows for 1071 clicks"
    def number_click(self, row, ctx):
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        yield row.session_id, n

    with pytest.raises(WrongAnswer, match="more than one of your pairs"):
        checks.keyed_running_count(number_click, *lab)


def test_running_count_shows_the_python_error(lab):
    # used to say only "the job failed: java.lang.RuntimeException: Failed to fetch next result"
    def number_click(self, row, ctx):
        n = self.count.value() + 1
        self.count.update(n)
        yield row.event_id, n

    with pytest.raises(WrongAnswer, match=r"raised TypeError: unsupported operand.*first click"):
        checks.keyed_running_count(number_click, *lab)


def test_running_count_placeholder(lab):
    def number_click(self, row, ctx):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.keyed_running_count(number_click, *lab)


def make_on_click(anchor: str = "last", delete: bool = True, processing_time: bool = False, gap: int = GAP):
    """on_click that times the visit from its last click (or "first", or "this" click), GAP after it."""

    def on_click(self, row, ctx):
        ts = ctx.timestamp()
        session = self.session.value()
        if session is None:
            session = [0, ts, ts, ts]
        elif delete:
            ctx.timer_service().delete_event_time_timer(session[{"last": 2, "first": 1, "this": 3}[anchor]] + gap)
        session = [session[0] + 1, min(session[1], ts), max(session[2], ts), ts]
        self.session.update(session)
        due = session[{"last": 2, "first": 1, "this": 3}[anchor]] + gap
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


def on_session_timer_strict(self, timestamp, ctx):
    events, first, last, _ = self.session.value()
    self.session.clear()
    yield ctx.get_current_key(), events, first, last


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


def test_session_timer_rejects_a_timer_pulled_back_by_an_older_click(lab):
    # used to pass: the timer follows the click that arrived last, not the session's latest event time
    with pytest.raises(WrongAnswer, match=r"not at their last \(latest\) click"):
        checks.session_end_timer(make_on_click(anchor="this"), on_session_timer_strict, *lab)


def test_session_timer_rejects_a_timer_one_ms_early(lab):
    # used to pass: the timer at last + GAP - 1
    with pytest.raises(WrongAnswer, match="179,999 ms after"):
        checks.session_end_timer(make_on_click(gap=GAP - 1), on_session_timer_strict, *lab)


def test_session_timer_rejects_a_gap_in_seconds(lab):
    # used to say "delete the old one": the real mistake is the unit
    with pytest.raises(WrongAnswer, match="fire 180 ms after"):
        checks.session_end_timer(make_on_click(gap=180), on_session_timer_strict, *lab)


def test_session_timer_rejects_visits_in_a_python_dict(lab):
    # used to pass: right summaries, but kept in a Python dict that no checkpoint saves
    def on_click(self, row, ctx):
        visits, ts, key = self.__dict__.setdefault("visits", {}), ctx.timestamp(), ctx.get_current_key()
        visit = visits.get(key)
        if visit is not None:
            ctx.timer_service().delete_event_time_timer(visit[2] + GAP)
        visit = [1, ts, ts] if visit is None else [visit[0] + 1, min(visit[1], ts), max(visit[2], ts)]
        visits[key] = visit
        ctx.timer_service().register_event_time_timer(visit[2] + GAP)

    def on_session_timer(self, timestamp, ctx):
        events, first, last = self.visits.pop(ctx.get_current_key())
        yield ctx.get_current_key(), events, first, last

    with pytest.raises(WrongAnswer, match=r"never wrote self\.session"):
        checks.session_end_timer(on_click, on_session_timer, *lab)


def test_session_timer_explains_a_timer_left_behind(lab):
    # used to say only "the job failed: ... Failed to fetch next result"
    with pytest.raises(WrongAnswer, match=r"cannot unpack.*delete the old timer"):
        checks.session_end_timer(make_on_click(delete=False), on_session_timer_strict, *lab)


def test_session_timer_accepts_lazy_timers_and_a_list(lab):
    # a right answer written differently: stale timers ignored instead of deleted, the summary as a list
    # (a list used to fail: "expected (session_id, events, first, last) tuples")
    def on_session_timer(self, timestamp, ctx):
        session = self.session.value()
        if session is not None and timestamp == session[2] + GAP:
            self.session.clear()
            yield [ctx.get_current_key(), session[0], session[1], session[2]]

    checks.session_end_timer(make_on_click(delete=False), on_session_timer, *lab)


def make_route(compare: str = "<", tag=None):
    def route_click(self, row, ctx):
        watermark = ctx.timer_service().current_watermark()
        late = {"<": ctx.timestamp() < watermark, "<=": ctx.timestamp() <= watermark}.get(
            compare, ctx.timestamp() > watermark
        )
        if compare == "never":
            late = False
        if late:
            yield tag or flink_state.late_tag(), row
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


def test_late_says_clicks_went_to_another_side_output(lab):
    # used to say "not both": the late clicks went to a side output of the learner's own name
    from pyflink.common import Types
    from pyflink.datastream import OutputTag

    with pytest.raises(WrongAnswer, match="came out of neither output"):
        checks.late_side_output(make_route(tag=OutputTag("late-clicks", Types.PICKLED_BYTE_ARRAY())), *lab)


def test_late_accepts_less_or_equal(lab):
    # Flink's own windows call an element late when its timestamp <= the watermark
    checks.late_side_output(make_route("<="), *lab)


def test_checks_want_functions(lab):
    with pytest.raises(WrongAnswer, match="expected a function"):
        checks.late_side_output("route_click", *lab)
