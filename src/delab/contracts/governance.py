"""Governance helpers of lab 05.04 on the stack's real Postgres: login roles for the lab's personas, a way to
connect as each of them (so a denied query is really denied by the server), and an audit trail of row changes.

Why a trigger table and not pgaudit: pgaudit must be in ``shared_preload_libraries`` (a server restart, a package
the learner's Postgres may not have, and a superuser to create the extension and set ``pgaudit.*``); the learner
role of the stack is not a superuser. A trigger records who changed which row, in SQL the learner can read, on any
Postgres (managed ones too); it cannot see reads or denied attempts — those need pgaudit or the server log
(docs/contracts.md).
"""

from __future__ import annotations

import hashlib

from delab import config

#: the customers table's contract (ODCS v3.2): each property's ``classification`` says who may see it in clear;
#: lab 05.04 masks what is ``restricted`` (tests/contracts/test_governance.py validates it as ODCS)
CUSTOMERS_CONTRACT = """
apiVersion: v3.2.0
kind: DataContract
id: urn:datacontract:shop:customers
name: Shop customers
version: 1.0.0
status: active
domain: shop
team:
  name: crm
  members:
    - username: crm-oncall
      role: owner
description:
  purpose: One row per customer who signed up in the shop.
  usage: Analysts count customers by country and segment; support handles customers of its country.
schema:
  - name: customers
    physicalName: customers
    physicalType: table
    properties:
      - {name: customer_id, logicalType: integer, physicalType: bigint, primaryKey: true, classification: internal}
      - {name: name, logicalType: string, physicalType: text, classification: restricted}
      - {name: email, logicalType: string, physicalType: text, classification: restricted}
      - {name: country, logicalType: string, physicalType: text, classification: internal}
      - {name: segment, logicalType: string, physicalType: text, classification: internal}
      - {name: signup_at, logicalType: timestamp, physicalType: timestamp, classification: internal}
"""


def classified(contract: str | dict, table: str, level: str = "restricted") -> list[str]:
    """The columns of ``table`` whose contract ``classification`` is ``level`` (the PII to mask)."""
    import yaml

    data = yaml.safe_load(contract) if isinstance(contract, str) else contract
    for schema in data.get("schema") or []:
        if schema.get("name") == table:
            return [p["name"] for p in schema.get("properties") or [] if p.get("classification") == level]
    raise KeyError(f"the contract has no schema named {table!r}")


def role_password(role: str) -> str:
    """The password of a lab persona, derived from the stack's learner password (nothing to keep in git)."""
    return hashlib.sha256(f"{config.postgres().password}:{role}".encode()).hexdigest()[:20]


def create_roles(conn, *roles: str) -> None:
    """Create (or reset the password of) login roles with no privileges beyond PUBLIC's: least privilege starts
    from nothing, and each lab grants what a persona needs on its own objects."""
    import psycopg

    for role in roles:
        password = role_password(role)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(f"ALTER ROLE {role} LOGIN PASSWORD '{password}'")
            continue
        try:
            conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'")
        except psycopg.errors.DuplicateObject:  # created meanwhile by a parallel run: set its password
            conn.execute(f"ALTER ROLE {role} LOGIN PASSWORD '{password}'")


def connect_as(role: str, **kwargs):
    """A connection to the stack's database as ``role`` (over TCP, password auth, like any application)."""
    import psycopg

    pg = config.postgres()
    return psycopg.connect(
        host=pg.host,
        port=pg.port,
        user=role,
        password=role_password(role),
        dbname=pg.database,
        autocommit=True,
        connect_timeout=5,
        **kwargs,
    )


def denied(conn, statement: str, params: tuple = ()) -> str | None:
    """Run a statement expected to be refused: the server's message when it was refused for lack of privilege,
    ``None`` when it ran (then rolled back: a probe never changes data)."""
    import psycopg

    try:
        with conn.transaction():
            conn.execute(statement, params)
            raise _RollBack
    except _RollBack:
        return None
    except psycopg.errors.InsufficientPrivilege as error:
        return str(error).strip().splitlines()[0]


class _RollBack(Exception):
    """Leaves a probe's transaction without committing it."""


def install_audit(conn, schema: str, table: str, key: str) -> None:
    """An audit trail for ``schema.table``: every INSERT, UPDATE and DELETE leaves a row in ``schema.audit_log``
    with the login role (``session_user``), the operation, the row's key and its old and new values."""
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {schema}.audit_log (
              id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
              at timestamptz NOT NULL DEFAULT clock_timestamp(),
              login_role text NOT NULL, operation text NOT NULL, table_name text NOT NULL, row_key text,
              old_row jsonb, new_row jsonb, txid bigint NOT NULL DEFAULT txid_current())"""
    )
    conn.execute(f"REVOKE ALL ON {schema}.audit_log FROM PUBLIC")
    # SECURITY DEFINER: the function inserts with its owner's rights, so a role that may update the table but not
    # the log still leaves its trace; inside it current_user is the owner, session_user the role that logged in.
    conn.execute(
        f"""CREATE OR REPLACE FUNCTION {schema}.audit_row() RETURNS trigger
              LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            BEGIN
              INSERT INTO {schema}.audit_log (login_role, operation, table_name, row_key, old_row, new_row)
              VALUES (session_user, TG_OP, TG_TABLE_NAME,
                      CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END ->> '{key}',
                      CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END,
                      CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) END);
              RETURN NULL;
            END $$"""
    )
    conn.execute(f"DROP TRIGGER IF EXISTS audit ON {schema}.{table}")
    conn.execute(
        f"""CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON {schema}.{table}
              FOR EACH ROW EXECUTE FUNCTION {schema}.audit_row()"""
    )


def log_statements(conn, role: str, level: str = "all") -> None:
    """Switch the server's statement logging on (``all``: reads too; ``mod``: writes; ``none``: off) for every
    new session of ``role``. ``log_statement`` is a superuser setting: the stack provides a superuser-owned
    function, ``delab_log_statements``, that sets it for a non-superuser role (a managed server: its parameter
    group or ``ALTER ROLE`` by an administrator)."""
    conn.execute("SELECT public.delab_log_statements(%s, %s)", (role, level))


def server_log_lines(marker: str, lines: int = 2000) -> list[str]:
    """The lines of the Postgres server log for statements containing ``marker``: statements logged because
    their role has statement logging on (``LOG:  statement: …``), and failed ones (an ``ERROR`` line and the
    ``STATEMENT`` it was raised for: Postgres logs every failed statement, denied ones included). Each line starts
    with ``role@database`` (the stack's ``log_line_prefix``). Empty when the log cannot be read here (the
    ``external`` profile: a managed server keeps its own log)."""
    from delab.stack import manager

    try:
        log = manager.logs("postgres", lines).splitlines()
    except Exception:  # no log reachable: say nothing rather than fail the lab
        return []
    found = []
    for index, line in enumerate(log):
        if marker not in line:
            continue
        if "STATEMENT:" in line:
            found += [log[index - 1], line] if index and "ERROR:" in log[index - 1] else [line]
        elif "statement:" in line:
            found.append(line)
    return found
