output "topic_names" {
  description = "Full topic names by short name."
  value       = { for name, topic in kafka_topic.this : name => topic.name }
}

output "total_partitions" {
  description = "Partitions across the set (what a managed Kafka bills by)."
  value       = sum(concat([0], [for t in var.topics : t.partitions * t.replication_factor]))
}

output "acl_ids" {
  description = "The ACLs created, by principal/resource type/operation."
  value       = sort(keys(kafka_acl.this))
}

output "topic_settings" {
  description = "What each topic was given, by short name: partitions, replicas, retention and cleanup policy."
  value = {
    for name, topic in kafka_topic.this : name => {
      partitions         = topic.partitions
      replication_factor = topic.replication_factor
      retention_ms       = tonumber(topic.config["retention.ms"])
      cleanup_policy     = topic.config["cleanup.policy"]
    }
  }
}
