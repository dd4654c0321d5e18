"""Checks of lab 01.06 (resources and testing): right answers pass, realistic wrong ones are rejected."""

from __future__ import annotations

import pandas as pd
import pytest

from delab import datasets, stack
from delab.checks.m01 import l06_resources_testing as checks
from delab.grading import NotSolvedYet, WrongAnswer

FORKSERVER = {"forkserver": {"preload_modules": ["dagster", "delab.orchestration.warehouse_jobs"]}}
WAREHOUSE = [{"key": "resource", "value": "warehouse", "limit": 2}]


def multiprocess(**config):
    return {"execution": {"config": {"multiprocess": {"start_method": FORKSERVER, **config}}}}


@pytest.fixture(scope="module")
def orders_in_postgres():
    stack.require("postgres")
    shop = datasets.shop(seed=7, scale=0.25)
    datasets.to_postgres({"orders": shop.orders.drop_duplicates("order_id")}, schema="m01_l06")


@pytest.mark.stack
@pytest.mark.slow
def test_concurrency_accepts_tag_limit(orders_in_postgres):
    checks.concurrency_config(multiprocess(max_concurrent=4, tag_concurrency_limits=WAREHOUSE))


@pytest.mark.stack
@pytest.mark.slow
def test_concurrency_rejects_missing_tag_limit(orders_in_postgres):
    with pytest.raises(WrongAnswer, match="allows 2"):
        checks.concurrency_config(multiprocess(max_concurrent=4))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"max_concurrent": 4}, "4 exports could hit the warehouse"),  # no tag limit at all
        (
            {"max_concurrent": 4, "tag_concurrency_limits": [{"key": "resource", "value": "Warehouse", "limit": 2}]},
            "4 exports",
        ),
        (
            {"max_concurrent": 4, "tag_concurrency_limits": [{"key": "resource", "value": "warehouse", "limit": 1}]},
            "one at a time",
        ),
        (
            {"max_concurrent": 2},
            "only 2 steps may run at once",
        ),  # 2 overall meets the warehouse limit by starving the rest
        ({"max_concurrent": 1, "tag_concurrency_limits": WAREHOUSE}, "one at a time"),
    ],
)
def test_concurrency_judges_the_settings_in_effect_before_any_run(config, message):
    # decided from the config as Dagster reads it, so a busy machine (slow step processes, less overlap) cannot
    # turn a missing limit into a pass or a right one into "one at a time"
    with pytest.raises(WrongAnswer, match=message):
        checks.concurrency_config(multiprocess(**config))


def test_warehouse_slots_read_like_dagster():
    assert checks.warehouse_slots({"max_concurrent": 4, "tag_concurrency_limits": WAREHOUSE}) == (4, 2)
    assert checks.warehouse_slots(
        {"max_concurrent": 4, "tag_concurrency_limits": [{"key": "resource", "limit": 2}]}
    ) == (4, 2)
    per_value = [{"key": "resource", "value": {"applyLimitPerUniqueValue": True}, "limit": 3}]
    assert checks.warehouse_slots({"max_concurrent": 6, "tag_concurrency_limits": per_value}) == (6, 3)
    steps, slots = checks.warehouse_slots({})
    assert steps == slots >= 1  # one per CPU


@pytest.mark.parametrize(
    "multiprocess_config",
    [
        {"max_concurrent": "four"},
        {"max_concurrent": 4, "tag_concurrency_limits": [{"key": "resource", "value": "warehouse", "limit": None}]},
        ["max_concurrent", 4],
    ],
)
def test_concurrency_says_when_the_config_has_another_shape(multiprocess_config):
    # each used to crash in int() or .get()
    with pytest.raises(WrongAnswer, match="does not have the executor's shape"):
        checks.concurrency_config({"execution": {"config": {"multiprocess": multiprocess_config}}})


def test_concurrency_rejects_in_process_executor_and_bad_shapes():
    with pytest.raises(WrongAnswer, match="side by side"):
        checks.concurrency_config({"execution": {"config": {"in_process": {}}}})
    for execution in (None, {"config": None}, {"multiprocess": {"max_concurrent": 4}}):  # used to crash on None
        with pytest.raises(WrongAnswer, match="side by side"):
            checks.concurrency_config({"execution": execution})
    with pytest.raises(WrongAnswer, match="execution"):
        checks.concurrency_config({"ops": {}})
    with pytest.raises(NotSolvedYet):
        checks.concurrency_config(...)


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("memory") / "lines.csv"
    big = datasets.shop(seed=11, scale=6)
    big.order_items.merge(big.products[["product_id", "category"]], on="product_id").to_csv(path, index=False)
    return path


