# An application database with least-privilege roles: an owner that holds the objects, a read group (SELECT),
# a write group (SELECT, INSERT, UPDATE, DELETE; no DDL), and login roles that are members of one group.

locals {
  groups = {
    read  = ["SELECT"]
    write = ["SELECT", "INSERT", "UPDATE", "DELETE"]
  }
}

resource "postgresql_role" "owner" {
  name     = "${var.name}_owner"
  login    = true
  password = var.owner_password
}

resource "postgresql_database" "this" {
  name             = var.name
  owner            = postgresql_role.owner.name
  connection_limit = var.connection_limit

  # the groups hold privileges on the tables inside (default privileges): on destroy the database, and its
  # tables with it, must go before the groups, or DROP ROLE fails ("some objects depend on it")
  depends_on = [postgresql_role.group]
}

resource "postgresql_role" "group" {
  for_each = local.groups

  name  = "${var.name}_${each.key}"
  login = false
}

resource "postgresql_grant" "connect" {
  for_each = local.groups

  database    = postgresql_database.this.name
  role        = postgresql_role.group[each.key].name
  object_type = "database"
  privileges  = ["CONNECT"]
}

# tables the owner creates later get the group's privileges too
resource "postgresql_default_privileges" "tables" {
  for_each = local.groups

  database    = postgresql_database.this.name
  schema      = "public"
  owner       = postgresql_role.owner.name
  role        = postgresql_role.group[each.key].name
  object_type = "table"
  privileges  = each.value
}

resource "postgresql_role" "login" {
  for_each = var.logins

  name     = each.key
  login    = true
  password = lookup(var.passwords, each.key, null)
  roles    = [postgresql_role.group[each.value].name]
}
