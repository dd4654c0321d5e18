# ---
# jupyter:
#   kernelspec: {name: delab-mlops, display_name: "Python 3 (delab-mlops · MLflow, KServe)", language: python}
# ---

# %% [markdown]
# # 06.02 · KServe: the model server, the V1 and V2 protocols, a transformer — and the manifests for a cluster
#
# **You will:**
# - write a `kserve.Model` (load, preprocess, predict, postprocess) and serve it with KServe's own server code on
#   127.0.0.1 — no Kubernetes;
# - call it with the V1 protocol and with the V2 **Open Inference Protocol** (the one Triton, MLServer, TorchServe
#   and KServe all speak);
# - put a **transformer** in front of it: raw orders in, features to the predictor, order values out;
# - write the `InferenceService` manifests that would deploy the same thing on a cluster, with a **canary**
#   traffic split, and validate them against a schema of KServe's API.
#
# *Needs:* Postgres (started for you). Kernel: `delab-mlops`. About 35 minutes.
#
# **No Kubernetes runs here.** On a cluster, KServe's controller turns an `InferenceService` into Deployments (or
# Knative revisions), a storage initializer downloads the model and the same Python server runs in a pod. Here
# we run that server directly; the manifests are validated offline. Module 07 applies manifests to a real
# Kubernetes API server.

# %%
import json
import time

import httpx
import joblib
import numpy as np
import yaml
from IPython.display import display

from delab import check, config, stack
from delab.mlops import kserve_local, kserve_manifests, kserve_shop, shop_models

stack.require("postgres")
ns = stack.namespace("m06_l02")  # this lab's Postgres schema: m06_l02
folder = config.lab_dir("m06_l02")
model_dir = folder / "model"  # what a storage initializer would download to /mnt/models in a pod
model_dir.mkdir(exist_ok=True)
shop_models.load_shop(ns.schema)

# %% [markdown]
# ## The model, saved where a model server looks for it
# The same order-value forest as lab 06.01 (features computed in Postgres), a little smaller. KServe's servers
# read a model from a **model directory**; `joblib` is what KServe's own scikit-learn server expects there.

# %%
features = shop_models.order_features(ns.schema)
model = shop_models.train_order_value(features, n_estimators=20)
X = shop_models.matrix(features)
joblib.dump(model, model_dir / "model.joblib")
print(f"{len(features)} orders; model saved to {model_dir.name}/model.joblib")

# %% [markdown]
# ## Exercise 1 — a `kserve.Model` that speaks both protocols
# KServe calls three methods per request: `preprocess(payload, headers)` → `predict(...)` → `postprocess(...)`,
# each receiving what the previous returned. `load()` runs once at start and must set `self.ready = True`: until
# then the server answers 503 on its readiness endpoint, and Kubernetes would send it no traffic.
#
# The payload is what the protocol brought:
# - **V1** (TensorFlow Serving's format): a dict `{"instances": [[14 floats], ...]}`; the answer is
#   `{"predictions": [...]}`.
# - **V2**, the Open Inference Protocol: a `kserve.InferRequest` with named, typed tensors — here one input `rows`
#   (FP32, shape `[n, 14]`, `request.inputs[0].as_numpy()`); the answer is a `kserve.InferResponse` whose
#   `response_id` is the **request's id** (`request.id`; the protocol makes it optional: make one up when it is
#   missing) and whose output tensor holds the values
#   (`InferOutput(name, shape, datatype)` then `.set_data_from_numpy(values, binary_data=False)`).
#
# Write the module as a string `model_source`: a class `OrderValueModel(kserve.Model)` built as
# `OrderValueModel(name, model_dir)`, loading `model.joblib` from `model_dir`.

# %%
### BEGIN SOLUTION
model_source = """
import uuid
from pathlib import Path

import joblib
import kserve
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse


class OrderValueModel(kserve.Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.model = None

    def load(self) -> bool:
        self.model = joblib.load(self.model_dir / "model.joblib")
        self.ready = True
        return self.ready

    def preprocess(self, payload, headers=None):
        # keep the request: postprocess answers in the protocol it came in
        if isinstance(payload, InferRequest):
            rows = payload.inputs[0].as_numpy()
        else:
            rows = payload["instances"]
        return {"request": payload, "rows": np.asarray(rows, dtype=np.float32).reshape(-1, 14)}

    def predict(self, inputs, headers=None):
        return {**inputs, "values": self.model.predict(inputs["rows"])}

    def postprocess(self, outputs, headers=None):
        request, values = outputs["request"], np.asarray(outputs["values"], dtype=np.float64)
        if isinstance(request, InferRequest):
            tensor = InferOutput(name="order_value", shape=[len(values)], datatype="FP64")
            tensor.set_data_from_numpy(values, binary_data=False)
            response_id = request.id or str(uuid.uuid4())
            return InferResponse(response_id=response_id, model_name=self.name, infer_outputs=[tensor])
        return {"predictions": values.tolist()}
"""
### END SOLUTION

