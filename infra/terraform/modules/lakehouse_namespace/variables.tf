variable "bucket" {
  description = "The bucket on the object store that holds the namespace's tables (data and metadata files)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket)) && !can(regex("\\.\\.|_", var.bucket))
    error_message = "A bucket name is 3-63 lower-case letters, digits, '-' or '.', starts and ends with a letter or digit (no '_', no '..')."
  }
}

variable "namespace" {
  description = "The Iceberg namespace (a database, in other engines' words) in the catalog."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{1,40}$", var.namespace))
    error_message = "The namespace is 2-41 lower-case letters, digits or underscores, starting with a letter."
  }
}

variable "catalog" {
  description = "The name of the catalog in the project's SQL (JDBC) Iceberg catalog (the labs use lake)."
  type        = string
  default     = "lake"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,40}$", var.catalog))
    error_message = "The catalog name is lower-case letters, digits or underscores."
  }
}

variable "force_destroy" {
  description = "Whether destroy may drop the namespace's tables and empty the bucket. false: destroy fails while tables or objects remain (the safe default for data)."
  type        = bool
  default     = false
}
