# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 07.03 · Kubernetes as code: manifests, custom resources and an operator for Kafka topics
#
# **You will:**
# - apply ConfigMaps, Secrets, a Deployment and a Service to a real Kubernetes API server, with `kubectl` and with
#   the Python `kubernetes` client, and read back what the controllers made of them;
# - validate manifests offline (no cluster) with the published schemas of Kubernetes 1.37;
# - define a `KafkaTopic` custom resource whose schema refuses bad topics at the API;
# - write the reconcile step of a small **kopf** operator that turns `KafkaTopic` resources into real topics on
#   the stack's Kafka — and refuses what Kafka cannot do;
# - apply module 06's KServe `InferenceService` manifests against a CRD built from KServe's API types.
#
# *Needs:* the stack's Kubernetes plane and Kafka (started for you; the plane is built once, on first need).
# Kernel: `delab`. About 45 minutes.
#
# **What runs here — and what does not.** The control plane is real: etcd, `kube-apiserver`,
# `kube-controller-manager` and `kube-scheduler` v1.37, built from source, on 127.0.0.1. Its only node,
# `kwok-node-0`, is simulated by **kwok**: the scheduler binds pods to it, kwok gives them an IP and marks them
# Running and Ready — but **no container ever starts**. No image is pulled (the images below do not even exist),
# no process runs, `kubectl logs` and `exec` have nothing to reach, a Service forwards no packet, and a pod whose
# ConfigMap is missing still shows Running. Everything about the *API* is real: validation, defaulting,
# controllers (Deployments → ReplicaSets → pods), RBAC, custom resources, watches, operators.

# %%
import base64
import json
import time

import yaml

from delab import check, stack
from delab.iac import kafka_admin, kube

stack.require("kubernetes", "kafka")
NS = "m07-l03"  # Kubernetes names: lowercase letters, digits and '-' (no '_')
TOPIC_PREFIX = "m07_l03"  # this lab's Kafka topics
kube.ensure_namespace(NS)
print(kube.kubectl("version").strip())
print(kube.kubectl("get", "nodes", "-o", "wide"))

# %% [markdown]
# ## Manifests with kubectl
# A **manifest** declares an object: `apiVersion` and `kind` say what it is, `metadata` names it, `spec` says what
# you want. `kubectl apply` sends it; the API server validates it, stores it in etcd, and **controllers** work to
# make reality match. Applying the same file twice changes nothing: apply is declarative, like `tofu apply`.
#
# A consumer of the `orders` topic, as four objects: its settings (ConfigMap), a password (Secret), the pods
# (Deployment) and a stable name in front of them (Service). `kube.apply` runs `kubectl apply --validate=strict`
# (unknown fields are errors, not silently dropped).

# %%
labels = {"app.kubernetes.io/name": "orders-consumer", "app.kubernetes.io/part-of": "shop-pipeline"}
consumer = [
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "orders-consumer-config", "namespace": NS},
        "data": {"KAFKA_BOOTSTRAP": "kafka.data.svc:9092", "TOPIC": "orders", "GROUP_ID": "orders-consumer"},
    },
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "orders-consumer-db", "namespace": NS},
        "stringData": {"POSTGRES_PASSWORD": "not-a-real-password"},
    },
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "orders-consumer", "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "consumer",
                            "image": "registry.invalid/shop/orders-consumer:1.4.0",
                            "ports": [{"name": "metrics", "containerPort": 9100}],
                            "envFrom": [
                                {"configMapRef": {"name": "orders-consumer-config"}},
                                {"secretRef": {"name": "orders-consumer-db"}},
                            ],
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        }
                    ]
                },
            },
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "orders-consumer-metrics", "namespace": NS},
        "spec": {"selector": labels, "ports": [{"name": "metrics", "port": 9100, "targetPort": "metrics"}]},
    },
]
print(kube.apply(consumer))
kube.wait_rollout("orders-consumer", NS)
print(kube.kubectl("get", "deployment,replicaset,pods,service", "-n", NS, "-o", "wide"))

