"""Checks of lab 07.01 (OpenTofu): right answers pass, realistic wrong ones are rejected with their own hint."""

from __future__ import annotations

import pytest

from delab.checks.m07 import l01_opentofu as checks
from delab.grading import NotSolvedYet, WrongAnswer

# ---------------------------------------------------------------------------------------------- e1: the guard


def guard_good(plan):
    return sorted(c["address"] for c in plan["resource_changes"] if "delete" in c["change"]["actions"])


def guard_only_pure_deletes(plan):
    return sorted(c["address"] for c in plan["resource_changes"] if c["change"]["actions"] == ["delete"])


def guard_first_action(plan):
    return sorted(c["address"] for c in plan["resource_changes"] if c["change"]["actions"][0] == "delete")


def guard_everything_changing(plan):
    return sorted(c["address"] for c in plan["resource_changes"] if c["change"]["actions"] != ["no-op"])


def test_guard_accepts_the_right_answer():
    checks.destructive_changes_check(guard_good)


def test_guard_rejects_missed_replacements():
    with pytest.raises(WrongAnswer) as failed:
        checks.destructive_changes_check(guard_only_pure_deletes)
    assert "['delete', 'create']" in failed.value.hint


def test_guard_rejects_create_before_destroy_missed():
    with pytest.raises(WrongAnswer) as failed:
        checks.destructive_changes_check(guard_first_action)
    assert "create_before_destroy" in failed.value.hint


def test_guard_rejects_updates_and_creates():
    with pytest.raises(WrongAnswer, match="flagged") as failed:
        checks.destructive_changes_check(guard_everything_changing)
    assert "in-place updates" in failed.value.hint


def test_guard_placeholder_is_not_solved():
    def stub(plan):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.destructive_changes_check(stub)


# ---------------------------------------------------------------------------------------------- e2: import


IMPORT_GOOD = """
import {
  to = module.topics.kafka_topic.this["legacy_clicks"]
  id = "m07_l01.legacy_clicks"
}
"""


@pytest.mark.stack
def test_import_accepts_the_right_block():
    checks.import_block_check(IMPORT_GOOD)


@pytest.mark.stack
def test_import_rejects_an_address_outside_the_module():
    wrong = IMPORT_GOOD.replace('module.topics.kafka_topic.this["legacy_clicks"]', "kafka_topic.legacy_clicks")
    with pytest.raises(WrongAnswer) as failed:
        checks.import_block_check(wrong)
    assert "module.<module name>" in failed.value.hint


@pytest.mark.stack
def test_import_rejects_the_short_name_as_id():
    wrong = IMPORT_GOOD.replace('"m07_l01.legacy_clicks"', '"legacy_clicks"')
    with pytest.raises(WrongAnswer) as failed:
        checks.import_block_check(wrong)
    assert "full name" in failed.value.hint


@pytest.mark.stack
def test_import_rejects_the_shell_command():
    command = "tofu import 'module.topics.kafka_topic.this[\"legacy_clicks\"]' m07_l01.legacy_clicks"
    with pytest.raises(WrongAnswer) as failed:
        checks.import_block_check(command)
    assert "shell command" in failed.value.hint


def test_import_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.import_block_check(...)


# ---------------------------------------------------------------------------------------------- e3: module tests

TESTS_GOOD = """
mock_provider "kafka" {}
variables {
  prefix = "team_a"
  topics = { clicks = { partitions = 2, retention_ms = 3600000 } }
}
run "names_and_retention" {
  command = plan
  assert {
    condition     = output.topic_names["clicks"] == "team_a.clicks"
    error_message = "names"
  }
  assert {
    condition     = kafka_topic.this["clicks"].config["retention.ms"] == "3600000"
    error_message = "retention"
  }
}
run "zero_partitions" {
  command = plan
  variables {
    topics = { clicks = { partitions = 0 } }
  }
  expect_failures = [var.topics]
}
"""


def test_module_tests_accept_the_right_answer():
    checks.module_tests_check(TESTS_GOOD)


def test_module_tests_reject_tests_that_miss_the_validation():
    only_names = TESTS_GOOD[: TESTS_GOOD.index('run "zero_partitions"')]
    with pytest.raises(WrongAnswer, match="0 partitions") as failed:
        checks.module_tests_check(only_names)
    assert "expect_failures" in failed.value.hint


def test_module_tests_reject_tests_that_miss_the_names():
    no_names = TESTS_GOOD.replace('output.topic_names["clicks"] == "team_a.clicks"', "length(output.topic_names) == 1")
    with pytest.raises(WrongAnswer, match="<prefix>-<name>"):
        checks.module_tests_check(no_names)


def test_module_tests_reject_tests_that_miss_the_retention():
    no_retention = TESTS_GOOD.replace('config["retention.ms"] == "3600000"', 'config["cleanup.policy"] == "delete"')
    with pytest.raises(WrongAnswer, match="retention_ms ignored"):
        checks.module_tests_check(no_retention)


def test_module_tests_reject_tests_that_fail_on_the_module():
    wrong = TESTS_GOOD.replace('"team_a.clicks"', '"team_a-clicks"')
    with pytest.raises(WrongAnswer, match="fail on the correct module"):
        checks.module_tests_check(wrong)
