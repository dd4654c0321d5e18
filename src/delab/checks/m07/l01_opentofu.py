"""Checks of lab 07.01 (OpenTofu on the real stack): a plan guard, an import block and module tests.

Each check works in its own scratch folder under the lab folder (fresh state every run, so it is idempotent) and
runs the real tofu binary: plans of real configurations, an import of a topic that really exists on the stack's
Kafka, and ``tofu test`` of the learner's test file against the project's module and against broken copies of it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from delab.checks.m07 import scratch
from delab.grading import WrongAnswer, exercise, learner_code
from delab.iac import Tofu, TofuError, kafka_admin, module_source, modules_dir, write_root

LAB = "m07_l01"


def _scratch(name: str) -> Path:
    return scratch(LAB, name)


# ------------------------------------------------------------------------------------- e1: a destructive-plan guard

_BEFORE = """
resource "terraform_data" "settings" {
  input = { retention_days = 7 }
}
resource "terraform_data" "topic_orders" {
  triggers_replace = ["orders", 3]
}
resource "terraform_data" "topic_refunds" {
  triggers_replace = ["refunds", 1]
  lifecycle {
    create_before_destroy = true
  }
}
resource "terraform_data" "topic_legacy" {
  input = "legacy"
}
"""

# settings: updated in place; orders: replaced (delete, then create); refunds: replaced create-first;
# legacy: deleted; payments: created
_AFTER = """
resource "terraform_data" "settings" {
  input = { retention_days = 3 }
}
resource "terraform_data" "topic_orders" {
  triggers_replace = ["orders", 6]
}
resource "terraform_data" "topic_refunds" {
  triggers_replace = ["refunds", 2]
  lifecycle {
    create_before_destroy = true
  }
}
resource "terraform_data" "topic_payments" {
  input = "payments"
}
"""


def destructive_plan() -> dict[str, Any]:
    """A real plan (tofu show -json) that updates, creates, deletes and replaces (both orders) resources."""
    folder = _scratch("destructive")
    tofu = Tofu(write_root(folder, _BEFORE, providers=()))
    tofu.init()
    tofu.apply()
    (folder / "main.tf").write_text(_AFTER)
    return tofu.plan().json


def _expected_destructive(plan: dict[str, Any]) -> list[str]:
    return sorted(
        change["address"] for change in plan.get("resource_changes", []) if "delete" in change["change"]["actions"]
    )


@learner_code("destructive_changes")
def _run_destructive(fn, plan):
    return fn(plan)


@exercise("m07.l01.e1")
def destructive_changes_check(destructive_changes) -> None:
    """destructive_changes finds every resource a plan deletes, replacements in both orders included."""
    plan = destructive_plan()
    want = _expected_destructive(plan)
    got = _run_destructive(destructive_changes, plan)
    if not isinstance(got, list | tuple | set) or not all(isinstance(item, str) for item in got):
        raise WrongAnswer(
            f"destructive_changes returned {type(got).__name__}, not a list of resource addresses.",
            hint="return the 'address' of each entry of plan['resource_changes'] you flag.",
        )
    got = sorted(got)
    if got == want:
        return
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if "terraform_data.topic_orders" in missing:
        raise WrongAnswer(
            f"missed {', '.join(missing)}.",
            hint="a replacement shows up as two actions, ['delete', 'create']: the old object is destroyed too.",
        )
    if "terraform_data.topic_refunds" in missing:
        raise WrongAnswer(
            f"missed {', '.join(missing)}.",
            hint="a resource with create_before_destroy is replaced as ['create', 'delete']: the delete comes "
            "second, but it is still a delete.",
        )
    if extra:
        raise WrongAnswer(
            f"flagged {', '.join(extra)}, which the plan does not destroy.",
            hint="creates and in-place updates ('update') keep the existing object: only 'delete' loses data.",
        )
    raise WrongAnswer(f"expected {want}, got {got}.", hint="look at change['change']['actions'] of each entry.")


# ----------------------------------------------------------------------------------------------- e2: an import


def legacy_topic() -> str:
    """The topic 'created by hand' that exercise 2 imports (same settings as in the lab's configuration)."""
    return f"{LAB}.legacy_clicks"


LEGACY_PARTITIONS, LEGACY_RETENTION_MS = 2, 86_400_000


def create_legacy_topic() -> str:
    """Create the hand-made topic on the stack's Kafka if it is missing (what a colleague did in a console)."""
    kafka_admin.create_topic(legacy_topic(), LEGACY_PARTITIONS, {"retention.ms": str(LEGACY_RETENTION_MS)})
    return legacy_topic()


IMPORT_ROOT = """
module "topics" {{
  source = "{source}"
  prefix = "{prefix}"
  topics = {{
    legacy_clicks = {{ partitions = {partitions}, retention_ms = {retention} }}
  }}
}}
"""


def import_root(import_block: str, folder: Path) -> Path:
    """The lab's configuration that adopts the hand-made topic, plus the learner's import block."""
    main = IMPORT_ROOT.format(
        source=module_source("kafka_topics"), prefix=LAB, partitions=LEGACY_PARTITIONS, retention=LEGACY_RETENTION_MS
    )
    return write_root(folder, main, files={"imports.tf": import_block})


def _import_feedback(message: str) -> WrongAnswer:
    """Turn tofu's complaint about an import block into a verdict with the matching hint."""
    text = message.lower()
    if "does not exist in the configuration" in text or "configuration for import target" in text:
        return WrongAnswer(
            f"tofu plan: {message}",
            hint="a resource made by a module is addressed module.<module name>.<type>.<name>[<for_each key>]; "
            "`tofu state list` after an apply shows addresses of that shape.",
        )
    if "non-existent" in text or "cannot import" in text or "not found" in text:
        return WrongAnswer(
            f"tofu plan: {message}", hint="the id is what the provider looks up on the cluster: the topic's full name."
        )
    if "argument or block definition required" in text or "invalid" in text or "unsupported" in text:
        return WrongAnswer(
            f"tofu cannot read the block: {message}",
            hint="`tofu import ADDRESS ID` is the older shell command; here write the HCL block "
            "import { to = …, id = … } that goes into a .tf file.",
        )
    return WrongAnswer(f"tofu plan failed: {message}", hint="run tofu plan on the lab's folder to see it all.")


@exercise("m07.l01.e2")
def import_block_check(import_block) -> None:
    """the import block adopts the hand-made topic into the module's state: the plan imports it and changes nothing."""
    if not isinstance(import_block, str) or "import" not in import_block:
        raise WrongAnswer(
            "import_block should be the text of an HCL import block.",
            hint='import { to = <resource address>, id = "<the provider\'s id>" }',
        )
    create_legacy_topic()
    tofu = Tofu(import_root(import_block, _scratch("import")))
    try:
        tofu.init()
        plan = tofu.plan()
    except TofuError as error:
        raise _import_feedback(error.message) from None
    address = 'module.topics.kafka_topic.this["legacy_clicks"]'
    change = next((c for c in plan.json.get("resource_changes", []) if c["address"] == address), None)
    if change is None:
        raise WrongAnswer("the plan does not mention the topic at all.", hint="is the import block in the file?")
    actions = change["change"]["actions"]
    if "create" in actions:
        raise WrongAnswer(
            f"the plan would create {address} ({actions}) instead of adopting the existing topic.",
            hint="an import block whose `to` is that very address makes the plan read the topic instead.",
        )
    if not change["change"].get("importing"):
        raise WrongAnswer("the plan does not import the topic.", hint="the block is `import { to = …, id = … }`.")


# ------------------------------------------------------------------------------------------ e3: module tests


def _mutant(name: str, folder: Path) -> Path:
    """A copy of the kafka_topics module with one bug (``name``), or an exact copy for 'correct'."""
    source = modules_dir() / "kafka_topics"
    target = folder / name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".terraform*", "tests", "*.tfstate*"))
    main, variables = target / "main.tf", target / "variables.tf"
    if name == "dash_names":  # topics named <prefix>-<name>
        text = main.read_text()
        main.write_text(text.replace('"${var.prefix}.${name}"', '"${var.prefix}-${name}"'))
    elif name == "no_partition_check":  # the partitions validation removed
        text = variables.read_text()
        start = text.index("  validation {\n    condition     = alltrue([for t in values(var.topics) : t.partitions")
        end = text.index("  }\n", start) + len("  }\n")
        variables.write_text(text[:start] + text[end:])
    elif name == "retention_ignored":  # retention.ms not passed to the topic
        text = main.read_text()
        main.write_text(
            text.replace('"retention.ms"   = tostring(each.value.retention_ms)', '"retention.ms" = "604800000"')
        )
    return target