# %% [markdown]
# One Deployment became a ReplicaSet (the Deployment controller), which became two pods (the ReplicaSet
# controller), which the scheduler bound to the node, where kwok marked them Running. The EndpointSlice controller
# found the pods behind the Service through its **selector** — labels are how Kubernetes objects find each other:

# %%
slices = kube.get("endpointslices", "-n", NS, "-l", "kubernetes.io/service-name=orders-consumer-metrics")
print([(e["addresses"], e["conditions"].get("ready")) for s in slices["items"] for e in s.get("endpoints", [])])
logs = kube.plane.kubectl("logs", "deployment/orders-consumer", "-n", NS)
print("kubectl logs →", (logs.stderr or logs.stdout).strip()[:160], "(kwok: no container, no logs)")

# %% [markdown]
# A Secret is **not encrypted** by default: it is base64 in etcd and in every API answer to whoever may read it.
# Protect Secrets with RBAC, encryption at rest (`--encryption-provider-config`) or an external secret store —
# and never commit them in a manifest (use sealed-secrets, SOPS or an external-secrets operator instead).

# %%
secret = kube.get("secret", "orders-consumer-db", "-n", NS)
print(secret["data"], "→", base64.b64decode(secret["data"]["POSTGRES_PASSWORD"]).decode())

# %% [markdown]
# ## The same API from Python
# `kubectl` is one client of a REST API; the `kubernetes` package is another (operators, CI scripts and
# notebooks use it). Scale the Deployment to 3 with a patch, and watch the controllers converge:

# %%
import kubernetes

client = kube.api_client()
apps, core = kubernetes.client.AppsV1Api(client), kubernetes.client.CoreV1Api(client)
apps.patch_namespaced_deployment_scale("orders-consumer", NS, {"spec": {"replicas": 3}})
kube.wait_rollout("orders-consumer", NS)
pods = core.list_namespaced_pod(NS, label_selector="app.kubernetes.io/name=orders-consumer").items
print([(p.metadata.name, p.status.phase, p.spec.node_name, p.status.pod_ip) for p in pods])
apps.patch_namespaced_deployment_scale("orders-consumer", NS, {"spec": {"replicas": 2}})  # back to the manifest
print(core.read_namespaced_config_map("orders-consumer-config", NS).data)

# %% [markdown]
# ## Validating manifests offline
# A CI pipeline should reject a broken manifest before any cluster sees it. **kubernetes-validate** ships the
# OpenAPI schemas of each Kubernetes release and checks a manifest against them, offline (`strict`: unknown fields
# are errors). It catches types and misspelt fields; it cannot know what only a server knows (a selector that
# does not match its template, a name already taken, a CRD's kinds).

# %%
broken = json.loads(json.dumps(consumer[2]))
broken["spec"]["replicas"] = "2"
print("replicas as a string →", kube.offline_error(broken))
broken["spec"]["replicas"] = 2
broken["spec"]["template"]["spec"]["containers"][0]["envfrom"] = broken["spec"]["template"]["spec"]["containers"][
    0
].pop("envFrom")
print("misspelt field →", kube.offline_error(broken))
print("the consumer's manifests →", [kube.offline_error(m) for m in consumer])

# %% [markdown]
# ### Exercise 1 — manifests that fit together
# Write `pipeline_manifests(name, replicas)` for a `clicks` sessionizer: a **ConfigMap** `<name>-config` with its
# settings (`KAFKA_BOOTSTRAP`, `TOPIC`, …), a **Deployment** `<name>` of `replicas` pods (any image name: nothing
# runs) whose container reads the ConfigMap and declares a port named `http` (8080), and a **Service** `<name>`
# on port 80 that sends traffic to that port of exactly those pods. The check validates them offline, applies
# them to its own namespace, waits for the rollout, and checks that the pieces really refer to each other
# (kwok will not tell you: it shows pods Running even when their ConfigMap does not exist).


