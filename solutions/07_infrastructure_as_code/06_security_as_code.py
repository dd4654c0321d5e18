# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 07.06 · Security as code: SCRAM and ACLs, least privilege, encrypted state, policies, TLS, audit logs
#
# **You will:**
# - start a Kafka broker that demands a login (SASL/SCRAM over TLS) and denies everything no ACL allows, then
#   give two services exactly the access they need with OpenTofu — and watch the broker refuse everyone else;
# - write the Postgres grants of a read-only reporting login and prove it cannot write or change the schema;
# - encrypt OpenTofu's state on the client side, so the copy on the object store is ciphertext;
# - check configurations before they are applied with checkov and a policy of your own — Terraform and
#   Kubernetes manifests;
# - connect clients over TLS to a broker whose certificate comes from a CA of your own, and see what a wiretap
#   gets with and without it;
# - read the broker's and the database's audit logs: who was denied what, and when.
#
# *Needs:* Kafka, Postgres and the object store (started for you); the lab starts its own secured Kafka broker and
# stops it at the end. Kernel: `delab`. About 60 minutes.
#
# Every claim below is proven by a **denied action** on a real server: a security control you have not seen
# refuse something is a control you only hope works.

# %%
import time

import pandas as pd

from delab import check, config, iac, stack
from delab.checks.m07 import l06_security as lab
from delab.contracts import governance
from delab.iac import certificates, secure_kafka, security

stack.require("kafka", "postgres", "s3")
ns = stack.namespace("m07_l06")  # topics m07_l06.*, state keys m07_l06/… on the object store
work = config.lab_dir("m07_l06")

started = time.monotonic()
broker = secure_kafka.start()  # a second, secured broker: the stack's own Kafka stays open for the other labs
print(f"secured broker on {broker.bootstrap} after {time.monotonic() - started:.1f} s")

# %% [markdown]
# ## A broker that asks who you are
# The stack's Kafka trusts every connection: anyone who reaches the port can read and write anything. The broker
# just started is configured like a production cluster (look at its `server.properties` below):
# - its listener is `SASL_SSL`: TLS first (the section "Encryption on the wire" looks at it), then a login with
#   the **SCRAM-SHA-256** mechanism: a client proves it knows a password without sending it; the broker stores
#   only salted hashes, in the cluster's metadata;
# - `authorizer.class.name=…StandardAuthorizer` and `allow.everyone.if.no.acl.found=false`: once logged in, a
#   principal (`User:<name>`) may do only what an **ACL** allows; the broker's own `admin` is the only super user.
#
# A login the broker does not know gets nothing, not even the list of topics. The broker closes the connection
# after the failed SCRAM exchange without saying why (an attacker learns nothing), so the client only sees that
# it could not bootstrap — `KafkaTimeoutError`:

# %%
conf = secure_kafka.config_file().read_text()
print("\n".join(line for line in conf.splitlines()
                if any(word in line for word in ("sasl", "authorizer", "super", "ssl", "protocol.map"))
                and "jaas" not in line))  # fmt: skip
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
audit_mark = security.audit_log_size()  # the broker's audit log grows from here: read back in "Audit logs"
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
# ## checkov on Kubernetes manifests
# The same scanner reads Kubernetes manifests (`--framework kubernetes`), with 100+ built-in policies for pods and
# the workloads that make them. Below: lab 07.03's consumer Deployment, the Deployment a team would write first
# for 07.03's kopf operator, and module 06's InferenceService — scanned offline, before any `kubectl apply`.

# %%
written = lab.K8S_AS_WRITTEN
scan = pd.DataFrame(lab.scan_manifests({"as_written": written, "hardened": lab.hardened_manifests()}))
before = scan[scan.version == "as_written"]
print(before.groupby(["file", "result"]).size().unstack(fill_value=0))
print("checks run on the InferenceService:", int((before.file == "order-value-isvc.yaml").sum()))
before[before.result == "failed"].pivot_table(index=["check_id", "check"], columns="file", values="result",
                                              aggfunc="count", fill_value=0)  # fmt: skip

# %% [markdown]
# What the findings mean, for the ones that matter most here:
# - **no CPU/memory limits** (CKV_K8S_11, CKV_K8S_13): one pod with a leak or a hot loop starves its neighbours
#   on the node; requests only reserve, limits cap;
# - **root and a writable filesystem** (CKV_K8S_23 `runAsNonRoot`, CKV_K8S_22 `readOnlyRootFilesystem`, CKV_K8S_20
#   `allowPrivilegeEscalation`, CKV_K8S_28/37 capabilities): a compromised process would be root in its
#   container, could write tools into it and gain privileges — the securityContext takes that away;
# - **`:latest`** (CKV_K8S_14): which code runs depends on when the node pulled; a pinned tag (better: a digest,
#   CKV_K8S_43) makes a rollout reproducible and a rollback possible;
# - secrets as environment variables (CKV_K8S_35): they leak into crash dumps and `/proc`; files are preferred.
#
# The InferenceService got **no finding at all**: checkov's built-in policies know the core workload kinds, not
# KServe's custom resource — its transformer container is never looked at. A custom policy (exercise 4's YAML
# format, `resource_types: [InferenceService]` with the kubernetes framework) or Kyverno/OPA Gatekeeper in the
# cluster would cover it.
#
# The fixed versions add limits, a pod and a container `securityContext` and a pinned tag
# (`lab.hardened_manifests()`); the same scan, side by side:

