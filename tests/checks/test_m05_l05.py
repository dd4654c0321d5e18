"""Checks of lab 05.05 (testing data): right answers pass, realistic wrong ones are rejected with their own hint.
The mutation and regression checks need no service; the dbt check runs dbt against the real Postgres."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from delab import stack
from delab.checks.m05 import l05_data_testing as checks
from delab.grading import NotSolvedYet, WrongAnswer

SOURCE = Path(__file__).parents[2] / "solutions" / "05_contracts_quality" / "05_data_testing.py"
SCHEMA = "m05_l05_test"


def _solution(name: str, quote: str) -> str:
    return re.search(rf"^{name} = {quote}(.*?){quote}", SOURCE.read_text(), re.S | re.M).group(1)


# ------------------------------------------------------------------------------------------- e1 mutation


def test_mutation_suite_accepts_the_solution():
    checks.mutation_tested_suite(_solution("tests", '"""'))


def test_mutation_suite_rejects_a_suite_that_misses_the_boundary_and_trimming():
    suite = _solution("tests", '"""')
    # a suite whose rows are all placed well before as_of: the boundary is never tried
    no_boundary = re.sub(r'"(\w+)", AS_OF\)', r'"\1", EARLY)', suite)
    no_boundary = no_boundary.replace("AS_OF, AS_OF + pd.Timedelta(hours=1)]", "AS_OF + pd.Timedelta(hours=1)]")
    no_boundary = no_boundary.replace("def frame(", "EARLY = AS_OF - pd.Timedelta(hours=1)\n\n\ndef frame(")
    no_boundary = no_boundary.replace(
        '{"order_id": 1, "channel": "web", "status": "placed", "order_ts": AS_OF}',
        '{"order_id": 1, "channel": "web", "status": "placed", "order_ts": EARLY}',
    )
    with pytest.raises(WrongAnswer, match="exactly at as_of"):
        checks.mutation_tested_suite(no_boundary)
    no_trim = suite.replace('"  Web "', '"Web"').replace('["web", " App", "WEB "]', '["web", "App", "WEB"]')
    with pytest.raises(WrongAnswer, match="not trimmed"):
        checks.mutation_tested_suite(no_trim)


def test_mutation_suite_rejects_wrong_expectations_and_no_tests():
    wrong = _solution("tests", '"""').replace(
        'assert list(out.channel) == ["web"]', 'assert list(out.channel) == ["Web"]'
    )
    with pytest.raises(WrongAnswer, match="fail on the correct code"):
        checks.mutation_tested_suite(wrong)
    with pytest.raises(WrongAnswer, match="pytest module"):
        checks.mutation_tested_suite("assert True")
    with pytest.raises(NotSolvedYet):
        checks.mutation_tested_suite(...)


# ------------------------------------------------------------------------------------------- e3 regression


def diff_outputs(before, after, key):
    b, a = before.set_index(key), after.set_index(key)
    common = b.index.intersection(a.index)
    b, a = b.loc[common].sort_index(), a.loc[common].sort_index()[b.columns]
    same = (b == a) | (b.isna() & a.isna())
    return {
        "added": sorted(set(after[key]) - set(before[key])),
        "removed": sorted(set(before[key]) - set(after[key])),
        "changed": sorted(same.index[~same.all(axis=1)]),
    }


def diff_by_position(before, after, key):
    n = min(len(before), len(after))
    b, a = before.head(n).reset_index(drop=True), after.head(n).reset_index(drop=True)
    differs = ~((b == a) | (b.isna() & a.isna())).all(axis=1)
    return {
        "added": sorted(set(after[key]) - set(before[key])),
        "removed": sorted(set(before[key]) - set(after[key])),
        "changed": sorted(before.head(n)[key][differs.to_numpy()]),
    }


def diff_nan_unequal(before, after, key):
    b, a = before.set_index(key), after.set_index(key)
    common = b.index.intersection(a.index)
    same = b.loc[common].sort_index() == a.loc[common].sort_index()[b.columns]
    return {
        "added": sorted(set(after[key]) - set(before[key])),
        "removed": sorted(set(before[key]) - set(after[key])),
        "changed": sorted(same.index[~same.all(axis=1)]),
    }


def test_regression_diff_accepts_a_keyed_diff():
    checks.regression_diff(diff_outputs)


def test_regression_diff_rejects_positional_and_nan_blind_diffs():
    with pytest.raises(WrongAnswer, match="reordering") as error:
        checks.regression_diff(diff_by_position)
    assert "key" in error.value.hint
    with pytest.raises(WrongAnswer, match="value is missing") as error:
        checks.regression_diff(diff_nan_unequal)
    assert "NaN" in error.value.hint


def test_regression_diff_survives_a_crash_and_a_wrong_shape():
    with pytest.raises(WrongAnswer, match="diff_outputs failed with KeyError"):
        checks.regression_diff(lambda b, a, k: b["nope"])
    with pytest.raises(WrongAnswer, match="added, removed and changed"):
        checks.regression_diff(lambda b, a, k: pd.DataFrame())


# ------------------------------------------------------------------------------------------- e2 dbt tests


def _tests_yaml(edit=None) -> str:
    data = yaml.safe_load(_solution("tests_yaml", '"""'))
    if edit:
        edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def _column(data: dict, name: str) -> dict:
    return next(c for c in data["models"][0]["columns"] if c["name"] == name)


@pytest.mark.stack
def test_dbt_tests_accepts_the_solution():
    stack.require("postgres", quiet=True)
    checks.dbt_tests(_tests_yaml(), SCHEMA)


@pytest.mark.stack
def test_dbt_tests_rejects_missing_generic_tests():
    stack.require("postgres", quiet=True)
    with pytest.raises(WrongAnswer, match="same order_id twice"):
        checks.dbt_tests(_tests_yaml(lambda d: _column(d, "order_id").update(data_tests=["not_null"])), SCHEMA)
    with pytest.raises(WrongAnswer, match="unknown status"):
        checks.dbt_tests(_tests_yaml(lambda d: _column(d, "status").pop("data_tests")), SCHEMA)


@pytest.mark.stack
def test_dbt_tests_rejects_a_unit_test_that_cannot_fail_and_too_strict_tests():
    stack.require("postgres", quiet=True)

    def no_cancelled_input(data):
        data["unit_tests"][0]["given"][0]["rows"].pop()  # the cancelled order was the point

    with pytest.raises(WrongAnswer, match="forgets to leave out cancelled"):
        checks.dbt_tests(_tests_yaml(no_cancelled_input), SCHEMA)

    def only_delivered(data):
        _column(data, "status")["data_tests"][0]["accepted_values"]["arguments"]["values"] = ["delivered"]

    with pytest.raises(WrongAnswer, match="fails on the good orders"):
        checks.dbt_tests(_tests_yaml(only_delivered), SCHEMA)
    with pytest.raises(WrongAnswer, match="no unit_tests"):
        checks.dbt_tests(_tests_yaml(lambda d: d.pop("unit_tests")), SCHEMA)