# %%
### BEGIN SOLUTION
def pipeline_manifests(name: str, replicas: int) -> list[dict]:
    """ConfigMap, Deployment and Service of a clicks sessionizer named `name`."""
    pod_labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "sessionizer"}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-config"},
        "data": {"KAFKA_BOOTSTRAP": "kafka.data.svc:9092", "TOPIC": "clicks", "SESSION_GAP_S": "1800"},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": pod_labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "containers": [
                        {
                            "name": "sessionizer",
                            "image": "registry.invalid/shop/sessionizer:2.0.1",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "envFrom": [{"configMapRef": {"name": f"{name}-config"}}],
                        }
                    ]
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": pod_labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    return [config_map, deployment, service]


### END SOLUTION

# %%
check.m07.pipeline_manifests_check(pipeline_manifests)

# %% [markdown]
# ## Custom resources: teaching the API a new kind
# A **CustomResourceDefinition** (CRD) adds a kind to the API: after it, `kubectl apply` of a `KafkaTopic` is as
# natural as of a Deployment, with RBAC, watches and `kubectl get kafkatopics`. Its `openAPIV3Schema` is the
# contract: the API server refuses what the schema forbids, before anything acts on it. (Strimzi, the Kafka
# operator for Kubernetes, has a real `KafkaTopic` kind; ours is a small cousin.)
#
# ### Exercise 2 — the KafkaTopic CRD
# Write `kafka_topic_crd()` returning the CRD of kind `KafkaTopic` (plural `kafkatopics`, short name `kt`) in group
# `data.delab.local`, version `v1alpha1`, **namespaced**, with the status subresource (`subresources: {status:
# {}}`) and a schema where `spec` has `partitions` (an integer, at least 1, **required**) and `retentionMs` (an
# integer, at least 1), and `status` keeps whatever the operator writes (`x-kubernetes-preserve-unknown-fields`).
# The check installs your CRD under a group of its own, then sends good and bad KafkaTopics to the API server
# (server-side dry runs): the bad ones must be refused.


# %%
### BEGIN SOLUTION
def kafka_topic_crd() -> dict:
    """The CustomResourceDefinition of KafkaTopic (data.delab.local/v1alpha1)."""
    spec_schema = {
        "type": "object",
        "required": ["partitions"],
        "properties": {
            "partitions": {"type": "integer", "minimum": 1},
            "retentionMs": {"type": "integer", "minimum": 1},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "kafkatopics.data.delab.local"},
        "spec": {
            "group": "data.delab.local",
            "scope": "Namespaced",
            "names": {"kind": "KafkaTopic", "plural": "kafkatopics", "singular": "kafkatopic", "shortNames": ["kt"]},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "spec": spec_schema,
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                    "additionalPrinterColumns": [
                        {"name": "Partitions", "type": "integer", "jsonPath": ".spec.partitions"},
                        {"name": "Live", "type": "integer", "jsonPath": ".status.topic.partitions"},
                    ],
                }
            ],
        },
    }


### END SOLUTION

# %%
check.m07.kafka_topic_crd_check(kafka_topic_crd)

# %% [markdown]
# Install it for real and try it: the API refuses a zero-partition topic with a message that names the field.

# %%
crd = kafka_topic_crd()
kube.apply(crd)
kube.wait_established(crd["metadata"]["name"])
bad = {"apiVersion": "data.delab.local/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": "bad", "namespace": NS}}
try:
    kube.apply({**bad, "spec": {"partitions": 0}})
except kube.KubectlError as refused:
    print("refused:", str(refused)[:220])

