# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 07.01 · OpenTofu on the real stack: plan, apply, state, import, drift and modules
#
# **You will:**
# - describe Kafka topics and a Postgres application database as code, then `plan`, `apply` and `destroy` them
#   on the stack's real Kafka and Postgres from Python (python-terraform driving OpenTofu);
# - keep the state in two real backends — the stack's Postgres (`backend "pg"`) and its object store
#   (`backend "s3"` with a lock file) — and watch a second apply wait for the lock;
# - write a guard that refuses plans which destroy data, adopt a topic created by hand with an `import` block,
#   and catch a change made behind Terraform's back (drift);
# - use the project's own modules (variables, validation, outputs) and write `tofu test` tests that catch bugs.
#
# *Needs:* Kafka, Postgres and the object store (started for you). Kernel: `delab`. About 45 minutes.
#
# **Why OpenTofu?** Terraform's licence changed to the Business Source License in 2023; **OpenTofu** is the
# open-source (MPL-2.0) fork under the Linux Foundation, with the same language, state format and providers.
# Everything below works the same with `terraform`. Setup built `tofu` and the providers from source; `tofu init`
# installs providers from that local *filesystem mirror*, never from a registry.

# %%
import concurrent.futures
import os
import subprocess
import time

import psycopg

from delab import check, clients, config, iac, stack
from delab.iac import kafka_admin

stack.require("kafka", "postgres", "s3")
ns = stack.namespace("m07_l01")  # topics m07_l01.*, the pg backend schema m07_l01_state, S3 keys m07_l01/…
work = config.lab_dir("m07_l01")
print(iac.tofu_command("version", cwd=work).stdout.splitlines()[0])

# %% [markdown]
# ## Providers, resources and a plan
# A **root module** is a folder of `.tf` files. It names the **providers** it needs (plugins that talk to one
# API: Kafka's admin protocol, Postgres' SQL), declares **resources** (a topic, a role) and keeps what it created
# in a **state**. `tofu plan` compares the configuration with the state *and* with the real objects, and lists
# the actions that would make reality match the code; `tofu apply` performs exactly that plan.
#
# The stack's endpoints are not in the code: `iac.write_root` writes a generated `providers.tf` next to our
# `main.tf` (look at it below). Our `main.tf` calls the project's module `kafka_topics`
# (infra/terraform/modules/kafka_topics: variables with validation, topics named `<prefix>.<name>`, optional
# ACLs, outputs).

# %%
topics_tf = f"""
module "topics" {{
  source = "{iac.module_source("kafka_topics")}"
  prefix = "{ns.prefix}"
  topics = {{
    orders   = {{ partitions = 3 }}
    payments = {{ partitions = 2, retention_ms = 86400000, cleanup_policy = "compact" }}
  }}
}}

output "topics" {{
  value = module.topics.topic_names
}}
"""
root = iac.write_root(work / "topics", topics_tf, backend="pg")
print((root / "providers.tf").read_text())

# %% [markdown]
# `backend "pg" {}` is left empty on purpose (a *partial* backend): the connection string, which holds a password,
# is given at `init` time and never written into a `.tf` file. The state then lives in table `states` of schema
# `m07_l01_state` in the stack's Postgres. `iac.Tofu` wraps python-terraform once: its `destroy()` would send a
# `-force` flag OpenTofu does not know, and its `apply()` waits for a "yes" unless told otherwise.

# %%
tofu = iac.Tofu(root)
tofu.init(backend_config=iac.pg_backend(schema=f"{ns.prefix}_state"))
tofu.destroy()  # a re-run starts from nothing: remove what a previous run created (a no-op the first time)
kafka_admin.delete_topics(f"{ns.prefix}.legacy_clicks")

plan = tofu.plan()
print(plan.summary())
plan.actions

# %%
started = time.monotonic()
tofu.apply(plan)  # exactly the saved plan: nothing else can slip in between review and apply
print(f"applied in {time.monotonic() - started:.1f} s; outputs:", tofu.outputs())
{name: kafka_admin.topic_settings(name) for name in tofu.outputs()["topics"].values()}

# %% [markdown]
# The broker reports what the plan promised. A second plan finds nothing to do — the configuration, the state and
# the real topics agree. That *convergence* is what makes applies safe to repeat:

# %%
again = tofu.plan()
print("changes:", again.changes, again.summary())
with clients.postgres() as pg:
    print(pg.execute(f"SELECT name, length(data) AS bytes FROM {ns.prefix}_state.states").fetchall())

