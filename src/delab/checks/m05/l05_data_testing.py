"""Checks of lab 05.05 (testing data): the learner's unit and property-based tests judged by mutation testing
(``delab.mutation``, shared with lab 01.06), dbt data tests and unit tests judged on defective copies of the data
and a broken model, and a regression diff of a pipeline's output before and after a change."""

from __future__ import annotations

import pandas as pd
import yaml

from delab.contracts import dbt_models, odcs
from delab.grading import WrongAnswer, exercise, learner_code

#: planted bugs in delab.contracts.order_cleaning: (what it breaks, original text, replacement)
MUTANTS = [
    ("a repeated order keeps its last row, not its first", 'keep="first"', 'keep="last"'),
    ("repeated orders are all kept", '    orders = orders.drop_duplicates("order_id", keep="first")\n', ""),
    ("channel is lower-cased but not trimmed", "orders.channel.str.strip().str.lower()", "orders.channel.str.lower()"),
    ("unknown statuses are kept", "    orders = orders[orders.status.isin(STATUSES)]\n", ""),
    ("an order placed exactly at as_of is dropped", "orders.order_ts <= as_of", "orders.order_ts < as_of"),
]


@exercise("m05.l05.e1")
def mutation_tested_suite(tests: str) -> None:
    """Your tests pass on clean_orders and fail on every planted bug."""
    from delab import mutation
    from delab.contracts import order_cleaning

    mutation.check_suite(tests, "order_cleaning", order_cleaning.__file__, MUTANTS)


# ----------------------------------------------------------------------------------------------- dbt tests

#: the model lab 05.05 tests: the orders that count for reporting
REPORTED_SQL = """select order_id, customer_id, order_ts, channel, status
from {{ source('shop', 'orders') }}
where status <> 'cancelled'
"""

#: the same model after someone dropped the filter
UNFILTERED_SQL = """select order_id, customer_id, order_ts, channel, status
from {{ source('shop', 'orders') }}
"""

#: defective copies the data tests must fail on: (make from good orders, message, hint)
_DEFECTS = [
    (
        lambda o: pd.concat([o, o[o.status != "cancelled"].head(2)], ignore_index=True),
        "dbt's tests pass on a table with the same order_id twice",
        "generic tests on order_id: unique (and not_null).",
    ),
    (
        lambda o: o.assign(customer_id=o.customer_id.where(o.index % 40 != 0)),
        "dbt's tests pass on orders without a customer_id",
        "a not_null test on customer_id.",
    ),
    (
        lambda o: o.assign(status=o.status.where(o.index % 25 != 0, "pending")),
        "dbt's tests pass on an unknown status",
        "accepted_values on status (arguments: values: [...]).",
    ),
]


def _project(schema: str, tests: dict, sql: str):
    return dbt_models.project(
        "orders_tests_check", schema, {"models/fct_reported_orders.sql": sql, "models/fct_reported_orders.yml": tests}
    )


@exercise("m05.l05.e2")
def dbt_tests(tests_yaml: str, schema: str) -> None:
    """dbt's data tests pass on good orders and fail on each defect; a unit test fails when the filter is dropped."""
    try:
        parsed = yaml.safe_load(tests_yaml) if isinstance(tests_yaml, str) else tests_yaml
    except yaml.YAMLError as error:
        raise WrongAnswer(f"not YAML: {str(error).splitlines()[0]}", hint="indentation is part of YAML.") from None
    models = parsed.get("models") if isinstance(parsed, dict) else None
    if not models or not any(isinstance(m, dict) and m.get("name") == "fct_reported_orders" for m in models):
        raise WrongAnswer(
            "the YAML declares no model fct_reported_orders.", hint="models: [{name: fct_reported_orders, ...}]"
        )
    if not parsed.get("unit_tests"):
        raise WrongAnswer(
            "the YAML has no unit_tests.",
            hint="unit_tests: [{name: ..., model: fct_reported_orders, given: ..., expect: ...}]",
        )
    scratch = f"{schema}_check"
    good = odcs.clean_orders()
    odcs.load_table(good, scratch)
    root = _project(scratch, parsed, REPORTED_SQL)
    first = dbt_models.build(root, scratch, select="fct_reported_orders")
    if not first.success:
        failing = [name for name, status in first.statuses.items() if status in ("fail", "error")]
        raise WrongAnswer(
            f"dbt build fails on the good orders: {', '.join(failing) or ' '.join(first.messages[:1])[:200]}",
            hint="run dbt_models.build(...) yourself and read its messages; unit test rows need every column they use.",
        )
    (root / "models" / "fct_reported_orders.sql").write_text(UNFILTERED_SQL)
    unfiltered = dbt_models.invoke(root, "test", "--select", "fct_reported_orders,test_type:unit")
    (root / "models" / "fct_reported_orders.sql").write_text(REPORTED_SQL)
    if unfiltered.success:
        raise WrongAnswer(
            "dbt build passes when the model forgets to leave out cancelled orders.",
            hint="a unit test whose given rows include a cancelled order, and whose expected rows do not.",
        )
    for make, message, hint in _DEFECTS:
        odcs.load_table(make(good.copy()), scratch)
        if dbt_models.build(root, scratch, select="fct_reported_orders").success:
            raise WrongAnswer(message + ".", hint=hint)


