"""Checks of lab 06.06 (MLOps workflows): the right answer passes, realistic wrong answers are rejected with their
own message, the placeholder is not solved. e3 runs against the stack's MLflow registry and lakehouse."""

from __future__ import annotations

import pandas as pd
import pytest

from delab import stack
from delab.checks.m06 import l06_workflows as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.mlops import shop_models, workflows

NS = stack.namespace("m06_l06_tests")
MODEL = "m06-l06-tests"


@pytest.fixture(scope="module")
def features():
    stack.require("postgres", quiet=True)
    shop_models.load_shop(NS.schema, scale=0.25)
    return shop_models.order_features(NS.schema)


def placeholder(*args):
    raise NotImplementedError


# ------------------------------------------------------------------------------------------- e1


def validate_right(frame, *, strict_values=False):
    missing = [column for column in workflows.COLUMNS if column not in frame.columns]
    if missing:
        return [f"missing {missing}"]
    problems = []
    if frame[list(workflows.COLUMNS)].isna().any().any():
        problems.append("nulls")
    if (frame.order_value <= 0).any():
        problems.append("non-positive values")
    if frame.order_id.duplicated().any():
        problems.append("duplicates")
    if len(frame) < 1000:
        problems.append("few rows")
    if strict_values and (frame.order_value > 500).any():
        problems.append("implausibly large orders")
    return problems


def validate_nulls_only(frame):
    missing = [column for column in workflows.COLUMNS if column not in frame.columns]
    return [f"missing {missing}"] if missing else (["nulls"] if frame.isna().any().any() else [])


def validate_negative_only(frame):
    problems = validate_right(frame)
    return [p for p in problems if p != "non-positive values"] + (
        ["negative values"] if (frame.order_value < 0).any() else []
    )


def validate_no_duplicates(frame):
    return [p for p in validate_right(frame) if p != "duplicates"]


def validate_crashes(frame):
    problems = []
    if frame[list(workflows.COLUMNS)].isna().any().any():
        problems.append("nulls")
    if (frame.order_value <= 0).any() or frame.order_id.duplicated().any() or len(frame) < 1000:
        problems.append("values")
    return problems


def validate_raises(frame):
    problems = validate_right(frame)
    if problems:
        raise ValueError(problems)
    return []


