"""Checks of lab 06.01 (BentoML serving and performance): the right answer passes, realistic wrong ones are
rejected with their own message, the placeholder is not solved."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from delab.checks.m06 import l01_bentoml as checks
from delab.grading import NotSolvedYet, WrongAnswer

# ------------------------------------------------------------------------------------------------ e3


def summary_right(result):
    ms = result.latencies_s * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_rps": len(ms) / result.wall_s,
    }


def summary_mean(result):
    return summary_right(result) | {"p50_ms": float(np.mean(result.latencies_s * 1000))}


def summary_seconds(result):
    s = result.latencies_s
    return summary_right(result) | {f"p{q}_ms": float(np.percentile(s, q)) for q in (50, 95, 99)}


def summary_sum_of_latencies(result):
    return summary_right(result) | {"throughput_rps": len(result.latencies_s) / result.latencies_s.sum()}


def summary_counts_errors(result):
    return summary_right(result) | {"throughput_rps": result.requests / result.wall_s}


def test_latency_summary_right():
    checks.latency_summary(summary_right)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (summary_mean, "mean latency"),
        (summary_seconds, "in seconds"),
        (summary_sum_of_latencies, "sum of the latencies"),
        (summary_counts_errors, "counts failed requests"),
        (lambda result: [1, 2, 3], "expected a dict"),
    ],
)
def test_latency_summary_wrong(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.latency_summary(answer)


def test_latency_summary_placeholder():
    def todo(result):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.latency_summary(todo)


# ------------------------------------------------------------------------------------------------ e4

MEASURED = pd.DataFrame(
    {
        "config": ["sklearn", "batched", "onnx", "cached"],
        "p50_ms": [20.0, 25.0, 4.0, 3.0],
        "p95_ms": [60.0, 45.0, 9.0, 30.0],
        "throughput_rps": [150.0, 400.0, 800.0, 900.0],
    }
)


def choose_right(table, slo):
    ok = table[table.p95_ms <= slo]
    return None if ok.empty else ok.sort_values("throughput_rps").iloc[-1]["config"]


def choose_fastest(table, slo):
    return table.sort_values("p95_ms").iloc[0]["config"]


def choose_max_throughput(table, slo):
    return table.sort_values("throughput_rps").iloc[-1]["config"]


def choose_strict(table, slo):
    ok = table[table.p95_ms < slo]
    return None if ok.empty else ok.sort_values("throughput_rps").iloc[-1]["config"]


def choose_on_p50(table, slo):
    ok = table[table.p50_ms <= slo]
    return None if ok.empty else ok.sort_values("throughput_rps").iloc[-1]["config"]


def choose_never_none(table, slo):
    ok = table[table.p95_ms <= slo]
    return (ok if not ok.empty else table).sort_values("throughput_rps").iloc[-1]["config"]


def test_config_for_slo_right():
    checks.config_for_slo(choose_right, MEASURED, 18.0)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (choose_fastest, "also does and serves more"),
        (choose_max_throughput, "over the SLO"),
        (choose_strict, "exactly the SLO"),
        (choose_on_p50, "its p50 meets it"),
        (choose_never_none, "no configuration meets"),
    ],
)
def test_config_for_slo_wrong(answer, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.config_for_slo(answer, MEASURED, 18.0)


def test_config_for_slo_placeholder():
    def todo(table, slo):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.config_for_slo(todo, MEASURED, 18.0)


def test_cases_are_consistent():
    for result, expected in checks._cases():
        assert math.isclose(summary_right(result)["p95_ms"], expected["p95_ms"])
