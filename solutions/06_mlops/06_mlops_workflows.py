# ---
# jupyter:
#   kernelspec: {name: delab-mlops, display_name: "Python 3 (delab-mlops · MLflow, KServe)", language: python}
# ---

# %% [markdown]
# # 06.06 · MLOps workflows: a training pipeline with gates, registration, promotion, rollback — reproducibly
#
# **You will:**
# - keep the training data in a **lakehouse table** whose snapshots are the data versions;
# - write the pipeline's **automated gates**: data validation before training, a quality gate against a baseline
#   and the current champion;
# - run one **orchestrated pipeline** (Dagster) that validates → trains → evaluates → gates → registers in MLflow →
#   promotes by alias, and see it stop at a failed gate;
# - **roll back** the champion in one move;
# - **reproduce** a registered model from what its run recorded (parameters, data snapshot, code version) and get
#   the same predictions and metrics.
#
# *Needs:* Postgres, the S3 store and MLflow (started for you; MLflow's very first start takes a minute).
# Kernel: `delab-mlops`. About 45 minutes.

# %%
import dagster as dg
import mlflow
import pandas as pd
from IPython.display import display
from mlflow import MlflowClient

from delab import check, lakehouse, stack
from delab.mlops import registry, shop_models, workflows
from delab.orchestration import dagster as dagster_helpers

stack.require("postgres", "s3", "mlflow")
ns = stack.namespace("m06_l06")
shop_models.load_shop(ns.schema, scale=0.5)
registry.use_stack_mlflow("m06_l06_workflows")
client = MlflowClient()
catalog = lakehouse.catalog()
lakehouse.fresh_namespace(catalog, ns.schema)
TABLE = f"{ns.schema}.order_features"
MODEL = "m06-l06-order-value"
workflows.fresh_model(client, MODEL)  # each run of the lab starts with no champion

# %% [markdown]
# ## The training data, versioned
# The features of every order are computed in Postgres (`shop_models.features_sql`) and written to an Iceberg table
# of the lakehouse. The first snapshot holds the older orders; newer orders arrive later as a second append. Each
# append is a **snapshot** with an id: the data version a training run records, and can read again whatever was
# appended since.

# %%
features = shop_models.order_features(ns.schema)
cut = int(features.order_id.quantile(0.7))
snapshots = {"older orders": workflows.publish(catalog, TABLE, features[features.order_id <= cut])}
print(f"{TABLE}: snapshot {snapshots['older orders']} with {(features.order_id <= cut).sum()} orders")

# %% [markdown]
# ## Exercise 1 — data validation, the first gate
# A model trained on broken data is broken in ways no metric on the same broken data will show. Write
# `validate(frame)` → a list of problems (strings; empty when the data is fit to train on). It must report:
# - a missing column (`workflows.COLUMNS`: `order_id`, the features, `order_value`);
# - a null anywhere in those columns;
# - an `order_value` that is not positive;
# - an `order_id` that appears more than once;
# - fewer than 1,000 rows.
#
# It must **return** problems, never raise: a gate reports what is wrong with the data (all of it), it does not
# crash on it. And it must accept the real data: every order of the shop is fine.


# %%
### BEGIN SOLUTION
def validate(frame: pd.DataFrame) -> list[str]:
    """The problems that make ``frame`` unfit for training (empty when there are none)."""
    missing = [column for column in workflows.COLUMNS if column not in frame.columns]
    if missing:
        return [f"missing columns: {missing}"]
    problems = []
    nulls = frame[list(workflows.COLUMNS)].isna().sum()
    if nulls.any():
        problems.append(f"nulls: {nulls[nulls > 0].to_dict()}")
    if (frame[shop_models.TARGET] <= 0).any():
        problems.append(f"{int((frame[shop_models.TARGET] <= 0).sum())} non-positive order values")
    if frame.order_id.duplicated().any():
        problems.append(f"{int(frame.order_id.duplicated().sum())} duplicated order ids")
    if len(frame) < 1000:
        problems.append(f"only {len(frame)} rows")
    return problems


### END SOLUTION

# %%
check.m06.training_data_validation(validate, workflows.read_snapshot(catalog, TABLE, snapshots["older orders"]))

# %% [markdown]
# ## Exercise 2 — the quality gate
# A candidate model is evaluated on the held-out orders of its data (`workflows.mae`: every fifth order id). The
# pipeline also evaluates the **current champion on the same held-out orders** — a metric the champion logged when
# it was trained was measured on other data and compares nothing. Write `quality_gate(candidate_mae, champion_mae,
# baseline_mae)` → `True` when the candidate may be promoted:
# - it must beat the baseline (always predicting the mean: `workflows.baseline_mae`) — strictly lower MAE;
# - when there is a champion (`champion_mae` is not `None`), it must be **at least 1 % better** than the champion
#   (`candidate_mae <= 0.99 * champion_mae`): retraining noise must not flip the champion back and forth.
#
# MAE is an error: lower is better.


