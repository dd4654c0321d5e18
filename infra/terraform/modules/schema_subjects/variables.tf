variable "registry_url" {
  description = "The registry's Confluent-compatible API (for Apicurio: http://host:port/apis/ccompat/v7)."
  type        = string

  validation {
    condition     = can(regex("^https?://[^ ]+[^/]$", var.registry_url))
    error_message = "registry_url is http(s)://host:port/path without a trailing slash."
  }
}

variable "subjects" {
  description = "Subjects by name (TopicNameStrategy: <topic>-value / <topic>-key): the schema, its type and the subject's compatibility mode."
  type = map(object({
    schema        = string
    schema_type   = optional(string, "AVRO")
    compatibility = optional(string, "BACKWARD")
  }))

  validation {
    condition = alltrue([for s in values(var.subjects) : contains([
      "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE",
    ], s.compatibility)])
    error_message = "compatibility is one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE (upper case)."
  }
  validation {
    condition     = alltrue([for s in values(var.subjects) : contains(["AVRO", "JSON", "PROTOBUF"], s.schema_type)])
    error_message = "schema_type is AVRO, JSON or PROTOBUF."
  }
  validation {
    condition     = alltrue([for s in values(var.subjects) : s.schema_type == "PROTOBUF" || can(jsondecode(s.schema))])
    error_message = "An AVRO or JSON schema is a JSON document (jsonencode() it, or read it with file())."
  }
  validation {
    condition     = alltrue([for name in keys(var.subjects) : can(regex("^[A-Za-z0-9._-]+-(key|value)$", name))])
    error_message = "Subject names follow the TopicNameStrategy: <topic>-key or <topic>-value."
  }
}
