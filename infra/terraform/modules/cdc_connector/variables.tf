variable "name" {
  description = "The connector's name on Kafka Connect; also its replication slot's name unless slot_name says otherwise."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{1,40}$", var.name))
    error_message = "The connector name is 2-41 lower-case letters, digits or underscores, starting with a letter (it names a replication slot too)."
  }
}

variable "connect_url" {
  description = "Kafka Connect's REST endpoint (http://host:port)."
  type        = string

  validation {
    condition     = can(regex("^https?://[^/]+$", var.connect_url))
    error_message = "connect_url is http(s)://host:port, without a path."
  }
}

variable "database" {
  description = "The Postgres database to capture and the role Debezium logs in as (it needs REPLICATION). The password is not a variable: the delab step takes it from PGPASSWORD in OpenTofu's environment."
  type = object({
    host   = string
    port   = number
    dbname = string
    user   = string
  })
}

variable "tables" {
  description = "Tables to capture, as <schema>.<table>: Debezium's table.include.list and the filtered publication's table list."
  type        = list(string)

  validation {
    condition     = length(var.tables) > 0
    error_message = "Capture at least one table."
  }
  validation {
    condition     = alltrue([for t in var.tables : can(regex("^[a-z_][a-z0-9_]*\\.[a-z_][a-z0-9_]*$", t))])
    error_message = "Tables are written <schema>.<table> in lower case (e.g. public.orders): Debezium matches them as regular expressions on the qualified name."
  }
}

variable "topic_prefix" {
  description = "Debezium's topic.prefix: changes of <schema>.<table> go to <topic_prefix>.<schema>.<table>."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_-]*(\\.[a-z0-9_-]+)*$", var.topic_prefix)) && length(var.topic_prefix) <= 100
    error_message = "topic_prefix is lower-case letters, digits, '_', '-' and single dots, starting with a letter, not ending with a dot (Kafka topic names)."
  }
}

variable "slot_name" {
  description = "The connector's own replication slot (default: the connector's name). Two connectors never share a slot."
  type        = string
  default     = null

  validation {
    condition     = var.slot_name == null || can(regex("^[a-z0-9_]{1,63}$", var.slot_name))
    error_message = "A replication slot name is 1-63 lower-case letters, digits or underscores."
  }
}

variable "publication_name" {
  description = "The connector's own publication (default: <name>_pub), listing only its tables."
  type        = string
  default     = null

  validation {
    condition     = var.publication_name != "dbz_publication"
    error_message = "dbz_publication is the stack's FOR ALL TABLES publication: a slot reading it is sent every change of every table. Give the connector its own publication."
  }
  validation {
    condition     = var.publication_name == null || can(regex("^[a-z][a-z0-9_]{1,62}$", var.publication_name))
    error_message = "A publication name is 2-63 lower-case letters, digits or underscores, starting with a letter."
  }
}

variable "publication_autocreate" {
  description = "filtered: Debezium creates the publication FOR TABLE <tables> (the login must own the tables); disabled: the tables' owner created it beforehand."
  type        = string
  default     = "filtered"

  validation {
    condition     = contains(["filtered", "disabled"], var.publication_autocreate)
    error_message = "publication_autocreate is filtered or disabled; all_tables would publish every table of the database (and needs a superuser)."
  }
}

variable "snapshot_mode" {
  description = "What the connector reads before streaming: initial (the tables' rows, then changes), no_data (changes only), ..."
  type        = string
  default     = "initial"

  validation {
    condition     = contains(["initial", "initial_only", "no_data", "when_needed", "always"], var.snapshot_mode)
    error_message = "snapshot_mode is one of initial, initial_only, no_data, when_needed or always."
  }
}

variable "extra_config" {
  description = "More connector settings (e.g. decimal.handling.mode); the settings this module manages cannot be overridden here."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.extra_config), [
      "connector.class", "slot.name", "publication.name", "publication.autocreate.mode", "table.include.list",
      "topic.prefix", "database.hostname", "database.port", "database.dbname", "database.user", "database.password",
    ])) == 0
    error_message = "extra_config may not set what the module manages (slot, publication, tables, topic prefix, database)."
  }
}