# %%
### BEGIN SOLUTION
def quality_gate(candidate_mae: float, champion_mae: float | None, baseline_mae: float) -> bool:
    """Whether a candidate with this held-out MAE may replace the champion."""
    if not candidate_mae < baseline_mae:
        return False
    return champion_mae is None or candidate_mae <= 0.99 * champion_mae


### END SOLUTION

# %%
check.m06.quality_gate(quality_gate)

# %% [markdown]
# ## The pipeline, orchestrated
# Four Dagster ops, each doing one thing and handing its result to the next: **validate** the snapshot (your
# `validate`), **train** a candidate with the run's parameters, **evaluate** it next to the champion and the
# baseline and apply your `quality_gate`, then **register** the passing candidate (its run logs the parameters,
# metrics, the data's table and snapshot id and the code version) and **promote** it by alias. A failed gate is
# a `dg.Failure`: the ops after it do not run, so nothing reaches the registry. The run's configuration (which
# snapshot, which parameters) is data, given at launch — the same pipeline runs on every new snapshot.


# %%
class TrainingRun(dg.Config):
    snapshot_id: int
    n_estimators: int = workflows.PARAMS["n_estimators"]
    max_depth: int = workflows.PARAMS["max_depth"]
    seed: int = workflows.PARAMS["seed"]


@dg.op
def validated_snapshot(context: dg.OpExecutionContext, config: TrainingRun) -> dict:
    frame = workflows.read_snapshot(catalog, TABLE, config.snapshot_id)
    problems = validate(frame)
    if problems:
        raise dg.Failure(f"data validation failed on snapshot {config.snapshot_id}: {problems}")
    context.log.info(f"snapshot {config.snapshot_id}: {len(frame)} rows valid")
    return {"frame": frame, "snapshot_id": config.snapshot_id, "params": config.model_dump(exclude={"snapshot_id"})}


@dg.op
def trained_candidate(data: dict) -> dict:
    return {**data, "model": workflows.train(data["frame"], **data["params"])}


@dg.op
def gated_candidate(context: dg.OpExecutionContext, candidate: dict) -> dict:
    frame = candidate["frame"]
    metrics = {"held_out_mae": workflows.mae(candidate["model"], frame), "baseline_mae": workflows.baseline_mae(frame)}
    champion = workflows.champion(client, MODEL)  # None before the first promotion
    champion_mae = None if champion is None else workflows.mae(champion, frame)
    if champion_mae is not None:
        metrics["champion_mae_same_rows"] = champion_mae
    context.log.info(f"metrics {metrics}")
    if not quality_gate(metrics["held_out_mae"], champion_mae, metrics["baseline_mae"]):
        raise dg.Failure(f"quality gate failed: {metrics}")
    return {**candidate, "metrics": metrics}


@dg.op
def promoted_version(candidate: dict) -> str:
    version = workflows.register(
        mlflow,
        MODEL,
        candidate["model"],
        params=candidate["params"],
        metrics=candidate["metrics"],
        table=TABLE,
        snapshot_id=candidate["snapshot_id"],
    )
    workflows.promote(client, MODEL, version)
    return version


@dg.job
def training_pipeline():
    promoted_version(gated_candidate(trained_candidate(validated_snapshot())))


instance = dagster_helpers.instance("WARNING")


