variable "prefix" {
  description = "Namespace of every topic (e.g. a lab or a team: m07_l01); topics are named <prefix>.<name>."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{1,40}$", var.prefix))
    error_message = "The prefix is 2-41 lower-case letters, digits or underscores, starting with a letter."
  }
}

variable "topics" {
  description = "Topics by short name: partitions, retention and cleanup policy."
  type = map(object({
    partitions         = number
    replication_factor = optional(number, 1)
    retention_ms       = optional(number, 604800000) # 7 days, Kafka's default
    cleanup_policy     = optional(string, "delete")
  }))

  validation {
    condition     = alltrue([for t in values(var.topics) : t.partitions >= 1 && t.partitions <= 64 && floor(t.partitions) == t.partitions])
    error_message = "Every topic needs a whole number of partitions between 1 and 64."
  }
  validation {
    condition     = alltrue([for t in values(var.topics) : contains(["delete", "compact", "compact,delete"], t.cleanup_policy)])
    error_message = "cleanup_policy is one of delete, compact or \"compact,delete\"."
  }
  validation {
    condition     = alltrue([for t in values(var.topics) : t.retention_ms == -1 || t.retention_ms >= 60000])
    error_message = "retention_ms is -1 (keep forever) or at least one minute (60000)."
  }
  validation {
    condition     = alltrue([for name in keys(var.topics) : can(regex("^[a-z][a-z0-9_.-]*$", name))])
    error_message = "Topic short names are lower-case letters, digits, '.', '_' or '-'."
  }
}

variable "readers" {
  description = "Principals (e.g. User:analytics) allowed to read every topic of the set and commit offsets under <prefix>."
  type        = list(string)
  default     = []
}

variable "writers" {
  description = "Principals allowed to produce to every topic of the set."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.writers : can(regex("^User:.+", p))])
    error_message = "Principals look like User:<name>."
  }
}
