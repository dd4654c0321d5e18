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


def model_requirements(*packages: str) -> list[str]:
    """Pinned requirements of a logged scikit-learn model (scikit-learn, skops, numpy, and ``packages``).

    Given to ``log_model(pip_requirements=...)``, MLflow does not infer them — inferring imports the model in a
    subprocess, ~25 s per logged version on a busy machine (docs/mlops.md)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("scikit-learn", "skops", "numpy", *packages)]
