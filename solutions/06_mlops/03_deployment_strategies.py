# ---
# jupyter:
#   kernelspec: {name: delab-mlops, display_name: "Python 3 (delab-mlops · MLflow, KServe)", language: python}
# ---

# %% [markdown]
# # 06.03 · Model deployment: versions and aliases, blue/green, canary, shadow, rollback, A/B
#
# **You will:**
# - register model versions in the stack's MLflow registry and promote them with **aliases** (champion,
#   challenger, previous) — and deploy by alias, not by file;
# - switch versions **blue/green** under load without a failed request;
# - send a **canary** 10 % of the traffic and prove the split by counting;
# - run a new version in **shadow** (it sees every request, answers none);
# - **roll back automatically** when a release's error rate or latency is worse than the champion's;
# - decide an **A/B** comparison with a significance test.
#
# *Needs:* Postgres, the S3 store and MLflow (started for you; MLflow's very first start takes a minute).
# Kernel: `delab-mlops`. About 45 minutes.

# %%
import threading
import time

import mlflow
import numpy as np
import pandas as pd
from IPython.display import display
from mlflow import MlflowClient
from scipy import stats

from delab import check, stack
from delab.mlops import registry, rollout, shop_models

stack.require("postgres", "mlflow")
ns = stack.namespace("m06_l03")
shop_models.load_shop(ns.schema)
registry.use_stack_mlflow("m06_l03_deployment")
client = MlflowClient()
MODEL = "m06-l03-order-value"

# %% [markdown]
# ## Two versions of the model in the registry
# Orders with an even id train, odd ids are held out for the A/B test. Version A is the forest of lab 06.01;
# version B is deeper. Each `log_model(..., registered_model_name=MODEL)` adds a **version** to the registered
# model; its files go to the S3 store through the MLflow server.

# %%
features = shop_models.order_features(ns.schema)
train = features[features.order_id % 2 == 0].reset_index(drop=True)
held_out = features[features.order_id % 2 == 1].reset_index(drop=True)
candidates = {
    "A": shop_models.train_order_value(train, n_estimators=15, max_depth=6),
    "B": shop_models.train_order_value(train, n_estimators=15, max_depth=12),
}
versions = {}
for label, model in candidates.items():
    with mlflow.start_run(run_name=f"order-value-{label}"):
        mlflow.log_params({"max_depth": model.max_depth, "n_estimators": model.n_estimators})
        # MLflow stores scikit-learn models with skops, which loads only types it is told to trust: a forest's
        # trees are one (reviewed here: our own model, trained above)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=MODEL,
            skops_trusted_types=["sklearn.tree._tree.Tree"],
            pip_requirements=registry.model_requirements(),  # given, not inferred: that takes seconds per model
        )
    versions[label] = str(info.registered_model_version)
client.set_registered_model_alias(MODEL, "champion", versions["A"])
client.set_registered_model_alias(MODEL, "challenger", versions["B"])
print(versions, "aliases:", client.get_registered_model(MODEL).aliases)

# %% [markdown]
# An **alias** is a movable name for one version. Whatever serves "the champion" loads `models:/NAME@champion`;
# promoting a version is moving the alias — no file is copied, no code changes, and the old version stays in the
# registry, ready to come back.

# %%
champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
print(
    "champion is version",
    client.get_model_version_by_alias(MODEL, "champion").version,
    "| predicts",
    champion.predict(shop_models.matrix(held_out.head(2))).round(2),
)

# %% [markdown]
# ## Exercise 1 — promote by alias
# Write `promote(client, name, version)`: the version becomes `champion`; the version that was champion gets
# the alias `previous` (the rollback target); the `challenger` alias is removed if it pointed at the promoted
# version. A deployment pipeline retries steps, so running it twice must change nothing the second time. The
# check runs it against the stack's registry on a scratch model.


# %%
### BEGIN SOLUTION
def promote(client: MlflowClient, name: str, version: str) -> None:
    """Make version the champion, keep the former champion as previous, retire the challenger alias."""
    version = str(version)
    aliases = client.get_registered_model(name).aliases or {}
    current = aliases.get("champion")
    if current is not None and str(current) != version:
        client.set_registered_model_alias(name, "previous", str(current))
    client.set_registered_model_alias(name, "champion", version)
    if str(aliases.get("challenger")) == version:
        client.delete_registered_model_alias(name, "challenger")


### END SOLUTION

# %%
check.m06.promote_by_alias(promote, client, client.get_model_version(MODEL, versions["A"]))

# %% [markdown]
# ## Deploy by alias: a router in front of the versions
# `delab.mlops.rollout` runs a small real server (FastAPI under uvicorn on 127.0.0.1) that does what a serving
# platform's traffic layer does: `deploy(stable=..., canary=..., canary_percent=..., shadow=...)` resolves
# **aliases** to versions in the registry at deploy time, loads them (`models:/NAME/VERSION`) *before* switching,
# and routes each request by its `key` (a customer id, hashed into 100 buckets: a customer always sees the same
# version). Every answer says which version served it; `/stats` counts per version.

