"""Checks of lab 01.03 (Dagster). They materialize the learner's assets, I/O manager and asset check in-process
against the stack's Postgres and object store, walk the asset graph independently, and run the learner's test
against a right and several broken versions of an asset. Dagster is imported inside the checks, so this file
loads in every kernel."""

from __future__ import annotations

import contextlib
import inspect
import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pandas as pd

from delab import clients, config
from delab.grading import WrongAnswer, exercise, learner_code

#: where the lab's data lives; the unit tests point these at their own namespace
SCHEMA = "m01_l03"
PREFIX = "m01_l03/"


def _raw_tables() -> dict[str, pd.DataFrame]:
    """The lab's source tables, read with plain SQL (not through the learner's assets)."""
    queries = {
        "orders": f"SELECT order_id, customer_id, order_ts, status FROM {SCHEMA}.orders",
        "order_items": f"SELECT order_id, line_no, product_id, quantity, unit_price FROM {SCHEMA}.order_items",
        "products": f"SELECT product_id, name, category FROM {SCHEMA}.products",
    }
    out = {}
    with clients.postgres() as conn:
        for name, sql in queries.items():
            cursor = conn.execute(sql)
            out[name] = pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])
    return out


def _expected_lines(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    orders, items, products = raw["orders"], raw["order_items"], raw["products"]
    live = orders[orders.status != "cancelled"]
    lines = items[items.quantity > 0].merge(live, on="order_id").merge(products, on="product_id")
    return lines.assign(day=lines.order_ts.dt.floor("D"), revenue=lines.quantity * lines.unit_price.astype(float))


def _expected_daily(lines: pd.DataFrame) -> pd.DataFrame:
    out = lines.groupby(["day", "category"], as_index=False).agg(
        orders=("order_id", "nunique"), revenue=("revenue", "sum")
    )
    return out.assign(revenue=out.revenue.round(2)).sort_values(["day", "category"], ignore_index=True)


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _failure_causes(info: Any) -> Iterator[Any]:
    while info is not None:
        yield info
        info = info.cause or info.context


def _raise_step_failures(result: Any) -> None:
    """Turn a failed step of a run into the learner's error (NotImplementedError: 'not solved yet')."""
    for event in result.get_step_failure_events():
        chain = list(_failure_causes(event.event_specific_data.error))
        if any(info.cls_name == "NotImplementedError" for info in chain):
            raise NotImplementedError
        root = chain[-1]
        raise WrongAnswer(
            f"step {event.step_key} failed with {root.cls_name}: {root.message.strip().splitlines()[0]}",
            hint="materialize it in a cell of its own to see the whole error.",
        )


@learner_code("materializing your code")
def _materialize(
    assets: list, resources: dict | None = None, selection: Any = None, memory: bool = False, raise_on_error=True
):
    """Materialize in-process; a stub's NotImplementedError inside an asset surfaces as 'not solved yet'."""
    import dagster as dg

    from delab.orchestration.dagster import instance

    run = dg.materialize_to_memory if memory else dg.materialize
    try:
        return run(
            assets,
            resources=resources or {},
            selection=selection,
            raise_on_error=raise_on_error,
            instance=instance("CRITICAL"),  # the learner sees the verdict, not the engine's log
        )
    except Exception as error:
        for cause in _causes(error):
            if isinstance(cause, NotImplementedError):
                raise NotImplementedError from None
        root = list(_causes(error))[-1]
        raise type(root)(str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__) from None


def _stub_asset(name: str, frame: pd.DataFrame, key_prefix: list[str] | None = None):
    import dagster as dg

    @dg.asset(name=name, key_prefix=key_prefix)
    def stub() -> pd.DataFrame:
        return frame.copy()

    return stub


def _key_name(asset) -> str:
    return asset.key.to_user_string()


# ----------------------------------------------------------------------------------------- e1: the assets


@exercise("m01.l03.e1")
def revenue_assets(order_lines, daily_revenue) -> None:
    """Two software-defined assets: cleaned order lines and revenue per day and category."""
    import dagster as dg

    from delab.orchestration.dagster import ShopPostgres

    for asset, name in ((order_lines, "order_lines"), (daily_revenue, "daily_revenue")):
        if not isinstance(asset, dg.AssetsDefinition):
            raise WrongAnswer(f"{name} is a {type(asset).__name__}, not an asset.", hint="decorate it with @dg.asset.")
        if _key_name(asset) != name:
            raise WrongAnswer(f"the asset {name} has the key {_key_name(asset)!r}.", hint="keep the function names.")
    upstream = {key.to_user_string() for key in order_lines.dependency_keys}
    if not {"orders", "order_items", "products"} <= upstream:
        raise WrongAnswer(
            f"order_lines reads {sorted(upstream)}; it needs orders, order_items and products.",
            hint="name the upstream assets as parameters of the function.",
        )
    if {key.to_user_string() for key in daily_revenue.dependency_keys} != {"order_lines"}:
        raise WrongAnswer("daily_revenue should read order_lines only.", hint="def daily_revenue(order_lines): ...")
    raw = _raw_tables()
    # the shop has negative quantities but never 0: one line of a live order gets 0, so `>= 0` shows
    items, live = raw["order_items"].copy(), raw["orders"].loc[raw["orders"].status != "cancelled", "order_id"]
    items.loc[items.index[items.order_id.isin(live) & (items.quantity > 0)][0], "quantity"] = 0
    raw["order_items"] = items
    stubs = [_stub_asset(name, frame) for name, frame in raw.items()]
    result = _materialize(
        [*stubs, order_lines, daily_revenue], resources={"shop_db": ShopPostgres.from_config()}, memory=True
    )
    want_lines = _expected_lines(raw)
    lines = result.output_for_node("order_lines")
    if not isinstance(lines, pd.DataFrame):
        raise WrongAnswer(f"order_lines returned a {type(lines).__name__}.", hint="return a pandas DataFrame.")
    need = ["order_id", "customer_id", "day", "category", "quantity", "unit_price", "revenue"]
    missing = [c for c in need if c not in lines.columns]
    if missing:
        raise WrongAnswer(f"order_lines lacks the columns {missing}.", hint=f"it needs {need}.")
    if len(lines) != len(want_lines):
        cancelled = _expected_lines({**raw, "orders": raw["orders"].assign(status="placed")})
        every_line = _expected_lines(  # no quantity filter at all: negative and zero quantities in
            {**raw, "order_items": raw["order_items"].assign(quantity=lambda f: f.quantity.abs().clip(lower=1))}
        )
        hint = "keep non-cancelled orders and lines with a positive quantity; join orders on order_id."
        if len(lines) == len(cancelled):
            hint = "cancelled orders are still in."
        elif len(lines) == len(want_lines) + 1:
            hint = "a line with a quantity of 0 is still in: a positive quantity is > 0."
        elif len(lines) > len(want_lines) + 1 and len(lines) in (len(every_line), len(every_line) - 1):
            hint = "lines with a negative quantity (a defect of the extract) are still in."
        raise WrongAnswer(f"order_lines has {len(lines)} rows; expected {len(want_lines)}.", hint=hint)
    if abs(float(lines.revenue.sum()) - float(want_lines.revenue.sum())) > 0.05:
        raise WrongAnswer("order_lines' revenue column does not add up.", hint="revenue = quantity * unit_price.")
    days = pd.to_datetime(lines.day)
    if (days != days.dt.floor("D")).any():
        raise WrongAnswer("some days are not at midnight.", hint="floor the order timestamp to the day (.dt.floor).")
    daily = result.output_for_node("daily_revenue")
    want = _expected_daily(want_lines)
    if not isinstance(daily, pd.DataFrame) or not {"day", "category", "orders", "revenue"} <= set(daily.columns):
        raise WrongAnswer(
            "daily_revenue should be a DataFrame with day, category, orders and revenue.", hint="group by both."
        )
    if len(daily) != len(want):
        raise WrongAnswer(
            f"daily_revenue has {len(daily)} rows; expected {len(want)}, one per day and category.",
            hint="group by day and category (and nothing else).",
        )
    got = daily.assign(day=pd.to_datetime(daily.day)).reset_index(drop=True)
    if list(zip(got.day, got.category, strict=True)) != list(zip(want.day, want.category, strict=True)):
        raise WrongAnswer("daily_revenue is not sorted by day, then category.", hint="sort_values([...]).")
    if (got.orders.astype(int) != want.orders).any():
        per_line = want_lines.groupby(["day", "category"]).size().to_numpy()
        if (got.orders.astype(int).to_numpy() == per_line).all():
            raise WrongAnswer("daily_revenue counts order lines, not orders.", hint="count distinct order ids.")
        raise WrongAnswer("the orders per day and category are off.", hint="count distinct order ids.")
    if ((got.revenue.astype(float) - want.revenue).abs() > 0.005).any():
        raise WrongAnswer("the revenue per day and category is off.", hint="sum the lines' revenue and round to cents.")


# ------------------------------------------------------------------------------------- e2: the I/O manager


def _probe_frame(scale: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sku": ["a-1", "b-2", "c-3"],
            "units": [3 * scale, 1 * scale, 7 * scale],
            "price": [1.5, 20.0, 3.25],
            "sold_at": pd.to_datetime(["2026-03-01 10:00", "2026-03-02 11:30", "2026-03-03 23:59"]),
        }
    )


