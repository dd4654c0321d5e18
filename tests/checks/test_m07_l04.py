"""Checks of lab 07.04 (environments): right answers pass, realistic wrong ones are rejected with their own hint."""

from __future__ import annotations

import hashlib

import pytest

from delab.checks.m07 import l04_environments as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.iac import TofuError

# ---------------------------------------------------------------------------------------------- e1: prod's sizes

PROD_GOOD = """
sizing = {
  partitions         = 6
  retention_ms       = 604800000 # 7 days
  replication_factor = 1         # one broker here; 3 on a production cluster
  connection_limit   = 50
}
"""


@pytest.mark.stack
def test_sizing_accepts_the_right_answer():
    checks.prod_sizing_check(PROD_GOOD)


@pytest.mark.stack
def test_sizing_rejects_three_replicas_on_one_broker():
    with pytest.raises(WrongAnswer) as failed:
        checks.prod_sizing_check(PROD_GOOD.replace("replication_factor = 1", "replication_factor = 3"))
    assert "one broker" in failed.value.hint


@pytest.mark.stack
def test_sizing_rejects_retention_in_days():
    with pytest.raises(WrongAnswer) as failed:
        checks.prod_sizing_check(PROD_GOOD.replace("604800000", "7"))
    assert "milliseconds" in failed.value.hint


@pytest.mark.stack
def test_sizing_rejects_devs_values_copied():
    dev = PROD_GOOD.replace("= 6", "= 1").replace("604800000", "86400000").replace("= 50", "= 5")
    with pytest.raises(WrongAnswer, match="partitions") as failed:
        checks.prod_sizing_check(dev)
    assert "twice staging" in failed.value.hint


def test_sizing_rejects_a_password_in_the_var_file():
    with pytest.raises(WrongAnswer) as failed:
        checks.prod_sizing_check(PROD_GOOD + 'owner_password = "s3cret-prod-password"\n')
    assert "TF_VAR_owner_password" in failed.value.hint


def test_sizing_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.prod_sizing_check(...)


# ------------------------------------------------------------------------------------------ e2: secret variable

SECRET_GOOD = """
variable "owner_password" {
  type      = string
  sensitive = true
}
"""


def test_secret_accepts_the_right_answer():
    checks.secret_variable_check(SECRET_GOOD)


def test_secret_rejects_a_variable_printed_in_plans():
    with pytest.raises(WrongAnswer, match="in clear") as failed:
        checks.secret_variable_check(SECRET_GOOD.replace("  sensitive = true\n", ""))
    assert "sensitive" in failed.value.hint


def test_secret_rejects_a_default_in_code():
    with_default = SECRET_GOOD.replace("sensitive = true", 'sensitive = true\n  default   = "owner-secret-0123"')
    with pytest.raises(WrongAnswer, match="default") as failed:
        checks.secret_variable_check(with_default)
    assert "committed to git" in failed.value.hint


def test_secret_rejects_an_empty_default():
    with pytest.raises(WrongAnswer, match="default"):
        checks.secret_variable_check(SECRET_GOOD.replace("sensitive = true", 'sensitive = true\n  default   = ""'))


def test_secret_rejects_another_name():
    with pytest.raises(WrongAnswer) as failed:
        checks.secret_variable_check(SECRET_GOOD.replace("owner_password", "db_password"))
    assert "exactly that name" in failed.value.hint


# ------------------------------------------------------------------------------- e3: apply the reviewed plan


def apply_good(tofu, plan_file, reviewed_sha256):
    if hashlib.sha256(plan_file.read_bytes()).hexdigest() != reviewed_sha256:
        raise ValueError(f"{plan_file} is not the plan that was reviewed")
    tofu.apply(plan_file)


def apply_current_code(tofu, plan_file, reviewed_sha256):
    tofu.apply()  # plans the current code again


def apply_without_digest(tofu, plan_file, reviewed_sha256):
    tofu.apply(plan_file)


def apply_replan_when_stale(tofu, plan_file, reviewed_sha256):
    if hashlib.sha256(plan_file.read_bytes()).hexdigest() != reviewed_sha256:
        raise ValueError("not the reviewed plan")
    try:
        tofu.apply(plan_file)
    except TofuError:
        tofu.apply(tofu.plan())  # "heal" a stale plan: applies what nobody reviewed


def test_apply_accepts_the_right_answer():
    checks.apply_reviewed_check(apply_good)


def test_apply_rejects_replanning_the_current_code():
    with pytest.raises(WrongAnswer, match="after the review") as failed:
        checks.apply_reviewed_check(apply_current_code)
    assert "saved plan file" in failed.value.hint


def test_apply_rejects_a_swapped_plan_file():
    with pytest.raises(WrongAnswer, match="not the one reviewed") as failed:
        checks.apply_reviewed_check(apply_without_digest)
    assert "hash its bytes" in failed.value.hint


def test_apply_rejects_a_replan_after_a_stale_plan():
    with pytest.raises(WrongAnswer, match="stale") as failed:
        checks.apply_reviewed_check(apply_replan_when_stale)
    assert "never re-plan" in failed.value.hint


def test_apply_placeholder_is_not_solved():
    def stub(tofu, plan_file, reviewed_sha256):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.apply_reviewed_check(stub)


@pytest.mark.stack
def test_sizing_reads_quoted_numbers_without_crashing():
    quoted = PROD_GOOD.replace("partitions         = 6", 'partitions = "6"').replace("= 50", '= "15"')
    with pytest.raises(WrongAnswer, match="15 connections") as failed:
        checks.prod_sizing_check(quoted)
    assert "higher connection_limit" in failed.value.hint
