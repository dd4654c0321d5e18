"""delab.iac.cost on plan JSON shaped like `tofu show -json`'s (no service needed)."""

from __future__ import annotations

import pytest

from delab.iac import cost

PRICES = {
    "kafka_partition_hour": 0.0015,
    "kafka_storage_gb_month": 0.10,
    "object_storage_gb_month": 0.023,
    "postgres_storage_gb_month": 0.115,
}


def _topic(address, after, before=None, actions=("create",)):
    return {
        "address": address,
        "type": "kafka_topic",
        "change": {"actions": list(actions), "before": before, "after": after},
    }


def _topic_values(partitions, days, replicas=1):
    return {
        "partitions": partitions,
        "replication_factor": replicas,
        "config": {"retention.ms": str(days * cost.DAY_MS)},
    }


def test_the_price_table_names_its_source_and_date():
    rows = cost.price_sources()
    assert {row["item"] for row in rows} == set(PRICES)
    assert all(row["source"] and row["read_on"] for row in rows)
    assert cost.load_prices() == PRICES


def test_a_topic_pays_partition_hours_and_every_replica_of_what_it_retains():
    plan = {"resource_changes": [_topic("t", _topic_values(4, 3, replicas=3))]}
    expected = 4 * 730 * 0.0015 + 4 * 2.0 * 3 * 3 * 0.10
    assert cost.monthly_cost(plan, PRICES) == {"t": pytest.approx(expected)}


def test_keep_forever_is_priced_as_a_year_and_deleted_resources_cost_nothing():
    forever = {"partitions": 1, "replication_factor": 1, "config": {"retention.ms": "-1"}}
    plan = {"resource_changes": [_topic("kept", forever), _topic("gone", None, _topic_values(1, 1), ("delete",))]}
    assert cost.monthly_cost(plan, PRICES, 1.0) == {"kept": pytest.approx(730 * 0.0015 + 365 * 0.10)}


def test_prior_state_is_priced_through_child_modules():
    plan = {
        "prior_state": {
            "values": {
                "root_module": {
                    "resources": [
                        {"address": "terraform_data.b", "mode": "managed", "type": "terraform_data",
                         "values": {"input": {"kind": "object_storage", "gb": 100}}},
                    ],
                    "child_modules": [
                        {"resources": [{"address": "module.t.kafka_topic.this", "mode": "managed",
                                        "type": "kafka_topic", "values": _topic_values(1, 1)}]}
                    ],
                }
            }
        }
    }  # fmt: skip
    assert set(cost.current_monthly_cost(plan, PRICES)) == {"terraform_data.b", "module.t.kafka_topic.this"}


def test_tags_and_budget():
    def stand_in(address, tags):
        after = {"input": {"kind": "object_storage", "gb": 1000, **({"tags": tags} if tags is not None else {})}}
        return {"address": address, "type": "terraform_data", "change": {"actions": ["create"], "after": after}}

    full = {"owner": "a", "cost_center": "b", "environment": "c"}
    plan = {
        "resource_changes": [stand_in("ok", full), stand_in("empty", {**full, "owner": " "}), stand_in("none", None)]
    }
    assert cost.untagged(plan) == ["empty", "none"]
    assert cost.budget_gate(plan, 100.0, PRICES) == pytest.approx(69.0)
    with pytest.raises(cost.OverBudget, match=r"\$69.00/month"):
        cost.budget_gate(plan, 50.0, PRICES)
