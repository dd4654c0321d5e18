"""Checks of lab 05.03 (quality KPIs and monitoring): right answers pass, realistic wrong ones are rejected with
their own hint. The KPI suite runs in the real Postgres; the PSI and the monitor are judged on the shop's data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from delab import stack
from delab.checks.m05 import l03_quality_kpis as checks
from delab.contracts import monitoring as mon
from delab.contracts import quality
from delab.grading import NotSolvedYet, WrongAnswer

# ------------------------------------------------------------------------------------------------ KPI suite


def right_suite() -> dict:
    import great_expectations as gx

    e = gx.expectations
    return {
        "completeness": ("customers", e.ExpectColumnValuesToNotBeNull(column="email")),
        "validity": ("customers", e.ExpectColumnValuesToMatchRegex(column="country", regex="^[A-Z]{2}$")),
        "uniqueness": ("orders", e.ExpectColumnValuesToBeUnique(column="order_id")),
        "consistency": ("orders_checked", e.ExpectColumnValuesToBeInSet(column="customer_known", value_set=[True])),
        "timeliness": ("orders", e.ExpectColumnValuesToBeBetween(column="order_ts", max_value=quality.AS_OF)),
        "accuracy": (
            "orders_checked",
            e.ExpectColumnPairValuesToBeEqual(
                column_A="items_total", column_B="paid_amount", ignore_row_if="either_value_is_missing"
            ),
        ),
    }


@pytest.mark.stack
class TestKpiSuite:
    @pytest.fixture(scope="class", autouse=True)
    def postgres_running(self):
        stack.require("postgres", quiet=True)

    def test_the_right_suite_passes(self):
        checks.kpi_suite(right_suite())

    def test_a_length_check_for_validity_is_named(self):
        import great_expectations as gx

        suite = right_suite()
        suite["validity"] = ("customers", gx.expectations.ExpectColumnValueLengthsToEqual(column="country", value=2))
        with pytest.raises(WrongAnswer, match=r"validity: .* flags 0 of 500") as verdict:
            checks.kpi_suite(suite)
        assert "UPPER-case" in verdict.value.hint

    def test_a_not_null_test_for_consistency_is_named(self):
        import great_expectations as gx

        suite = right_suite()
        suite["consistency"] = ("orders", gx.expectations.ExpectColumnValuesToNotBeNull(column="customer_id"))
        with pytest.raises(WrongAnswer, match="consistency: ") as verdict:
            checks.kpi_suite(suite)
        assert "customer_known" in verdict.value.hint

    def test_a_wrong_column_and_malformed_suites_are_rejected(self):
        import great_expectations as gx

        suite = right_suite()
        suite["completeness"] = ("customers", gx.expectations.ExpectColumnValuesToNotBeNull(column="e_mail"))
        with pytest.raises(WrongAnswer, match="completeness: the expectation on customers did not run"):
            checks.kpi_suite(suite)
        with pytest.raises(WrongAnswer, match="no expectation for"):
            checks.kpi_suite({"completeness": right_suite()["completeness"]})
        with pytest.raises(WrongAnswer, match="not a Great Expectations expectation"):
            checks.kpi_suite({**right_suite(), "accuracy": ("orders_checked", "paid = total")})
        with pytest.raises(NotSolvedYet):
            checks.kpi_suite(...)


# ------------------------------------------------------------------------------------------------------ PSI


def psi(expected, actual, bins: int = 10, eps: float = 1e-4) -> float:
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    e = np.histogram(np.clip(expected, edges[0], edges[-1]), edges)[0] / len(expected)
    a = np.histogram(np.clip(actual, edges[0], edges[-1]), edges)[0] / len(actual)
    e, a = np.maximum(e, eps), np.maximum(a, eps)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_with_pandas_cut(expected, actual) -> float:
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf
    e = pd.Series(pd.cut(expected, edges)).value_counts(normalize=True, sort=False).to_numpy()
    a = pd.Series(pd.cut(actual, edges)).value_counts(normalize=True, sort=False).to_numpy()
    e, a = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_equal_width(expected, actual) -> float:
    edges = np.linspace(min(expected.min(), actual.min()), max(expected.max(), actual.max()), 11)
    e = np.maximum(np.histogram(expected, edges)[0] / len(expected), 1e-4)
    a = np.maximum(np.histogram(actual, edges)[0] / len(actual), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_without_epsilon(expected, actual) -> float:
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, 11)))
    e = np.histogram(np.clip(expected, edges[0], edges[-1]), edges)[0] / len(expected)
    a = np.histogram(np.clip(actual, edges[0], edges[-1]), edges)[0] / len(actual)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum((a - e) * np.log(a / e)))


def psi_of_counts(expected, actual) -> float:
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, 11)))
    e = np.maximum(np.histogram(np.clip(expected, edges[0], edges[-1]), edges)[0], 1)
    a = np.maximum(np.histogram(np.clip(actual, edges[0], edges[-1]), edges)[0], 1)
    return float(np.sum((a - e) * np.log(a / e)))


def test_psi_right_answers_pass():
    checks.psi(psi)
    checks.psi(psi_with_pandas_cut)


def test_psi_with_equal_width_bins_is_named():
    with pytest.raises(WrongAnswer, match="population stability index is") as verdict:
        checks.psi(psi_equal_width)
    assert "deciles" in verdict.value.hint


def test_psi_without_epsilon_or_of_counts_is_named():
    with pytest.raises(WrongAnswer, match=r"expected a large finite number|expected a finite number") as verdict:
        checks.psi(psi_without_epsilon)
    assert "epsilon" in verdict.value.hint or "one float" in verdict.value.hint
    with pytest.raises(WrongAnswer) as verdict:
        checks.psi(psi_of_counts)
    assert "shares" in verdict.value.hint

    def stub(expected, actual):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.psi(stub)


# -------------------------------------------------------------------------------------------------- monitor


def make_monitor(volume=(0.5, 2.0), psi_limit=0.25, wall_clock=False, schema=True):
    def check_batch(batch: pd.DataFrame, baseline: mon.Baseline) -> set[str]:
        alerts = set()
        if schema and set(batch.columns) != set(baseline.columns):
            alerts.add("schema")
        ratio = len(batch) / baseline.median_rows
        if not volume[0] <= ratio <= volume[1]:
            alerts.add("volume")
        now = pd.Timestamp.now() if wall_clock else batch.loaded_at.max()
        if (now - batch.order_ts.max()) / pd.Timedelta(hours=1) > 12:
            alerts.add("freshness")
        # without the schema check, the monitor assumes the columns are there (and crashes when one is renamed)
        if (not schema or "amount" in batch) and psi(baseline.amounts, batch["amount"].to_numpy(float)) > psi_limit:
            alerts.add("drift")
        return alerts

    return check_batch


def test_a_monitor_quiet_on_noise_that_names_each_anomaly_passes():
    checks.batch_monitor(make_monitor())


def test_thresholds_inside_the_noise_are_named():
    with pytest.raises(WrongAnswer, match=r"is a normal day but check_batch alerts \['volume'\]") as verdict:
        checks.batch_monitor(make_monitor(volume=(0.85, 1.15)))
    assert "±25 %" in verdict.value.hint
    with pytest.raises(WrongAnswer, match=r"alerts \['drift'\]") as verdict:
        checks.batch_monitor(make_monitor(psi_limit=0.1))
    assert "sampling noise" in verdict.value.hint


def test_wall_clock_freshness_and_a_crash_on_new_columns_are_named():
    with pytest.raises(WrongAnswer, match=r"alerts \['freshness'\]") as verdict:
        checks.batch_monitor(make_monitor(wall_clock=True))
    assert "loaded_at" in verdict.value.hint
    with pytest.raises(WrongAnswer, match="crashed on a batch whose columns changed"):
        checks.batch_monitor(make_monitor(schema=False))
    with pytest.raises(NotSolvedYet):
        checks.batch_monitor(...)
