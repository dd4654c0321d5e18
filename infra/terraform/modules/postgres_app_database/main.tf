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

# The role OpenTofu connects as (a CREATEROLE administrator, not a superuser) joins the owner role. Only the
# owner of a database (or a member of its role) may GRANT CONNECT on it or change its connection limit; today's
# provider joins the owner's role for the duration of such a statement, v1.7.1 does not for database grants, so
# PostgreSQL would only warn "no privileges were granted" and every plan would propose the grant again. v1.7.1
# has no resource for a role membership of an existing role (no postgresql_grant_role): this clearly labelled
# step runs the one statement through `delab platform create` (kind role_membership), logged in as the
# provider's login from delab.config. The membership goes when the owner role is dropped.
resource "terraform_data" "admin_membership" {
  triggers_replace = [postgresql_role.owner.name]
  input            = { kind = "role_membership", role = postgresql_role.owner.name }

  provisioner "local-exec" {
    command     = "delab platform create"
    environment = { DELAB_PLATFORM_SPEC = jsonencode(self.input) }
  }
}

resource "postgresql_database" "this" {
  name             = var.name
  owner            = postgresql_role.owner.name
  connection_limit = var.connection_limit

  # the admin joins the owner role first (above); the groups hold privileges on the tables inside (default
  # privileges): on destroy the database, and its tables with it, must go before the groups, or DROP ROLE fails
  # ("some objects depend on it")
  depends_on = [terraform_data.admin_membership, postgresql_role.group]
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

  depends_on = [terraform_data.admin_membership]
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
