# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 07.06 · Security as code: SASL/SCRAM and ACLs, least-privilege grants, encrypted state, policy as code
#
# **You will:**
# - start a Kafka broker that demands a login (SASL/SCRAM) and denies everything no ACL allows, then give two
#   services exactly the access they need with OpenTofu — and watch the broker refuse everyone else;
# - write the Postgres grants of a read-only reporting login and prove it cannot write or change the schema;
# - encrypt OpenTofu's state on the client side, so the copy on the object store is ciphertext;
# - check configurations before they are applied with checkov and a policy of your own.
#
# *Needs:* Postgres and the object store (started for you); the lab starts its own secured Kafka broker and stops
# it at the end. Kernel: `delab`. About 40 minutes.
#
# Every claim below is proven by a **denied action** on a real server: a security control you have not seen
# refuse something is a control you only hope works.

# %%
import time

import pandas as pd

from delab import check, config, iac, stack
from delab.checks.m07 import l06_security as lab
from delab.iac import secure_kafka, security

stack.require("postgres", "s3")
ns = stack.namespace("m07_l06")  # topics m07_l06.*, state keys m07_l06/… on the object store
work = config.lab_dir("m07_l06")

started = time.monotonic()
broker = secure_kafka.start()  # a second, secured broker: the stack's own Kafka stays open for the other labs
print(f"secured broker on {broker.bootstrap} after {time.monotonic() - started:.1f} s")

# %% [markdown]
# ## A broker that asks who you are
# The stack's Kafka trusts every connection: anyone who reaches the port can read and write anything. The broker
# just started is configured like a production cluster (look at its `server.properties` below):
# - its listener is `SASL_PLAINTEXT` with the **SCRAM-SHA-256** mechanism: a client proves it knows a password
#   without sending it; the broker stores only salted hashes, in the cluster's metadata;
# - `authorizer.class.name=…StandardAuthorizer` and `allow.everyone.if.no.acl.found=false`: once logged in, a
#   principal (`User:<name>`) may do only what an **ACL** allows; the broker's own `admin` is the only super user.
#
# A login the broker does not know gets nothing, not even the list of topics. The broker closes the connection
# after the failed SCRAM exchange without saying why (an attacker learns nothing), so the client only sees that
# it could not bootstrap — `KafkaTimeoutError`:

# %%
conf = secure_kafka.config_file().read_text()
print("\n".join(line for line in conf.splitlines() if "sasl" in line or "authorizer" in line or "super" in line
                if "jaas" not in line))  # fmt: skip
print("unknown login, produce:", security.try_produce("nobody", "not-a-password", f"{ns.prefix}.orders", timeout=3))

# %% [markdown]
# ## Users, topics and ACLs as code
# The Kafka provider manages all three. `kafka_user_scram_credential` creates a SCRAM login (the passwords come
# from Python through a var file and are marked `sensitive`); the project's `kafka_topics` module creates topics
# under a prefix and, for each principal in `writers` and `readers`, the ACLs that role needs:
#
# | role | ACLs on `<prefix>.` (prefixed pattern) |
# |---|---|
# | writer | Write + Describe on topics |
# | reader | Read + Describe on topics, Read on consumer groups |
#
# Three users exist: `orders_app` (the service that publishes orders), `analytics` (a reporting job that reads
# them) and `intruder` (a valid login with no business here).
#
# ### Exercise 1 — least-privilege ACLs for the orders topic
# Write `orders_topics_tf`, a `module "orders_topics"` block calling `kafka_topics` (source given below) with
# `prefix = var.prefix`, one topic `orders` (1 partition), and principals so that **orders_app may only produce
# and analytics may only read**. The check applies it to the secured broker and tries every action as every user.

# %%
topics_module = iac.module_source("kafka_topics")
### BEGIN SOLUTION
orders_topics_tf = f"""
module "orders_topics" {{
  source  = "{topics_module}"
  prefix  = var.prefix
  topics  = {{ orders = {{ partitions = 1 }} }}
  writers = ["User:orders_app"]
  readers = ["User:analytics"]
}}
"""
### END SOLUTION

# %%
check.m07.kafka_acls_check(orders_topics_tf)

