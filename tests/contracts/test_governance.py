"""Lab 05.04's governance helpers: the customers contract is valid ODCS and names the PII to mask."""

from __future__ import annotations

import pytest

from delab.contracts import governance, odcs


def test_the_customers_contract_is_odcs_and_classifies_pii():
    odcs.parse(governance.CUSTOMERS_CONTRACT)
    assert governance.classified(governance.CUSTOMERS_CONTRACT, "customers") == ["name", "email"]
    with pytest.raises(KeyError, match="orders"):
        governance.classified(governance.CUSTOMERS_CONTRACT, "orders")


def test_role_passwords_are_derived_per_role():
    assert governance.role_password("a") != governance.role_password("b")
    assert governance.role_password("a") == governance.role_password("a")


@pytest.fixture
def stack_postgres():
    from delab import stack

    stack.require("postgres", quiet=True)


@pytest.mark.stack
def test_statement_logging_names_the_role_that_read(stack_postgres):
    import uuid

    from delab import clients

    role = "t_governance_reader"
    probe = f"/* read probe {uuid.uuid4().hex[:8]} */"
    with clients.postgres() as conn:
        governance.create_roles(conn, role)
        governance.log_statements(conn, role, "all")
    try:
        with governance.connect_as(role) as reader:
            reader.execute(f"SELECT 1 {probe}").fetchone()
            assert governance.denied(reader, f"SELECT * FROM pg_authid {probe}")
        lines = governance.server_log_lines(probe)
        assert any(f"{role}@" in line and "statement: SELECT 1" in line for line in lines), lines
        assert any("ERROR:" in line and "permission denied" in line for line in lines), lines
    finally:
        with clients.postgres() as conn:
            governance.log_statements(conn, role, "none")


@pytest.mark.stack
def test_statement_logging_refuses_superusers_and_unknown_levels(stack_postgres):
    import psycopg

    from delab import clients, config

    with clients.postgres() as conn, pytest.raises(psycopg.errors.RaiseException, match="not a superuser"):
        governance.log_statements(conn, config.Postgres.superuser, "all")
    with clients.postgres() as conn, pytest.raises(psycopg.errors.RaiseException, match="none, ddl, mod or all"):
        governance.log_statements(conn, "t_governance_reader", "everything")
