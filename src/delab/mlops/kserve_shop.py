"""Lab 06.02's transformer: raw orders in (as a checkout service would send them), the order-value model's
feature rows out to the predictor over the Open Inference Protocol, predictions back with their order ids.

    raw = kserve_shop.raw_orders(schema, limit=5)        # from the stack's Postgres, one dict per order
    kserve_shop.order_row(raw[0])                         # the 14 features, in shop_models.FEATURES order

``OrderTransformer`` is served in front of a predictor by ``kserve_local.serve(..., predictor=..., protocol="v2")``:
its ``preprocess`` builds a V2 ``InferRequest``, KServe's inherited ``predict`` forwards it to the predictor,
its ``postprocess`` turns the V2 answer into V1 JSON the caller reads.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import numpy as np

from delab import clients
from delab.mlops.shop_models import CATEGORIES, FEATURES


def raw_orders_sql(schema: str) -> str:
    """Orders as JSON documents: id, timestamp, channel, the customer's segment and the positive lines.

    Grouped exactly like ``shop_models.features_sql`` (so a raw order and its SQL features describe the same
    rows), ordered by order id."""
    return f"""
SELECT json_build_object(
    'order_id', o.order_id,
    'order_ts', o.order_ts,
    'channel', o.channel,
    'segment', c.segment,
    'lines', json_agg(json_build_object('category', p.category, 'quantity', i.quantity) ORDER BY i.product_id)
)
FROM {schema}.orders o
JOIN {schema}.order_items i ON i.order_id = o.order_id
JOIN {schema}.products p ON p.product_id = i.product_id
LEFT JOIN {schema}.customers c ON c.customer_id = o.customer_id
WHERE i.quantity > 0
GROUP BY o.order_id, o.order_ts, o.channel, c.segment
ORDER BY o.order_id
"""


def raw_orders(schema: str, limit: int | None = None) -> list[dict]:
    """Raw orders read from the stack's Postgres (first row per order id, like ``order_features``)."""
    with clients.postgres() as conn:
        rows = [row[0] for row in conn.execute(raw_orders_sql(schema)).fetchall()]
    seen, orders = set(), []
    for order in rows:
        if order["order_id"] in seen:
            continue
        seen.add(order["order_id"])
        orders.append(order)
        if limit is not None and len(orders) >= limit:
            break
    return orders


def order_row(order: dict) -> list[float]:
    """The model's features of one raw order, in ``FEATURES`` order (what the transformer computes)."""
    lines = [line for line in order.get("lines") or [] if (line.get("quantity") or 0) > 0]
    when = datetime.fromisoformat(str(order["order_ts"]))
    values = {
        "n_lines": len(lines),
        "n_units": sum(line["quantity"] for line in lines),
        **{f"units_{c}": sum(line["quantity"] for line in lines if line.get("category") == c) for c in CATEGORIES},
        "hour": when.hour,
        "weekend": when.isoweekday() >= 6,
        "channel_app": order.get("channel") == "app",
        "channel_marketplace": order.get("channel") == "marketplace",
        "segment_business": order.get("segment") == "business",
        "segment_student": order.get("segment") == "student",
    }
    return [float(values[name]) for name in FEATURES]


def v2_rows_request(rows: np.ndarray, model_name: str):
    """A V2 ``InferRequest`` carrying a float32 matrix as the input tensor ``rows``."""
    from kserve import InferInput, InferRequest

    rows = np.ascontiguousarray(rows, dtype=np.float32)
    tensor = InferInput(name="rows", shape=list(rows.shape), datatype="FP32")
    tensor.set_data_from_numpy(rows, binary_data=False)
    return InferRequest(model_name=model_name, infer_inputs=[tensor], request_id=str(uuid.uuid4()))


try:  # the class exists only where kserve is installed (the delab-mlops kernel)
    import kserve
except ImportError:  # pragma: no cover
    kserve = None

if kserve is not None:

    class OrderTransformer(kserve.Model):
        """Raw orders (V1 ``{"instances": [order, ...]}``) → feature rows (V2) → predictor → order values."""

        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.ready = True  # nothing to load: the model lives in the predictor
            self._pending: dict[str, list] = {}  # request id -> its order ids (requests can interleave)

        def preprocess(self, payload: dict, headers: dict | None = None):
            orders = payload["instances"]
            rows = np.array([order_row(order) for order in orders], dtype=np.float32).reshape(-1, len(FEATURES))
            request = v2_rows_request(rows, self.name)
            self._pending[request.id] = [order.get("order_id") for order in orders]
            return request

        def postprocess(self, response, headers: dict | None = None) -> dict:
            # the Open Inference Protocol's response carries the request's id: that is how answers find
            # their orders when requests interleave
            order_ids = self._pending.pop(response.id, None)
            if order_ids is None:
                raise ValueError(f"the predictor answered with id {response.id!r}, not the id of a request sent")
            values = np.asarray(response.outputs[0].as_numpy(), dtype=float).ravel()
            return {
                "predictions": [
                    {"order_id": order_id, "order_value": round(float(value), 2)}
                    for order_id, value in zip(order_ids, values, strict=True)
                ]
            }
