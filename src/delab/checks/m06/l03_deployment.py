"""Checks of lab 06.03 (model deployment): promotion by aliases in the MLflow registry, a canary split proven by
counting, an automatic rollback rule judged by relations to the champion, and an A/B decision with a
significance test.

e1 runs the learner's promotion against the stack's real MLflow registry (a scratch registered model); e2–e4
feed known numbers, so their verdict does not depend on the machine's load.
"""

from __future__ import annotations

import uuid

import numpy as np

from delab.grading import WrongAnswer, exercise, learner_code

# --------------------------------------------------------------------------------- e1: promote by alias


def _aliases(client, name: str) -> dict[str, str]:
    model = client.get_registered_model(name)
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


@exercise("m06.l03.e1")
def promote_by_alias(promote, client, template) -> None:
    """promote(client, name, version) makes `version` the champion, keeps the former champion as `previous`
    (the rollback target), removes `challenger` from the promoted version — and is safe to run twice.

    ``template`` is an existing model version: the scratch model's versions point at its files."""
    name = f"m06-l03-check-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    try:
        source = str(template.source)
        # MLflow 3 keeps a logged model as models:/<model id>; a new version of it must name that id
        model_id = getattr(template, "model_id", None) or (source[8:] if source.startswith("models:/m-") else None)
        for _ in range(3):
            client.create_model_version(name, source, run_id=template.run_id, model_id=model_id)
        client.set_registered_model_alias(name, "champion", "1")
        client.set_registered_model_alias(name, "challenger", "2")
        learner_code("promote")(promote)(client, name, "2")
        after = _aliases(client, name)
        stages = {str(v.version): v.current_stage for v in client.search_model_versions(f"name='{name}'")}
        if after.get("champion") == "1" and any(stage not in (None, "None") for stage in stages.values()):
            raise WrongAnswer(
                "the champion alias still points at version 1; a stage was changed instead.",
                hint="stages (Staging/Production) are deprecated in MLflow; deployments follow aliases now.",
            )
        if after.get("champion") != "2":
            raise WrongAnswer(
                f"after promote(…, '2') the champion is version {after.get('champion')}.",
                hint="an alias is a movable name for a version: move champion to the promoted version.",
            )
        if after.get("previous") != "1":
            raise WrongAnswer(
                f"the former champion (version 1) has no `previous` alias (aliases now: {after}): a rollback would "
                "not know where to go.",
                hint="before moving champion, remember which version held it, under another alias.",
            )
        if after.get("challenger") == "2":
            raise WrongAnswer(
                "version 2 is champion and challenger at once: the next canary would compare it with itself.",
                hint="once promoted, the challenger alias has done its job: delete it.",
            )
        learner_code("promote, run a second time")(promote)(client, name, "2")
        again = _aliases(client, name)
        if again.get("previous") != "1" or again.get("champion") != "2":
            raise WrongAnswer(
                f"running promote twice left {again}: the rollback target now points at the champion itself.",
                hint="a deployment step is retried: promoting the version that is already champion must change "
                "nothing.",
            )
    finally:
        client.delete_registered_model(name)


# ------------------------------------------------------------------------------- e2: the split, counted

_SPLITS = (  # (requests, counted on the canary, configured percent, consistent?)
    (1000, 108, 10, True),
    (1000, 100, 10, True),
    (60, 10, 10, True),
    (1000, 140, 10, False),
    (1000, 65, 10, False),
    (20000, 2150, 10, False),
    (400, 115, 25, True),
)


@exercise("m06.l03.e2")
def split_is_consistent(consistent) -> None:
    """consistent(canary_count, total, canary_percent) -> True when the counted share is compatible with the
    configured split (two-sided binomial test, 1 % level)."""
    for total, count, percent, expected in _SPLITS:
        got = learner_code("split_consistent")(consistent)(count, total, percent)
        if not isinstance(got, bool | np.bool_):
            raise WrongAnswer(f"split_consistent returned {type(got).__name__}; expected True or False.")
        if bool(got) == expected:
            continue
        share = count / total
        if expected and count != round(total * percent / 100) and abs(share - percent / 100) < 0.02:
            raise WrongAnswer(
                f"{count} of {total} requests on a {percent} % canary judged inconsistent: a random split is never "
                "exact.",
                hint="ask how likely such a count is if the split is right (a binomial test), not whether it is "
                "exactly the percentage.",
            )
        if expected:
            raise WrongAnswer(
                f"{count} of {total} requests on a {percent} % canary ({share:.1%}) judged inconsistent: with so "
                "few requests that is well within chance.",
                hint="a fixed tolerance ignores the sample size; a binomial test accounts for it.",
            )
        if share < percent / 100:
            raise WrongAnswer(
                f"{count} of {total} requests ({share:.1%}) on a {percent} % canary judged consistent: too few is "
                "as wrong as too many.",
                hint="test both directions (a two-sided test).",
            )
        raise WrongAnswer(
            f"{count} of {total} requests ({share:.1%}) on a {percent} % canary judged consistent: with that many "
            "requests such a deviation is very unlikely by chance.",
            hint="a fixed tolerance is too lax for large samples; let a binomial test decide (p < 0.01).",
        )


# --------------------------------------------------------------------------------- e3: automatic rollback