def launch(snapshot_id: int, **params) -> dg.ExecuteInProcessResult:
    """Run the pipeline on one snapshot; print which op failed, if one did."""
    config = {"ops": {"validated_snapshot": {"config": {"snapshot_id": snapshot_id, **params}}}}
    result = training_pipeline.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    failed = [event.step_key for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    print("succeeded" if result.success else f"stopped at {failed}", "| aliases:", workflows.aliases(client, MODEL))
    return result


# %% [markdown]
# ### Run 1: a first, shallow model
# No champion yet: the candidate only has to beat the baseline. It becomes version N, champion.

# %%
first = launch(snapshots["older orders"], max_depth=4)
assert first.success
first_version = first.output_for_node("promoted_version")

# %% [markdown]
# ### Run 2: new orders arrive, and a deeper model
# The newer orders are appended (a second snapshot). The same pipeline runs on it with the pipeline's own
# parameters; the champion is evaluated on the new snapshot's held-out orders too, so both numbers describe the same
# rows.

# %%
snapshots["all orders"] = workflows.publish(catalog, TABLE, features[features.order_id > cut])
second = launch(snapshots["all orders"])
assert second.success
second_version = second.output_for_node("promoted_version")
display(pd.DataFrame({v: workflows.lineage(client, MODEL, v)["metrics"] for v in (first_version, second_version)}))

# %% [markdown]
# ### Run 3: a change that makes the model worse — the quality gate stops it
# Someone "simplifies" the model to trees of depth 2. It still beats the baseline, but not the champion: the run
# stops at the gate and the registry is unchanged.

# %%
third = launch(snapshots["all orders"], max_depth=2)
assert not third.success and workflows.aliases(client, MODEL)["champion"] == second_version

# %% [markdown]
# ### Run 4: a broken batch — the data gate stops it before training
# An upstream bug appends orders with duplicated ids and negative values. Validation runs first: no time is spent
# training on it, nothing is registered.

# %%
broken = features[features.order_id > cut].head(200).copy()
broken[shop_models.TARGET] = -broken[shop_models.TARGET]
snapshots["broken batch"] = workflows.publish(catalog, TABLE, broken)
fourth = launch(snapshots["broken batch"])
print(
    next(e.event_specific_data.error.message for e in fourth.all_events if e.event_type_value == "STEP_FAILURE")[:160]
)
assert not fourth.success and workflows.aliases(client, MODEL)["champion"] == second_version

# %% [markdown]
# ## Rolling back
# The pipeline kept the former champion as `previous`. When the new champion misbehaves in production (an alert of
# lab 06.05, a bad review), rolling back is one alias move — no retraining, no redeploying files; whatever loads
# `models:/NAME@champion` gets the previous version at its next (re)load. The version left behind is tagged with
# the reason, so nobody promotes it again by accident.

# %%
restored = workflows.roll_back(client, MODEL, "incident: complaints about basket estimates")
assert client.get_model_version_by_alias(MODEL, "champion").version == first_version == restored
print("champion is back to version", restored, "| aliases:", workflows.aliases(client, MODEL))
workflows.promote(client, MODEL, second_version)  # incident resolved: the better model comes back

# %% [markdown]
# ## Exercise 3 — reproduce a registered model
# Months later, an auditor asks how version `first_version` was made. Its run recorded everything needed: the
# parameters (`n_estimators`, `max_depth`, `seed` — MLflow stores params as **strings**), the table and the
# `data.snapshot_id` tag, and the `code.version` tag. Write `reproduce(client, catalog, name, version)` → a model
# retrained from exactly that: the snapshot's rows (`workflows.read_snapshot`), the logged parameters
# (`workflows.train`). Refuse with a `RuntimeError` when `workflows.code_version()` differs from the one logged —
# different code would not reproduce anything. The table has had two appends since that run.


# %%
### BEGIN SOLUTION
def reproduce(client: MlflowClient, catalog, name: str, version: str):
    """Retrain a registered version from its run's parameters, data snapshot and code version."""
    run = client.get_run(client.get_model_version(name, version).run_id)
    if run.data.tags["code.version"] != workflows.code_version():
        raise RuntimeError(f"code changed since the run: {run.data.tags['code.version']}")
    frame = workflows.read_snapshot(catalog, run.data.tags["data.table"], int(run.data.tags["data.snapshot_id"]))
    params = {key: int(run.data.params[key]) for key in ("n_estimators", "max_depth", "seed")}
    return workflows.train(frame, **params)


### END SOLUTION

# %%
check.m06.reproduce_registered_model(reproduce, client, catalog, MODEL, first_version)

# %%
again = reproduce(client, catalog, MODEL, first_version)
frame = workflows.read_snapshot(catalog, TABLE, snapshots["older orders"])
logged = workflows.lineage(client, MODEL, first_version)["metrics"]["held_out_mae"]
print(f"version {first_version}: logged MAE {logged:.4f} | reproduced {workflows.mae(again, frame):.4f}")
assert workflows.mae(again, frame) == logged

# %% [markdown]
# ## Recap
# - The training data is versioned by the lakehouse (a snapshot id per append); a run records that id, its
#   parameters and its code version, and that is enough to rebuild the model bit for bit.
# - Gates are code: data validation before training (report, never crash), a quality gate against a baseline and
#   the champion **evaluated on the same rows**, with a margin against noise.
# - The orchestrator runs the steps in order and stops at the first failure; only what passed every gate is
#   registered, and promotion and rollback are alias moves.
#
# **Going further:** in CI, the same job runs on every merge to the training code (GitHub Actions or GitLab CI
# calling `dagster job execute`, or a Dagster sensor on new snapshots of the table); behavioural tests (invariance,
# directional expectations, as in CheckList) join the quality gate; `mlflow.evaluate` computes and logs a standard
# set of metrics with thresholds; DVC or lakeFS version data that is not in a lakehouse; Dagster's asset checks
# attach validation to the data asset itself (lab 01.03).