@exercise("m01.l03.e2")
def parquet_io_manager(resources) -> None:
    """An I/O manager, the default one, that stores assets as Parquet in the object store and loads them back."""
    import dagster as dg

    if not isinstance(resources, dict):
        raise WrongAnswer(
            f"resources should be a dict of resource name -> resource, got a {type(resources).__name__}.",
            hint='{"shop_db": shop_db, ...}',
        )
    if "shop_db" not in resources:
        raise WrongAnswer("no resource is named shop_db, the name the raw assets ask for.", hint="add it.")
    managers = [k for k, v in resources.items() if isinstance(v, dg.IOManager | dg.IOManagerDefinition)]
    if "io_manager" not in resources:
        raise WrongAnswer(
            f"your I/O manager is under {managers or 'no name'}, so assets keep using Dagster's default one.",
            hint="the default I/O manager is the resource named io_manager.",
        )
    io_manager = resources["io_manager"]
    if not isinstance(io_manager, dg.IOManager | dg.IOManagerDefinition | dg.ConfigurableIOManager):
        raise WrongAnswer(
            f"io_manager is a {type(io_manager).__name__}, not an instance of your I/O manager.",
            hint="S3ParquetIOManager(store=object_store)",
        )

    @dg.asset(key_prefix=["check"], name="numbers")
    def numbers() -> pd.DataFrame:
        return _probe_frame()

    @dg.asset(key_prefix=["check"], name="revenue")
    def revenue(numbers: pd.DataFrame) -> pd.DataFrame:
        return numbers.assign(revenue=numbers.units * numbers.price)

    folder = f"{PREFIX}check/"
    clients.s3_delete_prefix(folder)
    result = _materialize([numbers, revenue], resources={"io_manager": io_manager})
    keys = clients.s3_keys(folder)
    want_keys = [f"{folder}numbers.parquet", f"{folder}revenue.parquet"]
    if keys != want_keys:
        written = keys or clients.s3_keys(PREFIX.rstrip("/"))[-4:] or "nothing"
        raise WrongAnswer(
            f"for the assets check/numbers and check/revenue, expected the objects {want_keys}; found {written}.",
            hint="<prefix>/<the asset key's path joined by '/'>.parquet — context.asset_key.path is a list.",
        )
    bucket = config.s3().bucket
    stored = {}
    for key in want_keys:
        body = clients.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            stored[key] = pd.read_parquet(io.BytesIO(body))
        except Exception:
            raise WrongAnswer(
                f"{key} is not a Parquet file.", hint="DataFrame.to_parquet(buffer, index=False)"
            ) from None
    if not stored[want_keys[0]].reset_index(drop=True).equals(_probe_frame()):
        raise WrongAnswer(
            "what was stored for check/numbers differs from what the asset returned.",
            hint="write the DataFrame as it is, without its index (index=False).",
        )
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    for asset in ("check/numbers", "check/revenue"):
        rows = metadata.get(asset, {}).get("rows")
        if rows is None or getattr(rows, "value", rows) != 3:
            raise WrongAnswer(
                f"the materialization of {asset} records rows={getattr(rows, 'value', rows)!r}; expected 3.",
                hint="context.add_output_metadata({'rows': len(obj), 'uri': ...}) in handle_output.",
            )
        uri = metadata[asset].get("uri")
        if uri is None or asset.split("/")[-1] + ".parquet" not in str(getattr(uri, "value", uri)):
            raise WrongAnswer(f"the materialization of {asset} records no uri of its object.", hint="add 'uri'.")
    # the downstream asset must read its input from the store: change the stored object, rebuild only revenue
    buffer = io.BytesIO()
    _probe_frame(scale=10).to_parquet(buffer, index=False)
    clients.s3().put_object(Bucket=bucket, Key=want_keys[0], Body=buffer.getvalue())
    _materialize([numbers, revenue], resources={"io_manager": io_manager}, selection=[revenue.key])
    body = clients.s3().get_object(Bucket=bucket, Key=want_keys[1])["Body"].read()
    rebuilt = pd.read_parquet(io.BytesIO(body))
    if list(rebuilt.units) != list(_probe_frame(scale=10).units):
        raise WrongAnswer(
            "rebuilding check/revenue alone did not read check/numbers from the object store.",
            hint="load_input must read <prefix>/<path of context.asset_key>.parquet.",
        )
    clients.s3_delete_prefix(folder)


