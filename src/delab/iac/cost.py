"""What a plan would cost on a cloud, what the running stack really stores, tags and a budget (lab 07.05).

The local stack costs nothing: these functions price the *same* plan as if its resources ran on managed services,
from a small dated price table (datasets/prices/cloud_prices.csv), and read real sizes from the running stack
(Kafka log segments, Postgres relations, objects in a bucket) so the model's assumptions can be checked against
what is really stored.

The model (kept small on purpose, every line visible to a learner):
- ``kafka_topic``: partition-hours (partitions x 730 h, the serverless price includes replicas) plus broker storage
  (what the topic retains x its replication factor: every replica is a full copy on some broker's disk). What a
  topic retains = partitions x GB written per partition per day x retention in days (``retention.ms`` is a string
  of milliseconds; -1 keeps everything and is priced as :data:`FOREVER_DAYS`).
- ``terraform_data`` stand-ins whose ``input`` has ``kind`` (``object_storage`` or ``postgres_storage``) and
  ``gb``: GB x that kind's price per GB-month. They carry the sizing (and the tags) of a cloud resource the stack
  has no provider for: a bucket and its objects, a managed database's allocated storage.
- A resource being deleted costs nothing after the plan; a replaced one costs what it is replaced with.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HOURS_PER_MONTH = 730  # the cloud bills' convention: 8760 h / 12
DAY_MS = 86_400_000
FOREVER_DAYS = 365  # retention.ms = -1 keeps everything: priced as one year of writes
#: what each partition receives per day in the lab's model (the measured section checks it against the stack)
GB_PER_PARTITION_DAY = 2.0
#: tags every taggable resource must carry, with a non-empty value
REQUIRED_TAGS = ("owner", "cost_center", "environment")
#: resource types that can carry tags here, and where they are: the stand-ins keep them in input.tags
TAG_PATHS: dict[str, tuple[str, ...]] = {"terraform_data": ("input", "tags")}


class OverBudget(Exception):
    """A plan whose monthly cost after apply is over the budget: the pipeline must stop before apply."""


def prices_path() -> Path:
    """The committed price table."""
    from delab import config

    return config.project_root() / "datasets" / "prices" / "cloud_prices.csv"


def load_prices(path: str | Path | None = None) -> dict[str, float]:
    """The price table as {item: USD per unit}, e.g. {'kafka_partition_hour': 0.0015, …}."""
    with open(path or prices_path(), newline="") as handle:
        return {row["item"]: float(row["usd"]) for row in csv.DictReader(handle)}


def price_sources(path: str | Path | None = None) -> list[dict[str, str]]:
    """Every row of the price table with its unit, source and the date it was read."""
    with open(path or prices_path(), newline="") as handle:
        return list(csv.DictReader(handle))


def retention_days(config: Mapping[str, Any]) -> float:
    """Days a topic keeps messages, from its ``retention.ms`` (a string of milliseconds; 7 days when unset)."""
    retention_ms = float(config.get("retention.ms", 7 * DAY_MS))
    return FOREVER_DAYS if retention_ms < 0 else retention_ms / DAY_MS


def topic_cost(topic: Mapping[str, Any], prices: Mapping[str, float], gb_per_partition_day: float) -> float:
    """Monthly USD of one kafka_topic (its plan values): partition-hours plus every replica's retained bytes."""
    partitions = int(topic["partitions"])
    retained_gb = partitions * gb_per_partition_day * retention_days(topic.get("config") or {})
    storage = retained_gb * int(topic.get("replication_factor") or 1) * prices["kafka_storage_gb_month"]
    return partitions * HOURS_PER_MONTH * prices["kafka_partition_hour"] + storage


def resource_cost(
    kind: str, values: Mapping[str, Any] | None, prices: Mapping[str, float], gb_per_partition_day: float
) -> float | None:
    """Monthly USD of one resource from its values, or None when the model does not price its type."""
    if not values:
        return None
    if kind == "kafka_topic":
        return topic_cost(values, prices, gb_per_partition_day)
    if kind == "terraform_data":
        given = values.get("input") or {}
        price = prices.get(f"{given.get('kind')}_gb_month") if isinstance(given, Mapping) else None
        return None if price is None else float(given.get("gb", 0)) * price
    return None