# %%
router = rollout.serve(MODEL)
print(rollout.deploy(router, stable="@champion"))
orders = shop_models.matrix(held_out)
customers = [f"customer-{i}" for i in range(len(orders))]
requests = [(customers[i], orders[i : i + 1].tolist()) for i in range(len(orders))]
answers = rollout.send(router, requests[:50])
print({status for status, _ in answers}, "served by", {body["version"] for _, body in answers})

# %% [markdown]
# ## Blue/green
# Blue (the champion) serves; green (the challenger) is loaded beside it, then the router switches all traffic
# at once — and can switch back just as fast, because blue stays loaded. Requests keep flowing during the switch:
# none may fail.

# %%
during: list = []
sender = threading.Thread(target=lambda: during.extend(rollout.send(router, requests[:300], concurrency=4)))
sender.start()
time.sleep(0.2)
rollout.deploy(router, stable="@challenger")  # green takes over
sender.join()
served = pd.Series([body.get("version") for status, body in during if status == 200]).value_counts()
failed = sum(status != 200 for status, _ in during)
assert failed == 0, f"{failed} requests failed during the blue/green switch"
print("failed during the switch:", failed, "| served by version:", served.to_dict())
rollout.deploy(router, stable="@champion")  # and back to blue
rollout.stats(router, reset=True)

# %% [markdown]
# ## Canary: 10 % of the customers, proven by counting
# The challenger now gets the customers whose bucket is below 10. A configured split is a claim; the answers
# say which version served them, so count. A random split is never exactly 10 %: the question is whether the
# count is *compatible* with 10 % — how likely such a count would be if the split were right.
#
# ## Exercise 2 — is the split what was configured?
# Write `split_consistent(canary_count, total, canary_percent)` → `True` when a two-sided binomial test
# (`scipy.stats.binomtest`) does not reject the configured share at the 1 % level (p ≥ 0.01).


# %%
### BEGIN SOLUTION
def split_consistent(canary_count: int, total: int, canary_percent: float) -> bool:
    """Whether counting canary_count of total requests on the canary is compatible with canary_percent."""
    return bool(stats.binomtest(int(canary_count), int(total), canary_percent / 100).pvalue >= 0.01)


### END SOLUTION

# %%
check.m06.split_is_consistent(split_consistent)

# %%
rollout.deploy(router, stable="@champion", canary="@challenger", canary_percent=10)
answers = rollout.send(router, requests[:800])
roles = pd.Series([body["role"] for _, body in answers]).value_counts()
print(roles.to_dict(), "→ consistent with 10 %:", split_consistent(roles.get("canary", 0), len(answers), 10))
assert split_consistent(roles.get("canary", 0), len(answers), 10)
again = rollout.send(router, requests[:40])  # the same customers again: the same versions (sticky)
assert [b["version"] for _, b in again] == [b["version"] for _, b in answers[:40]]

# %% [markdown]
# ## Shadow traffic
# Before a version gets any customer, it can get a **copy** of every request: the router answers with the
# champion and runs the shadow on the side, recording its answers and latency. Customers see nothing; you see
# how far the new version's predictions are from the current ones on real traffic.

# %%
rollout.deploy(router, stable="@champion", shadow="@challenger")
rollout.stats(router, reset=True)
answers = rollout.send(router, requests[:150])
time.sleep(0.5)  # shadow calls finish after their answers
counted = rollout.stats(router)
print(
    "answered by:",
    {b["version"] for _, b in answers},
    "| shadow saw",
    counted["shadow"]["requests"],
    f"requests, mean |difference| {np.mean(counted['shadow']['abs_diff']):.2f}",
)

# %% [markdown]
# ## Automatic rollback
# A third version is a release with defects (`rollout.DegradedModel`: slower, and it fails on large baskets) —
# registered like any other and aliased `candidate`. It goes out as a 20 % canary while a watcher compares it with
# the champion after each batch of traffic and rolls back by itself when it is worse.
#
# ## Exercise 3 — the rollback rule
# Write `should_roll_back(champion, canary)` for two dicts with `requests`, `errors` and `p95_ms` (as
# `rollout.summary` computes them): `True` when the canary's error rate exceeds the champion's by **more than 2
# percentage points**, or its p95 is **more than 1.5 times** the champion's. Both are relations to the champion
# measured at the same time: a busy machine slows both, bad input traffic fails both.


# %%
### BEGIN SOLUTION
def should_roll_back(champion: dict, canary: dict) -> bool:
    """Whether the canary is worse than the champion: error rate +2 points, or p95 over 1.5×."""
    champion_rate = champion["errors"] / champion["requests"] if champion["requests"] else 0.0
    canary_rate = canary["errors"] / canary["requests"] if canary["requests"] else 0.0
    return canary_rate > champion_rate + 0.02 or canary["p95_ms"] > 1.5 * champion["p95_ms"]


