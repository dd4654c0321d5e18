"""Lab 06.06's pipeline pieces: versioned training data in the lakehouse, training from one snapshot, evaluation,
registration with its lineage (data snapshot, code version, parameters), promotion and rollback by alias.

The training data is an Iceberg table of the stack's lakehouse: every write is a snapshot, and a run records the
snapshot id it trained on, so the same rows can be read again later (``table.scan(snapshot_id=…)``) whatever was
appended since. The code version is a hash of the training code's source, so a retrain can tell whether the code
it runs is the code that produced the registered model.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

import numpy as np
import pandas as pd

from delab.mlops import registry, shop_models

COLUMNS: tuple[str, ...] = ("order_id", *shop_models.FEATURES, shop_models.TARGET)
# the pipeline's hyper-parameters: not shop_models' defaults, so a retrain that forgets them is told apart
PARAMS: dict[str, int] = {"n_estimators": 20, "max_depth": 10, "seed": 7}
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]  # a forest's trees, for MLflow's skops format (docs/mlops.md)


def publish(catalog: Any, table_name: str, frame: pd.DataFrame) -> int:
    """Append ``frame``'s rows (COLUMNS) to the Iceberg table, creating it first; return the new snapshot id."""
    import pyarrow as pa

    rows = pa.Table.from_pandas(frame[list(COLUMNS)].reset_index(drop=True), preserve_index=False)
    if catalog.table_exists(table_name):
        table = catalog.load_table(table_name)
    else:
        table = catalog.create_table(table_name, schema=rows.schema)
    table.append(rows)
    return int(table.current_snapshot().snapshot_id)


def read_snapshot(catalog: Any, table_name: str, snapshot_id: int) -> pd.DataFrame:
    """The table's rows as of one snapshot, ordered by order_id (a scan's file order is not a contract)."""
    table = catalog.load_table(table_name)
    frame = table.scan(snapshot_id=int(snapshot_id)).to_pandas()
    return frame.sort_values("order_id", kind="stable").reset_index(drop=True)


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and held-out rows: every fifth order id is held out (deterministic, no random state to record)."""
    held = frame.order_id % 5 == 0
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)


def train(frame: pd.DataFrame, n_estimators: int, max_depth: int, seed: int):
    """The order-value forest trained on the training part of ``frame``."""
    training, _ = split(frame)
    return shop_models.train_order_value(training, n_estimators=n_estimators, max_depth=max_depth, seed=seed)


def mae(model: Any, frame: pd.DataFrame) -> float:
    """Mean absolute error of ``model`` on ``frame``'s held-out part."""
    _, held_out = split(frame)
    predictions = np.asarray(model.predict(shop_models.matrix(held_out)), dtype=float)
    return float(np.mean(np.abs(predictions - held_out[shop_models.TARGET].to_numpy(dtype=float))))


def baseline_mae(frame: pd.DataFrame) -> float:
    """The MAE of always predicting the training part's mean: what any model must beat."""
    training, held_out = split(frame)
    target = held_out[shop_models.TARGET].to_numpy(dtype=float)
    return float(np.mean(np.abs(target - float(training[shop_models.TARGET].mean()))))


def code_version() -> str:
    """A short hash of the training code (this module and shop_models): changes when that code changes."""
    import delab.mlops.workflows as this

    source = inspect.getsource(shop_models) + inspect.getsource(this)
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def register(
    mlflow: Any,
    name: str,
    model: Any,
    *,
    params: dict[str, int],
    metrics: dict[str, float],
    table: str,
    snapshot_id: int,
) -> str:
    """Log a run (params, metrics, the data's table and snapshot id, the code version) and register its model.

    Returns the new version's number."""
    with mlflow.start_run(run_name=f"order-value-{snapshot_id}"):
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"data.table": table, "data.snapshot_id": str(snapshot_id), "code.version": code_version()})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=name,
            skops_trusted_types=SKOPS_TRUSTED,
            pip_requirements=registry.model_requirements(),
        )
    return str(info.registered_model_version)


def fresh_model(client: Any, name: str) -> None:
    """Delete the registered model ``name`` (its versions and aliases) if it exists: a lab starts from no champion.

    The runs stay in their experiment; only the registry entry goes."""
    if client.search_registered_models(f"name='{name}'"):
        client.delete_registered_model(name)


def aliases(client: Any, name: str) -> dict[str, str]:
    """The registered model's aliases as {alias: version}."""
    return {alias: str(version) for alias, version in (client.get_registered_model(name).aliases or {}).items()}


def promote(client: Any, name: str, version: str) -> None:
    """Make ``version`` the champion and keep the former champion as ``previous`` (idempotent)."""
    current = aliases(client, name).get("champion")
    if current is not None and current != str(version):
        client.set_registered_model_alias(name, "previous", current)
    client.set_registered_model_alias(name, "champion", str(version))
    if aliases(client, name).get("challenger") == str(version):
        client.delete_registered_model_alias(name, "challenger")


def roll_back(client: Any, name: str, reason: str) -> str:
    """Move ``champion`` back to ``previous`` and tag the version it leaves; return the restored version."""
    known = aliases(client, name)
    if "previous" not in known:
        raise RuntimeError(f"{name} has no `previous` version to roll back to")
    bad = known.get("champion")
    client.set_registered_model_alias(name, "champion", known["previous"])
    client.delete_registered_model_alias(name, "previous")
    if bad is not None:
        client.set_model_version_tag(name, bad, "rolled_back", reason)
    return known["previous"]


def lineage(client: Any, name: str, version: str) -> dict[str, Any]:
    """What a registered version was made from: its run's params (as logged, strings), tags and metrics."""
    run = client.get_run(client.get_model_version(name, str(version)).run_id)
    return {
        "params": dict(run.data.params),
        "data.table": run.data.tags.get("data.table"),
        "data.snapshot_id": run.data.tags.get("data.snapshot_id"),
        "code.version": run.data.tags.get("code.version"),
        "metrics": dict(run.data.metrics),
    }


def champion(client: Any, name: str) -> Any | None:
    """The registered model's champion, loaded (``models:/NAME@champion``), or None when it has none yet."""
    import mlflow

    if not client.search_registered_models(f"name='{name}'") or "champion" not in aliases(client, name):
        return None
    return mlflow.sklearn.load_model(f"models:/{name}@champion")