# %% [markdown]
# ## State, backends and locking
# The state maps each resource address (`module.topics.kafka_topic.this["orders"]`) to the real object's id and
# last known attributes. It is the single most precious file of a Terraform project: lose it and OpenTofu no
# longer knows it created anything; let two people apply at once and they overwrite each other's state. Hence
# **remote backends with locking**. With `pg`, a lock is a Postgres advisory lock; with `s3`, OpenTofu writes a
# `<key>.tflock` object with a conditional PUT (fails if one exists) next to the state.
#
# Two applies at once on the `pg` backend: a small root whose apply takes 3 seconds (a `terraform_data` resource
# running a local command — no real resource needed to hold a lock). The second apply is told not to wait
# (`-lock-timeout=0s`):

# %%
slow_tf = """
resource "terraform_data" "slow" {
  triggers_replace = [timestamp()]   # replaced at every apply
  provisioner "local-exec" {
    command = "sleep 3"
  }
}
"""
lock_root = iac.write_root(work / "locking", slow_tf, providers=(), backend="pg")
iac.Tofu(lock_root).init(backend_config=iac.pg_backend(schema=f"{ns.prefix}_lockdemo"))


def apply_in_background() -> subprocess.Popen:
    command = [str(iac.tofu_bin()), "apply", "-auto-approve", "-no-color", "-lock-timeout=0s"]
    return subprocess.Popen(command, cwd=lock_root, env={**os.environ, **iac.tofu.environment()}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def advisory_locks() -> int:
    with clients.postgres() as pg:
        return pg.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]


first = apply_in_background()
deadline = time.monotonic() + 60
while advisory_locks() == 0 and first.poll() is None and time.monotonic() < deadline:
    time.sleep(0.1)  # wait until the first apply holds its lock (visible in pg_locks)
print("advisory locks held while the first apply runs:", advisory_locks())
second = iac.tofu_command("apply", "-auto-approve", "-no-color", "-lock-timeout=0s", cwd=lock_root)
first_output = first.communicate()[0]
print("first exit", first.returncode, "| second exit", second.returncode)
print(next(line for line in (second.stdout + second.stderr).splitlines() if "lock" in line.lower()))

# %% [markdown]
# The same on the object store: `backend "s3"` with `use_lockfile = true`. During an apply, the lock object sits
# next to the state; afterwards only the state remains (versitygw supports the conditional writes the lock needs).

# %%
s3_root = iac.write_root(work / "s3state", slow_tf, providers=(), backend="s3")
s3_tofu = iac.Tofu(s3_root)
s3_tofu.init(backend_config=iac.s3_backend(key=ns.key("state/slow.tfstate")))
with concurrent.futures.ThreadPoolExecutor(1) as pool:
    running = pool.submit(s3_tofu.apply)
    during: list[str] = []
    while not running.done() and not any(key.endswith(".tflock") for key in during):
        during = clients.s3_keys(ns.key("state/"))  # poll until the lock object appears
        time.sleep(0.2)
    running.result()
print("during the apply:", during)
print("after it:        ", clients.s3_keys(ns.key("state/")))

# %% [markdown]
# ## Reading a plan before applying it
# `tofu show -json <plan>` turns a saved plan into data: one entry per resource in `resource_changes`, with its
# `address` and `change.actions`. The actions are `["no-op"]`, `["create"]`, `["update"]` (in place),
# `["delete"]`, or a **replacement**: `["delete", "create"]` — or `["create", "delete"]` when the resource sets
# `lifecycle { create_before_destroy = true }`. For a topic, a replacement drops every message in it. CI pipelines
# therefore run a *guard* between plan and apply.
#
# ### Exercise 1 — a guard against destructive plans
# Write `destructive_changes(plan)`: given a plan as a dict (what `Plan.json` holds), return the sorted list of the
# addresses of every resource the plan would destroy — deletions and replacements in either order. The check
# builds a real plan that updates, creates, deletes and replaces.


# %%
### BEGIN SOLUTION
def destructive_changes(plan: dict) -> list[str]:
    """Addresses of the resources this plan destroys (deleted or replaced), sorted."""
    return sorted(
        change["address"] for change in plan.get("resource_changes", []) if "delete" in change["change"]["actions"]
    )


### END SOLUTION