MUTANTS = {
    "dash_names": "topics named <prefix>-<name> instead of <prefix>.<name>",
    "no_partition_check": "no validation of partitions: a topic with 0 partitions is accepted",
    "retention_ignored": "retention_ms ignored: every topic keeps 7 days",
}


def run_module_tests(test_file: str, module: Path) -> tuple[bool, str]:
    """Run one .tftest.hcl file against a module folder: (passed, output)."""
    tests = module / "tests"
    shutil.rmtree(tests, ignore_errors=True)
    tests.mkdir()
    (tests / "learner.tftest.hcl").write_text(test_file)
    tofu = Tofu(module)
    try:  # init reads the test files too: a syntax error in them fails here
        tofu.init()
        return tofu.test()
    except TofuError as error:
        return False, error.message


@exercise("m07.l01.e3")
def module_tests_check(module_tests) -> None:
    """the tests pass on the kafka_topics module and fail on each of its three broken copies."""
    if not isinstance(module_tests, str) or "run" not in module_tests:
        raise WrongAnswer(
            "module_tests should be the text of a .tftest.hcl file with run blocks.",
            hint='mock_provider "kafka" {} then run "…" { command = plan … assert { … } }',
        )
    folder = _scratch("module_tests")
    passed, output = run_module_tests(module_tests, _mutant("correct", folder))
    if not passed:
        failure = next((line.strip() for line in output.splitlines() if "Error" in line or "fail" in line), "")
        raise WrongAnswer(
            f"your tests fail on the correct module: {failure[:200]}",
            hint="run `tofu test` in a copy of the module to see why; a plan needs every required variable.",
        )
    for mutant, bug in MUTANTS.items():
        passed, _ = run_module_tests(module_tests, _mutant(mutant, folder))
        if passed:
            raise WrongAnswer(
                f"your tests still pass on a broken module: {bug}.",
                hint={
                    "dash_names": "assert on the names the module gives its topics (an output or the resource's name).",
                    "no_partition_check": "a run block with bad variables and expect_failures = [var.topics] "
                    "proves the validation exists.",
                    "retention_ignored": "assert that a retention you pass reaches the topic's config.",
                }[mutant],
            )
