# Unit tests of the module: plans only, against a mocked provider (no Kafka needed). `tofu test` in this folder.
mock_provider "kafka" {}

variables {
  prefix = "orders_team"
  topics = {
    orders   = { partitions = 3 }
    payments = { partitions = 2, retention_ms = 86400000, cleanup_policy = "compact" }
  }
}

run "names_topics_with_the_prefix" {
  command = plan

  assert {
    condition     = output.topic_names == { orders = "orders_team.orders", payments = "orders_team.payments" }
    error_message = "topics are named <prefix>.<name>"
  }
  assert {
    condition     = kafka_topic.this["payments"].config["cleanup.policy"] == "compact"
    error_message = "the cleanup policy reaches the topic's config"
  }
  assert {
    condition     = kafka_topic.this["orders"].config["retention.ms"] == "604800000"
    error_message = "retention defaults to 7 days"
  }
  assert {
    condition     = output.total_partitions == 5
    error_message = "total partitions count partitions times replicas"
  }
}

run "acls_per_principal_and_operation" {
  command = plan
  variables {
    readers = ["User:analytics"]
    writers = ["User:ingest"]
  }

  assert {
    condition     = length(kafka_acl.this) == 5
    error_message = "a reader gets Read+Describe on topics and Read on groups; a writer Write+Describe"
  }
  assert {
    condition     = kafka_acl.this["User:ingest/Topic/Write"].resource_name == "orders_team."
    error_message = "ACLs are prefixed on <prefix>."
  }
}

run "a_principal_may_read_and_write" {
  command = plan
  variables {
    readers = ["User:enricher"]
    writers = ["User:enricher"]
  }

  assert {
    condition     = length(kafka_acl.this) == 4
    error_message = "a stream processor gets Read, Write and Describe on topics (Describe once) and Read on groups"
  }
}

run "rejects_zero_partitions" {
  command = plan
  variables {
    topics = { broken = { partitions = 0 } }
  }
  expect_failures = [var.topics]
}

run "rejects_unknown_cleanup_policy" {
  command = plan
  variables {
    topics = { broken = { partitions = 1, cleanup_policy = "forever" } }
  }
  expect_failures = [var.topics]
}

run "rejects_a_bad_prefix" {
  command = plan
  variables {
    prefix = "Orders-Team"
  }
  expect_failures = [var.prefix]
}

run "rejects_a_principal_without_type" {
  command = plan
  variables {
    writers = ["ingest"]
  }
  expect_failures = [var.writers]
}