# %%
check.m06.order_value_model(model_source, model_dir, X[:20])

# %% [markdown]
# ## Serve it on 127.0.0.1
# `kserve.ModelServer` binds every interface (`0.0.0.0`, hard-coded). `delab.mlops.kserve_local` builds the same
# pieces — model registry, data plane, KServe's FastAPI app with its V1 and V2 routes — and runs the app under
# uvicorn on 127.0.0.1 — and, with `grpc=True`, the V2 protocol's gRPC binding on 127.0.0.1 too (KServe's own gRPC
# server binds `[::]`; `kserve_local` runs KServe's gRPC servicer on a server of its own, bound to loopback). It is
# started through `delab.servers`, so it stops with the notebook even if the kernel dies.

# %%
(folder / "order_model.py").write_text(model_source)
started = time.monotonic()
predictor = kserve_local.serve(
    "order_model:OrderValueModel", name="order-value", model_dir=model_dir, workdir=folder, grpc=True
)
print(f"KServe model server at {predictor.url}, ready in {time.monotonic() - started:.1f} s")

# %% [markdown]
# Both protocols have health and metadata routes (a load balancer and Kubernetes probes use them), and a
# prediction route:

# %%
url = predictor.url
print("V1 model status:", httpx.get(f"{url}/v1/models/order-value").json())
print(
    "V2 server ready:",
    httpx.get(f"{url}/v2/health/ready").json(),
    "| model metadata:",
    httpx.get(f"{url}/v2/models/order-value").json(),
)
v1 = httpx.post(f"{url}/v1/models/order-value:predict", json={"instances": X[:3].tolist()}).json()
print("V1 predict:", v1)

# %% [markdown]
# ## Exercise 2 — an Open Inference Protocol request by hand
# Any client in any language can call a V2 server with plain JSON. Write `make_body(rows)` returning the body of
# `POST /v2/models/order-value/infer` for a float32 matrix `rows`: one input tensor named `rows`, its shape, the
# protocol's datatype for 32-bit floats, and its data (flattened row by row). The check sends it to your server.


# %%
### BEGIN SOLUTION
def make_body(rows: np.ndarray) -> dict:
    """The Open Inference Protocol JSON body carrying rows as one FP32 tensor."""
    rows = np.asarray(rows, dtype=np.float32)
    return {
        "id": "orders-batch",
        "inputs": [{"name": "rows", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}],
    }


### END SOLUTION

# %%
check.m06.v2_request_body(make_body, url, X[:50])

# %%
answer = httpx.post(f"{url}/v2/models/order-value/infer", json=make_body(X[:3])).json()
print(json.dumps(answer, indent=1)[:600])

# %% [markdown]
# ## A transformer in front of the predictor
# Callers should not have to know the model's 14 features. A **transformer** is a second model server in front
# of the predictor: its `preprocess` turns a raw order (lines, channel, timestamp, customer segment — as a
# checkout service sends it) into the feature row, KServe's inherited `predict` forwards that to the predictor
# over V2, and its `postprocess` pairs the values with their order ids (by the response's id). On a cluster it
# is the `transformer` of the same `InferenceService`; here it is `delab.mlops.kserve_shop.OrderTransformer`,
# served on its own port with the predictor's address.

# %%
transformer = kserve_local.serve(
    "delab.mlops.kserve_shop:OrderTransformer", name="order-value", workdir=folder, predictor=predictor, protocol="v2"
)
orders = kserve_shop.raw_orders(ns.schema, limit=5)
print("a raw order:", json.dumps(orders[0], default=str)[:300])
chained = httpx.post(f"{transformer.url}/v1/models/order-value:predict", json={"instances": orders}).json()
display(chained["predictions"])

# %% [markdown]
# The chain must give what the predictor gives for the features computed in SQL — the transformer is feature
# engineering, not a second model. (This is also how a feature mismatch between training and serving — *skew* —
# is caught.)

# %%
by_id = features.set_index("order_id")
direct = model.predict(shop_models.matrix(by_id.loc[[o["order_id"] for o in orders]].reset_index()))
for prediction, expected in zip(chained["predictions"], direct, strict=True):
    assert abs(prediction["order_value"] - round(float(expected), 2)) < 0.011, (prediction, expected)
print("transformer → predictor matches the SQL features for", len(orders), "orders")

# %% [markdown]
# ### Going further: V2 over gRPC
# The Open Inference Protocol has a gRPC binding with the same model: named, typed tensors in, tensors out, the
# request id echoed. It is the same data plane behind another listener (`predictor.grpc_target`), with binary
# framing instead of JSON — what a high-throughput caller in the same cluster would use. `kserve_local.grpc_infer`
# sends one request with KServe's own client (`kserve.InferenceGRPCClient`).

# %%
over_grpc = kserve_local.grpc_infer(predictor.grpc_target, "order-value", X[:3], request_id="grpc-1")
over_rest = httpx.post(f"{url}/v2/models/order-value/infer", json=make_body(X[:3])).json()
print(
    "gRPC",
    over_grpc.id,
    over_grpc.outputs[0].as_numpy().round(2),
    "| REST",
    np.round(over_rest["outputs"][0]["data"], 2),
)
assert np.allclose(over_grpc.outputs[0].as_numpy().ravel(), over_rest["outputs"][0]["data"])
transformer.stop()
predictor.stop()

