"""Checks of lab 06.02 (KServe): the right answer passes, realistic wrong ones are rejected with their own
message, the placeholder is not solved. e2 runs against a real KServe model server on loopback."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from delab.checks.m06 import l02_kserve as checks
from delab.grading import NotSolvedYet, WrongAnswer

RIGHT_MODEL = """
import uuid
from pathlib import Path

import joblib
import kserve
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse


class OrderValueModel(kserve.Model):
    def __init__(self, name, model_dir):
        super().__init__(name)
        self.model_dir = Path(model_dir)

    def load(self):
        self.model = joblib.load(self.model_dir / "model.joblib")
        READY

    def preprocess(self, payload, headers=None):
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
            return InferResponse(response_id=RESPONSE_ID, model_name=self.name, infer_outputs=[tensor])
        return {"predictions": values.tolist()}
"""


def model_source(ready="self.ready = True", response_id="request.id or str(uuid.uuid4())", v2=True):
    source = RIGHT_MODEL.replace("READY", ready).replace("RESPONSE_ID", response_id)
    if not v2:  # the V1-only model every tutorial starts with
        source = source.replace("if isinstance(payload, InferRequest):", "if False:").replace(
            "if isinstance(request, InferRequest):", "if False:"
        )
    return source


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import joblib
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(3)
    X = rng.uniform(0, 5, (300, 14)).astype(np.float32)
    y = X @ rng.uniform(1, 10, 14)
    folder = tmp_path_factory.mktemp("model")
    joblib.dump(RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0).fit(X, y), folder / "model.joblib")
    return folder, X


def test_model_right(model_dir):
    folder, X = model_dir
    checks.order_value_model(model_source(), folder, X[:10])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (model_source(ready="pass"), "still not ready"),
        (model_source(v2=False), "V2 .Open Inference Protocol. request through your model failed"),
        (model_source(response_id="'order-value-response'"), "the request's was"),
        (model_source(response_id="request.id"), "without an id got a response without one"),
        (model_source().replace('{"predictions": values.tolist()}', "values.tolist()"), "V1 answers a JSON object"),
        (model_source().replace('inputs["rows"])}', 'inputs["rows"]) * 1.1}'), "not the model's values"),
        ("print('hello')", "text of a Python module"),
    ],
)
def test_model_wrong(model_dir, source, message):
    folder, X = model_dir
    with pytest.raises(WrongAnswer, match=message):
        checks.order_value_model(source, folder, X[:10])


def test_model_placeholder(model_dir):
    with pytest.raises(NotSolvedYet):
        checks.order_value_model(..., model_dir[0], model_dir[1][:10])


# ------------------------------------------------------------------------------------------------ e2 (real)


@pytest.fixture(scope="module")
def server(model_dir):
    from delab.mlops import kserve_local

    folder = model_dir[0]
    (folder / "order_model.py").write_text(model_source())
    server = kserve_local.serve(
        "order_model:OrderValueModel", name="order-value", model_dir=folder, workdir=folder, grpc=True
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(server):
    return server.url


def _listening_addresses(port: int) -> set[str]:
    """The local addresses listening on a TCP port, from /proc/net/tcp and tcp6 (hex, as the kernel writes them)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def test_grpc_binding_on_loopback_only(server, model_dir):
    """The V2 gRPC binding answers on 127.0.0.1 with the REST server's values, and listens nowhere else."""
    import httpx

    from delab.mlops import kserve_local

    rows = model_dir[1][:4]
    port = int(server.grpc_target.rsplit(":", 1)[1])
    # 127.0.0.1 in /proc's byte order, on an IPv4 socket or IPv4-mapped on an IPv6 one (gRPC opens the latter);
    # never 0.0.0.0 or [::]
    assert _listening_addresses(port) <= {"0100007F", "0000000000000000FFFF00000100007F"}
    assert _listening_addresses(port)

    response = kserve_local.grpc_infer(server.grpc_target, "order-value", rows, request_id="g1")
    rest = httpx.post(f"{server.url}/v2/models/order-value/infer", json=body_right(rows)).json()
    assert response.id == "g1"
    np.testing.assert_allclose(response.outputs[0].as_numpy().ravel(), rest["outputs"][0]["data"], rtol=1e-6)


