"""Changes made *outside* OpenTofu, for the labs: a topic created by hand, a setting changed in a console.

Plain kafka-python admin calls on the stack's Kafka — what a colleague (or a runbook) does behind Terraform's
back, so that ``import`` and drift detection have something real to find.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from delab import config


@contextlib.contextmanager
def admin() -> Iterator[Any]:
    """A kafka-python admin client on the stack's Kafka, closed on exit."""
    from kafka.admin import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=config.kafka().bootstrap_servers, client_id="delab-iac")
    try:
        yield client
    finally:
        client.close()


def create_topic(name: str, partitions: int, configs: dict[str, str] | None = None) -> bool:
    """Create a topic unless it exists; True when it was created now."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    with admin() as client:
        try:
            client.create_topics([NewTopic(name, partitions, 1, topic_configs=dict(configs or {}))])
        except TopicAlreadyExistsError:
            return False
    return True


def delete_topics(*names: str) -> list[str]:
    """Delete the topics that exist among ``names``; returns those deleted."""
    with admin() as client:
        present = [name for name in names if name in set(client.list_topics())]
        if present:
            client.delete_topics(present)
    return present


def topic_settings(name: str) -> dict[str, Any]:
    """Partitions and the explicitly set configs of a topic, read from the broker."""
    from kafka.admin import ConfigResource, ConfigResourceType

    with admin() as client:
        described = client.describe_topics([name])[0]
        if described.get("error_code"):
            raise LookupError(f"topic {name} not found on {config.kafka().bootstrap_servers}")
        result = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    # kafka-python 3 answers {"topic": {name: {config: {"value": …, "config_source": …}}}}
    entries = result.get("topic", {}).get(name, {})
    configs = {
        key: entry["value"]
        for key, entry in entries.items()
        if entry.get("value") is not None and entry.get("config_source") == "DYNAMIC_TOPIC_CONFIG"
    }
    return {"partitions": len(described["partitions"]), "configs": configs}


def alter_topic_config(name: str, changes: dict[str, str]) -> None:
    """Change topic configs on the broker (incremental: other settings stay)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    with admin() as client:
        current = topic_settings(name)["configs"]
        client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs={**current, **changes})])


def topic_names(prefix: str) -> list[str]:
    """Topics whose names start with ``prefix``, sorted."""
    with admin() as client:
        return sorted(name for name in client.list_topics() if name.startswith(prefix))


def add_partitions(name: str, total: int) -> None:
    """Grow a topic to ``total`` partitions (Kafka can add partitions, never remove them)."""
    from kafka.admin import NewPartitions

    with admin() as client:
        client.create_partitions({name: NewPartitions(total_count=total)})
