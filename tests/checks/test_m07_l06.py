"""Checks of lab 07.06 (security as code): right answers pass, realistic wrong ones are rejected with their own hint.

They run against real services: the secured broker (started once for the module, stopped at its end), the stack's
Postgres and object store, and checkov.
"""

from __future__ import annotations

import pytest

from delab.checks.m07 import l06_security as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.iac import module_source, secure_kafka

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def secured_broker():
    secure_kafka.start()
    yield
    secure_kafka.stop()


# -------------------------------------------------------------------------------------------- e1: Kafka ACLs


def topics_block(writers: str, readers: str) -> str:
    return f"""
module "orders_topics" {{
  source  = "{module_source("kafka_topics")}"
  prefix  = var.prefix
  topics  = {{ orders = {{ partitions = 1 }} }}
  writers = {writers}
  readers = {readers}
}}
"""


def test_acls_accept_the_right_answer(secured_broker):
    checks.kafka_acls_check(topics_block('["User:orders_app"]', '["User:analytics"]'))


def test_acls_reject_a_reader_that_can_write(secured_broker):
    with pytest.raises(WrongAnswer, match="analytics could produce") as failed:
        checks.kafka_acls_check(topics_block('["User:orders_app", "User:analytics"]', '["User:analytics"]'))
    assert "least privilege" in failed.value.hint


def test_acls_reject_no_grants(secured_broker):
    with pytest.raises(WrongAnswer, match="orders_app could not produce") as failed:
        checks.kafka_acls_check(topics_block("[]", "[]"))
    assert "writers" in failed.value.hint


def test_acls_reject_swapped_roles(secured_broker):
    with pytest.raises(WrongAnswer, match="orders_app could not produce"):
        checks.kafka_acls_check(topics_block('["User:analytics"]', '["User:orders_app"]'))


def test_acls_reject_a_hard_coded_prefix(secured_broker):
    with pytest.raises(WrongAnswer, match="not var") as failed:
        checks.kafka_acls_check(
            topics_block('["User:orders_app"]', '["User:analytics"]').replace("var.prefix", '"m07_l06_mine"')
        )
    assert "var.prefix" in failed.value.hint


def test_acls_reject_another_topic_name(secured_broker):
    with pytest.raises(WrongAnswer, match="no topic") as failed:
        checks.kafka_acls_check(
            topics_block('["User:orders_app"]', '["User:analytics"]').replace("orders = {", "order_events = {")
        )
    assert "name the topic orders" in failed.value.hint


def test_acls_reject_a_wildcard_reader(secured_broker):
    with pytest.raises(WrongAnswer, match="intruder") as failed:
        checks.kafka_acls_check(topics_block('["User:orders_app"]', '["User:*"]'))
    assert "User:*" in failed.value.hint


# -------------------------------------------------------------------------------- e2: least-privilege grants


def grants_good(schema, role):
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}",
    ]


def test_grants_accept_the_right_answer():
    checks.least_privilege_check(grants_good)


def test_grants_reject_select_without_usage():
    with pytest.raises(WrongAnswer, match="could not read orders") as failed:
        checks.least_privilege_check(lambda schema, role: grants_good(schema, role)[1:])
    assert "USAGE" in failed.value.hint


def test_grants_reject_all_privileges():
    with pytest.raises(WrongAnswer, match="could insert") as failed:
        checks.least_privilege_check(lambda s, r: [x.replace("SELECT", "ALL") for x in grants_good(s, r)])
    assert "least privilege" in failed.value.hint


def test_grants_reject_missing_default_privileges():
    with pytest.raises(WrongAnswer, match="refunds") as failed:
        checks.least_privilege_check(lambda schema, role: grants_good(schema, role)[:2])
    assert "ALTER DEFAULT PRIVILEGES" in failed.value.hint


def test_grants_reject_sql_postgres_refuses():
    with pytest.raises(WrongAnswer, match="refused"):
        checks.least_privilege_check(lambda schema, role: [f"GRANT READ ON {schema} TO {role}"])


def test_grants_placeholder_is_not_solved():
    def stub(schema, role):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.least_privilege_check(stub)


# --------------------------------------------------------------------------------------- e3: state encryption

