"""The postgres_app_database module against the stack's real Postgres: after an apply, a second plan is empty (the
provider's GRANT CONNECT really lands), the grants are in the catalog, and the connection limit can be changed
by the non-superuser login OpenTofu uses."""

from __future__ import annotations

import uuid

import pytest

from delab import clients, iac

pytestmark = pytest.mark.stack

MAIN_TF = """
variable "owner_password" {
  type      = string
  sensitive = true
}

variable "connection_limit" {
  type = number
}

module "app" {
  source           = "MODULE"
  name             = "NAME"
  owner_password   = var.owner_password
  connection_limit = var.connection_limit
  logins           = { NAME_reader = "read" }
  passwords        = { NAME_reader = "reader-secret-0123" }
}
"""


@pytest.fixture
def app(tmp_path):
    name = f"t_app_{uuid.uuid4().hex[:8]}"
    main = MAIN_TF.replace("MODULE", iac.module_source("postgres_app_database")).replace("NAME", name)
    root = iac.write_root(tmp_path / "root", main, providers=("postgresql",))
    tofu = iac.Tofu(root, variables={"owner_password": "owner-secret-0123", "connection_limit": 5})
    tofu.init()
    yield name, tofu
    tofu.destroy()


def _connect_grantees(database: str) -> set[str]:
    with clients.postgres() as pg:
        rows = pg.execute(
            "SELECT r.rolname FROM pg_database d, aclexplode(d.datacl) a JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE d.datname = %s AND a.privilege_type = 'CONNECT'",
            (database,),
        ).fetchall()
    return {row[0] for row in rows}


def test_apply_then_plan_has_no_changes(app):
    name, tofu = app
    tofu.apply()
    second = tofu.plan()
    assert not second.changes, f"a second plan wants changes: {second.summary()} {second.actions}"
    assert {f"{name}_read", f"{name}_write"} <= _connect_grantees(name)


def test_connection_limit_changes_in_place(app):
    name, tofu = app
    tofu.apply()
    tofu.variables["connection_limit"] = 7
    tofu.apply()  # "must be owner of database" before the admin joined the owner role
    with clients.postgres() as pg:
        limit = pg.execute("SELECT datconnlimit FROM pg_database WHERE datname = %s", (name,)).fetchone()[0]
    assert limit == 7
    assert not tofu.plan().changes
