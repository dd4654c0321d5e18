"""Checks of lab 07.06 (security as code): Kafka ACLs, least-privilege Postgres grants, encrypted state, a policy.

Every check proves its verdict on a real service with a denied action: it applies the learner's configuration to
the secured broker and tries to produce and read as each principal, runs the learner's grants and tries to write
as the read-only login, reads the state object back from the store as raw bytes, runs checkov with the learner's
policy. Scratch names are fresh at every run (idempotent) and cleaned up afterwards.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from delab import clients
from delab.checks.m07 import scratch
from delab.grading import WrongAnswer, exercise, learner_code
from delab.iac import Tofu, TofuError, module_source, s3_backend, secure_kafka, security, tofu_command, write_root

LAB = "m07_l06"
WRITER, READER, OUTSIDER = "orders_app", "analytics", "intruder"


def _scratch(name: str) -> Path:
    return scratch(LAB, name)


# --------------------------------------------------------------------------------------- e1: Kafka ACLs as code

#: the users the lab (and the check) create on the secured broker, with SCRAM credentials managed by OpenTofu
USERS_TF = """
variable "prefix" {
  type = string
}

variable "passwords" {
  type      = map(string)
  sensitive = true
}

resource "kafka_user_scram_credential" "user" {
  for_each        = toset(["orders_app", "analytics", "intruder"])
  username        = each.key
  scram_mechanism = "SCRAM-SHA-256"
  password        = var.passwords[each.key]
}
"""


def user_passwords() -> dict[str, str]:
    """Fresh passwords for the three users (never written to a .tf file: they go through a var file)."""
    return {user: secrets.token_urlsafe(12) for user in (WRITER, READER, OUTSIDER)}


def drop_prefix(prefix: str) -> None:
    """Delete the topics under ``prefix`` and every ACL on resources under it (an earlier run's leftovers)."""
    from kafka import KafkaAdminClient
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    broker = secure_kafka.start()
    client = KafkaAdminClient(**broker.settings(), request_timeout_ms=10_000)
    try:
        doomed = [t for t in client.list_topics() if t.startswith(f"{prefix}.")]
        if doomed:
            client.delete_topics(doomed, timeout_ms=10_000)
        for kind in (ResourceType.TOPIC, ResourceType.GROUP):
            pattern = ResourcePatternFilter(kind, f"{prefix}.", ACLResourcePatternType.ANY)
            client.delete_acls([ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY, pattern)])
    finally:
        client.close()


def topics() -> set[str]:
    """The topics on the secured broker (as its admin sees them)."""
    from kafka import KafkaAdminClient

    client = KafkaAdminClient(**secure_kafka.start().settings(), request_timeout_ms=10_000)
    try:
        return set(client.list_topics())
    finally:
        client.close()


def apply_with_users(folder: Path, main_tf: str, prefix: str, passwords: dict[str, str]) -> Tofu:
    """Apply the users plus ``main_tf`` on the secured broker (local state in ``folder``)."""
    root = write_root(folder, main_tf, providers=("kafka_secure",), files={"users.tf": USERS_TF})
    tofu = Tofu(root, variables={"prefix": prefix, "passwords": passwords})
    tofu.init()
    tofu.apply()
    return tofu


def access_matrix(prefix: str, passwords: dict[str, str], topic: str = "orders") -> dict[str, dict[str, str]]:
    """What each user may do on ``<prefix>.<topic>``: produce, and consume in group ``<prefix>.<user>``."""
    name = f"{prefix}.{topic}"
    return {
        user: {
            "produce": security.try_produce(user, passwords[user], name),
            "consume": security.try_consume(user, passwords[user], name, group=f"{prefix}.{user}"),
        }
        for user in (WRITER, READER, OUTSIDER)
    }


def _allowed(verdict: str) -> bool:
    return verdict.startswith("ok")


