"""CloudFormation for lab 07.02: templates linted offline (cfn-lint) and scanned (checkov), stacks deployed with
boto3 to **moto**, an AWS emulator running on loopback — never to AWS.

    server = cloudformation.emulator()             # started (and warmed) in the background, on port "moto"
    problems = cloudformation.lint(template_text)  # cfn-lint, offline
    server.wait_ready()
    stack = cloudformation.deploy("m07-l02-platform", template_text, {"Environment": "dev"})
    stack["Outputs"]                               # {"RawBucketArn": "arn:aws:s3:::...", ...}

What the emulator does differently from AWS (measured with moto 5.2.6; the lab says so where it matters):

- operations are synchronous: a stack is ``CREATE_COMPLETE`` when ``create_stack`` returns (AWS: poll or wait);
- a failure does **not** roll back: ``create_stack``/``update_stack`` raise, the stack stays ``CREATE_IN_PROGRESS``
  (AWS: ``ROLLBACK_COMPLETE``) and resources created before the failure remain;
- property values are barely validated (a ``VisibilityTimeout`` of 999999 is accepted; AWS refuses it) — cfn-lint
  catches those offline;
- ``create_change_set`` defaults to ``ChangeSetType=CREATE`` (AWS: ``UPDATE``), which lists every resource as
  ``Add``; change sets never carry ``Replacement`` or property details;
- ``detect_stack_drift`` and ``list_imports`` are not implemented (HTTP 500); a stack whose export is imported can
  still be deleted (AWS refuses);
- the state lives in the server's memory: it is gone when the server stops.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

from delab import config
from delab.servers import LocalServer, http_ok

REGION = "us-east-1"
# moto accepts any key pair; these are its documented placeholders, not secrets
_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_SERVER: LocalServer | None = None


class StackFailed(RuntimeError):
    """The emulator refused a stack operation; the message is CloudFormation's own."""

    def _render_traceback_(self) -> list[str]:
        return [f"StackFailed: {self}"]


def endpoint() -> str:
    """The emulator's URL (port ``moto`` of the table in delab.config, plus DELAB_PORT_OFFSET)."""
    return f"http://{config.HOST}:{config.port('moto')}"


def _answers() -> bool:
    return http_ok(f"{endpoint()}/moto-api/")


def emulator(*, wait: bool = False, timeout: float = 240.0) -> LocalServer:
    """The moto server of this kernel: started in the background on first call (``wait=True`` blocks until it
    answers). A server already answering on the port (another notebook's) is reused, and left running."""
    global _SERVER
    if _SERVER is None or not (_SERVER.running or _answers()):
        port = config.port("moto")
        argv = [sys.executable, "-m", "delab.iac.moto_server", "--port", str(port)]
        _SERVER = LocalServer("moto", argv, port=port, ready="/moto-api/", timeout=timeout)
        if not _answers():
            _SERVER.start()
    if wait:
        wait_ready()
    return _SERVER


def wait_ready() -> float:
    """Block until the emulator answers (starting it if needed); the seconds waited."""
    server = emulator() if _SERVER is None else _SERVER
    started = time.monotonic()
    if not _answers():
        server.wait_ready()
    return time.monotonic() - started


def warm_up_seconds() -> float | None:
    """How long this kernel's emulator took to import its CloudFormation backend (from its log); None if unknown."""
    if _SERVER is None:
        return None
    found = re.findall(r"backend imported in ([0-9.]+) s", _SERVER.logs(lines=200))
    return float(found[-1]) if found else None