def body_right(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return {"inputs": [{"name": "rows", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}]}


def body_numpy_dtype(rows):
    body = body_right(rows)
    body["inputs"][0]["datatype"] = "float32"
    return body


def body_flat_shape(rows):
    body = body_right(rows)
    body["inputs"][0]["shape"] = [int(np.asarray(rows).size)]
    return body


def body_transposed(rows):
    body = body_right(rows)
    body["inputs"][0]["shape"] = list(np.asarray(rows).shape[::-1])
    return body


def body_v1(rows):
    return {"instances": np.asarray(rows).tolist()}


def body_column_order(rows):
    rows = np.asarray(rows, dtype=np.float32)
    tensor = {"name": "rows", "shape": list(rows.shape), "datatype": "FP32", "data": rows.T.ravel().tolist()}
    return {"inputs": [tensor]}


def test_body_right(served, model_dir):
    checks.v2_request_body(body_right, served, model_dir[1][:20])


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (body_numpy_dtype, "not an Open Inference Protocol datatype"),
        (body_flat_shape, "one long vector"),
        (body_transposed, "spread over the wrong rows"),
        (body_v1, "V1 body"),
        (body_column_order, "not the values of these"),
    ],
)
def test_body_wrong(served, model_dir, answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.v2_request_body(answer, served, model_dir[1][:20])


# ------------------------------------------------------------------------------------------------ e3


def manifest_right(name, storage_uri, image, percent):
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "canaryTrafficPercent": percent,
                "model": {"modelFormat": {"name": "sklearn"}, "protocolVersion": "v2", "storageUri": storage_uri},
            },
            "transformer": {"containers": [{"name": "kserve-container", "image": image}]},
        },
    }


def manifest_split_on_spec(*args):
    manifest = manifest_right(*args)
    manifest["spec"]["canaryTrafficPercent"] = manifest["spec"]["predictor"].pop("canaryTrafficPercent")
    return manifest


def manifest_kfserving(*args):
    return manifest_right(*args) | {"apiVersion": "serving.kubeflow.org/v1beta1"}


def manifest_snake_case(*args):
    manifest = manifest_right(*args)
    model = manifest["spec"]["predictor"]["model"]
    model["storage_uri"] = model.pop("storageUri")
    return manifest


def manifest_inverted_split(name, storage_uri, image, percent):
    return manifest_right(name, storage_uri, image, 100 - percent)


def manifest_percent_string(name, storage_uri, image, percent):
    return manifest_right(name, storage_uri, image, f"{percent}%")


def manifest_hard_coded(name, storage_uri, image, percent):
    return manifest_right("order-value", "s3://models/order-value/2", image, percent)


def manifest_v1(*args):
    manifest = copy.deepcopy(manifest_right(*args))
    del manifest["spec"]["predictor"]["model"]["protocolVersion"]
    return manifest


def test_manifest_right():
    checks.canary_inference_service(manifest_right)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (manifest_split_on_spec, r"spec: Additional properties .*canaryTrafficPercent"),
        (manifest_kfserving, "apiVersion"),
        (manifest_snake_case, "storage_uri' was unexpected"),
        (manifest_inverted_split, "share left to the previous revision"),
        (manifest_percent_string, "is not of type 'integer'"),
        (manifest_hard_coded, "metadata.name is 'order-value' for name 'order-value-eu'"),
        (manifest_v1, "protocolVersion is None"),
    ],
)
def test_manifest_wrong(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.canary_inference_service(answer)


def test_manifest_placeholder():
    def todo(name, storage_uri, image, percent):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.canary_inference_service(todo)


def test_schema_comes_from_the_installed_api():
    """The schema's names are those of the kserve wheel's generated classes (nothing hand-typed)."""
    from kserve.models import V1beta1PredictorSpec

    from delab.mlops import kserve_manifests

    schema = kserve_manifests.inference_service_schema()
    predictor = schema["$defs"]["V1beta1PredictorSpec"]["properties"]
    assert set(predictor) == set(V1beta1PredictorSpec.attribute_map.values())
    assert "predictor" in schema["$defs"]["V1beta1InferenceServiceSpec"]["required"]
