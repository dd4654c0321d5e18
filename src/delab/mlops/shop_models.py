"""The shop's order-value model: features computed in the stack's Postgres, a small random forest trained in
seconds, and its ONNX export.

Every notebook of module 06 trains what it serves from the shop data it loads into Postgres (no weights are
downloaded). The target is an order's value (sum of quantity × unit price); the features are what a checkout
service knows before the prices are summed: how many lines and units, units per category, the hour, the day of
the week, the channel and the customer's segment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from delab import clients, datasets

CATEGORIES = ("books", "electronics", "garden", "kitchen", "outdoor", "toys")
FEATURES: tuple[str, ...] = (
    "n_lines",
    "n_units",
    *(f"units_{category}" for category in CATEGORIES),
    "hour",
    "weekend",
    "channel_app",
    "channel_marketplace",
    "segment_business",
    "segment_student",
)
TARGET = "order_value"


def load_shop(schema: str, seed: int = 42, scale: float = 1.0) -> dict[str, int]:
    """(Re)load the shop's customers, products, orders and order items into ``schema`` (idempotent)."""
    shop = datasets.cached(seed=seed, scale=scale)
    frames = {name: shop.table(name) for name in ("customers", "products", "orders", "order_items")}
    return datasets.to_postgres(frames, schema, primary_keys={"products": ["product_id"]})


def features_sql(schema: str) -> str:
    """One row per order: its id, the features (floats) and the target, computed where the data lives."""
    units = ",\n".join(
        f"    coalesce(sum(i.quantity) FILTER (WHERE p.category = '{c}'), 0)::float8 AS units_{c}" for c in CATEGORIES
    )
    return f"""
SELECT o.order_id,
    count(*)::float8 AS n_lines,
    sum(i.quantity)::float8 AS n_units,
{units},
    extract(hour FROM o.order_ts)::float8 AS hour,
    (extract(isodow FROM o.order_ts) >= 6)::int::float8 AS weekend,
    (o.channel = 'app')::int::float8 AS channel_app,
    (o.channel = 'marketplace')::int::float8 AS channel_marketplace,
    (coalesce(c.segment, '') = 'business')::int::float8 AS segment_business,
    (coalesce(c.segment, '') = 'student')::int::float8 AS segment_student,
    round(sum(i.quantity * i.unit_price)::numeric, 2)::float8 AS {TARGET}
FROM {schema}.orders o
JOIN {schema}.order_items i ON i.order_id = o.order_id
JOIN {schema}.products p ON p.product_id = i.product_id
LEFT JOIN {schema}.customers c ON c.customer_id = o.customer_id
WHERE i.quantity > 0
GROUP BY o.order_id, o.order_ts, o.channel, c.segment
ORDER BY o.order_id
"""


def order_features(schema: str) -> pd.DataFrame:
    """The features table read from the stack's Postgres (one row per order, ordered by order_id)."""
    with clients.postgres() as conn:
        cursor = conn.execute(features_sql(schema))
        columns = [col.name for col in cursor.description]
        frame = pd.DataFrame(cursor.fetchall(), columns=columns)
    frame = frame.drop_duplicates("order_id").reset_index(drop=True)  # the shop has duplicated order rows
    return frame.astype({name: "float32" for name in FEATURES})


def matrix(frame: pd.DataFrame) -> np.ndarray:
    """The feature matrix (float32, columns in FEATURES order) a model and its server take."""
    return np.ascontiguousarray(frame[list(FEATURES)].to_numpy(dtype=np.float32))


def train_order_value(frame: pd.DataFrame, n_estimators: int = 30, max_depth: int = 8, seed: int = 0):
    """A random forest for the order value: trained in a second or two, deterministic for a seed."""
    from sklearn.ensemble import RandomForestRegressor

    model = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=1)
    return model.fit(matrix(frame), frame[TARGET].to_numpy())


def to_onnx(model) -> bytes:
    """The same model exported to ONNX (one float32 input named ``rows``, output ``variable``)."""
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType

    onnx_model = convert(model, initial_types=[("rows", FloatTensorType([None, len(FEATURES)]))], target_opset=17)
    return onnx_model.SerializeToString()