_ROLLBACKS = (  # (champion, canary, roll back?)
    # a busy machine: everything slow, the canary no slower than the champion
    ({"requests": 900, "errors": 0, "p95_ms": 420.0}, {"requests": 100, "errors": 0, "p95_ms": 455.0}, False),
    # the canary fails 6 % of requests
    ({"requests": 900, "errors": 0, "p95_ms": 12.0}, {"requests": 100, "errors": 6, "p95_ms": 12.5}, True),
    # the canary is twice as slow
    ({"requests": 900, "errors": 1, "p95_ms": 10.0}, {"requests": 100, "errors": 0, "p95_ms": 21.0}, True),
    # bad input traffic: both fail 8 %, the canary no worse
    ({"requests": 900, "errors": 72, "p95_ms": 15.0}, {"requests": 100, "errors": 8, "p95_ms": 15.0}, False),
    # exactly at the latency threshold (1.5×): not over it
    ({"requests": 900, "errors": 0, "p95_ms": 20.0}, {"requests": 100, "errors": 0, "p95_ms": 30.0}, False),
    # an idle machine: both fast, the canary 1.4× — fine
    ({"requests": 900, "errors": 0, "p95_ms": 2.0}, {"requests": 100, "errors": 0, "p95_ms": 2.8}, False),
)


@exercise("m06.l03.e3")
def rollback_rule(should_roll_back) -> None:
    """should_roll_back(champion, canary) -> True when the canary's error rate exceeds the champion's by more
    than 2 percentage points or its p95 is more than 1.5 times the champion's."""
    for champion, canary, expected in _ROLLBACKS:
        got = learner_code("should_roll_back")(should_roll_back)(dict(champion), dict(canary))
        if not isinstance(got, bool | np.bool_):
            raise WrongAnswer(f"should_roll_back returned {type(got).__name__}; expected True or False.")
        if bool(got) == expected:
            continue
        if not expected and canary["p95_ms"] > 100 and canary["p95_ms"] <= 1.5 * champion["p95_ms"]:
            raise WrongAnswer(
                f"rolled back a canary with p95 {canary['p95_ms']} ms next to a champion at {champion['p95_ms']} ms: "
                "the machine is slow, not the release.",
                hint="judge the canary against the champion measured at the same time (a ratio), never against an "
                "absolute number of milliseconds.",
            )
        if (
            not expected
            and canary["errors"]
            and canary["errors"] / canary["requests"] <= (champion["errors"] / champion["requests"] + 0.02)
        ):
            raise WrongAnswer(
                "rolled back a canary whose error rate equals the champion's: the failures come from the traffic, "
                "not the release.",
                hint="compare the canary's error rate with the champion's (a difference), not with zero.",
            )
        if not expected:
            raise WrongAnswer(
                f"rolled back at p95 {canary['p95_ms']} vs {champion['p95_ms']} ms (exactly 1.5×) — the rule says "
                "more than 1.5 times.",
                hint="at the threshold is still within it: use a strict comparison.",
            )
        if canary["errors"]:
            raise WrongAnswer(
                f"kept a canary that failed {canary['errors']} of {canary['requests']} requests while the champion "
                f"failed {champion['errors']} of {champion['requests']}.",
                hint="error rates are errors divided by requests, per version; compare them.",
            )
        raise WrongAnswer(
            f"kept a canary with p95 {canary['p95_ms']} ms next to a champion at {champion['p95_ms']} ms.",
            hint="latency counts too: more than 1.5 times the champion's p95 is a rollback.",
        )


# -------------------------------------------------------------------------------------- e4: A/B decision


def _samples() -> list[tuple[np.ndarray, np.ndarray, str]]:
    rng = np.random.default_rng(11)
    return [
        # B clearly better (smaller absolute errors), different spreads
        (np.abs(rng.normal(0, 30, 400)), np.abs(rng.normal(0, 22, 300)), "B"),
        # same model quality
        (np.abs(rng.normal(0, 25, 400)), np.abs(rng.normal(0, 25, 400)), "no difference"),
        # B's mean is lower, but with 25 orders each that is noise
        (np.abs(rng.normal(0, 25, 25)) + 1.0, np.abs(rng.normal(0, 25, 25)), "no difference"),
        # A clearly better
        (np.abs(rng.normal(0, 18, 300)), np.abs(rng.normal(0, 26, 500)), "A"),
    ]


@exercise("m06.l03.e4")
def ab_decision(decide) -> None:
    """decide(errors_a, errors_b) -> "A", "B" or "no difference": the version with the smaller mean absolute error
    when Welch's t-test (two-sided) gives p < 0.05, else "no difference"."""
    from scipy import stats

    for errors_a, errors_b, expected in _samples():
        got = learner_code("ab_decision")(decide)(errors_a.copy(), errors_b.copy())
        if got == expected:
            continue
        if got not in ("A", "B", "no difference"):
            raise WrongAnswer(f"ab_decision returned {got!r}; expected 'A', 'B' or 'no difference'.")
        p = stats.ttest_ind(errors_a, errors_b, equal_var=False).pvalue
        better = "A" if errors_a.mean() < errors_b.mean() else "B"
        if expected == "no difference" and got == better:
            raise WrongAnswer(
                f"declared {got} the winner with {len(errors_a)} and {len(errors_b)} orders, where the difference "
                f"of means has p = {p:.2f}.",
                hint="a lower mean in a sample is not yet a better model: let the test's p-value decide.",
            )
        if expected in ("A", "B") and got not in ("no difference", expected):
            raise WrongAnswer(
                f"picked {got}, whose mean absolute error is the larger one.",
                hint="errors: smaller is better.",
            )
        raise WrongAnswer(
            f"answered {got!r} where Welch's t-test gives p = {p:.2g} (mean errors {errors_a.mean():.1f} vs "
            f"{errors_b.mean():.1f}).",
            hint="significant means p below 0.05, and the two versions' samples are independent (not paired).",
        )