ENCRYPTION_GOOD = """
terraform {
  encryption {
    key_provider "pbkdf2" "main" {
      passphrase = var.state_passphrase
    }
    method "aes_gcm" "main" {
      keys = key_provider.pbkdf2.main
    }
    state {
      method   = method.aes_gcm.main
      enforced = true
    }
    plan {
      method   = method.aes_gcm.main
      enforced = true
    }
  }
}
"""
STATE_BLOCK = """    state {
      method   = method.aes_gcm.main
      enforced = true
    }
"""


def test_encryption_accepts_the_right_answer():
    checks.state_encryption_check(ENCRYPTION_GOOD)


def test_encryption_rejects_plans_only():
    with pytest.raises(WrongAnswer, match="plain JSON") as failed:
        checks.state_encryption_check(ENCRYPTION_GOOD.replace(STATE_BLOCK, ""))
    assert "plans only" in failed.value.hint


def test_encryption_rejects_a_method_nothing_uses():
    unused = ENCRYPTION_GOOD.replace(STATE_BLOCK, "").split("    plan {")[0] + "  }\n}\n"
    with pytest.raises(WrongAnswer, match="plain JSON") as failed:
        checks.state_encryption_check(unused)
    assert "only define how" in failed.value.hint


def test_encryption_rejects_a_passphrase_in_the_code():
    with pytest.raises(WrongAnswer, match="written in the configuration") as failed:
        checks.state_encryption_check(ENCRYPTION_GOOD.replace("var.state_passphrase", '"correct-horse-battery"'))
    assert "var.state_passphrase" in failed.value.hint


# ------------------------------------------------------------------------------------------ e4: custom policy

POLICY_GOOD = """
metadata:
  id: "CKV2_DELAB_1"
  name: "Kafka ACLs name their principal and grant one operation"
  category: "IAM"
definition:
  and:
    - cond_type: attribute
      resource_types: [kafka_acl]
      attribute: acl_principal
      operator: not_equals
      value: "User:*"
    - cond_type: attribute
      resource_types: [kafka_acl]
      attribute: acl_operation
      operator: not_equals
      value: All
"""


def test_policy_accepts_the_right_answer():
    checks.custom_policy_check(POLICY_GOOD)


def test_policy_rejects_conditions_describing_the_violation():
    with pytest.raises(WrongAnswer, match="least-privilege ACLs too") as failed:
        checks.custom_policy_check(POLICY_GOOD.replace("not_equals", "equals"))
    assert "compliant" in failed.value.hint


def test_policy_rejects_a_missing_operation_condition():
    second_condition = "    - cond_type: attribute\n      resource_types: [kafka_acl]\n      attribute: acl_op"
    principal_only = POLICY_GOOD.split(second_condition)[0]
    with pytest.raises(WrongAnswer, match="All through") as failed:
        checks.custom_policy_check(principal_only)
    assert "acl_operation" in failed.value.hint


def test_policy_rejects_a_wrong_resource_type():
    with pytest.raises(WrongAnswer, match="no resource") as failed:
        checks.custom_policy_check(POLICY_GOOD.replace("[kafka_acl]", "[kafka_acls]"))
    assert "resource_types" in failed.value.hint


def test_policy_rejects_text_that_is_not_a_policy():
    with pytest.raises(WrongAnswer, match="YAML policy"):
        checks.custom_policy_check('resource "kafka_acl" {}')


# ------------------------------------------------------------------------------------------- e5: TLS client