# %% [markdown]
# ## An operator: reconciling KafkaTopics into Kafka
# An **operator** is a controller for a custom kind: it watches the resources and makes the world match them,
# again and again. **kopf** (Kubernetes Operator Pythonic Framework) calls your handlers when a resource is
# created, changed, or found at start-up (`resume`) and retries them when they fail. Handlers are therefore run
# more than once for the same state, so they must be **idempotent**: compare the world with the spec and do only
# what is missing. Some changes can never succeed — Kafka adds partitions but never removes them — and must be
# refused with `kopf.PermanentError` (kopf stops retrying and records the failure), never "fixed" by deleting the
# topic with its data.
#
# ### Exercise 3 — the reconcile step
# Write `ensure_topic(topic, spec)`: make the Kafka topic `topic` match `spec` (`{"partitions": …, "retentionMs":
# …}`, retentionMs optional) and return `{"partitions": <live count>, "retentionMs": <live value or None>}`.
# Create the topic if missing; add partitions if the spec asks for more; raise `kopf.PermanentError` if it asks
# for fewer; set `retention.ms` if it differs. Use `kafka_admin.create_topic(name, partitions, configs)`,
# `kafka_admin.topic_settings(name)` (`{"partitions": n, "configs": {...}}`), `kafka_admin.add_partitions(name,
# total)`, `kafka_admin.alter_topic_config(name, {...})` and `kafka_admin.topic_names(prefix)`.

# %%
import kopf


### BEGIN SOLUTION
def ensure_topic(topic: str, spec: dict) -> dict:
    """Make the Kafka topic match the KafkaTopic spec; idempotent; PermanentError for what Kafka cannot do."""
    wanted = int(spec["partitions"])
    retention = spec.get("retentionMs")
    configs = {"retention.ms": str(retention)} if retention is not None else {}
    if topic not in kafka_admin.topic_names(topic):
        kafka_admin.create_topic(topic, wanted, configs)
    live = kafka_admin.topic_settings(topic)
    if wanted < live["partitions"]:
        raise kopf.PermanentError(f"{topic} has {live['partitions']} partitions; Kafka cannot shrink it to {wanted}")
    if wanted > live["partitions"]:
        kafka_admin.add_partitions(topic, wanted)
    if configs and live["configs"].get("retention.ms") != configs["retention.ms"]:
        kafka_admin.alter_topic_config(topic, configs)
    live = kafka_admin.topic_settings(topic)
    current = live["configs"].get("retention.ms")
    return {"partitions": live["partitions"], "retentionMs": int(current) if current else None}


### END SOLUTION

# %%
check.m07.ensure_topic_check(ensure_topic)

# %% [markdown]
# Now the operator around it: one handler for three events of one resource kind, calling your `ensure_topic` and
# writing what it reports to the resource's `status.topic` (through kopf's `patch`). `kube.running_operator` runs kopf
# in a background thread of this kernel, watching this lab's namespace only (in production: its own Deployment,
# with a ServiceAccount allowed to watch KafkaTopics and nothing more).

# %%
registry = kube.kopf_registry()


@kopf.on.create("data.delab.local", "v1alpha1", "kafkatopics", registry=registry, backoff=2)
@kopf.on.update("data.delab.local", "v1alpha1", "kafkatopics", registry=registry, backoff=2)
@kopf.on.resume("data.delab.local", "v1alpha1", "kafkatopics", registry=registry, backoff=2)
def reconcile(spec, name, patch, **_):
    """KafkaTopic <name> in namespace m07-l03 → topic m07_l03.<name> on the stack's Kafka."""
    patch.status["topic"] = ensure_topic(f"{TOPIC_PREFIX}.{name}", dict(spec))


def live_status(name: str) -> dict:
    return kube.get("kafkatopic", name, "-n", NS).get("status", {}).get("topic", {})


kube.kubectl("delete", "kafkatopics", "--all", "-n", NS, "--wait=true")  # a re-run starts from nothing
kafka_admin.delete_topics(*kafka_admin.topic_names(f"{TOPIC_PREFIX}.clicks"))
kube.wait_for(lambda: not kafka_admin.topic_names(f"{TOPIC_PREFIX}.clicks"), what="the old topic deleted")
clicks = {
    "apiVersion": "data.delab.local/v1alpha1",
    "kind": "KafkaTopic",
    "metadata": {"name": "clicks", "namespace": NS},
    "spec": {"partitions": 3, "retentionMs": 86_400_000},
}
with kube.running_operator(registry, NS):
    started = time.monotonic()
    kube.apply(clicks)
    print("status:", kube.wait_for(lambda: live_status("clicks"), what="the operator's status"))
    print(f"topic on Kafka after {time.monotonic() - started:.1f} s:", kafka_admin.topic_settings("m07_l03.clicks"))
    clicks["spec"]["partitions"] = 6
    kube.apply(clicks)
    kube.wait_for(lambda: live_status("clicks").get("partitions") == 6, what="6 partitions")
    print("after the change:", kafka_admin.topic_settings("m07_l03.clicks"))
