"""Checks of lab 07.03 (Kubernetes): right answers pass, realistic wrong ones are rejected with their own hint.

They run against the stack's Kubernetes plane (built once per machine: `delab stack build kubernetes`) and Kafka.
"""

from __future__ import annotations

import copy

import kopf
import pytest

from delab.checks.m07 import l03_kubernetes as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.iac import kafka_admin

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module", autouse=True)
def plane():
    from delab import stack

    stack.require("kubernetes", "kafka", quiet=True)


# ------------------------------------------------------------------------------------------- e1: the manifests


def manifests_good(name, replicas):
    labels = {"app.kubernetes.io/name": name}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-config"}, "data": {"TOPIC": "clicks"}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "registry.invalid/app:1",
                                "ports": [{"name": "http", "containerPort": 8080}],
                                "envFrom": [{"configMapRef": {"name": f"{name}-config"}}],
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    ]


def _variant(change):
    def build(name, replicas):
        manifests = manifests_good(name, replicas)
        change(manifests)
        return manifests

    return build


def _service_selects_app_label(manifests):
    manifests[2]["spec"]["selector"] = {"app": manifests[2]["metadata"]["name"]}


def _deployment_selector_differs(manifests):
    manifests[1]["spec"]["selector"] = {"matchLabels": {"app": "sessionizer"}}


def _replicas_as_string(manifests):
    manifests[1]["spec"]["replicas"] = str(manifests[1]["spec"]["replicas"])


def _configmap_name_typo(manifests):
    container = manifests[1]["spec"]["template"]["spec"]["containers"][0]
    container["envFrom"] = [{"configMapRef": {"name": "sessionizer-settings"}}]


def _target_port_is_service_port(manifests):
    manifests[2]["spec"]["ports"] = [{"port": 80, "targetPort": 80}]


def test_manifests_accept_the_right_answer():
    checks.pipeline_manifests_check(manifests_good)


def test_manifests_reject_a_service_selecting_no_pods():
    with pytest.raises(WrongAnswer, match="matches 0 pod") as failed:
        checks.pipeline_manifests_check(_variant(_service_selects_app_label))
    assert "spec.template.metadata.labels" in failed.value.hint


def test_manifests_reject_a_deployment_selector_that_misses_its_template():
    with pytest.raises(WrongAnswer, match="API server refused") as failed:
        checks.pipeline_manifests_check(_variant(_deployment_selector_differs))
    assert "must match the template's labels" in failed.value.hint


def test_manifests_reject_replicas_as_a_string_offline():
    with pytest.raises(WrongAnswer, match="offline validation of the Deployment") as failed:
        checks.pipeline_manifests_check(_variant(_replicas_as_string))
    assert "JSON integer" in failed.value.hint


def test_manifests_reject_a_missing_configmap_kwok_would_hide():
    with pytest.raises(WrongAnswer, match="sessionizer-settings") as failed:
        checks.pipeline_manifests_check(_variant(_configmap_name_typo))
    assert "CreateContainerConfigError" in failed.value.hint


def test_manifests_reject_a_target_port_no_container_declares():
    with pytest.raises(WrongAnswer, match="targetPort 80") as failed:
        checks.pipeline_manifests_check(_variant(_target_port_is_service_port))
    assert "containerPort" in failed.value.hint


def test_manifests_placeholder_is_not_solved():
    def stub(name, replicas):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.pipeline_manifests_check(stub)


# ------------------------------------------------------------------------------------------------- e2: the CRD


def crd_good():
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "kafkatopics.data.delab.local"},
        "spec": {
            "group": "data.delab.local",
            "scope": "Namespaced",
            "names": {"kind": "KafkaTopic", "plural": "kafkatopics"},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["partitions"],
                                    "properties": {
                                        "partitions": {"type": "integer", "minimum": 1},
                                        "retentionMs": {"type": "integer", "minimum": 1},
                                    },
                                },
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


def _spec_schema(crd):
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _crd(change):
    def build():
        crd = copy.deepcopy(crd_good())
        change(crd)
        return crd

    return build


def test_crd_accepts_the_right_answer():
    checks.kafka_topic_crd_check(crd_good)


def test_crd_rejects_no_minimum():
    with pytest.raises(WrongAnswer, match="partitions: 0") as failed:
        checks.kafka_topic_crd_check(_crd(lambda crd: _spec_schema(crd)["properties"]["partitions"].pop("minimum")))
    assert "bound numbers" in failed.value.hint


