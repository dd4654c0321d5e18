"""delab.iac.Tofu.run: a provider that could not connect when it started is tried again; real failures are not."""

from __future__ import annotations

import pytest

from delab.iac import tofu


class Answers:
    """Stands in for python-terraform's command runner: hands out (code, stdout, stderr) in turn."""

    def __init__(self, *answers: tuple[int, str, str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def cmd(self, *args, **kwargs):
        self.calls += 1
        return self.answers.pop(0)


def runner(*answers: tuple[int, str, str]) -> tuple[tofu.Tofu, Answers]:
    fake = Answers(*answers)
    instance = tofu.Tofu.__new__(tofu.Tofu)
    instance._tf = fake
    return instance, fake


@pytest.fixture(autouse=True)
def no_pause(monkeypatch):
    monkeypatch.setattr(tofu.time, "sleep", lambda seconds: None)


def test_a_provider_that_could_not_connect_is_tried_again():
    run, fake = runner((1, "", "Error: kafka: broker not connected"), (0, "done", ""))
    assert run.run("destroy") == "done"
    assert fake.calls == 2


def test_a_real_failure_is_reported_at_once():
    run, fake = runner((1, "", "Error: Invalid reference\n\n  on main.tf line 3"), (0, "done", ""))
    with pytest.raises(tofu.TofuError, match="Invalid reference"):
        run.run("plan")
    assert fake.calls == 1


def test_three_connection_failures_are_reported():
    broken = (1, "", "Error: kafka: client has run out of available brokers to talk to")
    run, fake = runner(broken, broken, broken)
    with pytest.raises(tofu.TofuError, match="run out of available brokers"):
        run.run("apply")
    assert fake.calls == 3
