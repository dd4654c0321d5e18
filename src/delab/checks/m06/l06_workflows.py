"""Checks of lab 06.06 (MLOps workflows): the training data's validation gate, the quality gate against a baseline
and the champion, and a registered model reproduced from its run's lineage.

e1 corrupts the learner's own training data one defect at a time; e2 feeds known metrics; e3 retrains the
registered version independently (real MLflow registry, real lakehouse snapshot) and compares predictions. None of
them depends on timing.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pandas as pd

from delab.grading import WrongAnswer, exercise, learner_code

# ------------------------------------------------------------------------------------- e1: data validation


def _defects(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """(what is wrong, the corrupted frame, hint) — one defect each, on a copy of valid data."""
    from delab.mlops import shop_models

    target = shop_models.TARGET
    nulls = frame.copy()
    nulls.loc[nulls.index[:5], "n_units"] = np.nan
    negative = frame.copy()
    negative.loc[negative.index[:30], target] = -negative.loc[negative.index[:30], target]
    zero = frame.copy()
    zero.loc[zero.index[:3], target] = 0.0
    duplicated = pd.concat([frame, frame.head(50)], ignore_index=True)
    missing = frame.drop(columns=["units_garden"])
    return [
        (
            "5 rows with a null n_units",
            nulls,
            "a null feature is a row the model cannot learn from: count nulls in every column.",
        ),
        (
            "30 orders with a negative order_value",
            negative,
            "an order is never worth less than nothing: check the target's range, not only its presence.",
        ),
        (
            "3 orders worth exactly 0",
            zero,
            "'positive' means greater than zero: an order worth 0 is not a sale either.",
        ),
        (
            "50 order ids that appear twice",
            duplicated,
            "a duplicated row weighs twice in training and can land on both sides of the held-out split.",
        ),
        (
            "the column units_garden missing",
            missing,
            "look for each expected column (workflows.COLUMNS) before reading any of them.",
        ),
        (
            "only 600 rows",
            frame.head(600),
            "a handful of rows trains a model nobody should trust: check the row count.",
        ),
    ]


def _problems(validate, frame: pd.DataFrame, what: str) -> list:
    try:
        got = validate(frame.copy())
    except NotImplementedError:
        raise
    except Exception as error:  # the learner's gate crashed: that is the mistake to name
        raise WrongAnswer(
            f"validate raised {type(error).__name__} on a frame with {what}: the gate crashed instead of reporting "
            f"({str(error).strip()[:120]}).",
            hint="a gate reports problems in its return value; test for what is missing before using it.",
        ) from None
    if not isinstance(got, list | tuple):
        raise WrongAnswer(f"validate returned {type(got).__name__}; expected a list of problems (empty when fine).")
    return list(got)


@exercise("m06.l06.e1")
def training_data_validation(validate, frame: pd.DataFrame) -> None:
    """validate(frame) -> [] on the real training data, and a non-empty list for each defect (never raises)."""
    frame = frame.reset_index(drop=True)
    clean = _problems(validate, frame, "nothing wrong")
    if clean:
        raise WrongAnswer(
            f"validate refused the shop's real training data ({len(frame)} valid orders): {clean[:3]}",
            hint="a gate that stops good data is switched off by the team within a week: check only the rules asked.",
        )
    for what, corrupted, hint in _defects(frame):
        if not _problems(validate, corrupted, what):
            raise WrongAnswer(f"validate found nothing wrong with {what}.", hint=hint)


# ----------------------------------------------------------------------------------------- e2: quality gate

_GATES = (  # (candidate MAE, champion MAE on the same rows or None, baseline MAE, promote?)
    (20.0, None, 60.0, True),  # the first model: only the baseline to beat
    (70.0, None, 60.0, False),  # worse than predicting the mean
    (18.0, 20.0, 60.0, True),  # 10 % better than the champion
    (22.0, 20.0, 60.0, False),  # worse than the champion
    (19.9, 20.0, 60.0, False),  # 0.5 % better: noise
    (55.0, 58.0, 50.0, False),  # beats a poor champion, not the baseline
    (60.0, None, 60.0, False),  # equal to the baseline: learned nothing
)


@exercise("m06.l06.e2")
def quality_gate(gate) -> None:
    """gate(candidate_mae, champion_mae, baseline_mae) -> True when the candidate beats the baseline and, when there
    is a champion, is at least 1 % better than it (lower MAE)."""
    guarded = learner_code("quality_gate")(gate)
    for candidate, champion, baseline, expected in _GATES:
        got = guarded(candidate, champion, baseline)
        if not isinstance(got, bool | np.bool_):
            raise WrongAnswer(f"quality_gate returned {type(got).__name__}; expected True or False.")
        if bool(got) == expected:
            continue
        case = f"candidate MAE {candidate}, champion {champion}, baseline {baseline}"
        if expected and champion is None:
            raise WrongAnswer(
                f"refused the very first model ({case}).",
                hint="with no champion yet, the baseline is the only bar to clear.",
            )
        if expected:
            raise WrongAnswer(
                f"refused a candidate {1 - candidate / champion:.0%} better than the champion ({case}).",
                hint="MAE is an error: lower is better, and 1 % lower than the champion's is enough.",
            )
        if candidate == baseline:
            raise WrongAnswer(
                f"promoted a candidate exactly as good as always predicting the mean ({case}): it learned nothing.",
                hint="the candidate must beat the baseline strictly.",
            )
        if candidate > baseline:
            raise WrongAnswer(
                f"promoted a candidate that does not beat always predicting the mean ({case}).",
                hint="compare with the baseline too, whether there is a champion or not.",
            )
        if candidate > champion:
            raise WrongAnswer(
                f"promoted a candidate whose error is higher than the champion's ({case}).",
                hint="once there is a champion, the candidate must beat it too (a lower MAE on the same rows).",
            )
        raise WrongAnswer(
            f"promoted a candidate only {1 - candidate / champion:.1%} better than the champion ({case}).",
            hint="retraining on the same data moves the error a little either way: require the 1 % margin.",
        )


# ---------------------------------------------------------------------------------------- e3: reproduce


@contextlib.contextmanager
def _code_changed():
    """Pretend the training code changed since every run (workflows.code_version answers another hash)."""
    from delab.mlops import workflows

    real = workflows.code_version
    workflows.code_version = lambda: "0" * 12
    try:
        yield
    finally:
        workflows.code_version = real


def _predictions(model: Any, rows: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(rows), dtype=float)


@exercise("m06.l06.e3")
def reproduce_registered_model(reproduce, client, catalog, name: str, version: str) -> None:
    """reproduce(client, catalog, name, version) -> a model retrained from the run's params (strings in MLflow), its
    data snapshot and only when the code version matches; its predictions equal the registered model's."""
    import mlflow

    from delab.mlops import shop_models, workflows

    version = str(version)
    recorded = workflows.lineage(client, name, version)
    table, snapshot_id = recorded["data.table"], int(recorded["data.snapshot_id"])
    params = {key: int(recorded["params"][key]) for key in ("n_estimators", "max_depth", "seed")}
    frame = workflows.read_snapshot(catalog, table, snapshot_id)
    _, held_out = workflows.split(frame)
    rows = shop_models.matrix(held_out)
    registered = _predictions(mlflow.sklearn.load_model(f"models:/{name}/{version}"), rows)

    model = learner_code("reproduce")(reproduce)(client, catalog, name, version)
    if not hasattr(model, "predict"):
        raise WrongAnswer(f"reproduce returned {type(model).__name__}; expected a trained model (with .predict).")
    got = learner_code("the reproduced model's predict")(_predictions)(model, rows)
    if got.shape == registered.shape and np.allclose(got, registered, rtol=0, atol=1e-9):
        with _code_changed():
            try:
                learner_code("reproduce")(reproduce)(client, catalog, name, version)
            except WrongAnswer as error:
                if "RuntimeError" in str(error):
                    return
                raise
        raise WrongAnswer(
            "reproduce retrained happily although the training code's version differs from the one the run logged.",
            hint="compare the run's code.version tag with workflows.code_version() and raise RuntimeError when they "
            "differ.",
        )

    def same_as(train_frame: pd.DataFrame, **train_params: int) -> bool:
        variant = _predictions(workflows.train(train_frame, **train_params), rows)
        return got.shape == variant.shape and np.allclose(got, variant, rtol=0, atol=1e-9)

    table_now = catalog.load_table(table)
    current = table_now.current_snapshot().snapshot_id
    if current != snapshot_id and same_as(workflows.read_snapshot(catalog, table, current), **params):
        raise WrongAnswer(
            f"the model was trained on the table as it is now (snapshot {current}), not on the snapshot the run "
            f"recorded ({snapshot_id}).",
            hint="read the table at the data.snapshot_id tag: table.scan(snapshot_id=...) (workflows.read_snapshot).",
        )
    if params != workflows.PARAMS and same_as(frame, **workflows.PARAMS):
        raise WrongAnswer(
            f"the model was trained with the pipeline's default parameters {workflows.PARAMS}, not those the run "
            f"logged {params}.",
            hint="read the parameters from the run (client.get_run(...).data.params) and convert them to int.",
        )
    raise WrongAnswer(
        f"the reproduced model's predictions differ from version {version}'s on the same rows "
        f"(largest difference {np.max(np.abs(got - registered)) if got.shape == registered.shape else 'n/a'}).",
        hint="use every logged parameter — the seed too — and the rows of the recorded snapshot, ordered as "
        "workflows.read_snapshot orders them.",
    )
