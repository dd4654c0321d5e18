"""Checks of lab 07.05 (cost): right answers pass, realistic wrong ones are rejected with their own hint.

The checks grade on real plans (release 1 of a small platform applied to the stack's Kafka, release 2 and a
destroy planned), so most tests need the stack.
"""

from __future__ import annotations

import pytest

from delab.checks.m07 import l05_cost as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.iac import cost

DAY_MS = 86_400_000


def _retained_gb(after, rate, days_from_ms=lambda ms: ms / DAY_MS):
    retention = days_from_ms(float(after["config"]["retention.ms"]))
    return after["partitions"] * rate * retention


def good_cost(plan_json, prices, gb_per_partition_day):
    costs = {}
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"]
        if after is None:
            continue
        if change["type"] == "kafka_topic":
            stored = _retained_gb(after, gb_per_partition_day) * after["replication_factor"]
            costs[change["address"]] = (
                after["partitions"] * 730 * prices["kafka_partition_hour"] + stored * prices["kafka_storage_gb_month"]
            )
        elif change["type"] == "terraform_data":
            costs[change["address"]] = after["input"]["gb"] * prices[after["input"]["kind"] + "_gb_month"]
    return costs


def cost_replicas_once(plan_json, prices, gb_per_partition_day):
    costs = good_cost(plan_json, prices, gb_per_partition_day)
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"]
        if after and change["type"] == "kafka_topic":
            stored = _retained_gb(after, gb_per_partition_day)
            costs[change["address"]] = (
                after["partitions"] * 730 * prices["kafka_partition_hour"] + stored * prices["kafka_storage_gb_month"]
            )
    return costs


def cost_retention_as_days(plan_json, prices, gb_per_partition_day):
    costs = good_cost(plan_json, prices, gb_per_partition_day)
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"]
        if after and change["type"] == "kafka_topic":
            stored = _retained_gb(after, gb_per_partition_day, lambda ms: ms) * after["replication_factor"]
            costs[change["address"]] = (
                after["partitions"] * 730 * prices["kafka_partition_hour"] + stored * prices["kafka_storage_gb_month"]
            )
    return costs


def cost_deleted_priced(plan_json, prices, gb_per_partition_day):
    """Prices each resource from `after`, or from `before` when there is no after (a deleted resource)."""
    costs = {}
    for change in plan_json["resource_changes"]:
        values = change["change"]["after"] or change["change"]["before"]
        fake = {**plan_json, "resource_changes": [{**change, "change": {"after": values}}]}
        costs.update(good_cost(fake, prices, gb_per_partition_day))
    return costs


def cost_strings_unconverted(plan_json, prices, gb_per_partition_day):
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"]
        if after and change["type"] == "kafka_topic":
            after["config"]["retention.ms"] / DAY_MS  # a string: TypeError
    return {}


@pytest.mark.stack
def test_cost_accepts_the_right_answer():
    checks.cost_model_check(good_cost)


@pytest.mark.stack
def test_cost_rejects_replicas_counted_once():
    with pytest.raises(WrongAnswer, match="clicks") as failed:
        checks.cost_model_check(cost_replicas_once)
    assert "replica" in failed.value.hint


@pytest.mark.stack
def test_cost_rejects_retention_ms_taken_as_days():
    with pytest.raises(WrongAnswer) as failed:
        checks.cost_model_check(cost_retention_as_days)
    assert "86400000" in failed.value.hint


@pytest.mark.stack
def test_cost_rejects_deleted_resources_priced():
    with pytest.raises(WrongAnswer, match="deletes") as failed:
        checks.cost_model_check(cost_deleted_priced)
    assert "after` = null" in failed.value.hint


@pytest.mark.stack
def test_cost_turns_a_crash_into_a_hint():
    with pytest.raises(WrongAnswer, match="TypeError") as failed:
        checks.cost_model_check(cost_strings_unconverted)
    assert "strings" in failed.value.hint


@pytest.mark.stack
def test_cost_rejects_a_resource_left_out():
    def topics_only(plan_json, prices, gb_per_partition_day):
        costs = good_cost(plan_json, prices, gb_per_partition_day)
        return {address: usd for address, usd in costs.items() if "kafka_topic" in address}

    with pytest.raises(WrongAnswer, match="no cost for") as failed:
        checks.cost_model_check(topics_only)
    assert "terraform_data" in failed.value.hint


def test_cost_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.cost_model_check(...)


# ------------------------------------------------------------------------------------------------ e2: tagging


