# Unit tests of the module: plans against a mocked provider (no Postgres needed). `tofu test` in this folder.
mock_provider "postgresql" {}

variables {
  name           = "shop"
  owner_password = "a-long-enough-secret"
  logins         = { analyst = "read", loader = "write" }
}

run "roles_follow_the_naming_scheme" {
  command = plan

  assert {
    condition     = postgresql_role.owner.name == "shop_owner" && postgresql_database.this.owner == "shop_owner"
    error_message = "the owner role is <name>_owner and owns the database"
  }
  assert {
    condition     = postgresql_role.group["read"].name == "shop_read" && !postgresql_role.group["read"].login
    error_message = "groups are NOLOGIN roles named <name>_<kind>"
  }
  assert {
    condition     = postgresql_role.login["analyst"].roles == toset(["shop_read"])
    error_message = "a login joins exactly its group"
  }
}

run "readers_only_select" {
  command = plan

  assert {
    condition     = postgresql_default_privileges.tables["read"].privileges == toset(["SELECT"])
    error_message = "the read group gets SELECT and nothing else"
  }
  assert {
    condition     = !contains(tolist(postgresql_default_privileges.tables["write"].privileges), "TRUNCATE")
    error_message = "the write group cannot TRUNCATE"
  }
}

run "rejects_a_short_password" {
  command = plan
  variables {
    owner_password = "short"
  }
  expect_failures = [var.owner_password]
}

run "rejects_an_unknown_group" {
  command = plan
  variables {
    logins = { boss = "admin" }
  }
  expect_failures = [var.logins]
}

run "rejects_too_many_connections" {
  command = plan
  variables {
    connection_limit = 500
  }
  expect_failures = [var.connection_limit]
}

run "admin_joins_the_owner_role" {
  command = plan

  assert {
    condition     = terraform_data.admin_membership.triggers_replace[0] == "shop_owner"
    error_message = "the connecting admin joins <name>_owner (so GRANT CONNECT and connection limits work)"
  }
}
