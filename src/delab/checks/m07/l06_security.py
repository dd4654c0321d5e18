"""Checks of lab 07.06 (security as code): Kafka ACLs, least-privilege Postgres grants, encrypted state, a policy,
a client over TLS, reading the broker's audit log; and the lab's checkov scan of Kubernetes manifests.

Every check proves its verdict on a real service with a denied action: it applies the learner's configuration to
the secured broker and tries to produce and read as each principal, runs the learner's grants and tries to write
as the read-only login, reads the state object back from the store as raw bytes, runs checkov with the learner's
policy, produces with the learner's TLS settings (and shakes hands with an impostor when they skip the name
check). Scratch names are fresh at every run (idempotent) and cleaned up afterwards.
"""

from __future__ import annotations

import contextlib
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


# ------------------------------------------------------------------------------------ e5: a client over TLS

#: the topic the TLS check and the wiretap demo write to (created by the broker's admin)
TLS_TOPIC = f"{LAB}.tls"


def ensure_topic(name: str = TLS_TOPIC) -> str:
    """Create ``name`` on the secured broker (one partition) unless it exists; returns the name."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    client = KafkaAdminClient(**secure_kafka.start().settings(), request_timeout_ms=10_000)
    try:
        if name not in client.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):  # made meanwhile by another kernel
                client.create_topics([NewTopic(name, 1, 1)])
    finally:
        client.close()
    return name


@learner_code("tls_settings")
def _tls_settings(fn, user: str, password: str, ca_file: str) -> object:
    return fn(user, password, ca_file)


def _broker_address() -> tuple[str, int]:
    host, _, port = secure_kafka.bootstrap().rpartition(":")
    return host, int(port)


@exercise("m07.l06.e5")
def tls_client_check(tls_settings) -> None:
    """the settings reach the broker over TLS, trust exactly the lab's CA and verify the broker's name."""
    broker = secure_kafka.start()
    files = secure_kafka.tls_files()
    settings = _tls_settings(tls_settings, broker.admin_user, broker.admin_password, str(files.ca))
    if not isinstance(settings, dict):
        raise WrongAnswer(
            f"tls_settings returned {type(settings).__name__}, not a dict of kafka-python settings.",
            hint="return {'security_protocol': …, 'ssl_cafile': …, 'sasl_mechanism': …, …}.",
        )
    settings = {"bootstrap_servers": broker.bootstrap, **settings}
    protocol = str(settings.get("security_protocol", "PLAINTEXT")).upper()
    topic = ensure_topic()
    if protocol != "SASL_SSL":
        verdict = security.try_produce(broker.admin_user, "", topic, timeout=3, settings=settings)
        hints = {
            "SASL_PLAINTEXT": "the listener speaks TLS: SASL_PLAINTEXT sends the login exchange and every record "
            "readable — SASL_SSL runs the same SCRAM login inside TLS.",
            "SSL": "SSL is TLS without a login, and this broker wants SCRAM too: SASL_SSL is TLS + SASL.",
        }
        raise WrongAnswer(
            f"security_protocol {protocol}: the broker refused the client ({verdict}).",
            hint=hints.get(protocol, "security_protocol = 'SASL_SSL' (TLS + a SASL login)."),
        )
    host, port = _broker_address()
    if not settings.get("ssl_cafile") and not settings.get("ssl_context"):
        handshake = security.tls_handshake(host, port, cafile=None)
        raise WrongAnswer(
            f"without the lab's CA the client does not trust the broker: {handshake}.",
            hint="ssl_cafile = ca_file: the broker's certificate is signed by the lab's own CA, which the system's "
            "trust store does not know.",
        )
    if settings.get("ssl_check_hostname", True) is False:
        with security.impostor(files.other_cert, files.other_key) as impostor_port:
            fooled = security.tls_handshake(host, impostor_port, cafile=files.ca, check_hostname=False)
        raise WrongAnswer(
            f"hostname verification is off: such a client also completed a TLS handshake with a server "
            f"presenting another service's certificate ({fooled}).",
            hint="keep ssl_check_hostname = True (the default): otherwise any certificate your CA ever issued, to "
            "any service, is accepted for the broker.",
        )
    verdict = security.try_produce(broker.admin_user, broker.admin_password, topic, settings=settings)
    if verdict != "ok":
        raise WrongAnswer(
            f"the client could not produce over TLS: {verdict}.",
            hint="SASL_SSL, sasl_mechanism 'SCRAM-SHA-256', sasl_plain_username/sasl_plain_password from the "
            "arguments, ssl_cafile = ca_file.",
        )


# ------------------------------------------------------------------------------------- e6: the audit log

#: lines of the secured broker's authorizer log (the format StandardAuthorizer writes; recorded from this lab's
#: broker): allowed actions at DEBUG, denied ones at INFO
AUDIT_FIXTURE = """\
[2026-12-06 18:41:02,114] DEBUG Principal = User:orders_app is Allowed operation = DESCRIBE from host = 127.0.0.1 \
on resource = Topic:LITERAL:shop.orders for request = Metadata with resourceRefCount = 1 based on rule \
MatchingAcl(acl=StandardAcl[resourceType=TOPIC, resourceName=shop., patternType=PREFIXED, \
principal=User:orders_app, host=*, operation=DESCRIBE, permissionType=ALLOW])
[2026-12-06 18:41:02,230] DEBUG Principal = User:orders_app is Allowed operation = WRITE from host = 127.0.0.1 \
on resource = Topic:LITERAL:shop.orders for request = Produce with resourceRefCount = 1 based on rule \
MatchingAcl(acl=StandardAcl[resourceType=TOPIC, resourceName=shop., patternType=PREFIXED, \
principal=User:orders_app, host=*, operation=WRITE, permissionType=ALLOW])
[2026-12-06 18:41:03,871] DEBUG Principal = User:analytics is Allowed operation = DESCRIBE from host = 127.0.0.1 \
on resource = Topic:LITERAL:shop.orders for request = Metadata with resourceRefCount = 1 based on rule \
MatchingAcl(acl=StandardAcl[resourceType=TOPIC, resourceName=shop., patternType=PREFIXED, \
principal=User:analytics, host=*, operation=DESCRIBE, permissionType=ALLOW])
[2026-12-06 18:41:03,902] INFO Principal = User:analytics is Denied operation = WRITE from host = 127.0.0.1 \
on resource = Topic:LITERAL:shop.orders for request = Produce with resourceRefCount = 1 based on rule DefaultDeny
[2026-12-06 18:41:05,377] DEBUG Principal = User:analytics is Allowed operation = READ from host = 127.0.0.1 \
on resource = Topic:LITERAL:shop.orders for request = Fetch with resourceRefCount = 1 based on rule \
MatchingAcl(acl=StandardAcl[resourceType=TOPIC, resourceName=shop., patternType=PREFIXED, \
principal=User:analytics, host=*, operation=READ, permissionType=ALLOW])
[2026-12-06 18:41:06,020] INFO Principal = User:analytics_backfill is Denied operation = READ from host = \
127.0.0.1 on resource = Group:LITERAL:shop.backfill for request = JoinGroup with resourceRefCount = 1 based on \
rule DefaultDeny
[2026-12-06 18:41:06,511] INFO Principal = User:orders_app is Denied operation = READ from host = 127.0.0.1 \
on resource = Topic:LITERAL:analytics.daily_revenue for request = Fetch with resourceRefCount = 1 based on rule \
DefaultDeny
[2026-12-06 18:41:07,940] INFO Principal = User:intruder is Denied operation = WRITE from host = 127.0.0.1 \
on resource = Topic:LITERAL:shop.orders for request = Produce with resourceRefCount = 1 based on rule DefaultDeny
[2026-12-06 18:41:08,113] INFO Principal = User:analytics is Denied operation = ALTER_CONFIGS from host = \
127.0.0.1 on resource = Topic:LITERAL:shop.orders for request = IncrementalAlterConfigs with resourceRefCount = \
1 based on rule DefaultDeny
"""
AUDIT_EXPECTED = {
    "User:analytics": {("WRITE", "Topic:LITERAL:shop.orders"), ("ALTER_CONFIGS", "Topic:LITERAL:shop.orders")},
    "User:intruder": {("WRITE", "Topic:LITERAL:shop.orders")},
    "User:orders_app": {("READ", "Topic:LITERAL:analytics.daily_revenue")},
}


@learner_code("denials")
def _denials(fn, lines: list[str], principal: str) -> set[tuple[str, str]]:
    got = fn(list(lines), principal)
    if isinstance(got, int | float | str) or got is None:
        raise WrongAnswer(
            f"denials returned {got!r}: a list of (operation, resource) pairs was expected.",
            hint="return [(operation, resource), …] for each Denied line of the principal.",
        )
    pairs = set()
    for item in got:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise WrongAnswer(
                f"denials returned an item {item!r}: each should be an (operation, resource) pair.",
                hint="e.g. ('WRITE', 'Topic:LITERAL:shop.orders'), as the log line writes them.",
            )
        pairs.add((str(item[0]), str(item[1])))
    return pairs


@exercise("m07.l06.e6")
def audit_denials_check(denials) -> None:
    """exactly the principal's denied actions, read from the authorizer's log lines."""
    lines = AUDIT_FIXTURE.splitlines()
    rows = security.audit_rows(lines)
    for principal, expected in AUDIT_EXPECTED.items():
        got = _denials(denials, lines, principal)
        if got == expected:
            continue
        extra = got - expected
        allowed = {(r["operation"], r["resource"]) for r in rows if r["principal"] == principal}
        others = {(r["operation"], r["resource"]) for r in rows if r["principal"] != principal}
        if extra & allowed:
            raise WrongAnswer(
                f"for {principal} you returned actions the broker allowed: {sorted(extra & allowed)}.",
                hint="keep only the lines that say 'is Denied' (allowed actions are logged too, at DEBUG).",
            )
        if extra & others:
            raise WrongAnswer(
                f"for {principal} you returned other principals' denials too: {sorted(extra & others)}.",
                hint=f"compare the principal exactly ('Principal = {principal} is'): a substring also matches "
                "User:analytics_backfill or a topic named analytics.*.",
            )
        raise WrongAnswer(
            f"for {principal}: expected {sorted(expected)}, got {sorted(got)}.",
            hint="the operation follows 'operation = ', the resource follows 'on resource = ' (Type:PATTERN:name).",
        )


# ------------------------------------------------------------------------- checkov on Kubernetes manifests

#: lab 07.03's consumer Deployment, the operator's Deployment as a team would first write it, and lab 06.02's
#: InferenceService: what a pull request to the platform's manifests repository holds
K8S_AS_WRITTEN = {
    "orders-consumer.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders-consumer
  namespace: m07-l03
  labels: {app.kubernetes.io/name: orders-consumer}
spec:
  replicas: 2
  selector:
    matchLabels: {app.kubernetes.io/name: orders-consumer}
  template:
    metadata:
      labels: {app.kubernetes.io/name: orders-consumer}
    spec:
      containers:
        - name: consumer
          image: registry.invalid/shop/orders-consumer:1.4.0
          ports: [{name: metrics, containerPort: 9100}]
          envFrom:
            - configMapRef: {name: orders-consumer-config}
            - secretRef: {name: orders-consumer-db}
          resources:
            requests: {cpu: 100m, memory: 128Mi}
""",
    "topic-operator.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kafka-topic-operator
  namespace: m07-l03
