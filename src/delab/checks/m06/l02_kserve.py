"""Checks of lab 06.02 (KServe): a ``kserve.Model`` that answers both protocols, an Open Inference Protocol
request body sent to the real server, and InferenceService manifests (with a canary) validated against a schema
of KServe's API.

e1 runs the learner's model class in-process on a V1 body and a V2 ``InferRequest`` (what KServe's data plane
hands it); e2 sends the learner's body to the lab's running model server; e3 validates manifests offline. None
of them depends on timing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
from pathlib import Path
from typing import Any

import numpy as np

from delab.grading import WrongAnswer, exercise, learner_code
from delab.mlops import kserve_manifests
from delab.servers import elsewhere, import_source

MODEL_NAME = "order-value"
N_FEATURES = 14


# ------------------------------------------------------------------------------------------- e1: the model


def _run(coroutine_function, *args):
    """Run an async call to completion from any thread (a notebook's kernel already runs an event loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_function(*args))).result(timeout=120)


async def _call(model, body):
    return await model(body, headers={})


def _expected(model_dir: Path, rows: np.ndarray) -> np.ndarray:
    import joblib

    return np.asarray(joblib.load(Path(model_dir) / "model.joblib").predict(rows), dtype=float)


@exercise("m06.l02.e1")
def order_value_model(model_source: str, model_dir: str | Path, sample_rows: np.ndarray) -> None:
    """A kserve.Model that loads model.joblib from its model_dir and answers V1 ({"instances"} →
    {"predictions"}) and V2 (InferRequest → InferResponse with the request's id) with the model's values."""
    import kserve
    from kserve import InferResponse

    from delab.mlops.kserve_shop import v2_rows_request

    if not isinstance(model_source, str) or "kserve" not in model_source:
        raise WrongAnswer(
            "model_source should be the text of a Python module that defines a kserve.Model subclass.",
            hint="a string holding `import kserve` and a class OrderValueModel(kserve.Model).",
        )
    rows = np.asarray(sample_rows, dtype=np.float32).reshape(-1, N_FEATURES)
    expected = _expected(Path(model_dir), rows)
    with elsewhere("m06-l02-") as folder:
        module = learner_code("importing your model module")(import_source)(
            model_source, folder, "learner_kserve_model"
        )
        classes = [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, kserve.Model) and value.__module__ == module.__name__
        ]
        if len(classes) != 1:
            raise WrongAnswer(
                f"the module defines {len(classes)} kserve.Model subclasses; expected exactly one.",
                hint="one class, OrderValueModel(kserve.Model), with load, preprocess, predict and postprocess.",
            )
        model = learner_code("creating your model as Model(name, model_dir)")(classes[0])(MODEL_NAME, str(model_dir))
        if not model.ready:
            learner_code("your load()")(model.load)()
        if not model.ready:
            raise WrongAnswer(
                "after load() the model is still not ready: KServe's server answers 503 on "
                f"/v2/models/{MODEL_NAME}/ready and refuses every prediction.",
                hint="load() tells KServe it is done by setting the model's ready flag.",
            )
        v1 = learner_code("a V1 request through your model")(_run)(_call, model, {"instances": rows.tolist()})
        request = v2_rows_request(rows, MODEL_NAME)
        v2 = learner_code("a V2 (Open Inference Protocol) request through your model")(_run)(_call, model, request)
        anonymous = v2_rows_request(rows[:2], MODEL_NAME)
        anonymous.id = None  # the protocol's request id is optional
        v2_no_id = learner_code("a V2 request without an id")(_run)(_call, model, anonymous)
    v1_body = v1[0] if isinstance(v1, tuple) else v1
    if not isinstance(v1_body, dict) or "predictions" not in v1_body:
        raise WrongAnswer(
            f"a V1 request got {type(v1_body).__name__} back; V1 answers a JSON object with `predictions`.",
            hint='V1: {"instances": [...]} in, {"predictions": [...]} out, one prediction per instance.',
        )
    try:
        v1_values = np.asarray(v1_body["predictions"], dtype=float).ravel()
    except (TypeError, ValueError):
        raise WrongAnswer(
            "the V1 predictions are not numbers.", hint="one order value (a float) per instance."
        ) from None
    if v1_values.size != len(rows) or not np.allclose(v1_values, expected, rtol=1e-4, atol=1e-3):
        raise WrongAnswer(
            f"V1: {v1_values.size} prediction(s) for {len(rows)} instances, not the model's values for them.",
            hint="predict every instance row with the model loaded from model_dir, in order.",
        )
    v2_body = v2[0] if isinstance(v2, tuple) else v2
    if not isinstance(v2_body, InferResponse):
        raise WrongAnswer(
            f"a V2 request got {type(v2_body).__name__} back: the Open Inference Protocol answers an "
            "InferResponse (outputs with name, shape, datatype and data), not V1's JSON.",
            hint="postprocess must know which protocol the request used: keep the request (or its type) from "
            "preprocess.",
        )
    if v2_body.id != request.id:
        raise WrongAnswer(
            f"the V2 response's id is {v2_body.id!r}, the request's was {request.id!r}.",
            hint="the Open Inference Protocol echoes the request id in the response: callers (and a transformer) "
            "match answers to requests by it.",
        )
    no_id = v2_no_id[0] if isinstance(v2_no_id, tuple) else v2_no_id
    if not getattr(no_id, "id", None):
        raise WrongAnswer(
            "a V2 request without an id got a response without one: KServe's server refuses to send such a "
            "response (500).",
            hint="the request id is optional in the protocol, the response id is not: make one up when missing.",
        )
    try:
        v2_values = np.asarray(v2_body.outputs[0].as_numpy(), dtype=float).ravel()
    except Exception:
        raise WrongAnswer(
            "the V2 response has no readable output tensor.",
            hint="an InferOutput whose data is set from a numpy array (set_data_from_numpy).",
        ) from None
    if v2_values.size != len(rows) or not np.allclose(v2_values, expected, rtol=1e-4, atol=1e-3):
        raise WrongAnswer(
            f"V2: {v2_values.size} value(s) for {len(rows)} rows, not the model's values for them.",
            hint="the input tensor `rows` is a matrix with one order per row (as_numpy keeps its shape).",
        )


