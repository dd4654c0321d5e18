"""Checks of lab 06.03 (model deployment): the right answer passes, realistic wrong ones are rejected with their
own message, the placeholder is not solved. e1 runs against the stack's real MLflow registry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from delab.checks.m06 import l03_deployment as checks
from delab.grading import NotSolvedYet, WrongAnswer

# ------------------------------------------------------------------------------------------ e1 (real MLflow)


@pytest.fixture(scope="module")
def registry_client():
    from delab import stack
    from delab.mlops import registry

    stack.require("mlflow", quiet=True)
    mlflow = registry.use_stack_mlflow("m06_l03_tests")
    from sklearn.linear_model import LinearRegression

    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), name="model", registered_model_name="m06-l03-tests"
        )
    client = mlflow.MlflowClient()
    return client, client.get_model_version("m06-l03-tests", str(info.registered_model_version))


def promote_right(client, name, version):
    aliases = client.get_registered_model(name).aliases or {}
    current = aliases.get("champion")
    if current is not None and str(current) != str(version):
        client.set_registered_model_alias(name, "previous", str(current))
    client.set_registered_model_alias(name, "champion", str(version))
    if str(aliases.get("challenger")) == str(version):
        client.delete_registered_model_alias(name, "challenger")


def promote_forgets_previous(client, name, version):
    client.set_registered_model_alias(name, "champion", str(version))
    client.delete_registered_model_alias(name, "challenger")


def promote_not_idempotent(client, name, version):
    current = (client.get_registered_model(name).aliases or {}).get("champion")
    if current is not None:
        client.set_registered_model_alias(name, "previous", str(current))
    client.set_registered_model_alias(name, "champion", str(version))
    aliases = client.get_registered_model(name).aliases or {}
    if "challenger" in aliases:
        client.delete_registered_model_alias(name, "challenger")


def promote_keeps_challenger(client, name, version):
    current = (client.get_registered_model(name).aliases or {}).get("champion")
    if current is not None and str(current) != str(version):
        client.set_registered_model_alias(name, "previous", str(current))
    client.set_registered_model_alias(name, "champion", str(version))


def promote_by_stage(client, name, version):
    client.transition_model_version_stage(name, str(version), "Production")


def test_promote_right(registry_client):
    checks.promote_by_alias(promote_right, *registry_client)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (promote_forgets_previous, "no `previous` alias"),
        (promote_not_idempotent, "running promote twice"),
        (promote_keeps_challenger, "champion and challenger at once"),
        (promote_by_stage, "a stage was changed instead"),
    ],
)
def test_promote_wrong(registry_client, answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.promote_by_alias(answer, *registry_client)


def test_promote_placeholder(registry_client):
    def todo(client, name, version):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.promote_by_alias(todo, *registry_client)


# ------------------------------------------------------------------------------------------------ e2


def consistent_right(count, total, percent):
    return bool(stats.binomtest(count, total, percent / 100).pvalue >= 0.01)


def consistent_exact(count, total, percent):
    return count == round(total * percent / 100)


def consistent_tolerance(count, total, percent):
    return abs(count / total - percent / 100) <= 0.02


def consistent_one_sided(count, total, percent):
    return bool(stats.binomtest(count, total, percent / 100, alternative="greater").pvalue >= 0.01)


def consistent_loose_tolerance(count, total, percent):
    return abs(count / total - percent / 100) <= 0.08


def test_split_right():
    checks.split_is_consistent(consistent_right)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (consistent_exact, "never exact"),
        (consistent_tolerance, "well within chance"),
        (consistent_one_sided, "too few is as wrong as too many"),
        (consistent_loose_tolerance, "very unlikely by chance"),
        (lambda count, total, percent: "yes", "expected True or False"),
    ],
)
def test_split_wrong(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.split_is_consistent(answer)


def test_split_placeholder():
    def todo(count, total, percent):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.split_is_consistent(todo)


# ------------------------------------------------------------------------------------------------ e3


def rate(stats_):
    return stats_["errors"] / stats_["requests"] if stats_["requests"] else 0.0


def rollback_right(champion, canary):
    return rate(canary) > rate(champion) + 0.02 or canary["p95_ms"] > 1.5 * champion["p95_ms"]


def rollback_absolute_latency(champion, canary):
    return rate(canary) > rate(champion) + 0.02 or canary["p95_ms"] > 100


def rollback_any_error(champion, canary):
    return rate(canary) > 0.02 or canary["p95_ms"] > 1.5 * champion["p95_ms"]


def rollback_at_threshold(champion, canary):
    return rate(canary) > rate(champion) + 0.02 or canary["p95_ms"] >= 1.5 * champion["p95_ms"]


def rollback_latency_only(champion, canary):
    return canary["p95_ms"] > 1.5 * champion["p95_ms"]


def rollback_errors_only(champion, canary):
    return rate(canary) > rate(champion) + 0.02


def test_rollback_right():
    checks.rollback_rule(rollback_right)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (rollback_absolute_latency, "the machine is slow, not the release"),
        (rollback_any_error, "the failures come from the traffic"),
        (rollback_at_threshold, "exactly 1.5"),
        (rollback_latency_only, "kept a canary that failed"),
        (rollback_errors_only, "kept a canary with p95"),
    ],
)
def test_rollback_wrong(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.rollback_rule(answer)


def test_rollback_placeholder():
    def todo(champion, canary):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.rollback_rule(todo)


# ------------------------------------------------------------------------------------------------ e4


def decide_right(a, b):
    if stats.ttest_ind(a, b, equal_var=False).pvalue >= 0.05:
        return "no difference"
    return "A" if np.mean(a) < np.mean(b) else "B"


def decide_means_only(a, b):
    return "A" if np.mean(a) < np.mean(b) else "B"


def decide_larger_wins(a, b):
    if stats.ttest_ind(a, b, equal_var=False).pvalue >= 0.05:
        return "no difference"
    return "A" if np.mean(a) > np.mean(b) else "B"


def decide_threshold_reversed(a, b):
    if stats.ttest_ind(a, b, equal_var=False).pvalue < 0.05:
        return "no difference"
    return "A" if np.mean(a) < np.mean(b) else "B"


def test_ab_right():
    checks.ab_decision(decide_right)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (decide_means_only, "let the test's p-value decide"),
        (decide_larger_wins, "the larger one"),
        (decide_threshold_reversed, "p = "),
        (lambda a, b: 1, "expected 'A', 'B' or 'no difference'"),
    ],
)
def test_ab_wrong(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.ab_decision(answer)


def test_ab_placeholder():
    def todo(a, b):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.ab_decision(todo)


def test_bucket_is_stable_and_spread():
    from delab.mlops import rollout

    buckets = [rollout.bucket(f"customer-{i}") for i in range(5000)]
    assert buckets[:50] == [rollout.bucket(f"customer-{i}") for i in range(50)]
    share = np.mean(np.array(buckets) < 10)
    assert stats.binomtest(int(share * 5000), 5000, 0.10).pvalue > 0.001