# -------------------------------------------------------------------------------------------- regression


def reference_diff(before: pd.DataFrame, after: pd.DataFrame, key: str) -> dict[str, list]:
    """Keys added, removed, and present in both with a different value in some column (NaN equals NaN)."""
    b, a = before.set_index(key), after.set_index(key)
    common = b.index.intersection(a.index)
    columns = sorted(set(b.columns) | set(a.columns))
    b, a = b.reindex(index=common, columns=columns), a.reindex(index=common, columns=columns)
    differs = ~((b == a) | (b.isna() & a.isna())).all(axis=1)
    return {
        "added": sorted(set(after[key]) - set(before[key])),
        "removed": sorted(set(before[key]) - set(after[key])),
        "changed": sorted(differs[differs].index),
    }


def _cases() -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    base = pd.DataFrame(
        {
            "order_id": [1, 2, 3, 4, 5],
            "channel": ["web", "app", "web", None, "app"],
            "amount": [9.5, 20.0, 3.25, 7.0, 1.0],
        }
    )
    reordered = base.iloc[::-1].reset_index(drop=True)
    changed = base.copy()
    changed.loc[changed.order_id == 3, "amount"] = 3.5
    added_removed = pd.concat(
        [base[base.order_id != 2], pd.DataFrame({"order_id": [6], "channel": ["web"], "amount": [2.0]})]
    )
    return [
        ("a missing channel in both", base, base.copy()),
        ("the same rows in another order", base, reordered),
        ("one amount changed", base, changed),
        ("one order gone, one new", base, added_removed.reset_index(drop=True)),
    ]


@learner_code("diff_outputs")
def _diff(fn, before, after):
    return fn(before.copy(), after.copy(), "order_id")


@exercise("m05.l05.e3")
def regression_diff(diff_outputs) -> None:
    """diff_outputs finds the rows added, removed and changed between two outputs, matched by key."""
    for name, before, after in _cases():
        got = _diff(diff_outputs, before, after)
        if not isinstance(got, dict) or not {"added", "removed", "changed"} <= set(got):
            raise WrongAnswer(
                f"expected a dict with added, removed and changed, got {type(got).__name__}.",
                hint="{'added': [...], 'removed': [...], 'changed': [...]} — lists of keys.",
            )
        got = {k: sorted(int(x) for x in got[k]) for k in ("added", "removed", "changed")}
        want = reference_diff(before, after, "order_id")
        if got == want:
            continue
        if name.startswith("the same rows") and got["changed"]:
            raise WrongAnswer(
                "reordering the same rows counts as changes in your diff.",
                hint="match rows by the key (order_id), not by position.",
            )
        if name.startswith("a missing channel") and got["changed"]:
            raise WrongAnswer(
                "two identical outputs differ in your diff where a value is missing.",
                hint="NaN != NaN in pandas: treat 'both missing' as equal.",
            )
        raise WrongAnswer(
            f"for {name}: expected {want}, got {got}.", hint="compare keys for added/removed; values for changed."
        )