print(kube.kubectl("get", "kafkatopics", "-n", NS))

# %% [markdown]
# `kubectl get kafkatopics` now shows the spec and the live partition count side by side (the CRD's printer
# columns). GitOps tools (Argo CD, Flux) apply such files from git; the operator does the rest — the same
# declarative loop as OpenTofu's plan/apply, but continuous.
#
# ## Module 06's InferenceService, against a CRD
# Lab 06.02 validated `InferenceService` manifests with a JSON Schema built from KServe's API types. Here the same
# schema becomes a CRD (`kserve_manifests.inference_service_crd`: references inlined, made *structural* as the API
# server requires), so the API server itself validates the manifests. It is a stand-in for KServe's published CRD
# (the kserve wheel does not ship it) and no KServe controller runs: the resource is stored, nothing is served.

# %%
from delab.mlops import kserve_manifests

isvc_crd = kserve_manifests.inference_service_crd(kserve_manifests.schema_from_mlops_environment())
print(f"CRD of {len(json.dumps(isvc_crd)) / 1000:.0f} kB")
kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(isvc_crd))
kube.wait_established(isvc_crd["metadata"]["name"])
order_value = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "order-value", "namespace": NS, "labels": {"app": "shop"}},
    "spec": {
        "predictor": {
            "canaryTrafficPercent": 10,
            "minReplicas": 1,
            "model": {
                "modelFormat": {"name": "sklearn"},
                "protocolVersion": "v2",
                "storageUri": "s3://models/order-value/2",
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
            },
        },
        "transformer": {
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "shop/order-transformer:1",
                    "args": ["--model_name", "order-value", "--predictor_protocol", "v2"],
                }
            ]
        },
    },
}
print(kube.apply(order_value))
typo = json.loads(json.dumps(order_value))
typo["spec"]["predictor"]["model"]["storageURI"] = typo["spec"]["predictor"]["model"].pop("storageUri")
try:
    kube.apply(typo, "--dry-run=server")
except kube.KubectlError as refused:
    print("refused:", str(refused)[:240])
print(yaml.safe_dump(kube.get("inferenceservice", "order-value", "-n", NS)["spec"], sort_keys=False))

# %% [markdown]
# ## Recap
# - Manifests declare objects; the API server validates and stores them; controllers converge the world to them.
#   Labels and selectors tie Deployments, pods and Services together.
# - Validate offline in CI (kubernetes-validate), and against the server (`--dry-run=server --validate=strict`)
#   for what only it knows.
# - A CRD's schema is an API contract: refuse bad values where the user sees them, not in an operator's log.
# - An operator's handlers run again and again: make them idempotent, and refuse the impossible with
#   `kopf.PermanentError` instead of destroying data.
# - kwok simulates nodes: the API and the controllers are real, the containers are not.
#
# **Going further — the same manifests on a real cluster.** With Docker, `kind create cluster` or `k3d cluster
# create` gives a cluster whose nodes run containers: `kubectl apply` the same files (replace the `.invalid`
# images with real ones), and the pods really start, log and answer through the Service. On a managed cluster
# (EKS, GKE, AKS) only the kubeconfig changes. Run the operator as a Deployment with a ServiceAccount and RBAC
# rules (`kopf run` in a container image); for production Kafka on Kubernetes use Strimzi, whose `KafkaTopic`
# operator does what ours does with many more settings. KServe installs its real CRDs and controller (with
# Knative or raw Deployments) and then serves the InferenceService above.