# ------------------------------------------------------------------------------------------ e3: lineage


def _downstream(edges: Iterable[tuple[str, str]], start: str) -> set[str]:
    children: dict[str, set[str]] = {}
    for up, down in edges:
        children.setdefault(up, set()).add(down)
    seen: set[str] = set()
    stack = [start]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _diamond():
    """A small graph of a different shape: a -> b, a -> c, b -> d, c -> d, d -> e; f alone."""
    import dagster as dg

    def make(name: str, deps: list[str]):
        @dg.asset(name=name, key_prefix=["probe"], deps=[dg.AssetKey(["probe", d]) for d in deps])
        def node() -> None:
            return None

        return node

    shape = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["d"], "f": []}
    return dg.Definitions(assets=[make(name, deps) for name, deps in shape.items()])


@learner_code("your impacted_assets")
def _impacted(fn: Callable, defs, changed: str) -> set[str]:
    got = fn(defs, changed)
    if not isinstance(got, set | frozenset | list | tuple):
        raise WrongAnswer(f"impacted_assets returned a {type(got).__name__}.", hint="return a set of asset names.")
    return {g.to_user_string() if hasattr(g, "to_user_string") else str(g) for g in got}


@exercise("m01.l03.e3")
def asset_impact_analysis(impacted_assets, defs) -> None:
    """Impact analysis: every asset downstream of a changed one, read from the asset graph."""
    from delab.orchestration.dagster import lineage

    if not callable(impacted_assets):
        raise WrongAnswer("impacted_assets should be a function.", hint="def impacted_assets(defs, changed): ...")
    cases = [(defs, name) for name in ("products", "orders", "daily_revenue")]
    cases += [(_diamond(), name) for name in ("probe/a", "probe/c", "probe/e")]
    for graph_defs, changed in cases:
        edges = lineage(graph_defs)
        want = _downstream(edges, changed)
        got = _impacted(impacted_assets, graph_defs, changed)
        if changed in got:
            raise WrongAnswer(
                f"for {changed!r} your answer includes {changed!r} itself.", hint="only what is downstream of it."
            )
        if want and not got:
            raise WrongAnswer(
                f"you found nothing downstream of {changed!r}, yet {sorted(want)} are built from it.",
                hint="downstream is child_keys; parent_keys go upstream.",
            )
        upstream = {up for up, down in edges if down == changed}
        if got & upstream:
            raise WrongAnswer(
                f"for {changed!r} your answer includes {sorted(got & upstream)}, which are upstream of it.",
                hint="follow child keys, not parent keys.",
            )
        children = {down for up, down in edges if up == changed}
        if got == children and got != want:
            raise WrongAnswer(
                f"for {changed!r} you found its direct children {sorted(children)} but missed "
                f"{sorted(want - got)} further down.",
                hint="keep walking: the children's children are impacted too.",
            )
        if got != want:
            raise WrongAnswer(
                f"for {changed!r} expected {sorted(want)}, got {sorted(got)}.", hint="walk the child keys."
            )