# %% [markdown]
# ## Exercise 3 — the InferenceService, with a canary
# On a cluster with KServe installed, one resource deploys all this: an `InferenceService`
# (`serving.kserve.io/v1beta1`). Its `spec.predictor.model` names the model format (`sklearn`), the protocol
# (`protocolVersion`) and where to download the model (`storageUri`, e.g. an S3 path); `spec.transformer` runs the
# transformer's container in front. To roll out a new model version gradually, you change `storageUri` and set
# `canaryTrafficPercent` on the component being rolled out: KServe keeps the previous revision and sends it the
# rest of the traffic.
#
# Write `make_manifest(name, storage_uri, transformer_image, canary_percent)` returning the manifest as a dict.
# The check validates it against a JSON Schema built from KServe's API types (`delab.mlops.kserve_manifests`:
# the kserve wheel does not ship the CRD's YAML, but it ships the generated API classes) and then reads it.


# %%
### BEGIN SOLUTION
def make_manifest(name: str, storage_uri: str, transformer_image: str, canary_percent: int) -> dict:
    """An InferenceService: transformer → sklearn predictor (V2), the new model on canary_percent of traffic."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": {"app": "shop"}},
        "spec": {
            "predictor": {
                "canaryTrafficPercent": canary_percent,
                "minReplicas": 1,
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "protocolVersion": "v2",
                    "storageUri": storage_uri,
                    "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
                },
            },
            "transformer": {
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": transformer_image,
                        "args": ["--model_name", name, "--predictor_protocol", "v2"],
                    }
                ]
            },
        },
    }


### END SOLUTION

# %%
check.m06.canary_inference_service(make_manifest)

# %% [markdown]
# The rollout, as files you would commit and `kubectl apply`: version 1 at full traffic, then version 2 on a 10 %
# canary, then promoted (no `canaryTrafficPercent`: the latest ready revision takes everything). Rolling back is
# applying the previous file again, or setting `canaryTrafficPercent: 0`.

# %%
steps = {
    "1-stable-v1": {**make_manifest("order-value", "s3://models/order-value/1", "shop/order-transformer:1", 100)},
    "2-canary-v2": make_manifest("order-value", "s3://models/order-value/2", "shop/order-transformer:1", 10),
    "3-promoted-v2": make_manifest("order-value", "s3://models/order-value/2", "shop/order-transformer:1", 100),
}
for manifest in (steps["1-stable-v1"], steps["3-promoted-v2"]):
    del manifest["spec"]["predictor"]["canaryTrafficPercent"]
manifests_dir = folder / "manifests"
manifests_dir.mkdir(exist_ok=True)
for step, manifest in steps.items():
    assert kserve_manifests.validation_errors(manifest) == [], step
    (manifests_dir / f"{step}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
print(*sorted(p.name for p in manifests_dir.iterdir()), sep="\n")
print((manifests_dir / "2-canary-v2.yaml").read_text())

# %% [markdown]
# What the schema catches — and what it cannot:

# %%
typo = make_manifest("order-value", "s3://models/order-value/2", "shop/order-transformer:1", 10)
typo["spec"]["predictor"]["model"]["storageURI"] = typo["spec"]["predictor"]["model"].pop("storageUri")
print(kserve_manifests.validation_errors(typo))
too_much = make_manifest("order-value", "s3://models/order-value/2", "shop/order-transformer:1", 150)
print(
    "150 % canary passes the schema:",
    kserve_manifests.validation_errors(too_much) == [],
    "— ranges are the API server's and KServe's admission webhook's job",
)

# %% [markdown]
# ## Recap
# - A `kserve.Model` is load + preprocess → predict → postprocess; `ready` gates traffic. The same class serves V1
#   (`instances`/`predictions`) and V2, the Open Inference Protocol (named, typed tensors; the response echoes the
#   request id).
# - A transformer is feature engineering served in front of the predictor, speaking V2 to it; checking its output
#   against the training features catches training/serving skew.
# - On Kubernetes, an `InferenceService` declares predictor, transformer, protocol, storage and the canary share;
#   validate manifests before they reach a cluster.
#
# **Going further:** on a real cluster, `kubectl apply -f manifests/2-canary-v2.yaml` then `kubectl get isvc
# order-value` shows the traffic split between the previous and latest revisions; KServe's *serverless* mode
# (Knative) scales to zero, the *raw deployment* mode uses plain Deployments. A caller of the gRPC binding
# generates its stubs from KServe's `grpc_predict_v2.proto` in any language. An
# `InferenceGraph` chains several models (sequence, switch, ensemble, splitter). Module 07 applies manifests to
# a Kubernetes API server; lab 06.03 rolls versions out by alias from the MLflow registry and measures the
# canary.
