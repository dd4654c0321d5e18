# Unit tests of the composition: plans only, against mocked providers (no Kafka or Postgres needed).
mock_provider "kafka" {}
mock_provider "postgresql" {}

variables {
  platform         = "shop"
  environment      = "staging"
  streams          = { orders = {}, customers = { cleanup_policy = "compact" } }
  sizing           = { partitions = 3, retention_ms = 259200000, replication_factor = 1, connection_limit = 20 }
  owner_password   = "owner-password-for-tests"
  analyst_password = "analyst-password-for-tests"
}

run "names_everything_after_platform_and_environment" {
  command = plan

  assert {
    condition     = output.topics == { orders = "shop_staging.orders", customers = "shop_staging.customers" }
    error_message = "topics are named <platform>_<environment>.<stream>"
  }
  assert {
    condition     = output.database == "shop_staging_app"
    error_message = "the database is <platform>_<environment>_app"
  }
}

run "sizes_reach_every_topic_and_the_database" {
  command = plan

  assert {
    condition     = alltrue([for t in values(output.topic_settings) : t.partitions == 3 && t.replication_factor == 1])
    error_message = "every topic gets the environment's partitions and replicas"
  }
  assert {
    condition     = output.topic_settings["orders"].retention_ms == 259200000
    error_message = "the environment's retention reaches the topics"
  }
  assert {
    condition     = output.topic_settings["customers"].cleanup_policy == "compact"
    error_message = "a stream's cleanup policy is kept in every environment"
  }
  assert {
    condition     = output.connection_limit == 20
    error_message = "the environment's connection limit reaches the database"
  }
}

run "more_replicas_than_brokers_refused" {
  command = plan
  variables {
    environment = "prod"
    sizing      = { partitions = 6, retention_ms = 604800000, replication_factor = 3, connection_limit = 50 }
  }
  expect_failures = [var.sizing]
}

run "three_replicas_on_three_brokers" {
  command = plan
  variables {
    environment  = "prod"
    broker_count = 3
    sizing       = { partitions = 6, retention_ms = 604800000, replication_factor = 3, connection_limit = 50 }
  }
  assert {
    condition     = output.total_partitions == 36
    error_message = "two streams x 6 partitions x 3 replicas"
  }
}

run "retention_in_days_refused" {
  command = plan
  variables {
    sizing = { partitions = 3, retention_ms = 7, replication_factor = 1, connection_limit = 20 }
  }
  expect_failures = [var.sizing]
}

run "unknown_environment_refused" {
  command = plan
  variables {
    environment = "production"
  }
  expect_failures = [var.environment]
}
