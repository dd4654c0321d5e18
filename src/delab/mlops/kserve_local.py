"""KServe's Python model server in a lab, with no Kubernetes: a ``kserve.Model`` served on 127.0.0.1.

``kserve.ModelServer`` hard-codes ``host="0.0.0.0"`` for its REST server (and ``[::]`` for gRPC). This module
builds the same pieces — the model registry, the data plane, KServe's FastAPI app with its V1 and V2 (Open
Inference Protocol) routes — and runs the app under uvicorn on 127.0.0.1 itself. gRPC stays off.

    server = kserve_local.serve("order_model:OrderValueModel", name="order-value", model_dir=folder, workdir=folder)
    httpx.post(f"{server.url}/v1/models/order-value:predict", json={"instances": rows})
    server.stop()

A transformer is the same thing with a predictor behind it: ``serve(..., predictor=predictor_server,
protocol="v2")`` sets KServe's predictor host, and the transformer's inherited ``predict`` forwards to it.
Run as ``python -m delab.mlops.kserve_local --model module:Class --name NAME --port N [--model-dir DIR]
[--predictor-host HOST:PORT --predictor-protocol v1|v2]`` (what ``serve`` does through ``delab.servers``).
"""

from __future__ import annotations

import argparse
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
) -> LocalServer:
    """Serve ``module:Class`` (a ``kserve.Model``) as model ``name`` on a free loopback port; ready to call.

    The class is built as ``Class(name, model_dir)`` when its constructor takes a model_dir, else ``Class(name)``;
    ``load()`` is called when the model is not ready yet. With ``predictor``, the model is a transformer whose
    ``predict`` forwards to that server with ``protocol`` (``v1`` or ``v2``).
    """
    port = free_port()
    argv = [sys.executable, "-m", "delab.mlops.kserve_local", "--model", target, "--name", name, "--port", str(port)]
    if model_dir is not None:
        argv += ["--model-dir", str(model_dir)]
    if predictor is not None:
        argv += ["--predictor-host", f"{config.HOST}:{predictor.port}", "--predictor-protocol", protocol]
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
    return server.start().wait_ready()


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
    asyncio.run(rest.start())
    return 0


if __name__ == "__main__":
    sys.exit(main())