@exercise("m07.l06.e1")
def kafka_acls_check(orders_topics_tf) -> None:
    """orders_app may only produce, analytics may only read, anyone else is denied: proven on the secured broker."""
    if not isinstance(orders_topics_tf, str) or "module" not in orders_topics_tf:
        raise WrongAnswer(
            "orders_topics_tf should be the text of a module block calling kafka_topics.",
            hint='module "orders_topics" { source = …, prefix = var.prefix, topics = …, writers = …, readers = … }',
        )
    if not re.search(r"prefix\s*=\s*var\.prefix", orders_topics_tf):
        raise WrongAnswer(
            "the module's prefix is not var.prefix.",
            hint="set prefix = var.prefix: the check (and the lab) choose the namespace, the module block does not.",
        )
    prefix = f"{LAB}_check"
    drop_prefix(prefix)
    passwords = user_passwords()
    main = orders_topics_tf.replace("KAFKA_TOPICS_MODULE", module_source("kafka_topics"))
    try:
        apply_with_users(_scratch("acls"), main, prefix, passwords)
    except TofuError as error:
        raise WrongAnswer(
            f"tofu apply failed: {error.message}",
            hint="the module takes prefix, topics, readers and writers; principals are written User:<name>.",
        ) from None
    if f"{prefix}.orders" not in topics():
        raise WrongAnswer(
            f"no topic {prefix}.orders on the broker after the apply.",
            hint="name the topic orders and set prefix = var.prefix (the check chooses the prefix).",
        )
    matrix = access_matrix(prefix, passwords)
    if not _allowed(matrix[WRITER]["produce"]):
        raise WrongAnswer(
            f"orders_app could not produce: {matrix[WRITER]['produce']}.",
            hint="a producer needs Write (and Describe) on the topic: list its principal among the writers.",
        )
    if _allowed(matrix[READER]["produce"]):
        raise WrongAnswer(
            "analytics could produce to the orders topic.",
            hint="least privilege: a reporting job only reads — it belongs among the readers, not the writers.",
        )
    if not _allowed(matrix[READER]["consume"]):
        raise WrongAnswer(
            f"analytics could not read: {matrix[READER]['consume']}.",
            hint="a consumer needs Read on the topic and on its consumer group: list its principal among the readers.",
        )
    if _allowed(matrix[OUTSIDER]["produce"]) or _allowed(matrix[OUTSIDER]["consume"]):
        raise WrongAnswer(
            "intruder, a user with no grant, could use the topic.",
            hint="grant named principals only — never User:* (every authenticated user).",
        )
    if _allowed(matrix[WRITER]["consume"]):
        raise WrongAnswer(
            "orders_app could read the topic back.",
            hint="the producing service needs no Read: keep it out of the readers.",
        )


# ----------------------------------------------------------------------------------- e2: least-privilege grants


def _reporting_fixture() -> tuple[str, str, str]:
    """A fresh schema with a table owned by the stack's user, and a fresh login role with no grant at all."""
    schema, role, password = security.unique_name(f"{LAB}_sales"), security.unique_name(f"{LAB}_rep"), "rep-pw"
    with clients.postgres() as pg:
        pg.execute(f"CREATE SCHEMA {schema}")
        pg.execute(f"CREATE TABLE {schema}.orders (id int PRIMARY KEY, amount numeric)")
        pg.execute(f"INSERT INTO {schema}.orders VALUES (1, 9.5)")
        pg.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    return schema, role, password


def _drop_fixture(schema: str, role: str) -> None:
    with clients.postgres() as pg:
        pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        pg.execute(f"DROP ROLE IF EXISTS {role}")


def drop_leftover_fixtures() -> None:
    """Remove what an interrupted check left behind (schemas and roles of this lab's checks)."""
    with clients.postgres() as pg:
        for (schema,) in pg.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{LAB}_sales_%",)
        ).fetchall():
            pg.execute(f"DROP SCHEMA {schema} CASCADE")
        for (role,) in pg.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"{LAB}_rep_%",)).fetchall():
            pg.execute(f"DROP ROLE {role}")


@learner_code("grant_statements")
def _statements(fn, schema: str, role: str) -> list[str]:
    got = fn(schema, role)
    if isinstance(got, str):
        got = [got]
    return list(got)


def reporting_access(grant_statements, keep: bool = False) -> dict[str, str]:
    """Run the learner's statements for a fresh schema and role, create a table afterwards, and try what a
    reporting login does: read both tables, write, change the schema."""
    drop_leftover_fixtures()
    schema, role, password = _reporting_fixture()
    try:
        statements = _statements(grant_statements, schema, role)
        with clients.postgres() as pg:
            for statement in statements:
                pg.execute(statement)
            # a table created later, the way the next migration will
            pg.execute(f"CREATE TABLE {schema}.refunds (id int PRIMARY KEY, order_id int)")
        return {
            "read orders": security.try_sql(role, password, f"SELECT count(*) FROM {schema}.orders"),
            "read refunds (created after the grants)": security.try_sql(
                role, password, f"SELECT count(*) FROM {schema}.refunds"
            ),
            "insert into orders": security.try_sql(role, password, f"INSERT INTO {schema}.orders VALUES (2, 1)"),
            "create a table": security.try_sql(role, password, f"CREATE TABLE {schema}.scratch (x int)"),
        }
    finally:
        if not keep:
            _drop_fixture(schema, role)