# ------------------------------------------------------------------------------- e2: an OIP request body

_OIP_DATATYPES = {
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
}


def _count(data: Any) -> int:
    if isinstance(data, list | tuple):
        return sum(_count(item) for item in data)
    return 1


@exercise("m06.l02.e2")
def v2_request_body(make_body, url: str, rows: np.ndarray) -> None:
    """make_body(rows) -> the JSON body of an Open Inference Protocol request: one FP32 tensor `rows` of shape
    [n, 14]; the lab's server answers it with the model's values."""
    import httpx

    rows = np.asarray(rows, dtype=np.float32).reshape(-1, N_FEATURES)[:7]
    body = learner_code("make_body")(make_body)(rows)
    if not isinstance(body, dict):
        raise WrongAnswer(f"make_body returned {type(body).__name__}; expected a dict (the JSON body).")
    if "instances" in body and "inputs" not in body:
        raise WrongAnswer(
            "that is a V1 body (`instances`); the V2 endpoint reads `inputs`.",
            hint="the Open Inference Protocol sends a list of named tensors under `inputs`.",
        )
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise WrongAnswer(
            "`inputs` should be a list holding one tensor (a dict).",
            hint="one tensor: name, shape, datatype and data.",
        )
    tensor = inputs[0]
    missing = [key for key in ("name", "shape", "datatype", "data") if key not in tensor]
    if missing:
        raise WrongAnswer(
            f"the tensor has no {', '.join(missing)}.",
            hint="every OIP tensor carries its name, shape, datatype and data.",
        )
    datatype = tensor["datatype"]
    if datatype not in _OIP_DATATYPES:
        raise WrongAnswer(
            f"datatype {datatype!r} is not an Open Inference Protocol datatype.",
            hint="the protocol names its own types (BOOL, INT64, FP32, BYTES, ...), not numpy's.",
        )
    shape = tensor["shape"]
    n = len(rows)
    if not isinstance(shape, list) or math.prod(int(s) for s in shape if isinstance(s, int | float)) != n * N_FEATURES:
        raise WrongAnswer(
            f"shape {shape} does not hold {n} rows of {N_FEATURES} features.",
            hint="the shape lists the tensor's dimensions: rows first, then features.",
        )
    if len(shape) == 1:
        raise WrongAnswer(
            f"shape {shape} is one long vector: the server cannot tell where an order ends, and the model "
            "receives a single row of numbers instead of one row per order.",
            hint="the shape lists the tensor's dimensions: rows first, then features.",
        )
    if list(shape) != [n, N_FEATURES]:
        raise WrongAnswer(
            f"shape {shape} for {n} orders of {N_FEATURES} features each: the server reads the data in that shape, "
            "so each order's features end up spread over the wrong rows.",
            hint="a matrix with one order per row: [number of orders, number of features].",
        )
    if _count(tensor["data"]) != n * N_FEATURES:
        raise WrongAnswer(
            f"the data holds {_count(tensor['data'])} numbers; the shape says {n * N_FEATURES}.",
            hint="send every feature of every row (flattened row by row, or as nested lists).",
        )
    answer = httpx.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=body, timeout=60)
    if answer.status_code != 200:
        raise WrongAnswer(
            f"the server answered {answer.status_code}: {answer.text[:200]}",
            hint="read the server's message: it names what it could not use.",
        )
    reference = httpx.post(f"{url}/v1/models/{MODEL_NAME}:predict", json={"instances": rows.tolist()}, timeout=60)
    expected = np.asarray(reference.json()["predictions"], dtype=float)
    outputs = answer.json().get("outputs") or [{}]
    got = np.asarray(outputs[0].get("data", []), dtype=float).ravel()
    if got.size != n or not np.allclose(got, expected, rtol=1e-4, atol=1e-3):
        raise WrongAnswer(
            f"the server's {got.size} answer(s) are not the values of these {n} orders.",
            hint=f"datatype {datatype} and the data in row order: the first {N_FEATURES} numbers are the first "
            "order's features.",
        )


