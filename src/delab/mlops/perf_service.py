"""The BentoML service lab 06.01 load-tests: one model, four ways to serve it, one endpoint each.

* ``/predict`` — scikit-learn, one request = one ``predict`` call;
* ``/predict_batched`` — the same model behind BentoML's adaptive batching (requests arriving together are
  merged into one call of up to ``DELAB_MAX_BATCH`` rows);
* ``/predict_onnx`` — the ONNX Runtime export of the same forest;
* ``/predict_cached`` — scikit-learn behind an LRU cache keyed on the feature values.

Models come from the lab's BentoML model store (``order_value`` and ``order_value_onnx``, latest versions).
Served with ``bentoml serve delab.mlops.perf_service:OrderValuePerf``; ``DELAB_BENTO_WORKERS`` sets the workers.
"""

from __future__ import annotations

import functools
import os

import bentoml
import numpy as np

MAX_BATCH = int(os.environ.get("DELAB_MAX_BATCH", "64"))
MAX_LATENCY_MS = int(os.environ.get("DELAB_MAX_LATENCY_MS", "1000"))  # a deadline: later requests are shed (503)


@bentoml.service(workers=int(os.environ.get("DELAB_BENTO_WORKERS", "1")), traffic={"timeout": 30})
class OrderValuePerf:
    def __init__(self) -> None:
        import onnxruntime as ort

        self.model = bentoml.sklearn.load_model("order_value:latest")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # one core per worker, like the forest
        onnx_file = bentoml.models.get("order_value_onnx:latest").path_of("model.onnx")
        self.onnx = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
        self.cached_one = functools.lru_cache(maxsize=4096)(self._one)

    def _one(self, key: bytes) -> float:
        return float(self.model.predict(np.frombuffer(key, dtype=np.float32).reshape(1, -1))[0])

    @bentoml.api
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.model.predict(rows.astype(np.float32))

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def predict_batched(self, rows: np.ndarray) -> np.ndarray:
        return self.model.predict(rows.astype(np.float32))

    @bentoml.api
    def predict_onnx(self, rows: np.ndarray) -> np.ndarray:
        return self.onnx.run(None, {"rows": rows.astype(np.float32)})[0].ravel()

    @bentoml.api
    def predict_cached(self, rows: np.ndarray) -> np.ndarray:
        return np.array([self.cached_one(row.tobytes()) for row in rows.astype(np.float32)])