spec:
  replicas: 1
  selector:
    matchLabels: {app: kafka-topic-operator}
  template:
    metadata:
      labels: {app: kafka-topic-operator}
    spec:
      containers:
        - name: operator
          image: registry.invalid/shop/kafka-topic-operator:latest
          args: [kopf, run, --namespace=m07-l03, /app/operator.py]
""",
    "order-value-isvc.yaml": """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: order-value
  namespace: m07-l03
spec:
  predictor:
    canaryTrafficPercent: 10
    minReplicas: 1
    model:
      modelFormat: {name: sklearn}
      protocolVersion: v2
      storageUri: s3://models/order-value/2
      resources:
        requests: {cpu: 500m, memory: 512Mi}
  transformer:
    containers:
      - name: kserve-container
        image: shop/order-transformer:1
        args: [--model_name, order-value, --predictor_protocol, v2]
""",
}

#: the fixes the lab makes: limits, a restrictive securityContext (pod and container), a pinned tag
_POD_SECURITY = """\
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        seccompProfile: {type: RuntimeDefault}
"""
_CONTAINER_SECURITY = """\
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
"""


def hardened_manifests() -> dict[str, str]:
    """The two Deployments fixed: CPU and memory limits, a non-root read-only securityContext, a pinned tag."""
    fixed = dict(K8S_AS_WRITTEN)
    consumer = fixed["orders-consumer.yaml"].replace(
        "            requests: {cpu: 100m, memory: 128Mi}\n",
        "            requests: {cpu: 100m, memory: 128Mi}\n            limits: {cpu: 500m, memory: 256Mi}\n",
    )
    consumer = consumer.replace("    spec:\n      containers:\n", "    spec:\n" + _POD_SECURITY + "      containers:\n")
    fixed["orders-consumer.yaml"] = consumer.replace("          ports:", _CONTAINER_SECURITY + "          ports:")
    operator = fixed["topic-operator.yaml"].replace(":latest", ":0.3.2")
    operator = operator.replace("    spec:\n      containers:\n", "    spec:\n" + _POD_SECURITY + "      containers:\n")
    fixed["topic-operator.yaml"] = operator.replace(
        "          args:",
        _CONTAINER_SECURITY + "          resources:\n            requests: {cpu: 50m, memory: 64Mi}\n"
        "            limits: {cpu: 200m, memory: 128Mi}\n          args:",
    )
    return fixed


def scan_manifests(versions: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """Scan sets of manifests with checkov's kubernetes framework in one run (checkov is slow to start): one row
    per (version, file, check) with the verdict. ``versions``: name -> {file name -> YAML}."""
    folder = _scratch("k8s-scan")
    for version, manifests in versions.items():
        (folder / version).mkdir()
        for name, text in manifests.items():
            (folder / version / name).write_text(text)
    rows = security.checkov(folder, framework="kubernetes")
    found = []
    for row in rows:
        version, _, file = str(row["file"]).lstrip("/").partition("/")
        found.append({"version": version, "file": file, "resource": row["resource"], "check_id": row["check_id"],
                      "check": row["check"], "result": row["result"]})  # fmt: skip
    return found
