"""Checks of lab 05.03 (quality KPIs and monitoring): a Great Expectations suite whose KPIs count exactly the
defects the shop generator injected (run in the real Postgres), a population stability index compared with a
reference on real shop amounts, and a batch monitor that stays quiet on normal days and names each injected
anomaly — judged on two seeds, from the data alone (no timings), so busy and idle machines agree.
"""

from __future__ import annotations

import math

import numpy as np

from delab import datasets
from delab.contracts import monitoring as mon
from delab.contracts import quality
from delab.grading import WrongAnswer, exercise, learner_code

CHECK_SCHEMA = "m05_l03_check"

# ------------------------------------------------------------------------------------------------ KPI suite

KPI_HINTS = {
    "completeness": "completeness asks whether a value that must be there is there: which customers field is "
    "empty for some rows?",
    "validity": "validity is about format: a country code is exactly two UPPER-case letters (a length check lets "
    "'de' through).",
    "uniqueness": "uniqueness of the order key: every order_id in orders must appear once (GE counts both copies "
    "of a duplicate).",
    "consistency": "consistency across tables: every order's customer must exist in customers — "
    "orders_checked.customer_known says whether it does (a NOT NULL test cannot see it).",
    "timeliness": "timeliness: no order can be later than the load itself (quality.AS_OF) — compare order_ts with it.",
    "accuracy": "accuracy is agreement with a trusted reference: what the customer paid vs the order's items "
    "total, both in orders_checked (skip orders without a payment).",
}


def _is_expectation(value) -> bool:
    from great_expectations.expectations import Expectation

    return isinstance(value, Expectation)


@learner_code("running your expectation")
def _validate(runner, table, expectation) -> dict:
    return runner.validate(table, expectation)


@exercise("m05.l03.e1")
def kpi_suite(suite) -> None:
    """Each dimension's expectation flags exactly the rows carrying the defect injected for it (run in Postgres)."""
    if not isinstance(suite, dict):
        raise WrongAnswer(
            f"suite is a {type(suite).__name__}; expected a dict {{dimension: (table, expectation)}}.",
            hint="start from the template: one entry per dimension of quality.DIMENSIONS.",
        )
    missing = [d for d in quality.DIMENSIONS if d not in suite]
    if missing:
        raise WrongAnswer(f"no expectation for {', '.join(missing)}.", hint="the suite needs all six dimensions.")
    for dimension in quality.DIMENSIONS:
        entry = suite[dimension]
        if not (isinstance(entry, tuple | list) and len(entry) == 2 and entry[0] in quality.TABLES):
            raise WrongAnswer(
                f"suite[{dimension!r}] is {str(entry)[:80]}; expected a pair (table, expectation).",
                hint=f"the table is one of {', '.join(quality.TABLES)}.",
            )
        if not _is_expectation(entry[1]):
            raise WrongAnswer(
                f"suite[{dimension!r}][1] is a {type(entry[1]).__name__}, not a Great Expectations expectation.",
                hint="build it from gx.expectations, e.g. gx.expectations.ExpectColumnValuesToNotBeNull(column=...).",
            )
    quality.load_postgres(CHECK_SCHEMA)
    runner = quality.postgres_runner(CHECK_SCHEMA)
    truth = quality.expected_unexpected()
    for dimension in quality.DIMENSIONS:
        table, expectation = suite[dimension]
        got = _validate(runner, table, expectation)
        if got["unexpected"] is None:
            raise WrongAnswer(
                f"{dimension}: the expectation on {table} did not run ({type(expectation).__name__} gave no "
                "unexpected count).",
                hint=f"check the column names of {table} (quality.TABLES) and use a per-row expectation.",
            )
        if got["unexpected"] != truth[dimension]:
            raise WrongAnswer(
                f"{dimension}: your {type(expectation).__name__} on {table} flags {got['unexpected']} of "
                f"{got['rows']} rows; the shop has {truth[dimension]} rows with that dimension's defect.",
                hint=KPI_HINTS[dimension],
            )


# ------------------------------------------------------------------------------------------------------ PSI


def _baseline_and_day():
    batches = mon.daily_batches(quality.shop())
    baseline = mon.Baseline.learn([batches[d] for d in range(mon.BASELINE_DAYS)])
    return baseline, batches[20].amount.to_numpy(dtype=float)


@learner_code("psi")
def _psi(fn, expected, actual) -> float:
    return fn(expected.copy(), actual.copy())