def monthly_cost(
    plan_json: Mapping[str, Any],
    prices: Mapping[str, float],
    gb_per_partition_day: float = GB_PER_PARTITION_DAY,
) -> dict[str, float]:
    """{address: monthly USD} of every priced resource as it will be *after* the plan (deleted ones left out)."""
    costs: dict[str, float] = {}
    for change in plan_json.get("resource_changes", []):
        after = change["change"].get("after")
        priced = resource_cost(change["type"], after, prices, gb_per_partition_day)
        if priced is not None:
            costs[change["address"]] = priced
    return costs


def _state_resources(module: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = list(module.get("resources", []))
    for child in module.get("child_modules", []):
        found += _state_resources(child)
    return found


def current_monthly_cost(
    plan_json: Mapping[str, Any],
    prices: Mapping[str, float],
    gb_per_partition_day: float = GB_PER_PARTITION_DAY,
) -> dict[str, float]:
    """{address: monthly USD} of what runs *before* the plan (its ``prior_state``): what the bill says today."""
    root = (plan_json.get("prior_state") or {}).get("values", {}).get("root_module", {})
    costs: dict[str, float] = {}
    for resource in _state_resources(root):
        if resource.get("mode", "managed") != "managed":
            continue
        priced = resource_cost(resource["type"], resource.get("values"), prices, gb_per_partition_day)
        if priced is not None:
            costs[resource["address"]] = priced
    return costs


def _tags(kind: str, values: Mapping[str, Any]) -> Any:
    found: Any = values
    for key in TAG_PATHS[kind]:
        found = found.get(key) if isinstance(found, Mapping) else None
    return found


def untagged(plan_json: Mapping[str, Any], required: tuple[str, ...] = REQUIRED_TAGS) -> list[str]:
    """Addresses of taggable resources that, after the plan, lack a required tag or leave it empty (sorted)."""
    missing = []
    for change in plan_json.get("resource_changes", []):
        after = change["change"].get("after")
        if change["type"] not in TAG_PATHS or after is None:
            continue
        tags = _tags(change["type"], after)
        tags = tags if isinstance(tags, Mapping) else {}
        if any(not str(tags.get(key) or "").strip() for key in required):
            missing.append(change["address"])
    return sorted(missing)


def budget_gate(
    plan_json: Mapping[str, Any],
    limit_usd: float,
    prices: Mapping[str, float],
    gb_per_partition_day: float = GB_PER_PARTITION_DAY,
) -> float:
    """The monthly total after the plan; OverBudget when it is over ``limit_usd`` (the total, not the change)."""
    total = sum(monthly_cost(plan_json, prices, gb_per_partition_day).values())
    if total > limit_usd:
        raise OverBudget(f"this plan makes the platform cost ${total:,.2f}/month, over the ${limit_usd:,.2f} budget")
    return total


# ----------------------------------------------------------------------------- measured usage of the running stack


def kafka_log_bytes(prefix: str) -> dict[str, int]:
    """Bytes on the broker's disk per topic whose name starts with ``prefix`` (all partitions, every log dir),
    from the broker itself (DescribeLogDirs)."""
    from delab.iac.kafka_admin import admin

    sizes: dict[str, int] = {}
    with admin() as client:
        for broker in client.describe_log_dirs():
            for log_dir in broker.get("log_dirs", []):
                for topic in log_dir.get("topics", []):
                    if topic["name"].startswith(prefix):
                        size = sum(int(p.get("partition_size", 0)) for p in topic.get("partitions", []))
                        sizes[topic["name"]] = sizes.get(topic["name"], 0) + size
    return dict(sorted(sizes.items()))


def postgres_sizes(connection: Any, tables: list[str]) -> dict[str, int]:
    """Bytes of the current database and of each table with its indexes and TOAST (pg_total_relation_size)."""
    sizes = {"database": int(connection.execute("SELECT pg_database_size(current_database())").fetchone()[0])}
    for table in tables:
        sizes[table] = int(connection.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()[0])
    return sizes


def bucket_bytes(s3_client: Any, bucket: str, prefix: str = "") -> tuple[int, int]:
    """(objects, bytes) under a prefix of a bucket, from a listing (every page)."""
    objects = size = 0
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            objects += 1
            size += int(item["Size"])
    return objects, size