### END SOLUTION

# %%
check.m06.rollback_rule(should_roll_back)

# %%
with mlflow.start_run(run_name="order-value-release-3"):
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=rollout.DegradedModel(candidates["B"]),
        registered_model_name=MODEL,
        pip_requirements=registry.model_requirements("mlflow"),
    )
client.set_registered_model_alias(MODEL, "candidate", str(info.registered_model_version))
spec = rollout.deploy(router, stable="@champion", canary="@candidate", canary_percent=20)
rollout.stats(router, reset=True)
log = []
for batch in range(6):
    rollout.send(router, requests[batch * 60 : (batch + 1) * 60])
    versions_now = rollout.stats(router)["versions"]
    seen = {role: rollout.summary(versions_now.get(spec[role], {})) for role in ("stable", "canary")}
    verdict = seen["canary"]["requests"] >= 10 and should_roll_back(seen["stable"], seen["canary"])
    log.append(
        {
            "batch": batch,
            **{f"canary_{k}": v for k, v in seen["canary"].items()},
            "champion_p95_ms": seen["stable"]["p95_ms"],
            "roll_back": verdict,
        }
    )
    if verdict:
        rollout.deploy(router, stable="@champion")  # the canary gets no more traffic
        client.delete_registered_model_alias(MODEL, "candidate")
        client.set_model_version_tag(MODEL, spec["canary"], "rolled_back", "error rate or latency vs champion")
        break
display(pd.DataFrame(log).round(3))
assert log[-1]["roll_back"], "the degraded release was not rolled back"
after = rollout.send(router, requests[:100])
print(
    "after the rollback, served by:",
    {b["version"] for _, b in after},
    "| failures:",
    sum(status != 200 for status, _ in after),
)
assert {b["version"] for _, b in after} == {spec["stable"]}

# %% [markdown]
# ## A/B test: is the challenger better?
# Half of the held-out customers get A (the champion), half B (the challenger). The held-out orders have known
# values, so each answer has an absolute error. A lower mean error in a sample is not yet a better model.
#
# ## Exercise 4 — the decision
# Write `ab_decision(errors_a, errors_b)` → `"A"` or `"B"` (the one with the smaller mean absolute error) when
# Welch's two-sided t-test (`scipy.stats.ttest_ind(..., equal_var=False)`: the samples are independent and their
# spreads differ) gives p < 0.05; else `"no difference"`.


# %%
### BEGIN SOLUTION
def ab_decision(errors_a: np.ndarray, errors_b: np.ndarray) -> str:
    """Which version has the smaller mean absolute error, if the difference is significant (Welch, 5 %)."""
    p = stats.ttest_ind(errors_a, errors_b, equal_var=False).pvalue
    if p >= 0.05:
        return "no difference"
    return "A" if np.mean(errors_a) < np.mean(errors_b) else "B"


### END SOLUTION

# %%
check.m06.ab_decision(ab_decision)

# %%
rollout.deploy(router, stable="@champion", canary="@challenger", canary_percent=50)
answers = rollout.send(router, requests[:1200])  # 1,200 held-out orders, about half each
truth = held_out.order_value.to_numpy()
errors = {"stable": [], "canary": []}
for i, (status, body) in enumerate(answers):
    if status == 200:
        errors[body["role"]].append(abs(body["predictions"][0] - truth[i]))
a, b = np.array(errors["stable"]), np.array(errors["canary"])
print(
    f"A: {len(a)} orders, mean |error| {a.mean():.2f} | B: {len(b)} orders, mean |error| {b.mean():.2f} → "
    f"{ab_decision(a, b)}"
)
router.stop()

# %% [markdown]
# ## Recap
# - Versions are immutable; aliases (champion, challenger, previous) move. Deploy by alias, resolve it at deploy
#   time, and keep the previous version's alias as the rollback target.
# - Blue/green switches everything at once (instant switch-back, double the capacity while both run); a canary
#   exposes a share of customers (sticky by key) and is proven by counting with a binomial test; a shadow sees
#   real traffic with no customer impact.
# - Roll back on relations to the champion measured at the same time (error-rate difference, latency ratio),
#   never on absolute numbers that a busy machine would cross.
# - An A/B decision needs a test: with few orders, a better mean is often noise.
#
# **Going further:** KServe does the canary with `canaryTrafficPercent` (lab 06.02) and Argo Rollouts or Flagger
# automate the watcher loop on Kubernetes (analysis templates querying Prometheus); Seldon Core and Istio route
# shadow (mirror) traffic; MLflow's deployment plugins deploy `models:/NAME@champion` to SageMaker, Azure ML or
# Databricks serving. For sequential A/B decisions (peeking while traffic flows) use a sequential test or a
# fixed sample size decided in advance. Lab 06.06 runs promotion and rollback inside a pipeline.