# %% [markdown]
# The check applied it under its own prefix. Apply it in the lab's namespace too, and try every action as every
# user — what the broker allows and denies:

# %%
lab.drop_prefix(ns.prefix)  # a re-run starts from nothing
passwords = lab.user_passwords()  # in real life: a secret manager
acls_tofu = lab.apply_with_users(work / "acls", orders_topics_tf, ns.prefix, passwords)
print(acls_tofu.outputs() or "", acls_tofu.state_list()[:3], "…")
pd.DataFrame(lab.access_matrix(ns.prefix, passwords)).T

# %% [markdown]
# `TopicAuthorizationFailedError` for `analytics` producing and for `intruder` doing anything: the broker checked
# an ACL and found none. `orders_app` reading fails on its consumer *group* (no `Read` ACL on it). That is least
# privilege: each principal can do its job and nothing else, and a leaked `analytics` password cannot corrupt the
# topic.
#
# ## Least privilege in Postgres
# Postgres checks two levels: a role needs `USAGE` on a **schema** to see inside it, then a privilege on each
# **table** (`SELECT`, `INSERT`, …). `GRANT … ON ALL TABLES IN SCHEMA` covers the tables that exist *now*;
# `ALTER DEFAULT PRIVILEGES` covers those created later by the same owner. (Lab 07.01's `postgres_app_database`
# module does the same with the PostgreSQL provider, for a whole database.)
#
# ### Exercise 2 — a read-only reporting login
# Write `grant_statements(schema, role)` returning the SQL statements (a list of strings) that let `role` read
# every table of `schema` — including tables created after your grants — and do nothing else. The check makes a
# fresh schema and login, runs your statements as the owner, creates a new table, then tries to read, insert and
# create a table as the login.


# %%
### BEGIN SOLUTION
def grant_statements(schema: str, role: str) -> list[str]:
    """Read-only access for ``role`` to every table of ``schema``, present and future."""
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}",
    ]


### END SOLUTION

# %%
check.m07.least_privilege_check(grant_statements)

# %% [markdown]
# What the reporting login could and could not do in the check, on a fresh schema:

# %%
lab.reporting_access(grant_statements)

# %% [markdown]
# ## Encrypting the state
# The state holds every attribute of every resource — passwords included, even those marked `sensitive` (that only
# hides them from plan output). Anyone who can read the state bucket reads them. OpenTofu (since 1.7) can
# **encrypt the state and plan files on the client** before they reach any backend: a `key_provider` derives or
# fetches a key (`pbkdf2` from a passphrase here; AWS KMS, GCP KMS or OpenBao in production), a `method` encrypts
# with it (`aes_gcm`), and `state { … }` / `plan { … }` say what to encrypt. `enforced = true` refuses to ever
# write them unencrypted.
#
# ### Exercise 3 — an encrypted state on the object store
# The root below keeps a database password in a `terraform_data` resource (as many real resources do) and its state
# on the stack's object store. Write `encryption_tf`, a `terraform { encryption { … } }` block that encrypts the
# state **and** saved plans with AES-GCM, with the key derived from `var.state_passphrase` — never written in the
# code.

# %%
print(lab.ENCRYPTED_MAIN)
### BEGIN SOLUTION
encryption_tf = """
terraform {
  encryption {
    key_provider "pbkdf2" "main" {
      passphrase = var.state_passphrase
    }
    method "aes_gcm" "main" {
      keys = key_provider.pbkdf2.main
    }
    state {
      method   = method.aes_gcm.main
      enforced = true
    }
    plan {
      method   = method.aes_gcm.main
      enforced = true
    }
  }
}
"""
### END SOLUTION

# %%
check.m07.state_encryption_check(encryption_tf)

# %% [markdown]
# Apply it without and with encryption, and look at the bytes on the object store — what a stolen bucket gives away:

# %%
passphrase = "lab-passphrase-" + ns.prefix  # in real life: TF_VAR_state_passphrase from a secret manager
_, plain = lab.encrypted_state("", "plain", passphrase)
key, cipher = lab.encrypted_state(encryption_tf, "encrypted", passphrase)
print("without encryption:", plain[plain.find(b'"password"') :][:60])
print("with encryption:   ", cipher[:60], "…", cipher[-60:])
print("secret readable?", lab.SECRET_VALUE.encode() in plain, "→", lab.SECRET_VALUE.encode() in cipher)

