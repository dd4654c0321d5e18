variable "platform" {
  description = "Name of the data platform (e.g. shop); with the environment it prefixes every topic, database and role."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{1,20}$", var.platform))
    error_message = "The platform name is 2-21 lower-case letters, digits or underscores, starting with a letter."
  }
}

variable "environment" {
  description = "Which environment this copy of the platform is: dev, staging or prod."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "The environment is one of dev, staging or prod."
  }
}

variable "streams" {
  description = "The platform's topics by short name, the same in every environment (sizes come from var.sizing)."
  type = map(object({
    cleanup_policy = optional(string, "delete")
  }))
}

variable "sizing" {
  description = "What differs between environments: partitions per topic, retention, replicas, database connections."
  type = object({
    partitions         = number
    retention_ms       = number
    replication_factor = number
    connection_limit   = number
  })

  validation {
    condition     = var.sizing.replication_factor >= 1 && var.sizing.replication_factor <= var.broker_count
    error_message = "replication_factor is between 1 and the number of brokers (broker_count): Kafka cannot place more replicas than it has brokers."
  }
  validation {
    condition     = var.sizing.retention_ms == -1 || var.sizing.retention_ms >= 60000
    error_message = "retention_ms is in milliseconds: -1 (keep forever) or at least one minute (60000)."
  }
}

variable "broker_count" {
  description = "Brokers in the target Kafka cluster (the lab's stack has 1; a production cluster usually 3 or more)."
  type        = number
  default     = 1
}

variable "owner_password" {
  description = "Password of the database owner: from TF_VAR_owner_password or a git-ignored var file, never a .tf file."
  type        = string
  sensitive   = true
}

variable "analyst_password" {
  description = "Password of the environment's read-only analyst login (same rules as owner_password)."
  type        = string
  sensitive   = true
}
