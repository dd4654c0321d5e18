"""Checks of lab 01.06 (resources and testing): concurrency limits measured on a real Dagster run, peak memory
measured in a child process, and the learner's test suite judged by mutation testing (it must pass on the real
code and fail on each planted bug)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from delab import config
from delab.grading import WrongAnswer, exercise, learner_code

WAREHOUSE_LIMIT = 2


@exercise("m01.l06.e1")
def concurrency_config(run_config: dict) -> None:
    """Exports run in parallel, but never more than two at once against the warehouse."""
    from delab.orchestration import warehouse_jobs

    if not isinstance(run_config, dict) or "execution" not in run_config:
        raise WrongAnswer(
            "expected a Dagster run config with an 'execution' section.",
            hint="{'execution': {'config': {'multiprocess': {...}}}}",
        )
    execution = run_config["execution"]
    executor = execution.get("config") if isinstance(execution, dict) else None
    executor = executor if isinstance(executor, dict) else {}
    if "multiprocess" not in executor:
        raise WrongAnswer(
            f"the executor is {list(executor) or 'the default'}: steps cannot run side by side.",
            hint="the multiprocess executor runs steps in parallel processes.",
        )
    multiprocess = executor["multiprocess"] or {}
    try:
        steps, slots = warehouse_slots(multiprocess)
    except (AttributeError, TypeError, ValueError):  # a config Dagster would refuse too: say where, in one line
        raise WrongAnswer(
            f"the multiprocess config {multiprocess!r} does not have the executor's shape.",
            hint="max_concurrent is a number; tag_concurrency_limits a list of {'key', 'value', 'limit'} dicts.",
        ) from None
    if slots > WAREHOUSE_LIMIT:
        raise WrongAnswer(
            f"{slots} exports could hit the warehouse at the same time; it allows {WAREHOUSE_LIMIT}.",
            hint="limit steps by their tag (resource=warehouse), not just overall concurrency.",
        )
    if slots < WAREHOUSE_LIMIT:
        raise WrongAnswer(
            "the exports would run one at a time.",
            hint=f"allow {WAREHOUSE_LIMIT} at once, and at least as many processes.",
        )
    if steps < 4:
        raise WrongAnswer(
            f"only {steps} steps may run at once; the exercise allows 4.",
            hint="max_concurrent sets how many step processes run side by side (0 or missing: one per CPU).",
        )
    folder = config.lab_dir("m01_l06") / "dagster-check"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        success, exports, _ = warehouse_jobs.run(run_config, str(folder))
    except Exception as error:  # an invalid run config is the learner's mistake: say which
        raise WrongAnswer(
            f"Dagster rejected the run config: {str(error).splitlines()[0]}",
            hint="compare the keys with the multiprocess executor's config schema.",
        ) from None
    if not success:
        raise WrongAnswer("the job run failed.", hint="run warehouse_jobs.run(...) yourself and read its events.")
    # The run proves the limit holds (more overlap than allowed is never a matter of load). How MUCH overlap a run
    # shows depends on how fast step processes start, which a busy laptop stretches: the settings above decide.
    overlap = warehouse_jobs.max_overlap(exports)
    if overlap > WAREHOUSE_LIMIT:
        raise WrongAnswer(
            f"{overlap} exports hit the warehouse at the same time; it allows {WAREHOUSE_LIMIT}.",
            hint="limit steps by their tag (resource=warehouse), not just overall concurrency.",
        )


def warehouse_slots(multiprocess: dict) -> tuple[int, int]:
    """(steps that may run at once, warehouse-tagged steps that may run at once) under a multiprocess executor
    config, as Dagster reads it: max_concurrent 0 or missing means one per CPU; a tag limit applies when its key
    and value match the step's tag (a limit without a value, or one per unique value, covers every value)."""
    steps = int(multiprocess.get("max_concurrent") or os.cpu_count() or 1)
    slots = steps
    for rule in multiprocess.get("tag_concurrency_limits") or []:
        if not isinstance(rule, dict) or rule.get("key") != "resource":
            continue
        value = rule.get("value")
        if value is None or isinstance(value, dict) or value == "warehouse":
            slots = min(slots, int(rule.get("limit", slots)))
    return steps, slots


# ------------------------------------------------------------------------------------------------ memory


def whole_file_revenue(path: str) -> pd.DataFrame:
    """The reference: read the whole file, then aggregate."""
    lines = pd.read_csv(path)
    lines = lines[lines.quantity > 0]
    return (
        lines.assign(revenue=lines.quantity * lines.unit_price).groupby("category").revenue.sum().round(2).sort_index()
    )


@learner_code("your function")
def _measure(fn, path):
    from delab.orchestration import measure

    return measure.cost(fn, path)


def doubled(path: Path) -> Path:
    """The same CSV with its rows twice (written next to it once): streaming code must not need more memory."""
    target = path.with_name(path.stem + ".x2.csv")
    if not target.exists() or target.stat().st_mtime < path.stat().st_mtime:
        with path.open() as source, target.open("w") as out:
            header = source.readline()
            body = source.read()
            out.write(header + body + body)
    return target


@exercise("m01.l06.e2")
def chunked_revenue(fn, path) -> None:
    """The same revenue per category from a big CSV, with memory that does not grow with the file."""
    from delab.orchestration import measure

    path = Path(path)
    got = _measure(fn, str(path))
    result = got.result
    if isinstance(result, pd.DataFrame) and {"category", "revenue"} <= set(result.columns):
        result = result.set_index("category").revenue
    if not isinstance(result, pd.Series):
        raise WrongAnswer(
            f"expected a Series of revenue by category, got {type(result).__name__}.",
            hint="accumulate per-chunk sums, then add them up.",
        )
    try:
        result = result.astype(float).round(2).sort_index()
    except (TypeError, ValueError):
        raise WrongAnswer(
            "the revenues must be numbers.", hint="sum quantity * unit_price per category: the values are floats."
        ) from None
    reference = measure.cost(whole_file_revenue, str(path))
    want = reference.result
    if list(result.index) != list(want.index) or ((result - want).abs() > 0.05).any():
        raise WrongAnswer(
            "the revenue per category differs from the whole-file result.",
            hint="sum each chunk's revenue per category, then add the partial sums.",
        )
    twice = doubled(path)
    grown = _measure(fn, str(twice)).peak_mb - got.peak_mb
    reference_grown = measure.cost(whole_file_revenue, str(twice)).peak_mb - reference.peak_mb
    if grown > 0.35 * reference_grown:
        raise WrongAnswer(
            f"with twice the rows your peak memory grew by {grown:.0f} MB more (reading the whole "
            f"file: {reference_grown:.0f} MB more): it still holds the whole input.",
            hint="do not keep the chunks (or read the whole file): keep only the running sums.",
        )


# ----------------------------------------------------------------------------------------- mutation testing

#: planted bugs: (description used as a hint, original text, replacement)
MUTANTS = [
    ("cancelled orders are counted", '    orders = orders[orders.status != "cancelled"]\n', ""),
    ("lines with a negative quantity are counted", "    items = items[items.quantity > 0]\n", ""),
    ("repeated order rows are counted twice", '    orders = orders.drop_duplicates("order_id")\n', ""),
    ("the quantity is ignored", "revenue=lines.quantity * lines.unit_price", "revenue=lines.unit_price"),
]


@exercise("m01.l06.e3")
def mutation_tested_suite(tests: str) -> None:
    """Your tests pass on the real transformation and fail on every planted bug."""
    from delab import mutation
    from delab.orchestration import revenue_rules

    mutation.check_suite(tests, "revenue_rules", revenue_rules.__file__, MUTANTS)
