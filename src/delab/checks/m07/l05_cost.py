"""Checks of lab 07.05 (cost): a cost model over a plan's JSON, a tagging policy, and a budget gate.

All three are graded on the same two *real* plans, made once per kernel in a folder of their own under the lab
folder: release 1 of a small platform (topics on the stack's Kafka through the project's ``kafka_topics`` module,
and ``terraform_data`` stand-ins for a bucket and a database's storage) is applied, then release 2 is planned —
a topic grown, one created with three replicas (planned, never applied: the stack has one broker), one deleted,
stand-ins resized, re-tagged, added and removed — and so is the destroy of release 1. The folder and its state
are kept between runs, so applying release 1 again converges (idempotent).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from delab import config
from delab.grading import WrongAnswer, exercise
from delab.iac import Tofu, TofuError, cost, kafka_admin, module_source, write_root

LAB = "m07_l05"
PREFIX = "m07_l05chk"
DAY_MS = cost.DAY_MS

_TOPICS_V1 = {"events": (3, 3), "audit": (1, 30)}  # short name: (partitions, retention days), one replica
_TOPICS_V2 = {"events": (6, 3, 1), "clicks": (12, 2, 3)}  # + replication factor; audit is gone


def _topics_hcl(topics: Mapping[str, tuple[int, ...]]) -> str:
    lines = []
    for name, (partitions, days, *replicas) in topics.items():
        factor = f", replication_factor = {replicas[0]}" if replicas else ""
        lines.append(f"    {name} = {{ partitions = {partitions}, retention_ms = {days * DAY_MS}{factor} }}")
    return "{\n" + "\n".join(lines) + "\n  }"


def _stand_in(name: str, kind: str, gb: int, tags: Mapping[str, str] | None) -> str:
    tag_text = "" if tags is None else ", tags = {" + ", ".join(f'{k} = "{v}"' for k, v in tags.items()) + "}"
    return f'resource "terraform_data" "{name}" {{\n  input = {{ kind = "{kind}", gb = {gb}{tag_text} }}\n}}\n'


TAGS = {"owner": "data-platform", "cost_center": "cc-4711", "environment": "prod"}


def _release(version: int, source: str) -> str:
    topics = _TOPICS_V1 if version == 1 else _TOPICS_V2
    text = f'module "topics" {{\n  source = "{source}"\n  prefix = "{PREFIX}"\n  topics = {_topics_hcl(topics)}\n}}\n'
    no_cost_center = {k: v for k, v in TAGS.items() if k != "cost_center"}
    no_environment = {k: v for k, v in TAGS.items() if k != "environment"}
    if version == 1:
        text += _stand_in("lake_bucket", "object_storage", 200, TAGS)
        text += _stand_in("app_db_storage", "postgres_storage", 50, no_environment)
        text += _stand_in("old_exports", "object_storage", 80, None)
    else:
        text += _stand_in("lake_bucket", "object_storage", 500, no_cost_center)  # a tag dropped in an update
        text += _stand_in("app_db_storage", "postgres_storage", 100, TAGS)  # fixed by release 2
        text += _stand_in("scratch_bucket", "object_storage", 40, {**TAGS, "owner": ""})  # an empty owner
        text += _stand_in("temp_bucket", "object_storage", 10, None)  # no tags at all
    return text


def _forget_topics(timeout: float = 30.0) -> None:
    """Delete this check's topics from the stack's Kafka and wait until the broker no longer lists them."""
    names = [f"{PREFIX}.{name}" for name in {**_TOPICS_V1, **_TOPICS_V2}]
    kafka_admin.delete_topics(*names)
    deadline = time.monotonic() + timeout
    with kafka_admin.admin() as client:
        while set(names) & set(client.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.5)


@cache
def plans() -> tuple[dict[str, Any], dict[str, Any]]:
    """(release 2's plan, the destroy plan of release 1) as ``tofu show -json`` gives them; release 1 applied."""
    folder: Path = config.lab_dir(LAB) / "checks" / "platform"
    source = module_source("kafka_topics")
    tofu = Tofu(write_root(folder, _release(1, source), providers=("kafka",)))
    try:
        if not (folder / "terraform.tfstate").exists():
            _forget_topics()  # topics left by a state that is gone (a wiped lab folder): start from nothing
        tofu.init()
        tofu.apply()
        destroy = tofu.plan(destroy=True).json
        write_root(folder, _release(2, source), providers=("kafka",))
        change = tofu.plan().json
        write_root(folder, _release(1, source), providers=("kafka",))  # the folder describes what is applied
    except (TofuError, KafkaError, OSError) as error:
        raise WrongAnswer(
            f"the check could not plan its platform: {type(error).__name__}: {error}",
            hint="is the stack's Kafka running? `delab stack status` (then run the cell again).",
        ) from None
    return change, destroy


def _call(function: Callable[..., Any], *args: Any) -> Any:
    """Call the learner's function on copies of the plans; any exception becomes a one-line verdict (a check never
    crashes)."""
    try:
        return function(*copy.deepcopy(args))
    except cost.OverBudget:
        raise
    except Exception as error:  # the learner's code may raise anything
        name = type(error).__name__
        hint = "read the plan's values as they are in the JSON: resources being deleted have no `after` (null)"
        if isinstance(error, TypeError) and ("str" in str(error) or "can't multiply" in str(error)):
            hint = "values under `config` (retention.ms …) are strings in the plan: convert them with float()."
        raise WrongAnswer(f"your function raised {name}: {error}", hint=hint) from None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=0.005)


