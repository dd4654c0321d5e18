"""The model server lab 06.05 monitors: a FastAPI app under uvicorn that serves the order-value model and exposes
Prometheus metrics on ``/metrics`` (requests by status, a latency histogram, predictions served).

    python -m delab.mlops.monitored_service --model MODEL.joblib --port N   # binds 127.0.0.1

``POST /predict`` takes ``{"rows": [[...14 floats...], ...]}`` and answers ``{"predictions": [...]}``.
``POST /admin/faults`` with ``{"error_every": k}`` makes every k-th prediction request fail with 500 (0: none) —
the fault the lab injects to spend its error budget.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at run time.
import argparse
import time

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def create_app(model_path: str):
    """The FastAPI app: the model loaded once, its metrics in a registry of its own."""
    import joblib
    import numpy as np
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

    model = joblib.load(model_path)
    registry = CollectorRegistry()
    requests = Counter(
        "inference_requests", "Prediction requests answered, by HTTP status", ["status"], registry=registry
    )
    latency = Histogram(
        "inference_request_duration_seconds",
        "Time to answer a prediction request",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    rows_served = Counter("inference_rows", "Rows predicted", registry=registry)
    state = {"error_every": 0, "seen": 0}
    app = FastAPI(title="order value (monitored)")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/faults")
    async def faults(request: Request) -> dict:
        state["error_every"] = int((await request.json()).get("error_every", 0))
        return {"error_every": state["error_every"]}

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        state["seen"] += 1
        try:
            if state["error_every"] and state["seen"] % state["error_every"] == 0:
                raise RuntimeError("injected fault")
            rows = np.asarray((await request.json())["rows"], dtype=np.float32)
            values = model.predict(rows)
            status, body = 200, {"predictions": [round(float(v), 2) for v in values]}
            rows_served.inc(len(values))
        except (KeyError, ValueError, TypeError) as error:
            status, body = 422, {"error": str(error)}
        except Exception as error:
            status, body = 500, {"error": str(error)}
        latency.observe(time.perf_counter() - started)
        requests.labels(status=str(status)).inc()
        return JSONResponse(body, status_code=status)

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
