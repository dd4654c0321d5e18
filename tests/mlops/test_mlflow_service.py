"""The stack's MLflow service: it starts on demand, answers its probe, keeps its backend store in Postgres and its
artifacts on S3, and experiments, runs, registered models, versions and aliases survive `stack down`/`up`."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from delab import clients, config, stack
from delab.mlops.registry import use_stack_mlflow
from delab.stack.services.mlflow import probe_mlflow

pytestmark = pytest.mark.stack
MODEL = "delab_test_survivor"
EXPERIMENT = "delab-test-mlflow-service"


@pytest.fixture(scope="module")
def mlflow():
    stack.require("mlflow", quiet=True)
    return use_stack_mlflow(EXPERIMENT)


def test_on_demand_and_probed(mlflow):
    assert "mlflow" in stack.ON_DEMAND and "mlflow" not in stack.CORE
    probe_mlflow()
    [row] = stack.status(["mlflow"])
    assert row.ok and row.endpoint == config.mlflow().tracking_uri
    assert row.endpoint.startswith("http://127.0.0.1:")


def test_registry_survives_down_and_up(mlflow):
    X = np.arange(20, dtype=float).reshape(-1, 2)
    y = X @ np.array([2.0, -1.0]) + 3
    with mlflow.start_run() as run:
        mlflow.log_metric("rmse", 0.0)
        info = mlflow.sklearn.log_model(LinearRegression().fit(X, y), name="model", registered_model_name=MODEL)
    client = mlflow.MlflowClient()
    version = info.registered_model_version
    client.set_registered_model_alias(MODEL, "champion", version)

    with stack.disrupt("mlflow"):  # waits until no other process uses the service
        stack.down(["mlflow"])
        assert not stack.status(["mlflow"])[0].ok
        stack.up(["mlflow"])

    assert client.get_run(run.info.run_id).data.metrics["rmse"] == 0.0
    assert client.get_experiment_by_name(EXPERIMENT) is not None
    assert client.get_model_version_by_alias(MODEL, "champion").version == str(version)
    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    np.testing.assert_allclose(loaded.predict(X), y, atol=1e-6)


def test_storage_is_postgres_and_s3(mlflow):
    """The registry's rows are in the `mlflow` database; the model's files on the stack's bucket."""
    with clients.postgres(database=config.mlflow().database) as conn:
        assert conn.execute("SELECT count(*) FROM registered_models WHERE name = %s", (MODEL,)).fetchone()[0] == 1
    keys = clients.s3_keys(config.mlflow().artifacts_prefix + "/")
    assert any(key.endswith("MLmodel") for key in keys)
