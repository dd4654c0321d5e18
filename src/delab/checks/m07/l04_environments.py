"""Checks of lab 07.04 (environments): production's sizes, a secret variable, and applying exactly the reviewed plan.

Each check works in its own scratch folder under the lab folder (recreated every run: idempotent) and runs the
real tofu binary: e1 plans the project's ``environment`` module against the stack's Kafka and Postgres with the
learner's var file, e2 and e3 plan and apply ``terraform_data`` resources (no service needed).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Any

from delab.checks.m07 import scratch
from delab.grading import WrongAnswer, exercise
from delab.iac import Tofu, TofuError, module_source, tofu_command, write_root

LAB = "m07_l04"
DAY_MS = 86_400_000

#: what the lab gives staging; production's rules are stated relative to it
STAGING_SIZING = {"partitions": 3, "retention_ms": 3 * DAY_MS, "replication_factor": 1, "connection_limit": 20}
BROKERS = 1  # the lab's stack


def _scratch(name: str) -> Path:
    return scratch(LAB, name)


# --------------------------------------------------------------------------------------------- e1: prod's sizes

PROD_ROOT = """
variable "sizing" {{
  type = any
}}

module "platform" {{
  source           = "{source}"
  platform         = "{platform}"
  environment      = "prod"
  broker_count     = {brokers}
  streams          = {{ orders = {{}}, customers = {{ cleanup_policy = "compact" }} }}
  sizing           = var.sizing
  owner_password   = "check-owner-password"
  analyst_password = "check-analyst-password"
}}
"""


def _sizing_feedback(error: TofuError) -> WrongAnswer:
    """The module's own validation message (from tofu's whole output) with the matching hint."""
    text = " ".join(error.output.split()).lower()
    message = error.message
    if "more replicas than it has brokers" in text:
        return WrongAnswer(
            "the environment module refuses the plan: more replicas than brokers (replication_factor > broker_count).",
            hint="a topic cannot have more replicas than the cluster has brokers; this stack runs one broker "
            "(production clusters run three: there, replication_factor = 3 is the usual choice).",
        )
    if "retention_ms is in milliseconds" in text:
        return WrongAnswer(
            "the environment module refuses the plan: retention_ms below one minute.",
            hint="retention_ms counts milliseconds: one day is 86400000.",
        )
    if "separator" in text or "definition required" in text or "invalid expression" in text:
        return WrongAnswer(
            f"tofu cannot read the var file: {message}",
            hint="HCL object syntax: sizing = { partitions = 6, retention_ms = … } (one `key = value` per line or "
            "separated by commas).",
        )
    if "sizing" in text and ("attribute" in text or "object" in text or "required" in text):
        return WrongAnswer(
            f"tofu cannot use the var file: {message}",
            hint="sizing is one object with partitions, retention_ms, replication_factor and connection_limit.",
        )
    return WrongAnswer(f"tofu plan failed: {message}", hint="a var file holds `name = value` lines, HCL syntax.")


def _number(value: Any) -> float:
    """A var file's number (the root takes `sizing` as `any`: "6" may arrive as a string); 0 when not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