# ---------------------------------------------------------------------------------- e3: the manifests

_CASES = (
    ("order-value", "s3://models/order-value/2", "registry.example/shop/order-transformer:1.4", 10),
    ("order-value-eu", "s3://models-eu/order-value/7", "registry.example/shop/order-transformer:2.0", 25),
)


def _path(manifest: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(manifest, dict):
            return None
        manifest = manifest.get(key)
    return manifest


@exercise("m06.l02.e3")
def canary_inference_service(make_manifest) -> None:
    """make_manifest(name, storage_uri, transformer_image, canary_percent) -> an InferenceService (a dict) valid
    against KServe's API: a transformer in front of an sklearn predictor on the V2 protocol, the new model
    getting canary_percent of the traffic."""
    for name, storage_uri, image, percent in _CASES:
        manifest = learner_code("make_manifest")(make_manifest)(name, storage_uri, image, percent)
        errors = kserve_manifests.validation_errors(manifest)
        if errors:
            first = errors[0]
            hint = "compare each field's name, place and type with the InferenceService API (kserve.models)."
            if "canaryTrafficPercent" in first and first.startswith("spec:"):
                hint = "a traffic split belongs to the component whose revisions it splits: the predictor."
            elif first.startswith("apiVersion"):
                hint = "serving.kubeflow.org was KFServing's group; KServe's is serving.kserve.io, version v1beta1."
            elif "was unexpected" in first:
                hint = "Kubernetes fields are camelCase, and each belongs to one level of the spec."
            raise WrongAnswer(
                f"{len(errors)} schema error(s), first: {first}",
                hint=hint,
            )
        predictor = _path(manifest, "spec", "predictor") or {}
        model = predictor.get("model") or {}
        if _path(manifest, "metadata", "name") != name:
            raise WrongAnswer(
                f"metadata.name is {_path(manifest, 'metadata', 'name')!r} for name {name!r}.",
                hint="use the arguments: the same function writes every environment's manifest.",
            )
        if _path(model, "modelFormat", "name") != "sklearn" or model.get("storageUri") != storage_uri:
            raise WrongAnswer(
                "the predictor should serve the sklearn model stored at storage_uri "
                f"(got format {_path(model, 'modelFormat', 'name')!r}, storageUri {model.get('storageUri')!r}).",
                hint="predictor.model names the model format and where the storage initializer downloads it from.",
            )
        if model.get("protocolVersion") != "v2":
            raise WrongAnswer(
                f"protocolVersion is {model.get('protocolVersion')!r}: the transformer speaks V2 to the predictor.",
                hint="the model's protocolVersion selects the Open Inference Protocol.",
            )
        traffic = predictor.get("canaryTrafficPercent")
        if traffic == 100 - percent and traffic != percent:
            raise WrongAnswer(
                f"canaryTrafficPercent {traffic} for a canary of {percent} %: that is the share left to the previous "
                "revision.",
                hint="canaryTrafficPercent is the share of requests the newest revision (the canary) receives.",
            )
        if traffic != percent:
            raise WrongAnswer(
                f"canaryTrafficPercent is {traffic!r}; the canary should get {percent} % of the traffic.",
                hint="the canary's share goes on the predictor, as an integer percentage.",
            )
        containers = _path(manifest, "spec", "transformer", "containers") or []
        if not containers or containers[0].get("image") != image:
            raise WrongAnswer(
                "spec.transformer should run one container with the transformer image.",
                hint="a transformer is a custom container (kserve-container) built from your transformer's code.",
            )