@exercise("m07.l06.e2")
def least_privilege_check(grant_statements) -> None:
    """the reporting login reads every table of the schema, today's and tomorrow's, and can change nothing."""
    try:
        access = reporting_access(grant_statements)
    except WrongAnswer:
        raise
    except Exception as error:  # a statement Postgres refused
        raise WrongAnswer(
            f"Postgres refused a statement: {type(error).__name__}: {str(error).strip().splitlines()[0][:200]}",
            hint="each item is one SQL statement using the schema and role you are given.",
        ) from None
    if access["read orders"] != "ok":
        raise WrongAnswer(
            f"the login could not read orders: {access['read orders']}.",
            hint="SELECT on a table is not enough: a role must also be allowed to look inside the schema "
            "(USAGE on it).",
        )
    if access["insert into orders"] == "ok" or access["create a table"] == "ok":
        done = [action for action in ("insert into orders", "create a table") if access[action] == "ok"]
        raise WrongAnswer(
            f"the reporting login could {' and '.join(done)}.",
            hint="least privilege: grant exactly SELECT (not ALL) and USAGE (not CREATE) — a reader changes nothing.",
        )
    if access["read refunds (created after the grants)"] != "ok":
        raise WrongAnswer(
            "the login cannot read refunds, a table created after your grants.",
            hint="GRANT … ON ALL TABLES covers today's tables only; ALTER DEFAULT PRIVILEGES covers those created "
            "later.",
        )


# ----------------------------------------------------------------------------------- e3: state encryption

SECRET_VALUE = "orders-db-password-7f3a"

#: what the encrypted root manages: a value every state would store in plain text (like a generated password)
ENCRYPTED_MAIN = f"""
variable "state_passphrase" {{
  type      = string
  sensitive = true
}}

resource "terraform_data" "db_credentials" {{
  input = {{ user = "orders_app", password = "{SECRET_VALUE}" }}
}}
"""


def encrypted_state(encryption_tf: str, name: str, passphrase: str) -> tuple[str, bytes]:
    """Apply a root holding a secret with ``encryption_tf`` beside it, state on the stack's object store under
    ``m07_l06/<name>.tfstate``; returns (the state's key, its raw bytes as stored). TofuError when tofu fails."""
    folder = _scratch(f"encryption-{name}")
    key = f"{LAB}/{name}.tfstate"
    clients.s3_delete_prefix(key)
    root = write_root(folder, ENCRYPTED_MAIN, providers=(), backend="s3", files={"encryption.tf": encryption_tf})
    (root / "backend.tfbackend").write_text(_backend_text(key))
    env = {"TF_VAR_state_passphrase": passphrase}
    for args in (
        ("init", "-input=false", "-no-color", "-reconfigure", "-backend-config=backend.tfbackend"),
        ("apply", "-auto-approve", "-input=false", "-no-color"),
    ):
        result = tofu_command(*args, cwd=root, env=env)
        if result.returncode != 0:
            from delab.iac.tofu import _first_error

            raise TofuError(f"tofu {args[0]} failed: {_first_error(result.stderr or result.stdout)}")
    return key, security.s3_object(key)


def _backend_text(key: str) -> str:
    from delab.iac.backends import backend_file

    return backend_file(s3_backend(key))


_LITERAL_PASSPHRASE = re.compile(r"passphrase\s*=\s*\"")


@exercise("m07.l06.e3")
def state_encryption_check(encryption_tf) -> None:
    """the state lands on the object store encrypted, with the key kept out of the code."""
    if not isinstance(encryption_tf, str) or "encryption" not in encryption_tf:
        raise WrongAnswer(
            "encryption_tf should be the text of a terraform { encryption { … } } block.",
            hint="terraform { encryption { key_provider … method … state { … } } }",
        )
    if _LITERAL_PASSPHRASE.search(encryption_tf):
        raise WrongAnswer(
            "the passphrase is written in the configuration.",
            hint="a key in a .tf file ends up in git: take it from var.state_passphrase (set by TF_VAR_… or a "
            "secret manager).",
        )
    try:
        _, raw = encrypted_state(encryption_tf, "check", secrets.token_urlsafe(24))
    except TofuError as error:
        raise WrongAnswer(
            f"{error.message}",
            hint="pbkdf2 needs a passphrase of 16+ characters; the method names its keys "
            "(keys = key_provider.pbkdf2.<name>).",
        ) from None
    if security.looks_like_plain_state(raw) or SECRET_VALUE.encode() in raw:
        if "state" not in re.sub(r"#.*", "", encryption_tf).replace("state_passphrase", ""):
            hint = "a key provider and a method only define how to encrypt: a state { method = … } block says what."
            if re.search(r"\bplan\s*{", encryption_tf):
                hint = "you encrypted saved plans only: the state needs its own state { method = … } block."
        else:
            hint = "the state block must use your aes_gcm method (method.aes_gcm.<name>), not the unencrypted one."
        raise WrongAnswer("the state on the object store is plain JSON: anyone who can read the bucket reads it.",
                          hint=hint)  # fmt: skip