# ------------------------------------------------------------------------------------------ e1: the cost model


def _changes(plan_json: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {change["address"]: change for change in plan_json.get("resource_changes", [])}


@exercise("m07.l05.e1")
def cost_model_check(monthly_cost) -> None:
    """monthly_cost(plan_json, prices, gb_per_partition_day) prices every resource as it will be after the plan."""
    if not callable(monthly_cost):
        raise WrongAnswer(
            "monthly_cost should be a function.", hint="def monthly_cost(plan_json, prices, gb_per_partition_day): …"
        )
    prices, rate = cost.load_prices(), cost.GB_PER_PARTITION_DAY
    change, _ = plans()
    expected = cost.monthly_cost(change, prices, rate)
    given = _call(monthly_cost, change, prices, rate)
    if not isinstance(given, Mapping):
        raise WrongAnswer(
            f"monthly_cost returned {type(given).__name__}, not a dict.",
            hint="return {resource address: monthly USD}, e.g. {'module.topics.kafka_topic.this[\"events\"]': 12.3}",
        )
    changes = _changes(change)
    deleted = [a for a in given if a in changes and changes[a]["change"].get("after") is None and given[a]]
    if deleted:
        raise WrongAnswer(
            f"{', '.join(sorted(deleted))} cost(s) something after the plan, yet the plan deletes it.",
            hint="a resource whose actions are ['delete'] has `after` = null: it costs nothing once applied.",
        )
    missing = sorted(set(expected) - set(given))
    if missing:
        raise WrongAnswer(
            f"no cost for {', '.join(missing)}.",
            hint="price every kafka_topic and every terraform_data stand-in that exists after the plan "
            "(creates, updates and replacements alike).",
        )
    for address, value in expected.items():
        try:
            value_given = float(given[address])
        except (TypeError, ValueError):
            raise WrongAnswer(
                f"{address}: {given[address]!r} is not a number.", hint="costs are USD numbers."
            ) from None
        if _close(value_given, value):
            continue
        after = changes[address]["change"]["after"]
        if changes[address]["type"] == "kafka_topic":
            once = cost.topic_cost({**after, "replication_factor": 1}, prices, rate)
            in_ms = cost.topic_cost(after, prices, rate * DAY_MS)  # retention.ms taken as days
            if _close(value_given, once) and not _close(once, value):
                raise WrongAnswer(
                    f"{address}: ${value_given:,.2f}/month, the model says ${value:,.2f}.",
                    hint="storage is billed on every broker's disk: each of the replication_factor replicas is a "
                    "full copy of what the topic retains.",
                )
            if value_given > 100 * value or _close(value_given, in_ms):
                raise WrongAnswer(
                    f"{address}: ${value_given:,.2f}/month, the model says ${value:,.2f}.",
                    hint="retention.ms counts milliseconds: divide by 86400000 to get the days of writes retained.",
                )
        raise WrongAnswer(
            f"{address}: ${value_given:,.2f}/month, the model says ${value:,.2f}.",
            hint="partition-hours (partitions x 730 h x price) + retained GB (partitions x GB/partition/day x "
            "days) x replicas x storage price; stand-ins: gb x the price of their kind.",
        )


# --------------------------------------------------------------------------------------- e2: the tagging policy


@exercise("m07.l05.e2")
def tagging_policy_check(untagged) -> None:
    """untagged(plan_json, required) lists the taggable resources that lack a required tag after the plan."""
    if not callable(untagged):
        raise WrongAnswer("untagged should be a function.", hint="def untagged(plan_json, required): …")
    change, _ = plans()
    expected = cost.untagged(change, cost.REQUIRED_TAGS)
    given = _call(untagged, change, cost.REQUIRED_TAGS)
    if not isinstance(given, list | tuple | set) or not all(isinstance(a, str) for a in given):
        raise WrongAnswer("untagged should return a list of resource addresses.", hint="e.g. ['terraform_data.x']")
    given_set, expected_set = set(given), set(expected)
    if given_set == expected_set:
        return
    changes = _changes(change)
    if "terraform_data.app_db_storage" in given_set and "terraform_data.lake_bucket" not in given_set:
        raise WrongAnswer(
            "the policy judges the resources as they are today, not as the plan leaves them.",
            hint="read `change.after`: an update can remove a tag (and fix one), `before` is the old value.",
        )
    if any(a in changes and changes[a]["change"].get("after") is None for a in given_set):
        raise WrongAnswer(
            "the policy flags a resource this plan deletes.",
            hint="a deleted resource (after = null) will not exist: nothing to tag.",
        )
    if any(a in changes and changes[a]["type"] not in cost.TAG_PATHS for a in given_set):
        raise WrongAnswer(
            "the policy flags resources that cannot carry tags (Kafka topics have none).",
            hint="judge only the types that take tags (terraform_data here: input.tags); a topic's owner is "
            "told by its name's prefix.",
        )
    if "terraform_data.scratch_bucket" not in given_set:
        raise WrongAnswer(
            "a resource whose owner tag is an empty string passes your policy.",
            hint='a tag set to "" names no owner: require a non-empty value.',
        )
    if "terraform_data.temp_bucket" not in given_set:
        raise WrongAnswer(
            "a taggable resource with no tags at all passes your policy.",
            hint="no tags map means every required tag is missing: treat it as an empty map, not as a skip.",
        )
    extra, missed = sorted(given_set - expected_set), sorted(expected_set - given_set)
    raise WrongAnswer(
        f"flagged but compliant: {extra or 'none'}; missed: {missed or 'none'}.",
        hint="only resource types that take tags (terraform_data here: input.tags) are judged; each needs "
        "every required tag with a non-empty value after the plan.",
    )


# ----------------------------------------------------------------------------------------- e3: the budget gate


@exercise("m07.l05.e3")
def budget_gate_check(budget_gate) -> None:
    """budget_gate(plan_json, limit_usd) returns the monthly total after the plan and raises OverBudget above it."""
    if not callable(budget_gate):
        raise WrongAnswer("budget_gate should be a function.", hint="def budget_gate(plan_json, limit_usd): …")
    prices, rate = cost.load_prices(), cost.GB_PER_PARTITION_DAY
    change, destroy = plans()
    after = sum(cost.monthly_cost(change, prices, rate).values())
    today = sum(cost.current_monthly_cost(change, prices, rate).values())
    delta = after - today

    # 1. a generous limit: the plan passes and the gate says what the platform will cost
    try:
        total = _call(budget_gate, change, after * 1.5)
    except cost.OverBudget:
        raise WrongAnswer(
            f"the gate refuses a plan costing ${after:,.2f}/month under a ${after * 1.5:,.2f} limit.",
            hint="price the plan with monthly_cost (exercise 1) and compare the total after apply with the limit.",
        ) from None
    try:
        total = float(total)
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"the gate returned {total!r}.",
            hint="return the monthly total after the plan (a number) when it is within the budget.",
        ) from None
    if _close(total, delta) and not _close(delta, after):
        raise WrongAnswer(
            f"the gate returned ${total:,.2f}, what this plan adds; the platform will cost ${after:,.2f}/month.",
            hint="a budget caps the bill: the total after apply, not the change (small steps add up unseen).",
        )
    deleted = sum(
        cost.resource_cost(c["type"], c["change"].get("before"), prices, rate) or 0.0
        for c in change.get("resource_changes", [])
        if c["change"].get("after") is None
    )
    if _close(total, after + deleted):
        raise WrongAnswer(
            f"the gate returned ${total:,.2f}; without the resources this plan deletes it is ${after:,.2f}/month.",
            hint="resources being deleted cost nothing after the plan: price `after`, never `before`.",
        )
    if _close(total, today):
        raise WrongAnswer(
            f"the gate returned ${total:,.2f}, what runs today; after the plan it is ${after:,.2f}/month.",
            hint="price `after` values (resource_changes), not the prior state: the budget is for what you apply.",
        )
    if not _close(total, after):
        raise WrongAnswer(
            f"the gate returned ${total:,.2f}; the plan makes it ${after:,.2f}/month.",
            hint="sum monthly_cost(plan_json, PRICES, GB_PER_PARTITION_DAY) of exercise 1 (it must pass first).",
        )
    # 2. a limit between the change and the total: the plan must be stopped
    limit = (max(delta, today) + after) / 2
    try:
        _call(budget_gate, change, limit)
    except cost.OverBudget:
        pass
    else:
        raise WrongAnswer(
            f"the gate lets through a plan costing ${after:,.2f}/month under a ${limit:,.2f} budget.",
            hint="raise OverBudget when the total after apply is over the limit — returning False or printing "
            "does not stop a pipeline; the change alone may well be under it.",
        )
    # 3. tearing everything down costs nothing, whatever it cost before
    try:
        left = _call(budget_gate, destroy, 1.0)
    except cost.OverBudget:
        raise WrongAnswer(
            "the gate refuses a plan that destroys everything (it costs $0 after apply) under a $1 budget.",
            hint="resources being deleted cost nothing after the plan: price `after`, never `before`.",
        ) from None
    try:
        left_usd = float(left or 0)
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"the gate returned {left!r} for a destroy plan.", hint="return the total (a number)."
        ) from None
    if not _close(left_usd, 0.0):
        raise WrongAnswer(
            f"the gate says a destroy plan leaves ${left_usd:,.2f}/month.",
            hint="resources being deleted cost nothing after the plan.",
        )
