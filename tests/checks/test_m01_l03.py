"""Checks of lab 01.03 (Dagster), against the stack's Postgres and object store: the right answer passes;
realistic wrong answers are rejected with a telling message; the placeholder is not solved yet.

The tests load the shop into their own schema and prefix (``m01_l03_t``), so they can run beside the notebooks."""

# no `from __future__ import annotations`: Dagster must see `dg.ResourceDependency[...]` of a class defined in a
# function as a real type, not a string
import io
import pickle

import dagster as dg
import pandas as pd
import pytest

from delab import clients, datasets
from delab.checks.m01 import l03_dagster as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.orchestration.dagster import ObjectStore, ShopPostgres

pytestmark = pytest.mark.stack

SCHEMA = "m01_l03_t"


@pytest.fixture(scope="module", autouse=True)
def shop_in_postgres():
    shop = datasets.shop(seed=7, scale=0.25)
    datasets.to_postgres(
        {"orders": shop.orders.drop_duplicates("order_id"), "order_items": shop.order_items, "products": shop.products},
        schema=SCHEMA,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checks, "SCHEMA", SCHEMA)
        patch.setattr(checks, "PREFIX", f"{SCHEMA}/")
        yield
    clients.s3_delete_prefix(f"{SCHEMA}/")


# -------------------------------------------------------------------------------------------------- e1