# %%
check.m07.destructive_changes_check(destructive_changes)

# %% [markdown]
# Your guard on the real topics: rename `payments` to `payment_events` (a new key means a new resource: the old
# topic and its messages go) and give `orders` more partitions (Kafka can add partitions in place):

# %%
renamed = topics_tf.replace("payments =", "payment_events =").replace("partitions = 3", "partitions = 4")
(root / "main.tf").write_text(renamed)
risky = tofu.plan()
print(risky.summary(), "→ destroyed:", destructive_changes(risky.json))
_ = (root / "main.tf").write_text(topics_tf)  # not applied: back to the reviewed configuration

# %% [markdown]
# ## Adopting what was made by hand: `import`
# Someone created the topic `m07_l01.legacy_clicks` in a console (2 partitions, 1 day of retention) before the
# team moved to infrastructure as code. Declaring it in the configuration is not enough: the plan would try to
# *create* it and Kafka would refuse ("topic already exists"). An **import block** tells OpenTofu to read the
# existing object into the state at a given address:
#
# ```hcl
# import {
#   to = <resource address in the configuration>
#   id = "<what the provider looks the object up by>"
# }
# ```
#
# ### Exercise 2 — import the hand-made topic
# The configuration below declares the topic through the module (key `legacy_clicks`). Write `import_block`, the
# HCL text of the import block that adopts it. The check plans with it: the plan must import the topic and change
# nothing else.

# %%
kafka_admin.create_topic(f"{ns.prefix}.legacy_clicks", 2, {"retention.ms": "86400000"})
print(kafka_admin.topic_settings(f"{ns.prefix}.legacy_clicks"))

### BEGIN SOLUTION
import_block = f"""
import {{
  to = module.topics.kafka_topic.this["legacy_clicks"]
  id = "{ns.prefix}.legacy_clicks"
}}
"""
### END SOLUTION

# %%
check.m07.import_block_check(import_block)

# %% [markdown]
# ## Drift: a change made behind OpenTofu's back
# An operator raised the retention of `orders` to 30 days in a console. The configuration still says 7 days.
# `tofu plan -refresh-only` reads the real objects and reports how they *drifted* from the state, without
# proposing changes; a normal plan then proposes to put the code's value back.

# %%
orders_topic = f"{ns.prefix}.orders"
kafka_admin.alter_topic_config(orders_topic, {"retention.ms": str(30 * 86_400_000)})
drift = tofu.plan(refresh_only=True)
for item in drift.json.get("resource_drift", []):
    before, after = item["change"]["before"], item["change"]["after"]
    print(item["address"], {k: (before[k], after[k]) for k in after if before.get(k) != after[k]})
fix = tofu.plan()
print("a normal plan:", fix.summary())
tofu.apply(fix)
print("retention back to", kafka_admin.topic_settings(orders_topic)["configs"]["retention.ms"])

# %% [markdown]
# Whether to revert drift or adopt it (change the code to 30 days) is a decision for people; the tool's job is to
# make it visible. Teams run a scheduled `plan -refresh-only` (or `-detailed-exitcode`: exit 2 means changes) to
# catch drift early.
#
# ## Modules, validation and `tofu test`
# The `kafka_topics` module validates its inputs (partitions 1–64, known cleanup policies, a sane retention, a
# well-formed prefix) and ships tests: `.tftest.hcl` files with `run` blocks that plan (or apply) with given
# variables and `assert` on the result; `expect_failures` proves a validation rejects bad input; `mock_provider`
# replaces the real provider so the tests need no Kafka. The project runs them in `make test`:

# %%
module_dir = iac.modules_dir() / "kafka_topics"
module_tofu = iac.Tofu(module_dir)
module_tofu.init()
passed, output = module_tofu.test()
print(passed, "\n".join(output.strip().splitlines()[-8:]))

# %% [markdown]
# ### Exercise 3 — tests that catch bugs
# Tests are only as good as the bugs they catch. Write `module_tests`, the text of a `.tftest.hcl` file for the
# `kafka_topics` module (with `mock_provider "kafka" {}`), that **passes** on the module and **fails** on each of
# three broken copies the check makes of it: one names topics `<prefix>-<name>`, one lost its partitions
# validation, one ignores `retention_ms`. Don't copy the module's own tests: write yours.