def test_e1_right(features):
    checks.training_data_validation(validate_right, features)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda frame: validate_right(frame, strict_values=True), "refused the shop's real training data"),
        (validate_nulls_only, "a negative order_value"),
        (validate_negative_only, "worth exactly 0"),
        (validate_no_duplicates, "appear twice"),
        (validate_crashes, "raised KeyError"),
        (validate_raises, "raised ValueError"),
    ],
)
def test_e1_wrong(features, answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.training_data_validation(answer, features)


def test_e1_placeholder(features):
    with pytest.raises(NotSolvedYet):
        checks.training_data_validation(placeholder, features)


# ------------------------------------------------------------------------------------------- e2


def gate_right(candidate, champion, baseline):
    if not candidate < baseline:
        return False
    return champion is None or candidate <= 0.99 * champion


def gate_crashes_on_none(candidate, champion, baseline):
    return candidate < baseline and candidate <= 0.99 * champion


def gate_higher_is_better(candidate, champion, baseline):
    return candidate < baseline and (champion is None or candidate >= 1.01 * champion)


def gate_no_margin(candidate, champion, baseline):
    return candidate < baseline and (champion is None or candidate < champion)


def gate_baseline_only_first(candidate, champion, baseline):
    if champion is None:
        return candidate < baseline
    return candidate <= 0.99 * champion


def gate_baseline_not_strict(candidate, champion, baseline):
    return candidate <= baseline and (champion is None or candidate <= 0.99 * champion)


def test_e2_right():
    checks.quality_gate(gate_right)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (gate_crashes_on_none, "failed with TypeError"),
        (gate_higher_is_better, "refused a candidate 10% better"),
        (lambda c, ch, b: c < b, "higher than the champion's"),
        (gate_no_margin, "only 0.5% better"),
        (gate_baseline_only_first, "does not beat always predicting the mean"),
        (gate_baseline_not_strict, "exactly as good as always predicting the mean"),
        (lambda *args: "yes", "returned str"),
    ],
)
def test_e2_wrong(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.quality_gate(answer)


def test_e2_placeholder():
    with pytest.raises(NotSolvedYet):
        checks.quality_gate(placeholder)


# --------------------------------------------------------------------------------- e3 (real stack)


@pytest.fixture(scope="module")
def registered(features):
    from mlflow import MlflowClient

    from delab import lakehouse
    from delab.mlops import registry

    stack.require("postgres", "s3", "mlflow", quiet=True)
    mlflow = registry.use_stack_mlflow("m06_l06_tests")
    catalog = lakehouse.catalog()
    lakehouse.fresh_namespace(catalog, NS.schema)
    table = f"{NS.schema}.order_features"
    cut = int(features.order_id.quantile(0.7))
    first = workflows.publish(catalog, table, features[features.order_id <= cut])
    frame = workflows.read_snapshot(catalog, table, first)
    params = {**workflows.PARAMS, "n_estimators": 5, "max_depth": 4}
    model = workflows.train(frame, **params)
    version = workflows.register(
        mlflow,
        MODEL,
        model,
        params=params,
        metrics={"held_out_mae": workflows.mae(model, frame)},
        table=table,
        snapshot_id=first,
    )
    workflows.publish(catalog, table, features[features.order_id > cut])  # newer orders: a second snapshot
    return MlflowClient(), catalog, version


def reproduce_right(client, catalog, name, version, *, snapshot="recorded", params="logged", check_code=True):
    run = client.get_run(client.get_model_version(name, version).run_id)
    if check_code and run.data.tags["code.version"] != workflows.code_version():
        raise RuntimeError("code changed")
    table = run.data.tags["data.table"]
    if snapshot == "recorded":
        frame = workflows.read_snapshot(catalog, table, int(run.data.tags["data.snapshot_id"]))
    else:
        frame = catalog.load_table(table).scan().to_pandas().sort_values("order_id").reset_index(drop=True)
    if params == "logged":
        chosen = {key: int(run.data.params[key]) for key in ("n_estimators", "max_depth", "seed")}
    elif params == "no seed":
        chosen = {key: int(run.data.params[key]) for key in ("n_estimators", "max_depth")} | {"seed": 0}
    else:
        chosen = dict(workflows.PARAMS)
    return workflows.train(frame, **chosen)


def reproduce_string_params(client, catalog, name, version):
    run = client.get_run(client.get_model_version(name, version).run_id)
    frame = workflows.read_snapshot(catalog, run.data.tags["data.table"], int(run.data.tags["data.snapshot_id"]))
    return workflows.train(frame, **{key: run.data.params[key] for key in ("n_estimators", "max_depth", "seed")})


@pytest.mark.stack
def test_e3_right(registered):
    checks.reproduce_registered_model(reproduce_right, registered[0], registered[1], MODEL, registered[2])


@pytest.mark.stack
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"snapshot": "current"}, "the table as it is now"),
        ({"params": "defaults"}, "the pipeline's default parameters"),
        ({"params": "no seed"}, "predictions differ"),
        ({"check_code": False}, "code's version differs"),
    ],
)
def test_e3_wrong(registered, options, message):
    client, catalog, version = registered

    def answer(*args):
        return reproduce_right(*args, **options)

    with pytest.raises(WrongAnswer, match=message):
        checks.reproduce_registered_model(answer, client, catalog, MODEL, version)


@pytest.mark.stack
def test_e3_string_params_and_placeholder(registered):
    client, catalog, version = registered
    with pytest.raises(WrongAnswer, match="reproduce failed with"):
        checks.reproduce_registered_model(reproduce_string_params, client, catalog, MODEL, version)
    with pytest.raises(NotSolvedYet):
        checks.reproduce_registered_model(placeholder, client, catalog, MODEL, version)


def test_split_and_baseline_are_deterministic():
    frame = pd.DataFrame({"order_id": range(1, 11), "order_value": [float(v) for v in range(10, 110, 10)]})
    training, held_out = workflows.split(frame)
    assert list(held_out.order_id) == [5, 10] and len(training) == 8