def test_crd_rejects_partitions_not_required():
    with pytest.raises(WrongAnswer, match="without partitions") as failed:
        checks.kafka_topic_crd_check(_crd(lambda crd: _spec_schema(crd).pop("required")))
    assert "required" in failed.value.hint


def test_crd_rejects_a_spec_that_keeps_anything():
    def open_spec(crd):
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }

    with pytest.raises(WrongAnswer, match="'three'") as failed:
        checks.kafka_topic_crd_check(_crd(open_spec))
    assert "type: integer" in failed.value.hint


def test_crd_rejects_cluster_scope():
    def cluster(crd):
        crd["spec"]["scope"] = "Cluster"

    with pytest.raises(WrongAnswer, match="scope") as failed:
        checks.kafka_topic_crd_check(_crd(cluster))
    assert "Namespaced" in failed.value.hint


def test_crd_rejects_a_name_that_is_not_plural_dot_group():
    def singular(crd):
        crd["metadata"]["name"] = "kafkatopic.data.delab.local"

    with pytest.raises(WrongAnswer, match=r"<plural>\.<group>"):
        checks.kafka_topic_crd_check(_crd(singular))


# ------------------------------------------------------------------------------------------- e3: ensure_topic


def ensure_good(topic, spec):
    wanted, retention = int(spec["partitions"]), spec.get("retentionMs")
    configs = {"retention.ms": str(retention)} if retention is not None else {}
    if topic not in kafka_admin.topic_names(topic):
        kafka_admin.create_topic(topic, wanted, configs)
    live = kafka_admin.topic_settings(topic)
    if wanted < live["partitions"]:
        raise kopf.PermanentError("cannot shrink")
    if wanted > live["partitions"]:
        kafka_admin.add_partitions(topic, wanted)
    if configs and live["configs"].get("retention.ms") != configs["retention.ms"]:
        kafka_admin.alter_topic_config(topic, configs)
    live = kafka_admin.topic_settings(topic)
    return {"partitions": live["partitions"], "retentionMs": retention}


def ensure_always_creates(topic, spec):
    from kafka.admin import NewTopic

    with kafka_admin.admin() as client:  # raises TopicAlreadyExistsError the second time
        client.create_topics(
            [NewTopic(topic, spec["partitions"], 1, topic_configs={"retention.ms": str(spec["retentionMs"])})]
        )
    return {"partitions": spec["partitions"]}


def ensure_never_grows(topic, spec):
    if topic not in kafka_admin.topic_names(topic):
        kafka_admin.create_topic(topic, spec["partitions"], {"retention.ms": str(spec["retentionMs"])})
    kafka_admin.alter_topic_config(topic, {"retention.ms": str(spec["retentionMs"])})
    return {"partitions": kafka_admin.topic_settings(topic)["partitions"]}


def ensure_plain_error_on_shrink(topic, spec):
    try:
        return ensure_good(topic, spec)
    except kopf.PermanentError:
        raise ValueError("cannot shrink a topic") from None


def ensure_silent_on_shrink(topic, spec):
    try:
        return ensure_good(topic, spec)
    except kopf.PermanentError:
        return {"partitions": kafka_admin.topic_settings(topic)["partitions"]}


def test_ensure_topic_accepts_the_right_answer():
    checks.ensure_topic_check(ensure_good)


def test_ensure_topic_rejects_a_create_only_handler():
    with pytest.raises(WrongAnswer, match="second call") as failed:
        checks.ensure_topic_check(ensure_always_creates)
    assert "compare instead of creating" in failed.value.hint


def test_ensure_topic_rejects_a_handler_that_never_adds_partitions():
    with pytest.raises(WrongAnswer, match="still has 2") as failed:
        checks.ensure_topic_check(ensure_never_grows)
    assert "add_partitions" in failed.value.hint


def test_ensure_topic_rejects_a_retried_error_on_shrink():
    with pytest.raises(WrongAnswer, match="ValueError") as failed:
        checks.ensure_topic_check(ensure_plain_error_on_shrink)
    assert "kopf.PermanentError" in failed.value.hint


def test_ensure_topic_rejects_a_silent_no_op_on_shrink():
    with pytest.raises(WrongAnswer, match="reported success") as failed:
        checks.ensure_topic_check(ensure_silent_on_shrink)
    assert "lying" in failed.value.hint


def test_ensure_topic_placeholder_is_not_solved():
    def stub(topic, spec):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.ensure_topic_check(stub)