def tls_good(user, password, ca_file):
    return {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": ca_file,
        "ssl_check_hostname": True,
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


def test_tls_accepts_the_right_answer(secured_broker):
    checks.tls_client_check(tls_good)


def test_tls_rejects_sasl_plaintext(secured_broker):
    with pytest.raises(WrongAnswer, match="SASL_PLAINTEXT: the broker refused") as failed:
        checks.tls_client_check(lambda u, p, ca: {**tls_good(u, p, ca), "security_protocol": "SASL_PLAINTEXT"})
    assert "SASL_SSL" in failed.value.hint


def test_tls_rejects_a_client_without_the_ca(secured_broker):
    def no_ca(user, password, ca_file):
        settings = tls_good(user, password, ca_file)
        del settings["ssl_cafile"]
        return settings

    with pytest.raises(WrongAnswer, match="certificate verify failed") as failed:
        checks.tls_client_check(no_ca)
    assert "ssl_cafile" in failed.value.hint


def test_tls_rejects_hostname_verification_off(secured_broker):
    with pytest.raises(WrongAnswer, match="another service's certificate") as failed:
        checks.tls_client_check(lambda u, p, ca: {**tls_good(u, p, ca), "ssl_check_hostname": False})
    assert "ssl_check_hostname" in failed.value.hint


def test_tls_rejects_a_wrong_mechanism(secured_broker):
    with pytest.raises(WrongAnswer, match="could not produce over TLS") as failed:
        checks.tls_client_check(lambda u, p, ca: {**tls_good(u, p, ca), "sasl_mechanism": "PLAIN"})
    assert "SCRAM-SHA-256" in failed.value.hint


def test_tls_rejects_something_that_is_not_settings(secured_broker):
    with pytest.raises(WrongAnswer, match="not a dict"):
        checks.tls_client_check(lambda u, p, ca: "security.protocol=SASL_SSL")


# ------------------------------------------------------------------------------------------ e6: audit log


def denials_good(lines, principal):
    found = []
    for line in lines:
        if f"Principal = {principal} is Denied " in line:
            found.append((line.split(" operation = ")[1].split()[0], line.split(" on resource = ")[1].split()[0]))
    return found


def test_audit_accepts_the_right_answer():
    checks.audit_denials_check(denials_good)


def test_audit_rejects_allowed_lines_counted_too():
    def every_decision(lines, principal):
        return [
            (line.split(" operation = ")[1].split()[0], line.split(" on resource = ")[1].split()[0])
            for line in lines
            if f"Principal = {principal} is " in line
        ]

    with pytest.raises(WrongAnswer, match="the broker allowed") as failed:
        checks.audit_denials_check(every_decision)
    assert "is Denied" in failed.value.hint


def test_audit_rejects_a_substring_principal_filter():
    def substring(lines, principal):
        return [
            (line.split(" operation = ")[1].split()[0], line.split(" on resource = ")[1].split()[0])
            for line in lines
            if principal in line and "is Denied" in line
        ]

    with pytest.raises(WrongAnswer, match="other principals' denials") as failed:
        checks.audit_denials_check(substring)
    assert "exactly" in failed.value.hint


def test_audit_rejects_a_name_only_filter():
    def by_name(lines, principal):
        name = principal.split(":", 1)[1]
        return [
            (line.split(" operation = ")[1].split()[0], line.split(" on resource = ")[1].split()[0])
            for line in lines
            if name in line and "is Denied" in line
        ]

    with pytest.raises(WrongAnswer, match="other principals' denials"):
        checks.audit_denials_check(by_name)


def test_audit_rejects_a_count():
    with pytest.raises(WrongAnswer, match="list of \\(operation, resource\\) pairs"):
        checks.audit_denials_check(lambda lines, principal: sum("is Denied" in line for line in lines))


def test_audit_rejects_resource_names_without_their_type():
    def names_only(lines, principal):
        return [(op, res.rsplit(":", 1)[1]) for op, res in denials_good(lines, principal)]

    with pytest.raises(WrongAnswer, match="expected") as failed:
        checks.audit_denials_check(names_only)
    assert "Type:PATTERN:name" in failed.value.hint


# ------------------------------------------------------------------- the lab's checkov scan of Kubernetes manifests


def test_k8s_scan_finds_the_flaws_and_the_hardened_manifests_fix_them():
    rows = checks.scan_manifests({"as_written": checks.K8S_AS_WRITTEN, "hardened": checks.hardened_manifests()})
    verdict = {(r["version"], r["file"], r["check_id"]): r["result"] for r in rows}
    for check_id in ("CKV_K8S_11", "CKV_K8S_13", "CKV_K8S_14", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23"):
        assert verdict[("as_written", "topic-operator.yaml", check_id)] == "failed"
        assert verdict[("hardened", "topic-operator.yaml", check_id)] == "passed"
    assert verdict[("hardened", "orders-consumer.yaml", "CKV_K8S_23")] == "passed"
    assert not any(r["file"] == "order-value-isvc.yaml" for r in rows)  # no built-in policy knows the kind