# %%
### BEGIN SOLUTION
module_tests = """
mock_provider "kafka" {}

variables {
  prefix = "team_a"
  topics = { clicks = { partitions = 2, retention_ms = 3600000 } }
}

run "names_and_retention" {
  command = plan
  assert {
    condition     = output.topic_names["clicks"] == "team_a.clicks"
    error_message = "topics are named <prefix>.<name>"
  }
  assert {
    condition     = kafka_topic.this["clicks"].config["retention.ms"] == "3600000"
    error_message = "retention_ms reaches the topic"
  }
}

run "zero_partitions_rejected" {
  command = plan
  variables {
    topics = { clicks = { partitions = 0 } }
  }
  expect_failures = [var.topics]
}
"""
### END SOLUTION

# %%
check.m07.module_tests_check(module_tests)

# %% [markdown]
# ## A Postgres application database, as code
# The platform's other stateful piece: the module `postgres_app_database` makes a database with an owner, a
# read group (SELECT only), a write group (no DDL, no TRUNCATE) and login roles in one group each — the
# least-privilege layout of most data teams. The PostgreSQL provider here is v1.7.1 from its original module path
# (built by setup; the newer cyrilgdn releases are not reachable from this machine's module proxy): the resource
# types are the same as today's. The password comes from Python, never from a `.tf` file, and is marked
# `sensitive`, so plans print `(sensitive value)` instead.

# %%
app_tf = f"""
variable "passwords" {{
  type      = map(string)
  sensitive = true
}}

module "app" {{
  source           = "{iac.module_source("postgres_app_database")}"
  name             = "{ns.prefix}_app"
  owner_password   = var.passwords["owner"]
  logins           = {{ {ns.prefix}_analyst = "read" }}
  passwords        = {{ {ns.prefix}_analyst = var.passwords["analyst"] }}
  connection_limit = 10
}}

output "app" {{
  value = {{ database = module.app.database, groups = module.app.groups, logins = module.app.logins }}
}}
"""
secrets = {"passwords": {"owner": "owner-secret-0123", "analyst": "analyst-secret-0123"}}  # a vault, in real life
app_root = iac.write_root(work / "app", app_tf, providers=("postgresql",), backend="pg")
app = iac.Tofu(app_root, variables=secrets)
app.init(backend_config=iac.pg_backend(schema=f"{ns.prefix}_appstate"))
app.destroy()
app.apply()
app.outputs()["app"]

# %% [markdown]
# The owner creates a table; the analyst can read it but not write it — the grants are real:

# %%
database = f"{ns.prefix}_app"
owner_dsn = f"host={config.postgres().host} port={config.postgres().port} dbname={database}"
with psycopg.connect(f"{owner_dsn} user={ns.prefix}_app_owner password=owner-secret-0123", autocommit=True) as own:
    own.execute("CREATE TABLE IF NOT EXISTS sales (id int PRIMARY KEY, amount numeric)")
    own.execute("INSERT INTO sales VALUES (1, 9.5) ON CONFLICT DO NOTHING")
with psycopg.connect(f"{owner_dsn} user={ns.prefix}_analyst password=analyst-secret-0123", autocommit=True) as an:
    print("analyst reads:", an.execute("SELECT * FROM sales").fetchall())
    try:
        an.execute("DELETE FROM sales")
    except psycopg.errors.InsufficientPrivilege as denied:
        print("analyst DELETE denied:", str(denied).strip())

# %% [markdown]
# ## Recap
# - A root module declares providers and resources; `plan` diffs code, state and reality; `apply` runs a saved plan.
# - State is precious: keep it in a backend with locking (`pg`, `s3` with `use_lockfile`); a second apply waits.
# - Read plans as data before applying: replacements (`delete`+`create` in either order) destroy data.
# - `import` blocks adopt objects made by hand; `plan -refresh-only` shows drift made behind the tool's back.
# - Modules give names, validation and outputs to a pattern; `tofu test` with mock providers proves them cheaply.
#
# **Going further:** the same modules run against a managed Kafka (Confluent Cloud, Amazon MSK) or Postgres
# (RDS, Cloud SQL) by changing only `providers.tf` (endpoints, TLS, SASL credentials) — the `external` profile of
# `delab.config` points the labs at such services. In a team, plans run in CI on every pull request (Atlantis,
# Spacelift, env0 or a plain pipeline) and apply only after review, with state in S3/GCS/Azure Blob and locking.
# Lab 07.04 puts dev, staging and prod side by side; 07.06 adds state encryption and policy as code.