# ------------------------------------------------------------------------------------- e4: an asset check


def _evaluate_check(asset_check, frame: pd.DataFrame) -> tuple[bool, dict[str, Any]]:
    # raise_on_error=False: a blocking check that fails also fails its run, and that is not an error here
    result = _materialize([_stub_asset("daily_revenue", frame), asset_check], raise_on_error=False)
    evaluations = result.get_asset_check_evaluations()
    if not evaluations:
        _raise_step_failures(result)
        raise WrongAnswer("the check produced no result.", hint="return dg.AssetCheckResult(passed=..., metadata=...)")
    evaluation = evaluations[0]
    return evaluation.passed, {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}


@exercise("m01.l03.e4")
def revenue_asset_check(asset_check) -> None:
    """An asset check on daily_revenue: unique day and category, no negative revenue, no row without orders."""
    import dagster as dg

    if not isinstance(asset_check, dg.AssetChecksDefinition):
        raise WrongAnswer(
            f"expected an asset check, got a {type(asset_check).__name__}.", hint="@dg.asset_check(asset=...)"
        )
    targets = {key.asset_key.to_user_string() for key in asset_check.check_keys}
    if targets != {"daily_revenue"}:
        raise WrongAnswer(f"the check guards {sorted(targets)}.", hint="attach it to daily_revenue.")
    good = _expected_daily(_expected_lines(_raw_tables()))
    passed, metadata = _evaluate_check(asset_check, good)
    if not passed:
        raise WrongAnswer(f"the check fails on a correct daily_revenue (metadata {metadata}).", hint="read its rules.")
    for name in ("duplicates", "negative_revenue", "empty_rows"):
        if metadata.get(name) != 0:
            raise WrongAnswer(
                f"on a correct daily_revenue the metadata {name} is {metadata.get(name)!r}; expected 0.",
                hint="report each count as an int in the result's metadata.",
            )
    # the rules' bounds: a revenue of 0 is not negative, a row with 1 order is not empty
    edges = good.assign(revenue=good.revenue.where(good.index != 2, 0.0), orders=good.orders.where(good.index != 4, 1))
    passed, metadata = _evaluate_check(asset_check, edges)
    if not passed:
        raise WrongAnswer(
            f"the check fails on a daily_revenue with a revenue of exactly 0 and a row with exactly 1 order "
            f"(metadata {metadata}): neither breaks a rule.",
            hint="negative means < 0, and a row is empty when orders < 1.",
        )
    broken = {
        "duplicates": pd.concat([good, good.iloc[[5]]], ignore_index=True),
        "negative_revenue": good.assign(revenue=good.revenue.where(good.index != 3, -12.5)),
        "empty_rows": good.assign(orders=good.orders.where(good.index != 7, 0)),
    }
    what = {
        "duplicates": "a day and category that appears twice",
        "negative_revenue": "a negative revenue",
        "empty_rows": "a row with no orders",
    }
    for name, frame in broken.items():
        passed, metadata = _evaluate_check(asset_check, frame)
        if passed:
            raise WrongAnswer(f"the check passes a daily_revenue with {what[name]}.", hint="fail on it.")
        if metadata.get(name) != 1:
            raise WrongAnswer(
                f"with {what[name]}, the metadata {name} is {metadata.get(name)!r}; expected 1.",
                hint="count the offending rows.",
            )