# %% [markdown]
# Without the passphrase, OpenTofu itself cannot read the state back (a wrong key fails to decrypt):

# %%
wrong = iac.tofu_command("plan", "-no-color", "-input=false", cwd=work / "checks" / "encryption-encrypted",
                         env={"TF_VAR_state_passphrase": "a-wrong-passphrase-123"})  # fmt: skip
print("exit", wrong.returncode, "—", next((ln for ln in wrong.stderr.splitlines() if "rror" in ln), "")[:160])

# %% [markdown]
# ## Policy as code with checkov
# Reviews miss things; a policy runs on every pull request. **checkov** parses Terraform (and CloudFormation,
# Kubernetes manifests, Dockerfiles) and evaluates policies on each resource *before* anything is applied. Its
# 1000+ built-in policies cover the cloud providers (S3 buckets without encryption, open security groups…); for
# our Kafka provider there are none, so a team writes its own — a few lines of YAML: an `id`, a `name`, a
# `category`, and a `definition` that describes what a **compliant** resource looks like (conditions on
# attributes, combined with `and:` / `or:`).
#
# ### Exercise 4 — forbid over-broad ACLs
# Write `policy_yaml`, a checkov policy on `kafka_acl` resources that fails an ACL granted to every user
# (`User:*`) and an ACL granting the operation `All`, and passes the others. The check scans four ACLs — two
# fine, two over-broad — with only your policy.

# %%
print(lab.POLICY_FIXTURE_TF[:420], "…")
### BEGIN SOLUTION
policy_yaml = """
metadata:
  id: "CKV2_DELAB_1"
  name: "Kafka ACLs name their principal and grant one operation"
  category: "IAM"
definition:
  and:
    - cond_type: attribute
      resource_types: [kafka_acl]
      attribute: acl_principal
      operator: not_equals
      value: "User:*"
    - cond_type: attribute
      resource_types: [kafka_acl]
      attribute: acl_operation
      operator: not_equals
      value: All
"""
### END SOLUTION

# %%
check.m07.custom_policy_check(policy_yaml)

# %% [markdown]
# In a pipeline the same command gates the merge: `checkov -d . --external-checks-dir policies/` exits non-zero
# when a policy fails. `lab.run_policy(policy_yaml)` runs exactly that on the four ACLs and returns the verdict
# per resource — use it while you write your policy (each run takes a few seconds: checkov is slow to start).

# %% [markdown]
# ## Clean up
# The secured broker stops with the lab (its users, ACLs and data are kept for the next run; a kernel that dies
# takes it down too).

# %%
secure_kafka.stop()
print("secured broker running:", secure_kafka.running())

# %% [markdown]
# ## Recap
# - Authentication (SASL/SCRAM) says *who*; authorization (ACLs, `GRANT`) says *what*: deny by default, grant
#   each principal exactly its job — and prove it with a denied action.
# - Postgres needs `USAGE` on the schema and a privilege per table; default privileges cover tomorrow's tables.
# - State holds secrets in clear text: encrypt it on the client (`encryption { … }`, `enforced = true`) and keep
#   the key out of the code.
# - Policies as code (checkov, custom YAML) stop risky configurations before `apply`.
#
# **Going further:** on a network, the listener is `SASL_SSL` (TLS: passwords and data encrypted on the wire; the
# provider's `tls_enabled = true`). Managed Kafka does the same with IAM (Amazon MSK's `aws-iam` SASL mechanism,
# supported by the same provider) or API keys (Confluent Cloud). Key providers `aws_kms`, `gcp_kms` and `openbao`
# replace the passphrase in production. Postgres audit logs come from `log_statement` / pgAudit; Kafka's from the
# authorizer's log (`kafka.authorizer.logger`). checkov also scans CloudFormation (lab 07.02) and Kubernetes
# manifests (lab 07.03); Open Policy Agent (conftest) evaluates Rego policies on `tofu show -json` plans.
