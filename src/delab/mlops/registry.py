"""The stack's MLflow tracking server and model registry, from a notebook or a test."""

from __future__ import annotations

import os

from delab import config


def use_stack_mlflow(experiment: str | None = None):
    """Point MLflow at the stack's server (``stack.require("mlflow")`` first); set an experiment if named.

    Artifacts go through the server (``mlflow-artifacts:``), which keeps them on the stack's S3 store, so the
    notebook needs no S3 credentials of its own. Returns the ``mlflow`` module.
    """
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow

    uri = config.mlflow().tracking_uri
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if experiment:
        mlflow.set_experiment(experiment)
    return mlflow