@exercise("m07.l04.e1")
def prod_sizing_check(prod_tfvars) -> None:
    """prod.tfvars sizes production: twice staging's partitions or more, 7 days of retention or more, as many
    replicas as the cluster has brokers, more connections than staging, and no secret in the file."""
    if not isinstance(prod_tfvars, str) or "sizing" not in prod_tfvars:
        raise WrongAnswer(
            "prod_tfvars should be the text of a var file that sets `sizing`.",
            hint="sizing = { partitions = …, retention_ms = …, replication_factor = …, connection_limit = … }",
        )
    if "password" in prod_tfvars.lower():
        raise WrongAnswer(
            "the var file sets a password: it would be committed with the sizes.",
            hint="sizes are code and go to git; secrets come from the environment (TF_VAR_owner_password) or a "
            "git-ignored file.",
        )
    folder = _scratch("prod_sizing")
    main = PROD_ROOT.format(source=module_source("environment", folder), platform=f"{LAB}chk", brokers=BROKERS)
    tofu = Tofu(write_root(folder, main, providers=("kafka", "postgresql"), files={"prod.auto.tfvars": prod_tfvars}))
    try:
        tofu.init()
        plan = tofu.plan()
    except TofuError as error:
        raise _sizing_feedback(error) from None
    given: Any = plan.json.get("variables", {}).get("sizing", {}).get("value") or {}
    sizing = {key: _number(given.get(key)) for key in STAGING_SIZING} if isinstance(given, dict) else {}
    staging = STAGING_SIZING
    if sizing.get("partitions", 0) < 2 * staging["partitions"]:
        raise WrongAnswer(
            f"prod gets {int(sizing.get('partitions', 0))} partitions per topic, staging {staging['partitions']}.",
            hint="prod takes the real traffic: at least twice staging's partitions (partitions bound how many "
            "consumers of a group read in parallel).",
        )
    if sizing.get("retention_ms", 0) != -1 and sizing.get("retention_ms", 0) < 7 * DAY_MS:
        raise WrongAnswer(
            f"prod keeps messages {int(sizing.get('retention_ms', 0))} ms, less than 7 days.",
            hint="prod keeps a week at least (7 * 86400000 ms), so a consumer down over a weekend can catch up.",
        )
    if sizing.get("replication_factor") != BROKERS:
        raise WrongAnswer(
            f"replication_factor {int(sizing.get('replication_factor', 0))}: prod wants all it can get.",
            hint=f"the most replicas this cluster can hold is its broker count ({BROKERS}).",
        )
    if sizing.get("connection_limit", 0) <= staging["connection_limit"]:
        raise WrongAnswer(
            f"prod's database accepts {int(sizing.get('connection_limit', 0))} connections, staging's "
            f"{staging['connection_limit']}.",
            hint="prod serves more clients than staging: give it a higher connection_limit (at most 200).",
        )


# ------------------------------------------------------------------------------------- e2: a secret variable

SECRET_ROOT = """
resource "terraform_data" "owner_role" {
  input = { name = "app_owner", password = var.owner_password }
}
"""


@exercise("m07.l04.e2")
def secret_variable_check(secret_variable) -> None:
    """the variable block for owner_password: a value from the environment, hidden in plans, no default."""
    if not isinstance(secret_variable, str) or "variable" not in secret_variable:
        raise WrongAnswer(
            "secret_variable should be the text of an HCL variable block.",
            hint='variable "owner_password" { … }',
        )
    if not re.search(r'variable\s+"owner_password"', secret_variable):
        raise WrongAnswer(
            "the block does not declare owner_password.",
            hint="the resources read var.owner_password: the block must declare exactly that name.",
        )
    folder = _scratch("secret_variable")
    write_root(folder, SECRET_ROOT, providers=(), files={"variables.tf": secret_variable})
    init = tofu_command("init", "-no-color", "-input=false", cwd=folder)
    if init.returncode != 0:
        raise WrongAnswer(f"tofu init: {_last_error(init)}", hint="check the block's HCL syntax.")
    secret = "chk-" + secrets.token_urlsafe(12)
    given = tofu_command(
        "plan", "-no-color", "-input=false", cwd=folder, env={"TF_VAR_owner_password": secret}
    )  # the value from the environment, as a CI job or a shell with a secret store would give it
    if given.returncode != 0:
        raise WrongAnswer(
            f"tofu plan with TF_VAR_owner_password set: {_last_error(given)}",
            hint="a string variable (type = string) takes its value from TF_VAR_owner_password.",
        )
    if secret in given.stdout + given.stderr:
        raise WrongAnswer(
            "the plan prints the password in clear (in CI logs, pull-request comments…).",
            hint="mark the variable sensitive: plans and outputs then show (sensitive value).",
        )
    unset = tofu_command("plan", "-no-color", "-input=false", cwd=folder)
    if unset.returncode == 0 or "no value for required variable" not in (unset.stdout + unset.stderr).lower():
        raise WrongAnswer(
            "without TF_VAR_owner_password the plan still runs: the block gives the secret a default.",
            hint="a default is code, committed to git (and an empty one creates a role without a real password); "
            "no default makes a missing secret stop the plan.",
        )


def _last_error(result) -> str:
    from delab.iac.tofu import _first_error

    return _first_error(result.stderr or result.stdout or "")


# ------------------------------------------------------------------------------- e3: apply the reviewed plan

RELEASE = """
resource "terraform_data" "stream" {{
  for_each = {streams}
  input    = each.value
}}
"""


def _release(streams: dict[str, str]) -> str:
    """main.tf of a release: one terraform_data per stream (stands for a topic)."""
    return RELEASE.format(streams="{ " + ", ".join(f'{name} = "{value}"' for name, value in streams.items()) + " }")


