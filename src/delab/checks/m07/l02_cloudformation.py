"""Checks of lab 07.02 (CloudFormation on the moto emulator): a consumer stack importing the platform's exports
with a least-privilege policy, a change-set review that changes nothing, and drift found by comparing a template
with the live resource.

e1 and e2 run against the emulator (started if needed) on stacks of their own (``m07-l02-check-*``), recreated at
every run; e3 is a pure function checked on attribute sets shaped like SQS's answers.
"""

from __future__ import annotations

import json
from typing import Any

from delab.grading import WrongAnswer, exercise, learner_code
from delab.iac import cloudformation as cf

CHECK_PLATFORM = "m07-l02-check-platform"
CHECK_ANALYTICS = "m07-l02-check-analytics"


def _fresh_platform() -> dict[str, Any]:
    """The platform stack the checks work against, created anew (a learner's earlier attempt cannot leak in)."""
    cf.wait_ready()
    cf.delete(CHECK_ANALYTICS, CHECK_PLATFORM)
    return cf.deploy(CHECK_PLATFORM, cf.template_path("shop_platform").read_text(), {"Environment": "dev"})


# ------------------------------------------------------------------------- e1: a consumer stack with imports


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _grants(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, resource) pairs an IAM policy document allows."""
    pairs = set()
    for statement in _as_list(document.get("Statement", [])):
        if statement.get("Effect") == "Allow":
            for action in _as_list(statement.get("Action", [])):
                for resource in _as_list(statement.get("Resource", [])):
                    pairs.add((str(action), str(resource)))
    return pairs


def _lint_errors(template: str) -> list[dict[str, Any]]:
    return [f for f in cf.lint(template) if f["severity"] == "error"]


@learner_code("your template")
def _deploy_analytics(body: dict[str, Any]) -> dict[str, Any]:
    try:  # as JSON: cfn-lint's parser reads every YAML short form; the emulator's misreads some nested ones
        return cf.deploy(CHECK_ANALYTICS, json.dumps(body), {"PlatformStack": CHECK_PLATFORM})
    except cf.StackFailed as refused:
        hint = "export names are `<platform stack name>-RawBucketArn`: build the name with !Sub from the parameter."
        raise WrongAnswer(f"the emulator refused the stack: {refused}", hint=hint) from None


@exercise("m07.l02.e1")
def analytics_stack_check(template: str) -> None:
    """The analytics stack: lint-clean, takes ``PlatformStack``, imports the raw bucket's ARN, and grants exactly
    s3:GetObject on its objects and s3:ListBucket on the bucket."""
    if not isinstance(template, str) or not template.strip():
        raise WrongAnswer("give the template as a YAML (or JSON) string.")
    errors = _lint_errors(template)
    if errors:
        listed = "; ".join(f"{e['rule']} line {e['line']}: {e['message']}" for e in errors[:3])
        raise WrongAnswer(f"cfn-lint finds {len(errors)} error(s): {listed}", hint="fix them offline first: "
                          "`cloudformation.lint(analytics_template)` lists them with their lines.")  # fmt: skip
    try:
        body = cf.load(template)
    except ValueError as error:
        raise WrongAnswer(str(error)) from None
    if not isinstance(body, dict) or not isinstance(body.get("Parameters", {}), dict):
        raise WrongAnswer("the template is not a mapping with Parameters, Resources and Outputs sections.")
    if "PlatformStack" not in body.get("Parameters", {}):
        raise WrongAnswer("the template has no `PlatformStack` parameter.",
                          hint="the same template must serve dev and prod: take the platform stack's name as a "
                               "parameter and build the export names from it.")  # fmt: skip
    if "Fn::ImportValue" not in json.dumps(body):
        raise WrongAnswer("the template never imports an export (no Fn::ImportValue): the ARN is written in by hand.",
                          hint="a hard-coded ARN breaks as soon as the platform stack is deployed under another "
                               "name; import `${PlatformStack}-RawBucketArn`.")  # fmt: skip
    platform = _fresh_platform()
    bucket_arn = platform["Outputs"]["RawBucketArn"]
    stack = _deploy_analytics(body)
    policy_arns = [v for v in stack["Outputs"].values() if v.startswith("arn:aws:iam::") and ":policy/" in v]
    if not policy_arns:
        raise WrongAnswer("the stack has no output holding the managed policy's ARN.",
                          hint="add an output whose value is `!Ref` of the AWS::IAM::ManagedPolicy.")  # fmt: skip
    grants = set().union(*(_grants(cf.policy_document(arn)) for arn in policy_arns))
    _judge_grants(grants, bucket_arn)
    cf.delete(CHECK_ANALYTICS, CHECK_PLATFORM)


def _judge_grants(grants: set[tuple[str, str]], bucket_arn: str) -> None:
    objects = f"{bucket_arn}/*"
    if any("*" in action for action, _ in grants) or any(resource == "*" for _, resource in grants):
        raise WrongAnswer(f"the policy grants wildcards: {sorted(g for g in grants if '*' in g[0] or g[1] == '*')}",
                          hint="least privilege: name the actions the analysts need (read objects, list the "
                               "bucket) and the resources they apply to.")  # fmt: skip
    resources = {resource for _, resource in grants}
    if not resources & {bucket_arn, objects}:
        raise WrongAnswer(f"the policy names {sorted(resources)}, not the bucket the platform stack exports "
                          f"({bucket_arn}).", hint="import the ARN from the stack named by PlatformStack.")  # fmt: skip
    if ("s3:GetObject", bucket_arn) in grants and ("s3:GetObject", objects) not in grants:
        raise WrongAnswer("s3:GetObject is granted on the bucket's ARN, which matches no object.",
                          hint="object actions apply to object ARNs: the bucket's ARN followed by `/*`.")  # fmt: skip
    if ("s3:ListBucket", objects) in grants and ("s3:ListBucket", bucket_arn) not in grants:
        raise WrongAnswer("s3:ListBucket is granted on `<bucket>/*`, where it never applies.",
                          hint="listing is an action on the bucket itself: its ARN without `/*`.")  # fmt: skip
    missing = {("s3:GetObject", objects), ("s3:ListBucket", bucket_arn)} - grants
    if missing:
        raise WrongAnswer(f"the policy does not allow {sorted(missing)}.",
                          hint="analysts read objects and list the bucket: both are needed.")  # fmt: skip
    extra = sorted(grants - {("s3:GetObject", objects), ("s3:ListBucket", bucket_arn)})
    if extra:
        raise WrongAnswer(f"the policy allows more than reading the raw bucket: {extra}.",
                          hint="the analytics team only reads: no writes, deletes or other resources.")  # fmt: skip


# ------------------------------------------------------------------------- e2: review a change set


def changed_platform_template() -> str:
    """The platform template with one change of each kind: a property modified (OrdersQueue), a resource added
    (ClicksQueue) and one removed (LoaderRole, with its output)."""
    body = cf.load(cf.template_path("shop_platform").read_text())
    body["Resources"]["OrdersQueue"]["Properties"]["VisibilityTimeout"] = 120
    body["Resources"]["ClicksQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 30}}
    del body["Resources"]["LoaderRole"], body["Outputs"]["LoaderRoleArn"]
    return json.dumps(body, indent=1)


@learner_code("review_changes")
def _run_review(review_changes, client: Any, stack_name: str, template: str) -> Any:
    return review_changes(client, stack_name, template)


@exercise("m07.l02.e2")
def change_set_review_check(review_changes) -> None:
    """``review_changes(cfn, stack_name, template)`` returns {logical id: action} of an UPDATE change set and
    leaves the stack (and its list of change sets) as it found them."""
    _fresh_platform()
    client = cf.client("cloudformation")
    stack_id = client.describe_stacks(StackName=CHECK_PLATFORM)["Stacks"][0]["StackId"]
    before = client.get_template(StackName=CHECK_PLATFORM)["TemplateBody"]
    queue_url = cf.describe(CHECK_PLATFORM)["Outputs"]["OrdersQueueUrl"]
    answer = _run_review(review_changes, client, CHECK_PLATFORM, changed_platform_template())
    twins = [s for s in cf.live_stacks() if s["StackName"] == CHECK_PLATFORM]
    executed = client.get_template(StackName=CHECK_PLATFORM)["TemplateBody"] != before
    summaries = client.list_change_sets(StackName=CHECK_PLATFORM).get("Summaries", [])
    left = [s for s in summaries if s.get("StackId") == stack_id]  # the emulator lists every stack's change sets
    timeout = cf.queue_attributes(queue_url)["VisibilityTimeout"]
    cf.delete(CHECK_PLATFORM)
    expected = {"OrdersQueue": "Modify", "ClicksQueue": "Add", "LoaderRole": "Remove"}
    if not isinstance(answer, dict):
        raise WrongAnswer(f"review_changes returned a {type(answer).__name__}; return a dict {{logical id: action}}.")
    if len(twins) > 1 or (answer and {str(action) for action in answer.values()} == {"Add"}):
        raise WrongAnswer(f"every resource is listed as Add ({len(answer)} of them): the change set was made for a "
                          "new stack, not for the existing one.",
                          hint="on AWS, create_change_set defaults to ChangeSetType='UPDATE'; on the emulator the "
                               "default is CREATE. Say which one you mean.")  # fmt: skip
    if executed or timeout != "60":
        raise WrongAnswer("the stack was changed: the change set was executed during the review.",
                          hint="a review reads the change set and stops; execute_change_set comes later, after "
                               "someone approved it.")  # fmt: skip
    if answer != expected:
        raise WrongAnswer(f"review_changes returned {answer}.",
                          hint="one entry per Changes[*].ResourceChange: LogicalResourceId and Action.")  # fmt: skip
    if left:
        raise WrongAnswer(f"the review left {len(left)} change set(s) behind on the stack.",
                          hint="delete the change set once you read it (delete_change_set): stale change sets "
                               "pile up and someone may execute an old one.")  # fmt: skip


# ------------------------------------------------------------------------- e3: drift, template vs live


def _expected_drift(declared: dict[str, Any], live: dict[str, str]) -> dict[str, tuple[Any, Any]]:
    return {
        key: (value, live.get(key))
        for key, value in declared.items()
        if key not in live or str(live[key]).lower() != str(value).lower()
    }


def drift_cases() -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(declared properties, live attributes) pairs shaped like SQS's answers: strings, counters and defaults."""
    live = {
        "ApproximateNumberOfMessages": "12",
        "ApproximateNumberOfMessagesNotVisible": "0",
        "CreatedTimestamp": "1796569509.4",
        "DelaySeconds": "0",
        "MaximumMessageSize": "1048576",
        "MessageRetentionPeriod": "345600",
        "ReceiveMessageWaitTimeSeconds": "0",
        "SqsManagedSseEnabled": "true",
        "VisibilityTimeout": "60",
    }
    declared = {"VisibilityTimeout": 60, "MessageRetentionPeriod": 345600, "SqsManagedSseEnabled": True}
    drifted = live | {"VisibilityTimeout": "300", "ReceiveMessageWaitTimeSeconds": "0"}
    declared_more = declared | {"ReceiveMessageWaitTimeSeconds": 20, "DelaySeconds": 0}
    return [(declared, live), (declared, drifted), (declared_more, drifted | {"MessageRetentionPeriod": "86400"})]


