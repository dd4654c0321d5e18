"""Verdicts render as one line, the decorator records every outcome, and the progress store adds them up."""

from __future__ import annotations

import pytest

from delab import grading
from delab.grading import NotSolvedYet, WrongAnswer, exercise


@pytest.fixture(autouse=True)
def fresh_state(tmp_path, monkeypatch):
    monkeypatch.setenv("DELAB_STATE_DIR", str(tmp_path))


@exercise("m99.l01.e1")
def double(answer):
    """The double of 21."""
    if answer != 42:
        raise WrongAnswer(f"{answer} is not it.", hint="multiply by two.")


@exercise("m99.l01.e2")
def calls(fn):
    """A function returning 1."""
    if fn() != 1:
        raise WrongAnswer("wrong value")


def test_wrong_answer_renders_as_one_line_with_hint():
    with pytest.raises(WrongAnswer) as caught:
        double(41)
    lines = caught.value._render_traceback_()
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "m99.l01.e1" in lines[0] and "41 is not it." in lines[0] and "Hint: multiply by two." in lines[0]
    assert isinstance(caught.value, AssertionError)


def test_placeholder_is_not_solved_yet_and_recorded_as_todo():
    with pytest.raises(NotSolvedYet, match="placeholder"):
        double(...)
    assert grading.standings()["m99.l01.e1"].status == grading.TODO


def test_not_implemented_function_is_not_solved_yet():
    def stub():
        raise NotImplementedError

    with pytest.raises(NotSolvedYet, match="NotImplementedError"):
        calls(stub)


@exercise("m99.l01.e3")
def never_calls(fn, other=None):
    """A check that would start a long job before calling the learner's function."""
    raise AssertionError("the check ran although an answer is still the lab's stub")


def test_a_stub_is_not_solved_before_the_check_runs():
    def number_click(self, row, ctx):
        "Number each click within its session."
        raise NotImplementedError

    with pytest.raises(NotSolvedYet, match="NotImplementedError"):
        never_calls(number_click)
    with pytest.raises(NotSolvedYet, match="NotImplementedError"):
        never_calls(lambda: 1, other=number_click)
    assert grading.standings()["m99.l01.e3"].status == grading.TODO


def test_a_function_that_only_sometimes_raises_is_not_a_stub():
    def partial(x):
        if x is None:
            raise NotImplementedError
        return 1

    assert not grading._is_stub(partial)
    assert not grading._is_stub(lambda: 1)
    with pytest.raises(AssertionError, match="the check ran"):
        never_calls(partial)


def test_flip_from_not_solved_to_passed_is_recorded(capsys):
    with pytest.raises(NotSolvedYet):
        double(...)
    with pytest.raises(WrongAnswer):
        double(40)
    double(42)
    assert "Passed [m99.l01.e1]" in capsys.readouterr().out
    standing = grading.standings()["m99.l01.e1"]
    assert standing.status == grading.PASSED and standing.attempts == 3


def test_passed_stays_passed_after_a_later_wrong_attempt():
    double(42)
    with pytest.raises(WrongAnswer):
        double(1)
    assert grading.standings()["m99.l01.e1"].status == grading.PASSED


def test_try_answer_records_nothing():
    line = grading.try_answer(double, 40)
    assert line.startswith("Wrong answer [m99.l01.e1]")
    assert "m99.l01.e1" not in grading.standings()


def test_learner_code_turns_errors_into_one_line_wrong_answer():
    @grading.learner_code("your query")
    def run():
        raise ValueError("Parser Error: syntax error at or near SELEC\nLINE 1: ...")

    with pytest.raises(WrongAnswer, match="your query failed with ValueError: Parser Error") as caught:
        run()
    assert "LINE 1" not in caught.value.message


def test_unexpected_error_in_a_check_is_not_hidden():
    @exercise("m99.l01.e3")
    def buggy(answer):
        raise KeyError("bug in the check")

    with pytest.raises(KeyError):
        buggy(1)


def test_forget_clears_progress():
    double(42)
    grading.forget()
    assert grading.standings() == {}


def test_learner_code_errors_stay_short():
    @grading.learner_code("your producer")
    def run():
        raise ValueError("request " + "x" * 5000)

    with pytest.raises(WrongAnswer) as caught:
        run()
    assert len(caught.value.one_line()) < 400
    assert "your producer failed with ValueError: request xxx" in str(caught.value)