def chunked_good(path):
    totals = pd.Series(dtype=float)
    for chunk in pd.read_csv(path, chunksize=20_000):
        chunk = chunk[chunk.quantity > 0]
        totals = totals.add((chunk.quantity * chunk.unit_price).groupby(chunk.category).sum(), fill_value=0)
    return totals.round(2)


def chunked_but_kept(path):
    frame = pd.concat(list(pd.read_csv(path, chunksize=20_000)))
    frame = frame[frame.quantity > 0]
    return (frame.quantity * frame.unit_price).groupby(frame.category).sum().round(2)


def chunked_unfiltered(path):
    totals = pd.Series(dtype=float)
    for chunk in pd.read_csv(path, chunksize=20_000):
        totals = totals.add((chunk.quantity * chunk.unit_price).groupby(chunk.category).sum(), fill_value=0)
    return totals.round(2)


def test_chunked_accepts_running_sums(big_csv):
    checks.chunked_revenue(chunked_good, big_csv)


def test_chunked_rejects_whole_file(big_csv):
    with pytest.raises(WrongAnswer, match="holds the whole input"):
        checks.chunked_revenue(checks.whole_file_revenue, big_csv)


def test_chunked_rejects_keeping_every_chunk(big_csv):
    with pytest.raises(WrongAnswer, match="holds the whole input"):
        checks.chunked_revenue(chunked_but_kept, big_csv)


def test_chunked_says_when_revenues_are_not_numbers(big_csv):
    # used to crash in astype(float)
    def formatted(path):
        return chunked_good(path).map(lambda value: f"{value:,.2f} EUR")

    with pytest.raises(WrongAnswer, match="must be numbers"):
        checks.chunked_revenue(formatted, big_csv)


def test_chunked_rejects_wrong_sums(big_csv):
    with pytest.raises(WrongAnswer, match="differs"):
        checks.chunked_revenue(chunked_unfiltered, big_csv)


HEADER = """
import pandas as pd
from revenue_rules import daily_revenue

def orders(*rows):
    return pd.DataFrame(rows, columns=["order_id", "order_ts", "status"]).astype({"order_ts": "datetime64[ns]"})

def items(*rows):
    return pd.DataFrame(rows, columns=["order_id", "quantity", "unit_price"])

def revenue(result):
    return float(result.revenue.sum())
"""
TESTS = {
    "quantity": """
def test_quantity_times_price():
    assert revenue(daily_revenue(orders((1, "2026-03-01", "delivered")), items((1, 3, 2.5)))) == 7.5
""",
    "cancelled": """
def test_cancelled():
    assert revenue(daily_revenue(orders((1, "2026-03-01", "delivered"), (2, "2026-03-01", "cancelled")),
                                 items((1, 1, 10.0), (2, 1, 99.0)))) == 10.0
""",
    "negative": """
def test_negative():
    assert revenue(daily_revenue(orders((1, "2026-03-01", "delivered")), items((1, 2, 5.0), (1, -1, 5.0)))) == 10.0
""",
    "duplicates": """
def test_duplicates():
    assert revenue(daily_revenue(orders((1, "2026-03-01", "shipped"), (1, "2026-03-01", "shipped")),
                                 items((1, 1, 4.0)))) == 4.0
""",
}


def test_suite_accepts_tests_for_every_rule():
    checks.mutation_tested_suite(HEADER + "".join(TESTS.values()))


def test_suite_rejects_a_suite_that_misses_cancelled_orders():
    suite = HEADER + "".join(t for name, t in TESTS.items() if name != "cancelled")
    with pytest.raises(WrongAnswer, match="cancelled orders are counted"):
        checks.mutation_tested_suite(suite)


def test_suite_rejects_a_suite_that_fails_on_correct_code():
    with pytest.raises(WrongAnswer, match="fail on the correct code"):
        checks.mutation_tested_suite(HEADER + TESTS["quantity"].replace("7.5", "7.0"))


def test_suite_rejects_a_suite_missing_repeated_orders():
    suite = HEADER + "".join(t for name, t in TESTS.items() if name != "duplicates")
    with pytest.raises(WrongAnswer, match="repeated order rows are counted twice"):
        checks.mutation_tested_suite(suite)


def test_suite_says_when_it_never_ends(monkeypatch):
    # used to crash with subprocess.TimeoutExpired
    from delab import mutation

    monkeypatch.setattr(mutation, "SUITE_TIMEOUT", 3.0)
    with pytest.raises(WrongAnswer, match="still running after 3 s"):
        checks.mutation_tested_suite(HEADER + "\ndef test_forever():\n    import time\n    time.sleep(60)\n")


def test_suite_rejects_no_tests():
    with pytest.raises(WrongAnswer, match="pytest module"):
        checks.mutation_tested_suite("import pandas")
