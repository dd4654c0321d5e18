"""Checks of lab 07.02 (CloudFormation on the moto emulator): right answers pass, realistic wrong ones are rejected
with their own hint. e1 and e2 deploy to the emulator, started once for this module through delab.servers."""

from __future__ import annotations

import pytest

from delab.checks.m07 import l02_cloudformation as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.iac import cloudformation as cf


@pytest.fixture(scope="module")
def emulator():
    server = cf.emulator(wait=True)
    yield server
    server.stop()


# ------------------------------------------------------------------------------------ e1: the analytics stack

ANALYTICS = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  PlatformStack: {Type: String}
Resources:
  ReadRaw:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Action: s3:GetObject
            Resource: !Sub ["${Arn}/*", {Arn: !ImportValue {"Fn::Sub": "${PlatformStack}-RawBucketArn"}}]
          - Effect: Allow
            Action: s3:ListBucket
            Resource: !ImportValue {"Fn::Sub": "${PlatformStack}-RawBucketArn"}
Outputs:
  PolicyArn: {Value: !Ref ReadRaw}
"""


def test_analytics_accepts_the_right_answer(emulator):
    checks.analytics_stack_check(ANALYTICS)


def test_analytics_rejects_get_object_on_the_bucket_arn(emulator):
    wrong = ANALYTICS.replace('!Sub ["${Arn}/*", {Arn: ', "").replace(
        '"${PlatformStack}-RawBucketArn"}}]', '"${PlatformStack}-RawBucketArn"}'
    )
    with pytest.raises(WrongAnswer, match="GetObject is granted on the bucket") as failed:
        checks.analytics_stack_check(wrong)
    assert "/*" in failed.value.hint


def test_analytics_rejects_a_wildcard_action(emulator):
    with pytest.raises(WrongAnswer, match="wildcards") as failed:
        checks.analytics_stack_check(ANALYTICS.replace("Action: s3:GetObject", "Action: s3:*"))
    assert "least privilege" in failed.value.hint


def test_analytics_rejects_a_hard_coded_arn(emulator):
    hard_coded = ANALYTICS.replace(
        '!ImportValue {"Fn::Sub": "${PlatformStack}-RawBucketArn"}', "arn:aws:s3:::m07-l02-platform-raw-dev"
    )
    with pytest.raises(WrongAnswer, match="never imports") as failed:
        checks.analytics_stack_check(hard_coded)
    assert "hard-coded" in failed.value.hint


def test_analytics_rejects_a_lint_error_before_deploying(emulator):
    with pytest.raises(WrongAnswer, match="cfn-lint finds") as failed:
        checks.analytics_stack_check(ANALYTICS.replace("AWS::IAM::ManagedPolicy", "AWS::IAM::ManagedPolicies"))
    assert "offline" in failed.value.hint


def test_analytics_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.analytics_stack_check(...)


# ------------------------------------------------------------------------------------ e2: change-set review


def review_good(cfn, stack_name, template):
    made = cfn.create_change_set(StackName=stack_name, ChangeSetName="review", TemplateBody=template,
                                 ChangeSetType="UPDATE")  # fmt: skip
    cfn.get_waiter("change_set_create_complete").wait(ChangeSetName=made["Id"], StackName=stack_name)
    changes = cfn.describe_change_set(ChangeSetName=made["Id"], StackName=stack_name)["Changes"]
    cfn.delete_change_set(ChangeSetName=made["Id"], StackName=stack_name)
    return {c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"]["Action"] for c in changes}


def review_without_type(cfn, stack_name, template):
    made = cfn.create_change_set(StackName=stack_name, ChangeSetName="review", TemplateBody=template)
    changes = cfn.describe_change_set(ChangeSetName=made["Id"])["Changes"]
    cfn.delete_change_set(ChangeSetName=made["Id"])
    return {c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"]["Action"] for c in changes}


def review_and_execute(cfn, stack_name, template):
    made = cfn.create_change_set(StackName=stack_name, ChangeSetName="review", TemplateBody=template,
                                 ChangeSetType="UPDATE")  # fmt: skip
    changes = cfn.describe_change_set(ChangeSetName=made["Id"])["Changes"]
    cfn.execute_change_set(ChangeSetName=made["Id"])
    return {c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"]["Action"] for c in changes}


def review_and_leave(cfn, stack_name, template):
    made = cfn.create_change_set(StackName=stack_name, ChangeSetName="review", TemplateBody=template,
                                 ChangeSetType="UPDATE")  # fmt: skip
    changes = cfn.describe_change_set(ChangeSetName=made["Id"])["Changes"]
    return {c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"]["Action"] for c in changes}


def test_review_accepts_the_right_answer(emulator):
    checks.change_set_review_check(review_good)


def test_review_rejects_a_change_set_without_its_type(emulator):
    with pytest.raises(WrongAnswer, match="listed as Add") as failed:
        checks.change_set_review_check(review_without_type)
    assert "ChangeSetType" in failed.value.hint


def test_review_rejects_executing_the_change_set(emulator):
    with pytest.raises(WrongAnswer, match="executed") as failed:
        checks.change_set_review_check(review_and_execute)
    assert "approved" in failed.value.hint


def test_review_rejects_a_change_set_left_behind(emulator):
    with pytest.raises(WrongAnswer, match="left 1 change set") as failed:
        checks.change_set_review_check(review_and_leave)
    assert "delete_change_set" in failed.value.hint


def test_review_placeholder_is_not_solved():
    def stub(cfn, stack_name, template):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.change_set_review_check(stub)


# ------------------------------------------------------------------------------------ e3: drift


def drift_good(declared, live):
    return {k: (v, live.get(k)) for k, v in declared.items() if str(v).lower() != str(live.get(k)).lower()}


def drift_raw_comparison(declared, live):
    return {k: (v, live.get(k)) for k, v in declared.items() if v != live.get(k)}


def drift_over_live_attributes(declared, live):
    return {k: (declared.get(k), v) for k, v in live.items() if str(declared.get(k)).lower() != v.lower()}


def drift_swapped(declared, live):
    return {k: (live.get(k), v) for k, v in declared.items() if str(v).lower() != str(live.get(k)).lower()}


def test_drift_accepts_the_right_answer():
    checks.queue_drift_check(drift_good)


def test_drift_rejects_comparing_numbers_with_strings():
    with pytest.raises(WrongAnswer, match="reported as drifted") as failed:
        checks.queue_drift_check(drift_raw_comparison)
    assert "string" in failed.value.hint


def test_drift_rejects_undeclared_attributes():
    with pytest.raises(WrongAnswer, match="not declared") as failed:
        checks.queue_drift_check(drift_over_live_attributes)
    assert "defaults" in failed.value.hint


def test_drift_rejects_swapped_pairs():
    with pytest.raises(WrongAnswer, match="live, declared"):
        checks.queue_drift_check(drift_swapped)


def test_drift_placeholder_is_not_solved():
    def stub(declared, live):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.queue_drift_check(stub)