# ------------------------------------------------------------------------------------ e4: a policy of your own

#: ACLs a reviewer would see in a pull request: two fine, two that grant too much
POLICY_FIXTURE_TF = """
resource "kafka_acl" "analytics_read" {
  acl_principal       = "User:analytics"
  acl_host            = "*"
  acl_operation       = "Read"
  acl_permission_type = "Allow"
  resource_name       = "orders."
  resource_type       = "Topic"
}

resource "kafka_acl" "orders_app_write" {
  acl_principal       = "User:orders_app"
  acl_host            = "*"
  acl_operation       = "Write"
  acl_permission_type = "Allow"
  resource_name       = "orders."
  resource_type       = "Topic"
}

resource "kafka_acl" "everyone_read" {
  acl_principal       = "User:*"
  acl_host            = "*"
  acl_operation       = "Read"
  acl_permission_type = "Allow"
  resource_name       = "orders."
  resource_type       = "Topic"
}

resource "kafka_acl" "orders_app_all" {
  acl_principal       = "User:orders_app"
  acl_host            = "*"
  acl_operation       = "All"
  acl_permission_type = "Allow"
  resource_name       = "orders."
  resource_type       = "Topic"
}
"""
POLICY_GOOD = {"kafka_acl.analytics_read", "kafka_acl.orders_app_write"}
POLICY_BAD = {"kafka_acl.everyone_read", "kafka_acl.orders_app_all"}


def policy_id(policy_yaml: str) -> str:
    """The id a YAML policy declares (metadata.id); ValueError when there is none."""
    import yaml

    try:
        document = yaml.safe_load(policy_yaml)
    except yaml.YAMLError as error:
        raise ValueError(f"it is not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(document, dict) or not isinstance(document.get("metadata"), dict):
        raise ValueError("the policy has no metadata section")
    found = document["metadata"].get("id")
    if not found:
        raise ValueError("the policy's metadata has no id")
    return str(found)


def run_policy(policy_yaml: str, terraform: str = POLICY_FIXTURE_TF, name: str = "policy") -> dict[str, str]:
    """Scan ``terraform`` with the policy only: resource address -> "passed" / "failed"."""
    folder = _scratch(name)
    (folder / "tf").mkdir()
    (folder / "tf" / "main.tf").write_text(terraform)
    (folder / "policies").mkdir()
    (folder / "policies" / "policy.yaml").write_text(policy_yaml)
    check_id = policy_id(policy_yaml)
    rows = security.checkov(folder / "tf", checks=[check_id], external_checks_dir=folder / "policies")
    return {row["resource"]: row["result"] for row in rows if row["check_id"] == check_id}


@exercise("m07.l06.e4")
def custom_policy_check(policy_yaml) -> None:
    """the policy fails the two ACLs that grant too much (everyone, All) and passes the two least-privilege ones."""
    if not isinstance(policy_yaml, str) or "definition" not in policy_yaml:
        raise WrongAnswer(
            "policy_yaml should be the text of a checkov YAML policy (metadata + definition).",
            hint="metadata: {id, name, category}; definition: a cond_type: attribute condition (or an and: of them).",
        )
    try:
        verdicts = run_policy(policy_yaml)
    except (ValueError, RuntimeError) as error:
        raise WrongAnswer(
            f"checkov cannot use the policy: {error}.", hint="metadata needs id, name and category."
        ) from None
    if not verdicts:
        raise WrongAnswer(
            "the policy matched no resource at all.",
            hint="resource_types lists the Terraform type the rule applies to, exactly as in the .tf file.",
        )
    failed = {address for address, verdict in verdicts.items() if verdict == "failed"}
    if failed & POLICY_GOOD:
        raise WrongAnswer(
            f"the policy fails least-privilege ACLs too: {', '.join(sorted(failed & POLICY_GOOD))}.",
            hint="a condition describes what a compliant resource looks like (not_equals the bad value), not the "
            "violation.",
        )
    if "kafka_acl.everyone_read" not in failed:
        raise WrongAnswer(
            "the policy lets an ACL for User:* (every authenticated user) through.",
            hint="add a condition on acl_principal.",
        )
    if "kafka_acl.orders_app_all" not in failed:
        raise WrongAnswer(
            "the policy lets an ACL granting the operation All through.",
            hint="add a condition on acl_operation; combine conditions with and:.",
        )