# ---------------------------------------------------------------------------------------- e5: your test


def _quiet_stderr():
    """The learner's test materializes with Dagster's default instance, which logs every event to stderr."""
    return contextlib.redirect_stderr(io.StringIO())


def _daily_revenue_variant(kind: str):
    import dagster as dg

    @dg.asset(name="daily_revenue")
    def daily_revenue(order_lines: pd.DataFrame) -> pd.DataFrame:
        lines = order_lines
        if kind == "unit_price_only":
            lines = lines.assign(revenue=lines.unit_price)
        keys = ["category"] if kind == "ignores_day" else ["day", "category"]
        count = ("order_id", "size") if kind == "counts_lines" else ("order_id", "nunique")
        out = lines.groupby(keys, as_index=False).agg(orders=count, revenue=("revenue", "sum"))
        if kind == "ignores_day":
            out = out.assign(day=lines.day.min())
        return out.assign(revenue=out.revenue.round(2)).sort_values(keys, ignore_index=True)

    return daily_revenue


BROKEN_VARIANTS = {
    "counts_lines": "counts order lines instead of distinct orders",
    "ignores_day": "adds up all days together",
    "unit_price_only": "sums unit prices, ignoring the quantity",
}


def _run_test(test, asset) -> None:
    try:
        with _quiet_stderr():
            test(asset)
    except NotImplementedError:
        raise
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0]
        raise WrongAnswer(
            f"your test fails on a correct daily_revenue: {type(error).__name__} {first}".rstrip(),
            hint="work the expected values out by hand from your fake rows; compare plain lists of values.",
        ) from None


@exercise("m01.l03.e5")
def daily_revenue_test(test_daily_revenue) -> None:
    """A test of daily_revenue with materialize_to_memory that passes on the right asset and fails on bugs."""
    if not callable(test_daily_revenue):
        raise WrongAnswer("expected your test function.", hint="def test_daily_revenue(daily_revenue_asset): ...")
    _run_test(test_daily_revenue, _daily_revenue_variant("right"))
    with contextlib.suppress(OSError, TypeError):
        if "materialize" not in inspect.getsource(test_daily_revenue):
            raise WrongAnswer(
                "your test does not materialize the asset.",
                hint="dg.materialize_to_memory([fake_order_lines, daily_revenue_asset]).",
            )
    for kind, bug in BROKEN_VARIANTS.items():
        try:
            with _quiet_stderr():
                test_daily_revenue(_daily_revenue_variant(kind))
        except NotImplementedError:
            raise
        except Exception:
            continue
        raise WrongAnswer(
            f"your test passes a daily_revenue that {bug}.",
            hint="give the fake order_lines rows that make this bug visible, and assert the exact values.",
        )
