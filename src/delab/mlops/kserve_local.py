"""KServe's Python model server in a lab, with no Kubernetes: a ``kserve.Model`` served on 127.0.0.1.

``kserve.ModelServer`` hard-codes ``host="0.0.0.0"`` for its REST server (and ``[::]`` for gRPC). This module
builds the same pieces — the model registry, the data plane, KServe's FastAPI app with its V1 and V2 (Open
Inference Protocol) routes — and runs the app under uvicorn on 127.0.0.1 itself. With ``grpc=True`` it also serves
the V2 protocol's gRPC binding: KServe's own ``GRPCServer`` listens on ``[::]`` (every interface, hard-coded), so
this module builds a ``grpc.aio`` server with KServe's ``InferenceServicer`` on the same data plane and binds it to
127.0.0.1; both servers run on one event loop in one process.

    server = kserve_local.serve("order_model:OrderValueModel", name="order-value", model_dir=folder, workdir=folder)
    httpx.post(f"{server.url}/v1/models/order-value:predict", json={"instances": rows})
    server.stop()

A transformer is the same thing with a predictor behind it: ``serve(..., predictor=predictor_server,
protocol="v2")`` sets KServe's predictor host, and the transformer's inherited ``predict`` forwards to it.
Run as ``python -m delab.mlops.kserve_local --model module:Class --name NAME --port N [--model-dir DIR]
[--predictor-host HOST:PORT --predictor-protocol v1|v2] [--grpc-port N]`` (what ``serve`` does through
``delab.servers``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import sys
from pathlib import Path

from delab import config
from delab.servers import LocalServer, free_port


def serve(
    target: str,
    *,
    name: str,
    model_dir: Path | str | None = None,
    workdir: Path | str | None = None,
    predictor: LocalServer | None = None,
    protocol: str = "v2",
    log_dir: Path | str | None = None,
    timeout: float = 90.0,
    grpc: bool = False,
) -> LocalServer:
    """Serve ``module:Class`` (a ``kserve.Model``) as model ``name`` on a free loopback port; ready to call.

    The class is built as ``Class(name, model_dir)`` when its constructor takes a model_dir, else ``Class(name)``;
    ``load()`` is called when the model is not ready yet. With ``predictor``, the model is a transformer whose
    ``predict`` forwards to that server with ``protocol`` (``v1`` or ``v2``). With ``grpc``, the V2 gRPC binding
    listens too, on 127.0.0.1 and another free port: ``server.grpc_target`` (``host:port``) is what a gRPC client
    dials.
    """
    port = free_port()
    argv = [sys.executable, "-m", "delab.mlops.kserve_local", "--model", target, "--name", name, "--port", str(port)]
    if model_dir is not None:
        argv += ["--model-dir", str(model_dir)]
    if predictor is not None:
        argv += ["--predictor-host", f"{config.HOST}:{predictor.port}", "--predictor-protocol", protocol]
    grpc_port = free_port() if grpc else None
    if grpc_port is not None:
        argv += ["--grpc-port", str(grpc_port)]
    workdir = Path(workdir) if workdir else None
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(workdir or ""), os.environ.get("PYTHONPATH", "")]))}
    server = LocalServer(
        f"kserve-{name}",
        argv,
        port=port,
        ready=f"/v2/models/{name}/ready",
        log_dir=log_dir or (workdir / "logs" if workdir else None),
        env=env,
        cwd=workdir,
        timeout=timeout,
    )
    server.start().wait_ready()
    if grpc_port is not None:
        server.grpc_target = f"{config.HOST}:{grpc_port}"
        _wait_listening(server, grpc_port)
    return server


def grpc_infer(target: str, model: str, rows, request_id: str | None = None):
    """One V2 inference over gRPC (``kserve.InferenceGRPCClient``): an FP32 tensor ``rows``; the ``InferResponse``.

    The client is asynchronous; it runs on a loop of its own in a worker thread, so it works from a notebook (whose
    kernel already runs a loop) as from a script."""
    import asyncio
    import concurrent.futures

    import numpy as np
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    rows = np.ascontiguousarray(rows, dtype=np.float32)

    async def call():
        client = InferenceGRPCClient(target)
        tensor = InferInput(name="rows", shape=list(rows.shape), datatype="FP32")
        tensor.set_data_from_numpy(rows)
        try:
            return await client.infer(InferRequest(model_name=model, infer_inputs=[tensor], request_id=request_id))
        finally:
            await client.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call()).result(timeout=60)


def _wait_listening(server: LocalServer, port: int, timeout: float = 30.0) -> None:
    """Wait until the gRPC port accepts connections (it starts on the same loop, right after the REST app)."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((config.HOST, port), timeout=1):
            return
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"KServe's gRPC server did not listen on {config.HOST}:{port} within {timeout:.0f} s")


async def _serve_grpc(server, port: int) -> None:
    """KServe's V2 gRPC service on the model server's data plane, bound to 127.0.0.1 only."""
    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.servicer import InferenceServicer

    grpc_server = aio.server()
    servicer = InferenceServicer(server.dataplane, server.model_repository_extension)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, grpc_server)
    grpc_server.add_insecure_port(f"{config.HOST}:{port}")
    await grpc_server.start()
    await grpc_server.wait_for_termination()


def _model_class(target: str):
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def main(argv: list[str] | None = None) -> int:
    """Build the model, register it and run KServe's REST app on 127.0.0.1 (blocks until stopped)."""
    parser = argparse.ArgumentParser(prog="python -m delab.mlops.kserve_local")
    parser.add_argument("--model", required=True, help="module:Class of a kserve.Model")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir")
    parser.add_argument("--predictor-host")
    parser.add_argument("--predictor-protocol", default="v2", choices=["v1", "v2"])
    parser.add_argument("--grpc-port", type=int)
    options = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # kserve parses sys.argv when imported: let it see none of ours

    import asyncio

    from kserve.model_server import FASTAPI_APP_IMPORT_STRING, ModelServer
    from kserve.predictor_config import PredictorConfig
    from kserve.protocol.rest.server import RESTServer

    cls = _model_class(options.model)
    takes_dir = "model_dir" in inspect.signature(cls.__init__).parameters
    model = cls(options.name, options.model_dir) if takes_dir else cls(options.name)
    if not model.ready:
        model.load()
    if not model.ready:
        print(f"delab: {options.model} is not ready after load(): set self.ready = True once loaded", flush=True)
        return 3
    predictor = PredictorConfig(options.predictor_host or "", options.predictor_protocol)
    server = ModelServer(http_port=options.port, enable_grpc=False, workers=1, predictor_config=predictor)
    server.register_model(model)
    rest = RESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension, options.port)
    rest.config.host = config.HOST  # the one change from kserve.ModelServer: loopback, not every interface
    if options.grpc_port is None:
        asyncio.run(rest.start())
        return 0

    async def both() -> None:
        await asyncio.gather(rest.start(), _serve_grpc(server, options.grpc_port))

    asyncio.run(both())
    return 0


if __name__ == "__main__":
    sys.exit(main())
