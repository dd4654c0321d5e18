variable "name" {
  description = "The application database; also the prefix of its roles (<name>_owner, <name>_read, <name>_write)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{1,30}$", var.name))
    error_message = "The name is 2-31 lower-case letters, digits or underscores, starting with a letter."
  }
}

variable "owner_password" {
  description = "Password of the owner role (pass it from an environment variable or a secret store, never a .tf file)."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.owner_password) >= 12
    error_message = "The owner password has at least 12 characters."
  }
}

variable "connection_limit" {
  description = "Connections the database accepts (-1: no limit)."
  type        = number
  default     = 20

  validation {
    condition     = var.connection_limit == -1 || (var.connection_limit >= 1 && var.connection_limit <= 200)
    error_message = "connection_limit is -1 or between 1 and 200 (the stack's Postgres allows 200 in all)."
  }
}

variable "logins" {
  description = "Login roles and the group each joins: user name => \"read\" or \"write\"."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for group in values(var.logins) : contains(["read", "write"], group)])
    error_message = "Each login joins the \"read\" or the \"write\" group."
  }
}

variable "passwords" {
  description = "Passwords of the login roles, by user name."
  type        = map(string)
  default     = {}
  sensitive   = true
}
