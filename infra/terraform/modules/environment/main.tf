# One environment of the data platform: its topics and its application database, named
# <platform>_<environment>, sized by var.sizing. Every environment root calls this module with its own values, so
# dev, staging and prod differ only in what their variables say.

locals {
  name = "${var.platform}_${var.environment}"
}

module "topics" {
  source = "../kafka_topics"

  prefix = local.name
  topics = {
    for name, stream in var.streams : name => {
      partitions         = var.sizing.partitions
      replication_factor = var.sizing.replication_factor
      retention_ms       = var.sizing.retention_ms
      cleanup_policy     = stream.cleanup_policy
    }
  }
}

module "database" {
  source = "../postgres_app_database"

  name             = "${local.name}_app"
  owner_password   = var.owner_password
  connection_limit = var.sizing.connection_limit
  logins           = { "${local.name}_analyst" = "read" }
  passwords        = { "${local.name}_analyst" = var.analyst_password }
}