def make_assets(keep_cancelled=False, keep_negative=False, floor_day=True, count="nunique", keep_zero=False):
    @dg.asset
    def order_lines(orders: pd.DataFrame, order_items: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
        live = orders if keep_cancelled else orders[orders.status != "cancelled"]
        items = order_items if keep_negative else order_items[order_items.quantity >= (0 if keep_zero else 1)]
        lines = items.merge(live, on="order_id").merge(products, on="product_id")
        day = lines.order_ts.dt.floor("D") if floor_day else lines.order_ts
        lines = lines.assign(day=day, revenue=lines.quantity * lines.unit_price.astype(float))
        return lines[["order_id", "customer_id", "day", "category", "quantity", "unit_price", "revenue"]]

    @dg.asset
    def daily_revenue(order_lines: pd.DataFrame) -> pd.DataFrame:
        out = order_lines.groupby(["day", "category"], as_index=False).agg(
            orders=("order_id", count), revenue=("revenue", "sum")
        )
        return out.assign(revenue=out.revenue.round(2)).sort_values(["day", "category"], ignore_index=True)

    return order_lines, daily_revenue


def test_assets_accept_solution():
    checks.revenue_assets(*make_assets())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": "size"}, "counts order lines"),
        ({"keep_cancelled": True}, "cancelled orders are still in"),
        ({"keep_negative": True}, "negative quantity"),
        ({"floor_day": False}, "not at midnight"),
        ({"keep_zero": True}, "quantity of 0 is still in"),  # quantity >= 0 (used to pass: no 0 in the shop)
    ],
)
def test_assets_reject_wrong_answers(options, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.revenue_assets(*make_assets(**options))


def test_assets_reject_plain_functions():
    _, daily_revenue = make_assets()
    with pytest.raises(WrongAnswer, match="not an asset"):
        checks.revenue_assets(lambda orders, order_items, products: None, daily_revenue)


def test_assets_placeholder_is_not_solved():
    order_lines, _ = make_assets()

    @dg.asset
    def daily_revenue(order_lines: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.revenue_assets(order_lines, daily_revenue)


# -------------------------------------------------------------------------------------------------- e2


def make_io_manager(key_join="/", fmt="parquet", metadata=True, from_memory=False, last_part_only=False):
    memory: dict[str, pd.DataFrame] = {}

    class ParquetIO(dg.ConfigurableIOManager):
        store: dg.ResourceDependency[ObjectStore]
        prefix: str = SCHEMA

        def _key(self, context) -> str:
            path = context.asset_key.path[-1:] if last_part_only else context.asset_key.path
            return f"{self.prefix}/{key_join.join(path)}.parquet"

        def handle_output(self, context, obj):
            if fmt == "parquet":
                buffer = io.BytesIO()
                obj.to_parquet(buffer, index=False)
                data = buffer.getvalue()
            else:
                data = pickle.dumps(obj)
            uri = self.store.put_bytes(self._key(context), data)
            memory[self._key(context)] = obj
            if metadata:
                context.add_output_metadata({"rows": len(obj), "uri": uri})

        def load_input(self, context):
            if from_memory:
                return memory[self._key(context)]
            data = self.store.get_bytes(self._key(context))
            return pd.read_parquet(io.BytesIO(data)) if fmt == "parquet" else pickle.loads(data)

    return {"shop_db": ShopPostgres.from_config(), "io_manager": ParquetIO(store=ObjectStore.from_config())}


def test_io_manager_accepts_solution():
    checks.parquet_io_manager(make_io_manager())


def test_io_manager_rejects_a_manager_that_is_not_the_default():
    resources = make_io_manager()
    resources["s3_io_manager"] = resources.pop("io_manager")
    with pytest.raises(WrongAnswer, match=r"under \['s3_io_manager'\]"):
        checks.parquet_io_manager(resources)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"key_join": "__"}, "expected the objects"),
        ({"fmt": "pickle"}, "not a Parquet file"),
        ({"metadata": False}, "records rows=None"),
        ({"from_memory": True}, "did not read check/numbers from the object store"),
        ({"last_part_only": True}, "expected the objects"),  # the key's last part: prefixed assets collide
    ],
)
def test_io_manager_rejects_wrong_answers(options, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.parquet_io_manager(make_io_manager(**options))


def test_io_manager_rejects_another_resource_as_io_manager():
    with pytest.raises(WrongAnswer, match="not an instance of your I/O manager"):
        checks.parquet_io_manager({"shop_db": ShopPostgres.from_config(), "io_manager": ObjectStore.from_config()})


def test_io_manager_placeholder_is_not_solved():
    class ParquetIO(dg.ConfigurableIOManager):
        def handle_output(self, context, obj):
            raise NotImplementedError

        def load_input(self, context):
            raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.parquet_io_manager({"shop_db": ShopPostgres.from_config(), "io_manager": ParquetIO()})
    with pytest.raises(NotSolvedYet):
        checks.parquet_io_manager(...)


# -------------------------------------------------------------------------------------------------- e3


@pytest.fixture(scope="module")
def shop_defs():
    def node(name: str, deps: list[str]):
        @dg.asset(name=name, deps=deps)
        def build() -> None:
            return None

        return build

    shape = {
        "orders": [],
        "order_items": [],
        "products": [],
        "customers": [],
        "order_lines": ["orders", "order_items", "products"],
        "daily_revenue": ["order_lines"],
        "revenue_trend": ["daily_revenue"],
        "top_customers": ["order_lines", "customers"],
    }
    return dg.Definitions(assets=[node(name, deps) for name, deps in shape.items()])


def walk(defs, changed, transitive=True, follow="child_keys", include_self=False):
    graph = defs.resolve_asset_graph()
    start = dg.AssetKey.from_user_string(changed)
    seen, frontier = set(), [start]
    while frontier:
        for key in getattr(graph.get(frontier.pop()), follow):
            if key not in seen:
                seen.add(key)
                if transitive:
                    frontier.append(key)
    return {k.to_user_string() for k in seen | ({start} if include_self else set())}


def test_impact_accepts_solution(shop_defs):
    checks.asset_impact_analysis(walk, shop_defs)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"transitive": False}, "direct children"),
        ({"include_self": True}, "itself"),
        ({"follow": "parent_keys"}, "nothing downstream"),
    ],
)
def test_impact_rejects_wrong_answers(shop_defs, options, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.asset_impact_analysis(lambda defs, changed: walk(defs, changed, **options), shop_defs)


def test_impact_placeholder_is_not_solved(shop_defs):
    def impacted_assets(defs, changed):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.asset_impact_analysis(impacted_assets, shop_defs)


# -------------------------------------------------------------------------------------------------- e4

_, DAILY = make_assets()


def make_check(duplicates=True, negative=True, empty=True, metadata=True, negative_below=0, orders_at_least=1):
    @dg.asset_check(asset=DAILY, blocking=True)
    def daily_revenue_is_sane(daily_revenue: pd.DataFrame) -> dg.AssetCheckResult:
        counts = {
            "duplicates": int(daily_revenue.duplicated(["day", "category"]).sum()) if duplicates else 0,
            "negative_revenue": int((daily_revenue.revenue < negative_below).sum()) if negative else 0,
            "empty_rows": int((daily_revenue.orders < orders_at_least).sum()) if empty else 0,
        }
        return dg.AssetCheckResult(passed=not any(counts.values()), metadata=counts if metadata else {})

    return daily_revenue_is_sane


def test_asset_check_accepts_solution():
    checks.revenue_asset_check(make_check())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"duplicates": False}, "appears twice"),
        ({"empty": False}, "no orders"),
        ({"metadata": False}, "metadata duplicates is None"),
        ({"negative_below": 0.005}, "revenue of exactly 0"),  # revenue <= 0 (used to pass)
        ({"orders_at_least": 2}, "fails on a correct daily_revenue"),  # orders <= 1: the data has 1-order rows
    ],
)
def test_asset_check_rejects_wrong_answers(options, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.revenue_asset_check(make_check(**options))


def test_asset_check_rejects_an_asset():
    with pytest.raises(WrongAnswer, match="expected an asset check"):
        checks.revenue_asset_check(DAILY)


def test_asset_check_placeholder_is_not_solved():
    @dg.asset_check(asset=DAILY)
    def daily_revenue_is_sane(daily_revenue: pd.DataFrame) -> dg.AssetCheckResult:
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.revenue_asset_check(daily_revenue_is_sane)


# -------------------------------------------------------------------------------------------------- e5


def make_test(rows: dict, expected: dict):
    def test_daily_revenue(daily_revenue_asset):
        @dg.asset(name="order_lines")
        def fake() -> pd.DataFrame:
            frame = pd.DataFrame(rows)
            return frame.assign(day=pd.to_datetime(frame.day), revenue=frame.quantity * frame.unit_price)

        result = dg.materialize_to_memory([fake, daily_revenue_asset])
        got = result.output_for_node("daily_revenue")
        for column, values in expected.items():
            got_values = got[column].dt.strftime("%Y-%m-%d") if column == "day" else got[column]
            assert got_values.tolist() == values, column

    return test_daily_revenue


GOOD_ROWS = {
    "order_id": [1, 1, 2, 3, 4],
    "day": ["2026-03-01", "2026-03-01", "2026-03-01", "2026-03-02", "2026-03-02"],
    "category": ["books", "books", "books", "books", "toys"],
    "quantity": [1, 2, 1, 3, 1],
    "unit_price": [10.0, 5.0, 2.5, 2.0, 4.0],
}
GOOD_EXPECTED = {
    "day": ["2026-03-01", "2026-03-02", "2026-03-02"],
    "category": ["books", "books", "toys"],
    "orders": [2, 1, 1],
    "revenue": [22.5, 6.0, 4.0],
}


def test_learner_test_accepted():
    checks.daily_revenue_test(make_test(GOOD_ROWS, GOOD_EXPECTED))


def test_learner_test_rejected_when_it_only_checks_success():
    def test_daily_revenue(daily_revenue_asset):
        @dg.asset(name="order_lines")
        def fake() -> pd.DataFrame:
            frame = pd.DataFrame(GOOD_ROWS)
            return frame.assign(day=pd.to_datetime(frame.day), revenue=frame.quantity * frame.unit_price)

        assert dg.materialize_to_memory([fake, daily_revenue_asset]).success

    with pytest.raises(WrongAnswer, match="counts order lines"):
        checks.daily_revenue_test(test_daily_revenue)


def test_learner_test_rejected_with_a_single_day():
    rows = {k: v[:3] for k, v in GOOD_ROWS.items()}
    expected = {"category": ["books"], "orders": [2], "revenue": [22.5]}
    with pytest.raises(WrongAnswer, match="adds up all days"):
        checks.daily_revenue_test(make_test(rows, expected))


def test_learner_test_rejected_when_every_quantity_is_one():
    rows = {**GOOD_ROWS, "quantity": [1, 1, 1, 1, 1]}
    expected = {**GOOD_EXPECTED, "revenue": [17.5, 2.0, 4.0]}
    with pytest.raises(WrongAnswer, match="ignoring the quantity"):
        checks.daily_revenue_test(make_test(rows, expected))


def test_learner_test_rejected_when_it_fails_on_the_right_asset():
    with pytest.raises(WrongAnswer, match="fails on a correct daily_revenue"):
        checks.daily_revenue_test(make_test(GOOD_ROWS, {**GOOD_EXPECTED, "orders": [3, 1, 1]}))


def test_learner_test_placeholder_is_not_solved():
    def test_daily_revenue(daily_revenue_asset):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.daily_revenue_test(test_daily_revenue)