@exercise("m05.l03.e2")
def psi(fn) -> None:
    """psi agrees with the population stability index on real shop amounts, and stays finite on empty bins."""
    baseline, day = _baseline_and_day()
    scenarios = {
        "a normal day": day,
        "a day with prices doubled": day * 2,
        "a day with a third of the orders tripled": np.where(np.arange(len(day)) % 3 == 0, day * 3, day),
    }
    for label, values in scenarios.items():
        want = mon.reference_psi(baseline.amounts, values)
        got = _psi(fn, baseline.amounts, values)
        if not isinstance(got, int | float | np.floating) or not math.isfinite(float(got)):
            raise WrongAnswer(
                f"psi returned {got!r} for {label}; expected a finite number.",
                hint="return one float: the sum over bins of (actual - expected) * ln(actual / expected).",
            )
        if abs(float(got) - want) > max(0.01, 0.1 * want):
            counts_like = float(got) > 20 * max(want, 0.05)
            raise WrongAnswer(
                f"for {label} your psi is {float(got):.3f}; the population stability index is {want:.3f}.",
                hint="compare shares (each bin's count / all values), not counts: the batch is far smaller than "
                "the baseline."
                if counts_like
                else "cut the bins at the BASELINE's deciles (np.quantile of the baseline values), not at equal "
                "widths and not at the batch's own quantiles: money amounts are skewed.",
            )
    cents = day * 100  # every value beyond the baseline's range: nine empty bins
    got = _psi(fn, baseline.amounts, cents)
    if not isinstance(got, int | float | np.floating) or not math.isfinite(float(got)) or float(got) < 1:
        raise WrongAnswer(
            f"for a day sent in cents (every amount ×100) your psi is {got!r}; expected a large finite number.",
            hint="an empty bin makes ln(0) or a division by zero: floor each share at a small epsilon (e.g. 1e-4) "
            "before taking the log.",
        )


# -------------------------------------------------------------------------------------------------- monitor

MONITOR_SEEDS = (42, 7)
MISS_HINTS = {
    "volume": "a partial extract: compare the batch's row count with the baseline's median (rows per day).",
    "freshness": "yesterday's file re-sent: the newest order is a day older than the batch's loaded_at.",
    "schema": "compare the batch's columns (and types) with baseline.columns.",
    "drift": "amounts in cents: a PSI of the batch's amounts against baseline.amounts far above 0.25.",
}
NOISE_HINTS = {
    "volume": "rows per day swing by ±25 % on normal days (weekends, chance): alert on a much larger change, "
    "e.g. below half or above twice the median.",
    "freshness": "measure freshness against the batch's own loaded_at, not the machine's clock: these batches "
    "are replayed long after they landed.",
    "schema": "a normal batch has exactly baseline.columns: compare names (and types), not the order of columns.",
    "drift": "a PSI of 0.05–0.12 is sampling noise for ~180 rows against the baseline: the usual alert level is "
    "0.25 ('significant shift').",
}


@learner_code("check_batch")
def _alerts(fn, batch, baseline) -> set[str]:
    got = fn(batch.copy(), baseline)
    if got is None:
        return set()
    if isinstance(got, str):
        return {got}
    return {str(kind) for kind in got}


@exercise("m05.l03.e3")
def batch_monitor(check_batch) -> None:
    """check_batch is quiet on every normal day and names each injected anomaly, on two different shops."""
    for seed in MONITOR_SEEDS:
        batches = mon.daily_batches(datasets.shop(seed=seed, scale=quality.SCALE))
        baseline = mon.Baseline.learn([batches[d] for d in range(mon.BASELINE_DAYS)])
        run = mon.inject_anomalies(batches)
        for day in range(mon.BASELINE_DAYS, len(run)):
            expected = mon.ANOMALIES.get(day)
            if expected == "schema":
                try:
                    got = _alerts(check_batch, run[day], baseline)
                except WrongAnswer as error:
                    raise WrongAnswer(
                        f"check_batch crashed on a batch whose columns changed (amount renamed total_amount): "
                        f"{error.message}",
                        hint="compare the columns first, alert 'schema', and skip the checks that need a missing "
                        "column: a monitor must never die on the batch it exists to catch.",
                    ) from None
            else:
                got = _alerts(check_batch, run[day], baseline)
            unknown = got - set(mon.ALERT_KINDS)
            if unknown:
                raise WrongAnswer(
                    f"check_batch returned {sorted(unknown)}; alert kinds are {', '.join(mon.ALERT_KINDS)}.",
                    hint="return a set of those strings (empty when the batch is fine).",
                )
            if expected is None and got:
                kind = sorted(got)[0]
                raise WrongAnswer(
                    f"shop seed {seed}, day {day} is a normal day but check_batch alerts {sorted(got)} "
                    f"({len(run[day])} rows, baseline median {baseline.median_rows:.0f}).",
                    hint=NOISE_HINTS[kind],
                )
            if expected is not None and expected not in got:
                raise WrongAnswer(
                    f"shop seed {seed}, day {day} carries a {expected} anomaly; check_batch says {sorted(got)}.",
                    hint=MISS_HINTS[expected],
                )