def _deployed(tofu: Tofu) -> dict[str, str]:
    """What the state holds: stream name -> its value."""
    resources = tofu.show().get("values", {}).get("root_module", {}).get("resources", [])
    return {item["index"]: item["values"]["input"] for item in resources}


V1 = {"orders": "3 partitions"}
V2 = {"orders": "3 partitions", "refunds": "3 partitions"}  # the reviewed change: a new stream
LATER = {"orders": "3 partitions", "refunds": "3 partitions", "returns": "3 partitions"}  # a later commit
SWAPPED = {"refunds": "3 partitions"}  # another plan written over the reviewed file: orders deleted
HOTFIX = {"orders": "6 partitions"}  # applied by someone else after the review


def _environment(name: str) -> tuple[Tofu, Path]:
    """A fresh environment at V1 with the V2 change planned and saved: (its Tofu, the plan file)."""
    folder = _scratch(f"promotion/{name}")
    tofu = Tofu(write_root(folder, _release(V1), providers=()))
    tofu.init()
    tofu.apply()
    (folder / "main.tf").write_text(_release(V2))
    return tofu, tofu.plan().path


def _refusal(fn, tofu: Tofu, plan_file: Path, digest: str) -> Exception | None:
    """Call the learner's function: the exception it raised (its refusal to apply), or None."""
    try:
        fn(tofu, plan_file, digest)
    except NotImplementedError:
        raise
    except Exception as error:  # any exception is a refusal; the check reads the state to judge it
        return error
    return None


@exercise("m07.l04.e3")
def apply_reviewed_check(apply_reviewed) -> None:
    """apply_reviewed applies exactly the reviewed plan file: not the current code, not a swapped file, and never
    a re-plan when OpenTofu refuses a stale plan."""
    # 1. reviewed, then a later commit lands before the apply: only the reviewed change may reach the environment
    tofu, plan_file = _environment("later_commit")
    digest = hashlib.sha256(plan_file.read_bytes()).hexdigest()
    (tofu.working_dir / "main.tf").write_text(_release(LATER))
    error = _refusal(apply_reviewed, tofu, plan_file, digest)
    if error is not None:
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise WrongAnswer(
            f"apply_reviewed refused a plan file whose digest matches the review ({type(error).__name__}: {first}).",
            hint="compare hashlib.sha256 of the file's bytes with reviewed_sha256, then apply that file.",
        )
    deployed = _deployed(tofu)
    if "returns" in deployed:
        raise WrongAnswer(
            "a commit made after the review reached the environment (stream 'returns').",
            hint="tofu.apply() without a plan plans the current code again; apply the saved plan file itself.",
        )
    if deployed != V2:
        raise WrongAnswer(f"the environment holds {sorted(deployed)}, not the reviewed change.", hint="apply it.")
    # 2. the reviewed file was overwritten by another plan: refuse it
    tofu, plan_file = _environment("swapped")
    digest = hashlib.sha256(plan_file.read_bytes()).hexdigest()
    (tofu.working_dir / "main.tf").write_text(_release(SWAPPED))
    tofu.plan()  # written over the reviewed file (same name), as a re-run CI job would
    (tofu.working_dir / "main.tf").write_text(_release(V2))
    refused = _refusal(apply_reviewed, tofu, plan_file, digest) is not None
    if not refused or _deployed(tofu) != V1:
        raise WrongAnswer(
            "apply_reviewed applied a plan file that is not the one reviewed (it deletes 'orders').",
            hint="the file may have changed since the review: hash its bytes and refuse (raise) on a mismatch.",
        )
    # 3. someone applied a hotfix after the plan was made: OpenTofu refuses the stale plan; so must the function
    tofu, plan_file = _environment("stale")
    digest = hashlib.sha256(plan_file.read_bytes()).hexdigest()
    (tofu.working_dir / "main.tf").write_text(_release(HOTFIX))
    tofu.apply()
    (tofu.working_dir / "main.tf").write_text(_release(V2))
    refused = _refusal(apply_reviewed, tofu, plan_file, digest) is not None
    if not refused or _deployed(tofu) != HOTFIX:
        raise WrongAnswer(
            "after OpenTofu refused the stale plan, something else was applied (the hotfix is gone).",
            hint="a stale plan needs a new plan and a new review: let the error propagate, never re-plan and apply.",
        )