@learner_code("queue_drift")
def _run_drift(queue_drift, declared: dict[str, Any], live: dict[str, str]) -> Any:
    return queue_drift(dict(declared), dict(live))


@exercise("m07.l02.e3")
def queue_drift_check(queue_drift) -> None:
    """``queue_drift(declared, live)`` returns {property: (declared value, live value)} for every property the
    template declares whose live value differs (SQS answers strings), and nothing else."""
    for declared, live in drift_cases():
        expected = _expected_drift(declared, live)
        answer = _run_drift(queue_drift, declared, live)
        if not isinstance(answer, dict):
            raise WrongAnswer(f"queue_drift returned a {type(answer).__name__}; return a dict.")
        answer = {key: tuple(value) if isinstance(value, list) else value for key, value in answer.items()}
        if answer == expected:
            continue
        undeclared = set(answer) - set(declared)
        if undeclared:
            raise WrongAnswer(f"reported as drift, but not declared by the template: {sorted(undeclared)}.",
                              hint="drift is a difference from what the template says; attributes it leaves to "
                                   "their defaults, and counters, are not part of it.")  # fmt: skip
        same_setting = {key for key in answer if key not in expected}
        if same_setting:
            example = sorted(same_setting)[0]
            raise WrongAnswer(f"{example} is reported as drifted, but the live value {live[example]!r} is the "
                              f"template's {declared[example]!r}.",
                              hint="SQS returns every attribute as a string (and booleans as 'true'): compare "
                                   "like with like.")  # fmt: skip
        swapped = {key: (b, a) for key, (a, b) in expected.items()}
        if answer == swapped:
            raise WrongAnswer("the pairs are (live, declared).", hint="give (what the template declares, what is "
                              "live now), the order drift reports use.")  # fmt: skip
        raise WrongAnswer(f"for live attributes with {sorted(expected) or 'no'} drifted properties, queue_drift "
                          f"returned {answer}.",
                          hint="one entry per declared property whose live value differs (or is missing).")  # fmt: skip