def good_untagged(plan_json, required):
    flagged = []
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"]
        if change["type"] != "terraform_data" or after is None:
            continue
        tags = after["input"].get("tags") or {}
        if any(not tags.get(key) for key in required):
            flagged.append(change["address"])
    return flagged


def untagged_from_before(plan_json, required):
    flagged = []
    for change in plan_json["resource_changes"]:
        before = change["change"]["before"]
        if change["type"] == "terraform_data" and before is not None:
            tags = before["input"].get("tags") or {}
            if any(not tags.get(key) for key in required):
                flagged.append(change["address"])
    return flagged


def untagged_key_present(plan_json, required):
    flagged = []
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"]
        tags = (after or {}).get("input", {}).get("tags") or {}
        if change["type"] == "terraform_data" and after is not None and any(key not in tags for key in required):
            flagged.append(change["address"])
    return flagged


def untagged_skips_untagged(plan_json, required):
    flagged = []
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"]
        tags = (after or {}).get("input", {}).get("tags")
        if change["type"] == "terraform_data" and tags is not None and any(not tags.get(k) for k in required):
            flagged.append(change["address"])
    return flagged


def untagged_flags_deleted(plan_json, required):
    flagged = []
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"] or {}
        if change["type"] == "terraform_data":
            tags = (after.get("input") or {}).get("tags") or {}
            if any(not tags.get(key) for key in required):
                flagged.append(change["address"])
    return flagged


def untagged_every_type(plan_json, required):
    flagged = []
    for change in plan_json["resource_changes"]:
        after = change["change"]["after"]
        if after is not None:
            tags = after.get("tags") or (after.get("input") or {}).get("tags") or {}
            if any(not tags.get(key) for key in required):
                flagged.append(change["address"])
    return flagged


@pytest.mark.stack
def test_tags_accept_the_right_answer():
    checks.tagging_policy_check(good_untagged)


@pytest.mark.stack
@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (untagged_from_before, "change.after"),
        (untagged_key_present, 'set to ""'),
        (untagged_skips_untagged, "empty map"),
        (untagged_flags_deleted, "nothing to tag"),
        (untagged_every_type, "prefix"),
    ],
)
def test_tags_reject_wrong_policies(wrong, hint):
    with pytest.raises(WrongAnswer) as failed:
        checks.tagging_policy_check(wrong)
    assert hint in failed.value.hint


# ------------------------------------------------------------------------------------------- e3: budget gate


def good_gate(plan_json, limit_usd):
    total = sum(good_cost(plan_json, cost.load_prices(), cost.GB_PER_PARTITION_DAY).values())
    if total > limit_usd:
        raise cost.OverBudget(f"${total:.2f} > ${limit_usd:.2f}")
    return total


def gate_on_delta(plan_json, limit_usd):
    prices = cost.load_prices()
    after = sum(good_cost(plan_json, prices, cost.GB_PER_PARTITION_DAY).values())
    delta = after - sum(cost.current_monthly_cost(plan_json, prices).values())
    if delta > limit_usd:
        raise cost.OverBudget(f"+${delta:.2f} > ${limit_usd:.2f}")
    return delta


def gate_on_todays_bill(plan_json, limit_usd):
    today = sum(cost.current_monthly_cost(plan_json, cost.load_prices()).values())
    if today > limit_usd:
        raise cost.OverBudget(f"${today:.2f} > ${limit_usd:.2f}")
    return today


def gate_returning_false(plan_json, limit_usd):
    total = sum(good_cost(plan_json, cost.load_prices(), cost.GB_PER_PARTITION_DAY).values())
    return total if total <= limit_usd else False


def gate_pricing_deleted(plan_json, limit_usd):
    total = sum(cost_deleted_priced(plan_json, cost.load_prices(), cost.GB_PER_PARTITION_DAY).values())
    if total > limit_usd:
        raise cost.OverBudget(f"${total:.2f} > ${limit_usd:.2f}")
    return total


@pytest.mark.stack
def test_gate_accepts_the_right_answer():
    checks.budget_gate_check(good_gate)


@pytest.mark.stack
@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (gate_on_delta, "not the change"),
        (gate_on_todays_bill, "prior state"),
        (gate_returning_false, "raise OverBudget"),
        (gate_pricing_deleted, "never `before`"),
    ],
)
def test_gate_rejects_wrong_gates(wrong, hint):
    with pytest.raises(WrongAnswer) as failed:
        checks.budget_gate_check(wrong)
    assert hint in failed.value.hint


def test_gate_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.budget_gate_check(...)
