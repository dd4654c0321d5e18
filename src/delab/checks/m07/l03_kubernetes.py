"""Checks of lab 07.03 (Kubernetes): manifests that fit together, a CRD whose schema protects the API, and the
idempotent reconcile step of a kopf operator.

Everything is judged against real systems: the stack's Kubernetes API server (kwok simulates the node, so pods are
scheduled and report Running though no container starts), kubernetes-validate's published schemas offline, and the
stack's Kafka for the operator's topic. Each check works in its own namespace, CRD group or topic, fresh per call.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from typing import Any

from delab.grading import WrongAnswer, exercise, learner_code
from delab.iac import kafka_admin, kube

LAB = "m07_l03"
#: the namespace the checks apply the learner's manifests to (the lab's own objects live in ``m07-l03``)
CHECK_NAMESPACE = "m07-l03-checks"
#: the CRD group of the lab; the check of exercise 2 installs the learner's CRD under a group of its own
GROUP = "data.delab.local"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# ------------------------------------------------------------------------ e1: a ConfigMap, a Deployment, a Service


@learner_code("pipeline_manifests")
def _run_manifests(fn, name: str, replicas: int):
    return fn(name, replicas)


def _one_of_each(manifests: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(manifests, list | tuple) or not all(isinstance(item, dict) for item in manifests):
        raise WrongAnswer(
            f"pipeline_manifests returned {type(manifests).__name__}, not a list of manifests (dicts).",
            hint="return [config_map, deployment, service], each a dict like the ones applied above.",
        )
    kinds = [item.get("kind") for item in manifests]
    if sorted(map(str, kinds)) != ["ConfigMap", "Deployment", "Service"]:
        raise WrongAnswer(
            f"got the kinds {kinds}; expected one ConfigMap, one Deployment and one Service.",
            hint="three manifests: the settings (ConfigMap), the pods (Deployment) and their stable address (Service).",
        )
    return {item["kind"]: item for item in manifests}


def _clean_check_namespace() -> None:
    kube.ensure_namespace(CHECK_NAMESPACE)
    kube.kubectl("delete", "deployment,service", "--all", "-n", CHECK_NAMESPACE, "--wait=false", check=False)
    kube.kubectl(
        "delete", "configmap", "--field-selector", "metadata.name!=kube-root-ca.crt", "-n", CHECK_NAMESPACE,
        "--wait=false", check=False,
    )  # fmt: skip


def _config_map_refs(pod_spec: dict[str, Any]) -> set[str]:
    names = set()
    for container in pod_spec.get("containers", []) or []:
        for source in container.get("envFrom", []) or []:
            ref = (source or {}).get("configMapRef") or {}
            if ref.get("name"):
                names.add(ref["name"])
        for env in container.get("env", []) or []:
            ref = ((env or {}).get("valueFrom") or {}).get("configMapKeyRef") or {}
            if ref.get("name"):
                names.add(ref["name"])
    for volume in pod_spec.get("volumes", []) or []:
        ref = (volume or {}).get("configMap") or {}
        if ref.get("name"):
            names.add(ref["name"])
    return names


@exercise("m07.l03.e1")
def pipeline_manifests_check(pipeline_manifests) -> None:
    """pipeline_manifests gives a ConfigMap, a Deployment and a Service that validate and fit together."""
    replicas = 2
    name = f"e1-{uuid.uuid4().hex[:8]}"
    by_kind = _one_of_each(_run_manifests(pipeline_manifests, name, replicas))
    for kind, manifest in by_kind.items():
        error = kube.offline_error(manifest)
        if error:
            hint = "compare the field with the API reference (kubectl explain deployment.spec works here too)."
            if error.split(":")[0].endswith("replicas"):
                hint = "a count is a JSON integer (2), not the string '2'."
            raise WrongAnswer(f"offline validation of the {kind}: {error[:300]}", hint=hint)
    if not by_kind["ConfigMap"].get("data"):
        raise WrongAnswer(
            "the ConfigMap has no data.", hint="put the consumer's settings under data (string keys and values)."
        )
    _clean_check_namespace()
    namespaced = copy.deepcopy(list(by_kind.values()))
    for manifest in namespaced:
        manifest.setdefault("metadata", {})["namespace"] = CHECK_NAMESPACE
    try:
        kube.apply(namespaced)
    except kube.KubectlError as refused:
        message = str(refused)
        hint = "read the API server's message: it names the field it refuses."
        if "selector" in message and "match" in message:
            hint = "a Deployment owns the pods its spec.selector matches: it must match the template's labels."
        raise WrongAnswer(f"the API server refused the manifests: {message[:300]}", hint=hint) from None
    deployment, service = by_kind["Deployment"], by_kind["Service"]
    deployment_name = deployment["metadata"]["name"]
    try:
        kube.wait_rollout(deployment_name, CHECK_NAMESPACE)
    except kube.KubectlError as stuck:
        raise WrongAnswer(
            f"the Deployment did not roll out: {str(stuck)[:200]}",
            hint="check replicas, the selector and the container list; `kubectl describe` tells more.",
        ) from None
    pod_spec = deployment["spec"]["template"].get("spec", {})
    config_map = by_kind["ConfigMap"]["metadata"]["name"]
    missing = sorted(_config_map_refs(pod_spec) - {config_map})
    if missing or not _config_map_refs(pod_spec):
        raise WrongAnswer(
            f"the containers read ConfigMap(s) {missing or 'none'}, not {config_map!r}."
            if missing
            else "the containers do not read the ConfigMap.",
            hint="envFrom with a configMapRef naming your ConfigMap. Careful: kwok reports the pods Running anyway — "
            "on a real node they would stay in CreateContainerConfigError.",
        )
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector:
        raise WrongAnswer(
            "the Service has no selector.", hint="a Service finds its pods by labels: spec.selector, a dict."
        )
    label_query = ",".join(f"{key}={value}" for key, value in selector.items())
    selected = kube.get("pods", "-n", CHECK_NAMESPACE, "-l", label_query)["items"]
    if len(selected) != replicas:
        raise WrongAnswer(
            f"the Service's selector {selector} matches {len(selected)} pod(s); the Deployment runs {replicas}.",
            hint="the Service's spec.selector must match labels of the pod template (spec.template.metadata.labels).",
        )
    ports = [port for container in pod_spec.get("containers", []) for port in container.get("ports", []) or []]
    for port in service["spec"].get("ports", []):
        target = port.get("targetPort", port.get("port"))
        known = {p.get("name") for p in ports} if isinstance(target, str) else {p.get("containerPort") for p in ports}
        if target not in known:
            raise WrongAnswer(
                f"the Service sends traffic to targetPort {target!r}, which no container declares.",
                hint="targetPort names (or numbers) a containerPort of the pods; port is what clients connect to.",
            )


# ------------------------------------------------------------------------------------ e2: the KafkaTopic CRD


@learner_code("kafka_topic_crd")
def _run_crd(fn):
    return fn()


def _crd_under_group(crd: dict[str, Any], group: str) -> dict[str, Any]:
    moved = copy.deepcopy(crd)
    plural = moved["spec"]["names"]["plural"]
    moved["metadata"] = {"name": f"{plural}.{group}", "labels": {"delab.check": "m07.l03.e2"}}
    moved["spec"]["group"] = group
    return moved


def _dry_run(group: str, version: str, kind: str, spec: Any) -> str | None:
    """None when the API server accepts the custom resource (server-side dry run), else its message."""
    resource = {
        "apiVersion": f"{group}/{version}",
        "kind": kind,
        "metadata": {"name": "probe", "namespace": CHECK_NAMESPACE},
        "spec": spec,
    }
    try:
        kube.apply(resource, "--dry-run=server")
    except kube.KubectlError as refused:
        return str(refused)
    return None


@exercise("m07.l03.e2")
def kafka_topic_crd_check(kafka_topic_crd) -> None:
    """kafka_topic_crd defines a namespaced KafkaTopic whose schema refuses bad topics."""
    crd = _run_crd(kafka_topic_crd)
    try:
        names, group = crd["spec"]["names"], crd["spec"]["group"]
        kind, plural, name = names["kind"], names["plural"], crd["metadata"]["name"]
        versions = [v for v in crd["spec"]["versions"] if v.get("served")]
        version = versions[0]["name"]
    except (KeyError, TypeError, IndexError) as missing:
        raise WrongAnswer(
            f"the CRD lacks {missing} (metadata.name, spec.group, spec.names.kind/plural, a served version).",
            hint="start from the skeleton in the cell above and fill in each field.",
        ) from None
    if (group, kind) != (GROUP, "KafkaTopic"):
        raise WrongAnswer(
            f"the CRD defines {kind} in group {group!r}.", hint=f"the lab's resource is KafkaTopic in group {GROUP}."
        )
    if name != f"{plural}.{group}":
        raise WrongAnswer(
            f"metadata.name is {name!r}; the API server only accepts <plural>.<group> for a CRD.",
            hint=f"here that is {plural}.{group}.",
        )
    if crd["spec"].get("scope") != "Namespaced":
        raise WrongAnswer(
            f"scope is {crd['spec'].get('scope')!r}: a KafkaTopic would be one object for the whole cluster.",
            hint="each team declares its topics in its own namespace: the scope is Namespaced.",
        )
    digest = hashlib.sha256(json.dumps(crd, sort_keys=True).encode()).hexdigest()[:10]
    check_group = f"h{digest}.checks.delab.local"
    moved = _crd_under_group(crd, check_group)
    kube.ensure_namespace(CHECK_NAMESPACE)
    try:
        kube.apply(moved)
        kube.wait_established(moved["metadata"]["name"])
    except kube.KubectlError as refused:
        raise WrongAnswer(
            f"the API server refused the CRD: {str(refused)[:300]}",
            hint="a CRD's schema must be structural: every property has a type, objects list their properties.",
        ) from None
    good = _dry_run(check_group, version, kind, {"partitions": 3, "retentionMs": 86_400_000})
    if good:
        raise WrongAnswer(
            f"a correct KafkaTopic (partitions 3, retentionMs 86400000) was refused: {good[:300]}",
            hint="the spec has two integer fields, partitions and retentionMs.",
        )
    if _dry_run(check_group, version, kind, {"partitions": "three"}) is None:
        raise WrongAnswer(
            "the API accepted partitions: 'three'.",
            hint="give spec a schema with properties and types (type: integer), not one that keeps any field.",
        )
    if _dry_run(check_group, version, kind, {"partitions": 0}) is None:
        raise WrongAnswer(
            "the API accepted partitions: 0 — Kafka cannot create such a topic, the operator would fail later.",
            hint="OpenAPI schemas can bound numbers: refuse the value at the API, where the user sees it at once.",
        )
    if _dry_run(check_group, version, kind, {"retentionMs": 3_600_000}) is None:
        raise WrongAnswer(
            "the API accepted a KafkaTopic without partitions.",
            hint="list partitions among spec's required properties.",
        )
    if _dry_run(check_group, version, kind, {"partitions": 3, "retentionMS": 1000}) is None:
        raise WrongAnswer(
            "the API accepted an unknown field (retentionMS, misspelt) with --validate=strict.",
            hint="do not mark spec with x-kubernetes-preserve-unknown-fields: list its properties instead.",
        )


# --------------------------------------------------------------------------- e3: the operator's reconcile step


def _partitions(topic: str) -> int | None:
    try:
        return kafka_admin.topic_settings(topic)["partitions"]
    except Exception:
        return None


@learner_code("ensure_topic")
def _run_ensure(fn, topic: str, spec: dict[str, Any]):
    return fn(topic, dict(spec))


@exercise("m07.l03.e3")
def ensure_topic_check(ensure_topic) -> None:
    """ensure_topic makes the real topic match the spec, again and again, and refuses what cannot be done."""
    import kopf

    topic = f"{LAB}.e3_check_{uuid.uuid4().hex[:8]}"
    try:
        status = _run_ensure(ensure_topic, topic, {"partitions": 2, "retentionMs": 3_600_000})
        settings = kafka_admin.topic_settings(topic) if _partitions(topic) else None
        if settings is None:
            raise WrongAnswer(
                f"after ensure_topic({topic!r}, …) there is no such topic on Kafka.",
                hint="create it when it is missing (kafka_admin.create_topic).",
            )
        if settings["partitions"] != 2 or settings["configs"].get("retention.ms") != "3600000":
            raise WrongAnswer(
                f"the new topic has {settings['partitions']} partition(s) and configs {settings['configs']}; "
                "the spec asked for 2 and retention.ms=3600000.",
                hint="pass partitions and {'retention.ms': str(retentionMs)} when you create it.",
            )
        if not isinstance(status, dict) or status.get("partitions") != 2:
            raise WrongAnswer(
                f"ensure_topic returned {status!r}; the operator writes it to the resource's status.",
                hint="return a dict with at least the live partition count: {'partitions': …}.",
            )
        try:
            ensure_topic(topic, {"partitions": 2, "retentionMs": 3_600_000})
        except NotImplementedError:
            raise
        except Exception as error:
            raise WrongAnswer(
                f"a second call with the same spec failed: {type(error).__name__}: {_first_line(str(error))[:200]}",
                hint="kopf calls the handler again (resume after a restart, retries): when the topic already "
                "exists, compare instead of creating.",
            ) from None
        status = _run_ensure(ensure_topic, topic, {"partitions": 4, "retentionMs": 7_200_000})
        settings = kafka_admin.topic_settings(topic)
        if settings["partitions"] != 4:
            raise WrongAnswer(
                f"the spec now asks for 4 partitions; the topic still has {settings['partitions']}.",
                hint="when the spec asks for more partitions than the topic has, add them (kafka_admin.add_partitions)",
            )
        if settings["configs"].get("retention.ms") != "7200000":
            raise WrongAnswer(
                f"retentionMs changed to 7200000; the topic's retention.ms is "
                f"{settings['configs'].get('retention.ms')}.",
                hint="apply a changed retention to the existing topic (kafka_admin.alter_topic_config).",
            )
        try:
            ensure_topic(topic, {"partitions": 1, "retentionMs": 7_200_000})
        except kopf.PermanentError:
            pass
        except Exception as error:
            raise WrongAnswer(
                f"shrinking to 1 partition raised {type(error).__name__}, which kopf retries forever.",
                hint="a change that can never succeed should raise kopf.PermanentError: kopf then stops retrying "
                "and reports it.",
            ) from None
        else:
            after = _partitions(topic)
            if after == 1:
                raise WrongAnswer(
                    "the topic now has 1 partition: it was deleted and created again, with all its records.",
                    hint="Kafka cannot remove partitions; an operator must refuse the change, never drop data.",
                )
            raise WrongAnswer(
                f"asked for 1 partition, the topic kept {after} and ensure_topic reported success.",
                hint="a silent no-op leaves the resource lying about the topic: refuse with kopf.PermanentError.",
            )
    finally:
        kafka_admin.delete_topics(topic)