# %%
print(lab.hardened_manifests()["topic-operator.yaml"])
fixed_ids = ["CKV_K8S_11", "CKV_K8S_13", "CKV_K8S_14", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28"]
shown = scan[scan.check_id.isin(fixed_ids) & scan.file.str.endswith("-operator.yaml")]
print(shown.pivot_table(index="check_id", columns="version", values="result", aggfunc="first"))
print("failed checks per version:", scan[scan.result == "failed"].groupby("version").size().to_dict())

# %% [markdown]
# What still fails after the fix is a decision, not an oversight: probes (CKV_K8S_8/9) need endpoints the
# application must offer, image digests (CKV_K8S_43) and `imagePullPolicy: Always` (CKV_K8S_15) belong to the CI
# that builds the images, a NetworkPolicy (CKV2_K8S_6) and a ServiceAccount without a mounted token (CKV_K8S_38) to
# the cluster's setup, and the consumer's database password still arrives as an environment variable (CKV_K8S_35;
# a mounted file is better). A team records each exception in the code (`--skip-check`, or a
# `checkov:skip=<id>:<reason>` annotation on the manifest), so each one has a reason in the code review.
#
# ## Encryption on the wire: TLS
# SCRAM never sends the password, but without TLS everything else crosses the network readable: topic names,
# every record, the broker's answers. This broker's listeners are `SASL_SSL`: TLS underneath the login. Its
# certificate was made at the first start by a **certificate authority of the lab's own** (Python's
# `cryptography`: a CA certificate and key, and a certificate for `127.0.0.1`/`localhost` signed by it), kept with
# the broker's data — never in a repository. The broker reads PEM files directly (`ssl.keystore.type=PEM`).

# %%
tls = secure_kafka.tls_files()
pd.DataFrame({"broker (keystore)": certificates.describe(tls.keystore), "lab CA": certificates.describe(tls.ca)})

# %% [markdown]
# A TLS client checks two things: the certificate is signed by a CA it trusts, and it names the host the client
# dialled. The system's trust store knows the public CAs only, so a client nobody configured refuses this broker;
# given the lab's CA, it connects:

# %%
host, port = secure_kafka.bootstrap().rsplit(":", 1)
print("system CAs only:", security.tls_handshake(host, int(port)))
print("lab CA:         ", security.tls_handshake(host, int(port), cafile=tls.ca))

# %% [markdown]
# OpenTofu's Kafka provider has been talking TLS all along: the generated provider block (below) says
# `tls_enabled = true` and gives `ca_cert` (a path or the PEM text); `skip_tls_verify = true` would accept any
# certificate — a development shortcut that must never reach a shared configuration.

# %%
provider_block = (work / "acls" / "providers.tf").read_text()
print(provider_block[provider_block.index('provider "kafka"') :].replace(broker.admin_password, "********"))

# %% [markdown]
# ### Exercise 5 — a kafka-python client over TLS
# Write `tls_settings(user, password, ca_file)` returning the kafka-python settings (a dict; `bootstrap_servers`
# is added for you) that log in as `user` with SCRAM-SHA-256 **over TLS**, trusting the CA in `ca_file` and
# verifying the broker's name. The check produces with your settings, and tries them where they would be unsafe.


# %%
### BEGIN SOLUTION
def tls_settings(user: str, password: str, ca_file: str) -> dict:
    """SCRAM-SHA-256 inside TLS, trusting the lab's CA, with hostname verification on."""
    return {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": ca_file,
        "ssl_check_hostname": True,
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


### END SOLUTION

# %%
check.m07.tls_client_check(tls_settings)

# %% [markdown]
# Why hostname verification matters: the lab's CA also signed a certificate for another service
# (`billing.internal.invalid`). A server presenting it is trusted by a client that skips the name check — anyone
# holding *any* certificate from your CA could pose as the broker:

# %%
with security.impostor(tls.other_cert, tls.other_key) as impostor_port:
    print("name not checked:", security.tls_handshake(host, impostor_port, cafile=tls.ca, check_hostname=False))
    print("name checked:    ", security.tls_handshake(host, impostor_port, cafile=tls.ca))

# %% [markdown]
# ### What a wiretap sees
# `security.Wiretap()` is a small SOCKS5 proxy on loopback that records every byte it relays — what anyone on the
# network path sees. The same card number is produced through it twice: to the stack's own Kafka (`PLAINTEXT`)
# and to the secured broker (`SASL_SSL`).

# %%
secret_record = b"card=4111-1111-1111-1111;amount=42.00"
open_kafka = {"bootstrap_servers": config.kafka().bootstrap_servers}  # the stack's own broker: PLAINTEXT
with security.Wiretap() as open_tap:
    verdict = security.try_produce("", "", f"{ns.prefix}.wiretap", settings=open_kafka, proxy_url=open_tap.url,
                                   value=secret_record)  # fmt: skip
    print("stack's Kafka: ", verdict)
with security.Wiretap() as tls_tap:
    verdict = security.try_produce("admin", broker.admin_password, lab.ensure_topic(), proxy_url=tls_tap.url,
                                   value=secret_record)  # fmt: skip
    print("secured broker:", verdict)
for name, tap, topic in (("PLAINTEXT", open_tap, f"{ns.prefix}.wiretap"), ("SASL_SSL", tls_tap, lab.TLS_TOPIC)):
    captured = tap.captured
    print(f"{name:9} {len(captured):6} bytes seen, record readable: {secret_record in captured}, topic name "
          f"readable: {topic.encode() in captured}, TLS records: {security.tls_records(captured)}")  # fmt: skip

# %% [markdown]
# On the open broker the record (and the topic name) is there in clear; through TLS the tap sees handshake and
# encrypted application-data records only. TLS also protects the SCRAM exchange from being replayed or
# downgraded, and with client certificates (`ssl.client.auth=required`, mutual TLS) it can authenticate the
# client itself — the provider's `client_cert`/`client_key`, kafka-python's `ssl_certfile`/`ssl_keyfile`.
#
# ## Audit logs
# The broker writes every decision of its authorizer to a log of its own (`kafka.authorizer.logger`, configured in
# `secure_kafka.log4j_properties()`): **denials at INFO, allowed actions at DEBUG**. Production clusters ship it
# to a SIEM; auditors ask "who tried to write to the orders topic?". Here is what the access matrix above left:

# %%
audit_lines = security.audit_log_lines(since=audit_mark)
print(len(audit_lines), "lines; a denied one:")
print(next(line for line in audit_lines if "is Denied" in line and "User:analytics" in line)[:400])

# %% [markdown]
# ### Exercise 6 — who was denied what
# Write `denials(log_lines, principal)` returning the `(operation, resource)` pairs — as written in the log, e.g.
# `("WRITE", "Topic:LITERAL:shop.orders")` — of every action the broker **denied** to exactly `principal` (e.g.
# `"User:analytics"`). The check feeds it lines of this broker's log for several principals.


# %%
### BEGIN SOLUTION
def denials(log_lines: list[str], principal: str) -> list[tuple[str, str]]:
    """The (operation, resource) of each action the authorizer denied to exactly ``principal``."""
    found = []
    for line in log_lines:
        if f"Principal = {principal} is Denied " not in line:
            continue
        operation = line.split(" operation = ", 1)[1].split(" ", 1)[0]
        resource = line.split(" on resource = ", 1)[1].split(" ", 1)[0]
        found.append((operation, resource))
    return found


### END SOLUTION

# %%
check.m07.audit_denials_check(denials)

# %% [markdown]
# On the real log: the produce `analytics` tried in the access matrix, and everything `intruder` tried:

# %%
{user: sorted(set(denials(audit_lines, f"User:{user}"))) for user in ("analytics", "intruder")}

# %% [markdown]
# Postgres keeps its own trail. Every line of the stack's server log starts with `role@database`, and a failed
# statement — a denied one included — is logged with its text. Exercise 2's check left one: the reporting login's
# `INSERT`, refused. (`delab_log_statements` switches on the logging of *every* statement of a role, reads
# included: see lab 05.04; managed servers offer pgAudit.)

# %%
print("\n".join(line[:200] for line in governance.server_log_lines(f"{lab.LAB}_sales_")[-4:]))

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
# - Policies as code (checkov, custom YAML) stop risky configurations before `apply` — Terraform, CloudFormation
#   (lab 07.02) and Kubernetes manifests alike; a custom resource needs a policy of your own.
# - TLS on every listener, a CA the clients trust explicitly, hostname verification on: a wiretap sees ciphertext,
#   an impostor with another certificate is refused.
# - Audit logs answer "who was denied what": the broker's authorizer log, Postgres's `role@database` lines.
#
# **Going further:** managed Kafka replaces SCRAM with IAM (Amazon MSK's `aws-iam` SASL mechanism, supported by the
# same provider) or API keys (Confluent Cloud), over TLS. Mutual TLS (client certificates) authenticates services
# without passwords. Key providers `aws_kms`, `gcp_kms` and `openbao` replace the passphrase in production;
# certificates come from cert-manager or Vault's PKI engine and rotate on their own. Open Policy Agent (conftest)
# evaluates Rego policies on `tofu show -json` plans; Kyverno or Gatekeeper enforce policies inside the cluster.