def client(service: str) -> Any:
    """A boto3 client for ``service`` on the emulator (region us-east-1, moto's placeholder keys)."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint(), region_name=REGION, **_CREDENTIALS)


def reset() -> None:
    """Forget every resource of the emulator (moto's own reset endpoint)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint()}/moto-api/reset", method="POST"), timeout=30)


# ----------------------------------------------------------------------------------------------- templates


def template_path(name: str) -> Path:
    """A template of the project (infra/cloudformation/<name>.yaml)."""
    return config.project_root() / "infra" / "cloudformation" / f"{name}.yaml"


def load(template: str) -> dict[str, Any]:
    """A template's text (YAML with ``!Ref``/``!Sub``... or JSON) as a dict, tags as ``{"Fn::Sub": ...}``."""
    from cfnlint.decode import decode_str

    parsed, errors = decode_str(template)
    if errors or parsed is None:
        raise ValueError(f"not a template: {errors[0].message if errors else 'empty'}")
    return json.loads(json.dumps(parsed, default=str))  # plain dicts and strings, no decoder node types


def lint(template: str) -> list[dict[str, Any]]:
    """cfn-lint's findings on a template text, offline: rule id, severity, line and message of each."""
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    return [
        {"rule": m.rule.id, "severity": m.rule.severity, "line": m.linenumber, "message": m.message}
        for m in cfn_lint(template, config=ManualArgs(regions=[REGION]))
    ]


@cache
def checkov_bin() -> Path:
    """checkov lives in its own tool environment (.venv-checkov: it pins an older boto3 than the kernel)."""
    found = config.project_root() / ".venv-checkov" / "bin" / "checkov"
    if found.exists():
        return found
    on_path = shutil.which("checkov")
    if on_path is None:
        raise FileNotFoundError("checkov is not installed: run `make setup` (it builds .venv-checkov)")
    return Path(on_path)


def checkov(template_file: Path | str, *checks: str) -> list[dict[str, Any]]:
    """checkov's failed checks on one CloudFormation template (offline): check id, resource, name; ``checks``
    limits the scan to those ids."""
    import subprocess

    command = [str(checkov_bin()), "-f", str(template_file), "--framework", "cloudformation", "-o", "json"]
    command += ["--compact", "--quiet", "--skip-download", *(["--check", ",".join(checks)] if checks else [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(done.stdout or "{}")
    except json.JSONDecodeError as error:
        raise RuntimeError(f"checkov failed (exit {done.returncode}): {done.stderr.strip()[-300:]}") from error
    reports = report if isinstance(report, list) else [report]
    failed = [item for r in reports for item in r.get("results", {}).get("failed_checks", [])]
    return [{"check": f["check_id"], "resource": f["resource"], "name": f["check_name"]} for f in failed]


def checkov_in_background(template_file: Path | str, *checks: str) -> Future[list[dict[str, Any]]]:
    """``checkov(...)`` in a thread: most of its time is its own start-up, which can overlap other work."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="checkov")
    try:
        return pool.submit(checkov, template_file, *checks)
    finally:
        pool.shutdown(wait=False)


# ------------------------------------------------------------------------------------------------- stacks


def _call(operation: str, **kwargs: Any) -> Any:
    from botocore.exceptions import ClientError

    try:
        return getattr(client("cloudformation"), operation)(**kwargs)
    except ClientError as error:
        raise StackFailed(f"{operation}: {error.response['Error'].get('Message', error)}") from error


def _parameters(parameters: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in (parameters or {}).items()]


def live_stacks() -> list[dict[str, Any]]:
    """Summaries (StackId, StackName, StackStatus, CreationTime) of every stack not deleted, newest first.
    (``list_stacks``, not ``describe_stacks``: the emulator's describe of *all* stacks fails as soon as one of them
    has an output it cannot resolve — a stack whose creation failed, for instance.)"""
    summaries = _call("list_stacks")["StackSummaries"]
    alive = [s for s in summaries if s["StackStatus"] != "DELETE_COMPLETE"]
    return sorted(alive, key=lambda s: s["CreationTime"], reverse=True)


def exists(name: str) -> bool:
    """True when a stack of that name exists (and is not deleted)."""
    return any(s["StackName"] == name for s in live_stacks())


def describe(name: str) -> dict[str, Any]:
    """A stack's status, parameters and outputs (as a dict output key -> value)."""
    stack = _call("describe_stacks", StackName=name)["Stacks"][0]
    return {
        "StackName": stack["StackName"],
        "StackStatus": stack["StackStatus"],
        "Parameters": {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])},
        "Outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
    }


def deploy(name: str, template: str, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """Create the stack, or update it if it exists; ``describe`` of the result. StackFailed when refused."""
    if exists(name):
        try:
            _call("update_stack", StackName=name, TemplateBody=template, Parameters=_parameters(parameters))
        except StackFailed as refused:
            if "No updates are to be performed" not in str(refused):  # already as asked: nothing to do
                raise
    else:
        try:
            _call("create_stack", StackName=name, TemplateBody=template, Parameters=_parameters(parameters))
        except StackFailed as refused:
            # AWS would roll back (ROLLBACK_COMPLETE); the emulator leaves a half-made stack: remove it
            delete(name)
            raise StackFailed(f"{refused} (the half-made stack was deleted: the emulator does not roll back)") from None
    return describe(name)


def delete(*names: str) -> None:
    """Delete stacks, every one of each name (give importers before exporters); missing ones are skipped."""
    for name in names:
        for stack in live_stacks():
            if stack["StackName"] == name:  # by id: a CREATE change set can leave a twin under the same name
                _call("delete_stack", StackName=stack["StackId"])


def delete_prefixed(prefix: str) -> list[str]:
    """Delete every live stack whose name starts with ``prefix`` (newest first, so importers go before exporters)."""
    names = list(dict.fromkeys(s["StackName"] for s in live_stacks() if s["StackName"].startswith(prefix)))
    delete(*names)
    return names


def resources(name: str) -> dict[str, dict[str, str]]:
    """A stack's resources: logical id -> type, physical id, status."""
    listed = _call("describe_stack_resources", StackName=name)["StackResources"]
    return {
        r["LogicalResourceId"]: {
            "type": r["ResourceType"],
            "physical_id": r["PhysicalResourceId"],
            "status": r["ResourceStatus"],
        }
        for r in listed
    }


def exports() -> dict[str, str]:
    """Every export of the region: name -> value."""
    return {e["Name"]: e["Value"] for e in _call("list_exports")["Exports"]}


def events(name: str, limit: int = 10) -> list[str]:
    """The stack's latest events, oldest first, as "STATUS logical-id (reason)"."""
    listed = _call("describe_stack_events", StackName=name)["StackEvents"][:limit]
    return [
        f"{e['ResourceStatus']} {e['LogicalResourceId']}"
        + (f" ({e['ResourceStatusReason']})" if e.get("ResourceStatusReason") else "")
        for e in reversed(listed)
    ]


def policy_document(policy_arn: str) -> dict[str, Any]:
    """The default version's document of an IAM managed policy (as a dict)."""
    iam = client("iam")
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]["Document"]
    return json.loads(document) if isinstance(document, str) else document


def queue_attributes(queue_url: str) -> dict[str, str]:
    """Every attribute SQS reports for a queue (values are strings, as the API returns them)."""
    return client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]


def declared_properties(template: str, logical_id: str, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The properties a template declares for one resource, with literal values only: intrinsic functions
    (``!GetAtt``, ``!Sub`` ...) are resolved here only for ``!If`` on a condition that compares a parameter
    (``!Equals [!Ref P, value]``), which is what the lab's templates use; other intrinsics are left out."""
    body = load(template)
    values = {k: v.get("Default") for k, v in body.get("Parameters", {}).items()} | dict(parameters or {})
    conditions = {name: _condition(spec, values) for name, spec in body.get("Conditions", {}).items()}
    declared = body["Resources"][logical_id].get("Properties", {})
    resolved = {key: _literal(value, conditions) for key, value in declared.items()}
    return {key: value for key, value in resolved.items() if value is not _INTRINSIC}


_INTRINSIC = object()


def _condition(spec: Any, values: dict[str, Any]) -> bool | None:
    if isinstance(spec, dict) and set(spec) == {"Fn::Equals"}:
        left, right = (values.get(x["Ref"]) if isinstance(x, dict) and "Ref" in x else x for x in spec["Fn::Equals"])
        return str(left) == str(right)
    return None


def _literal(value: Any, conditions: dict[str, bool | None]) -> Any:
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        name, if_true, if_false = value["Fn::If"]
        if conditions.get(name) is None:
            return _INTRINSIC
        return _literal(if_true if conditions[name] else if_false, conditions)
    if isinstance(value, dict) and any(key == "Ref" or key.startswith("Fn::") for key in value):
        return _INTRINSIC
    if isinstance(value, dict):
        inner = {k: _literal(v, conditions) for k, v in value.items()}
        return _INTRINSIC if _INTRINSIC in inner.values() else inner
    if isinstance(value, list):
        items = [_literal(v, conditions) for v in value]
        return _INTRINSIC if _INTRINSIC in items else items
    return value
