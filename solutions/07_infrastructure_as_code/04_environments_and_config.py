# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 07.04 · Dev, staging and prod of one platform: workspaces or one root per environment, promotion, secrets
#
# **You will:**
# - run three copies of the same data platform — Kafka topics and a Postgres database with its roles — side by
#   side on the real stack, as `dev`, `staging` and `prod`, each with its own sizes and its own state;
# - build them twice: with **workspaces** (one configuration, one state per workspace) and with **one root per
#   environment** composing the project's shared modules — and see why the second is the one to recommend;
# - promote one change from dev to staging to prod through **saved plans**: a reviewed plan per environment,
#   prod applying exactly the plan that was reviewed, a stale plan refused;
# - keep passwords out of the code, prove that none lands in the folder you would commit, and see where they
#   still live (the state).
#
# *Needs:* Kafka, Postgres and the object store (started for you). Kernel: `delab`. About 45 minutes.
# Builds on lab 07.01 (plans, state, backends, modules).

# %%
import concurrent.futures
import hashlib
import json
import re
import subprocess

from delab import check, clients, config, iac, stack
from delab.iac import environments, kafka_admin

stack.require("kafka", "postgres", "s3")
PLATFORM = stack.namespace("m07_l04").prefix  # topics m07_l04_<env>.*, database m07_l04_<env>_app, its roles
ENVS = environments.ENVIRONMENTS  # ("dev", "staging", "prod")
work = config.lab_dir("m07_l04")
DAY_MS = 86_400_000

# %% [markdown]
# ## What differs between environments — and what must not
# An environment is a full copy of the platform: same topics, same database, same roles, so that what passed in
# staging behaves the same in prod. What differs is **size** (and the credentials): dev is small and forgets
# quickly, staging has prod's shape at a lower scale, prod is sized for real traffic. The project's module
# `environment` (infra/terraform/modules/environment) composes the two modules of lab 07.01 — `kafka_topics` and
# `postgres_app_database` — and takes exactly that split: `streams` (the same everywhere) and `sizing` (per
# environment). Everything it creates is named `<platform>_<environment>`.
#
# **Replicas on a one-broker stack.** A production cluster has three or more brokers, and prod topics keep
# `replication_factor = 3` (with `min.insync.replicas = 2`), so a broker can fail without losing data. The stack
# here has **one** broker: Kafka cannot place a second replica, so every environment gets 1. The module knows the
# cluster's size (`broker_count`) and refuses more replicas than brokers at *plan* time, before Kafka would.

# %%
STREAMS = {"orders": {}, "customers": {"cleanup_policy": "compact"}}  # the platform: the same in every env
SIZING = {
    "dev": {"partitions": 1, "retention_ms": 1 * DAY_MS, "replication_factor": 1, "connection_limit": 5},
    "staging": {"partitions": 3, "retention_ms": 3 * DAY_MS, "replication_factor": 1, "connection_limit": 20},
}
module_variables = (iac.modules_dir() / "environment" / "variables.tf").read_text()
print('variable "sizing"' + module_variables.split('variable "sizing"')[1].split("\nvariable")[0])

# %% [markdown]
# ### Exercise 1 — production's sizes
# Write `prod_tfvars`, the text of prod's var file (it is committed with prod's configuration). It sets one
# variable, `sizing`, an object like staging's above, with: at least **twice staging's partitions**, at least **7
# days** of retention (in milliseconds), **as many replicas as this cluster has brokers**, and **more database
# connections than staging** (at most 200). The check plans the `environment` module for prod with your file.

# %%
### BEGIN SOLUTION
prod_tfvars = """
sizing = {
  partitions         = 6
  retention_ms       = 604800000 # 7 days
  replication_factor = 1         # the stack has one broker; 3 on a production cluster
  connection_limit   = 50
}
"""
### END SOLUTION

# %%
check.m07.prod_sizing_check(prod_tfvars)

# %% [markdown]
# ## Secrets stay out of the code
# Each environment's database has an owner and an analyst login, with passwords that differ per environment.
# They must never be written into a `.tf` or a committed `.tfvars` file: git history keeps them forever, and
# everyone with read access to the repository gets prod's database. A configuration *declares* the variable; the
# value arrives at run time, from the environment (`TF_VAR_owner_password`, set by a CI job from its secret store)
# or from a var file that git ignores. Here a small local file outside the repository stands in for the secret
# store (`environments.vault`: random values made once, the same on every re-run).
#
# ### Exercise 2 — a variable for a secret
# Write `secret_variable`, the HCL block that declares `owner_password`: a string that OpenTofu must never print
# in a plan or an output, and that has **no** value in the code, so a run without the secret stops instead of
# going on with a made-up one. The check plans a root that uses it, with and without `TF_VAR_owner_password`.

# %%
### BEGIN SOLUTION
secret_variable = """
variable "owner_password" {
  description = "Password of the database owner: from TF_VAR_owner_password or a git-ignored var file."
  type        = string
  sensitive   = true
}
"""
### END SOLUTION

# %%
check.m07.secret_variable_check(secret_variable)

# %%
vault = environments.vault(work / "vault.json", [f"{env}_{who}" for env in ENVS for who in ("owner", "analyst")])
SIZING_TF = """
variable "sizing" {
  type = object({ partitions = number, retention_ms = number, replication_factor = number, connection_limit = number })
}
"""
VARIABLES_TF = (
    SIZING_TF
    + secret_variable
    + secret_variable.replace("owner_password", "analyst_password").replace("database owner", "analyst login")
)


def secrets_for(env: str) -> dict[str, str]:
    """The variables holding an environment's passwords, from the stand-in secret store."""
    return {"owner_password": vault[f"{env}_owner"], "analyst_password": vault[f"{env}_analyst"]}


print("secrets in the vault:", sorted(vault), "(values never printed)")

# %% [markdown]
# ## Approach A — one configuration, one workspace per environment
# A **workspace** is a named state of the same configuration: `tofu workspace new staging` starts an empty state
# beside the others, and `terraform.workspace` tells the code which one it runs in. With `backend "pg"`, each
# workspace is one row of table `states`. The sizes come from a var file per workspace, passed by hand
# (`-var-file=staging.tfvars`); the secrets from `TF_VAR_…` variables. The three applies run at once — each
# workspace has its own state and its own lock — selected by `TF_WORKSPACE`. (`-lock-timeout`: to lock one
# workspace, the pg backend also holds a schema-wide "creation" lock for an instant, so commands started
# together can collide; with a timeout they wait and retry instead of failing.)

# %%
WS_MAIN = f"""
module "platform" {{
  source           = "{iac.module_source("environment", relative_to=work / "workspaces")}"
  platform         = "{PLATFORM}ws"
  environment      = terraform.workspace # the workspace *is* the environment
  streams          = {environments.hcl(STREAMS)}
  sizing           = var.sizing
  owner_password   = var.owner_password
  analyst_password = var.analyst_password
}}
"""
ws_root = iac.write_root(
    work / "workspaces",
    WS_MAIN,
    providers=("kafka", "postgresql"),
    backend="pg",
    files={"variables.tf": VARIABLES_TF, "dev.tfvars": environments.tfvars({"sizing": SIZING["dev"]}),
           "staging.tfvars": environments.tfvars({"sizing": SIZING["staging"]}), "prod.tfvars": prod_tfvars},
)  # fmt: skip
iac.Tofu(ws_root).init(backend_config=iac.pg_backend(schema=f"{PLATFORM}_ws_state"))


def in_workspace(env: str, *args: str, var_file: str | None = None) -> subprocess.CompletedProcess:
    """A tofu command in one workspace, with that environment's secrets as TF_VAR_ variables."""
    secrets = {f"TF_VAR_{name}": value for name, value in secrets_for(env).items()}
    options = [f"-var-file={var_file or env + '.tfvars'}"] if args[0] in ("plan", "apply") else []
    options += ["-lock-timeout=60s"] if args[0] in ("plan", "apply", "destroy") else []
    return iac.tofu_command(*args, *options, cwd=ws_root, env={"TF_WORKSPACE": env, **secrets})


listed = iac.tofu_command("workspace", "list", cwd=ws_root).stdout
for env in ENVS:
    if env not in listed.split():
        iac.tofu_command("workspace", "new", env, cwd=ws_root)
with concurrent.futures.ThreadPoolExecutor(3) as pool:
    applied = dict(
        zip(ENVS, pool.map(lambda env: in_workspace(env, "apply", "-auto-approve", "-no-color"), ENVS), strict=True)
    )
assert all(result.returncode == 0 for result in applied.values()), {e: r.stderr[-400:] for e, r in applied.items()}
print({env: result.stdout.strip().splitlines()[-1] for env, result in applied.items()})
with clients.postgres() as pg:
    print(pg.execute(f"SELECT name, length(data) FROM {PLATFORM}_ws_state.states ORDER BY name").fetchall())

# %% [markdown]
# Three environments from one folder. Now the weak spot: **nothing ties a workspace to its var file**. An
# operator in the `prod` workspace who passes `dev.tfvars` (a shell history, a copied command) gets this plan:

# %%
wrong = in_workspace("prod", "plan", "-no-color", "-input=false", "-out=wrong.tfplan", var_file="dev.tfvars")
assert wrong.returncode == 0, wrong.stderr[-400:]
shown = json.loads(iac.tofu_command("show", "-json", "wrong.tfplan", cwd=ws_root, env={"TF_WORKSPACE": "prod"}).stdout)
replaced = [c["address"] for c in shown["resource_changes"] if "delete" in c["change"]["actions"]]
print("prod plan with dev's sizes destroys:", replaced)
(ws_root / "wrong.tfplan").unlink()

# %% [markdown]
# Fewer partitions cannot be done in place in Kafka: the topics would be **replaced** — prod's messages gone —
# and the plan also lowers prod's connection limit to 5. The guard of lab 07.01 would catch it; the layout should
# make it impossible in the first place. Workspaces have more such limits: one backend and one set of provider
# credentials for all environments (whoever can plan dev can read prod's state, passwords included), and every
# environment always runs the *same* version of the code, so a change cannot wait in dev while prod stays put.
# The workspace copies have served their purpose; remove them (a workspace must be empty before it is deleted):

# %%
with concurrent.futures.ThreadPoolExecutor(3) as pool:
    destroyed = list(pool.map(lambda env: in_workspace(env, "destroy", "-auto-approve", "-no-color",
                                                       f"-var-file={env}.tfvars"), ENVS))  # fmt: skip
assert all(result.returncode == 0 for result in destroyed), [result.stderr[-400:] for result in destroyed]
iac.tofu_command("workspace", "select", "default", cwd=ws_root)
for env in ENVS:
    iac.tofu_command("workspace", "delete", env, cwd=ws_root)
print("workspaces left:", iac.tofu_command("workspace", "list", cwd=ws_root).stdout.split())

# %% [markdown]
# ## Approach B — one root per environment, composing the shared modules
# Each environment gets its own folder (`envs/dev`, `envs/staging`, `envs/prod`): a short `main.tf` that calls
# the shared `environment` module with its name spelled out, a committed `terraform.tfvars` with its sizes, and
# its own backend — here its own state key on the object store; in a company, often a bucket and cloud account
# per environment with credentials only the prod pipeline holds. The module is the shared code; the roots are
# thin and explicit. `release` below stands for the version of the platform's code a root runs; it changes
# in the promotion section.

# %%
ENV_MAIN = """
# envs/{env}: the {env} environment of the platform (its own state, sizes and secrets)
module "platform" {{
  source           = "{source}"
  platform         = "{platform}"
  environment      = "{env}"
  broker_count     = 1
  streams          = {streams}
  sizing           = var.sizing
  owner_password   = var.owner_password
  analyst_password = var.analyst_password
}}

output "platform" {{
  value = {{ topics = module.platform.topics, database = module.platform.database,
            total_partitions = module.platform.total_partitions }}
}}
"""
GITIGNORE = ".terraform/\ntfplan\n*.tfplan\n*.tfstate\n*.tfstate.*\nbackend.tfbackend\nsecrets.auto.tfvars\n"
V1 = STREAMS
sizes_tfvars = {**{env: environments.tfvars({"sizing": SIZING[env]}) for env in SIZING}, "prod": prod_tfvars}


def release(env: str, streams: dict) -> None:
    """Write an environment's root at a given version of the platform (its streams)."""
    main = ENV_MAIN.format(env=env, source=iac.module_source("environment", work / "envs" / env), platform=PLATFORM,
                           streams=environments.hcl(streams))  # fmt: skip
    files = {"variables.tf": VARIABLES_TF, "terraform.tfvars": sizes_tfvars[env]}
    iac.write_root(work / "envs" / env, main, providers=("kafka", "postgresql"), backend="s3", files=files)


(work / "envs").mkdir(exist_ok=True)
(work / "envs" / ".gitignore").write_text(GITIGNORE)
roots = {}
for env in ENVS:
    release(env, V1)
    # dev's secrets in a git-ignored var file (a laptop); staging's and prod's given by the pipeline at run time
    variables = {} if env == "dev" else secrets_for(env)
    roots[env] = iac.Tofu(work / "envs" / env, variables=variables)
(work / "envs" / "dev" / "secrets.auto.tfvars").write_text(environments.tfvars(secrets_for("dev")))
with concurrent.futures.ThreadPoolExecutor(3) as pool:
    list(pool.map(lambda env: roots[env].init(backend_config=iac.s3_backend(key=f"{PLATFORM}/envs/{env}.tfstate")),
                  ENVS))  # fmt: skip
    list(pool.map(lambda env: roots[env].apply(), ENVS))  # converge to V1 (a no-op when nothing changed)
print((work / "envs" / "prod" / "main.tf").read_text())

# %% [markdown]
# Side by side on the real stack — what the broker and Postgres report, not what the code says:


# %%
def side_by_side() -> dict[str, dict]:
    """Per environment: partitions and retention of its orders topic (from Kafka), its database's limit."""
    rows = {}
    with clients.postgres() as pg:
        for env in ENVS:
            topic = kafka_admin.topic_settings(f"{PLATFORM}_{env}.orders")
            limit = pg.execute("SELECT datconnlimit FROM pg_database WHERE datname = %s", (f"{PLATFORM}_{env}_app",))
            rows[env] = {"partitions": topic["partitions"], "retention_days": int(topic["configs"]["retention.ms"])
                         / DAY_MS, "connection_limit": limit.fetchone()[0]}  # fmt: skip
    return rows


side_by_side()

# %% [markdown]
# | | workspaces (A) | one root per environment (B) |
# |---|---|---|
# | which environment? | the selected workspace (in `.terraform/`) | the folder: seen in commands, reviews, logs |
# | sizes | a var file you must remember to pass | `terraform.tfvars` of the root, loaded automatically |
# | state and credentials | one backend for all | one backend (bucket, account, credentials) per environment |
# | code version | all environments run the same code at once | each root pins its module version: dev moves first |
# | repetition | none | a thin `main.tf` per environment (the module holds the logic) |
#
# **Recommended: B, one root per environment composing shared modules.** The environment is explicit in the path,
# prod's state and credentials can be isolated from dev's, and a change can be rolled out one environment at a
# time — which is what promotion needs. The repetition is a few lines per environment; tools such as Terragrunt
# remove even that. Workspaces remain a good fit for short-lived *copies of the same environment* (a sandbox per
# developer or per pull request), where identical code and one backend are exactly what you want.
#
# ## Where the secrets are — and are not
# Make the `envs` folder a git repository (as it would be in a team) and ask git what a commit would contain:
# the `.gitignore` keeps out the working folders, saved plans, the backend settings and the secrets file.

# %%
envs_dir = work / "envs"
subprocess.run(["git", "init", "-q", str(envs_dir)], check=True)
tracked = subprocess.run(["git", "-C", str(envs_dir), "ls-files", "--others", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
print("a commit would contain:", tracked)
leaks = {name: environments.files_containing(envs_dir, value) for name, value in vault.items()}
committed_leaks = sorted({path for paths in leaks.values() for path in paths if path in tracked})
print("files holding a password:", sorted({path for paths in leaks.values() for path in paths}))
print("of which a commit would contain:", committed_leaks)
assert not committed_leaks

# %% [markdown]
# No password in what would be committed. Two places still hold them, both git-ignored: dev's `secrets.auto.tfvars`
# (by design) and any **saved plan** (`tfplan`: a zip holding every variable's value, sensitive ones included —
# treat plan files as secrets, keep them in the pipeline's protected storage). And the **state**: OpenTofu must
# store what it created, so a role's password sits in clear in prod's state on the object store:

# %%
state = clients.s3().get_object(Bucket=config.s3().bucket, Key=f"{PLATFORM}/envs/prod.tfstate")["Body"].read()
print("prod's owner password in prod's state:", vault["prod_owner"].encode() in state)

# %% [markdown]
# `sensitive` hides values from plans and outputs, not from the state. Protect the state like the secret it is:
# a backend with tight access and encryption at rest, and OpenTofu's **client-side state encryption** (lab 07.06
# turns it on: the state on the object store becomes unreadable without the key).
#
# ## Promotion: the same change, dev → staging → prod, through saved plans
# Release 2 of the platform adds a `refunds` stream. The change is made once and moves through the environments
# in order; each step produces a plan file, whose JSON a reviewer (or a policy check) reads, and only that file
# is applied. The *shape* of the change must be the same in every environment — same addresses, same actions —
# while the sizes differ:

# %%
V2 = {**V1, "refunds": {}}


def reviewed_changes(plan: iac.Plan) -> dict[str, list[str]]:
    """What a reviewer looks at: the actions on every resource the plan touches."""
    return {address: actions for address, actions in plan.actions.items() if actions != ["no-op"]}


promoted = {}
for env in ("dev", "staging"):
    release(env, V2)
    plan = roots[env].plan()
    promoted[env] = reviewed_changes(plan)
    print(env, plan.summary(), [c["change"]["after"]["partitions"] for c in plan.json["resource_changes"]
                                if c["type"] == "kafka_topic" and c["change"]["actions"] == ["create"]])  # fmt: skip
    roots[env].apply(plan)
print("same change in dev and staging:", promoted["dev"] == promoted["staging"])
promoted["dev"]

# %% [markdown]
# The `create` is the `refunds` topic, with each environment's partitions. The two `update`s are a flaw of the
# module's old PostgreSQL provider, visible in every plan: it issues `GRANT CONNECT` on the database as the stack's
# `delab` role, which does not own the database, and PostgreSQL then only *warns* ("no privileges were granted");
# the state never matches, so each plan proposes the grant again. (The logins still connect through PUBLIC's
# default CONNECT; today's provider grants itself the owner's role first.) Reviewers learn to recognise such
# known noise — and a team fixes it rather than letting it hide a real change.

# %% [markdown]
# Prod: the plan is saved and reviewed; its digest (SHA-256 of the file) is recorded with the approval.

# %%
release("prod", V2)
prod_plan = roots["prod"].plan()
reviewed_sha256 = hashlib.sha256(prod_plan.path.read_bytes()).hexdigest()
print("prod:", reviewed_changes(prod_plan) == promoted["dev"], prod_plan.summary(), reviewed_sha256[:16])

# %% [markdown]
# Before the approval comes, on-call raises prod's retention to 14 days during an incident — a consumer is down
# and must not lose its backlog (their hotfix is applied from their own checkout). The reviewed plan was computed
# against a state that no longer exists: OpenTofu refuses to apply it.

# %%
hotfix_tfvars = re.sub(r"retention_ms\s*=\s*\d+", f"retention_ms = {14 * DAY_MS}", prod_tfvars)
release("prod", V1)
(work / "envs" / "prod" / "terraform.tfvars").write_text(hotfix_tfvars)
roots["prod"].apply()  # the hotfix: release 1 with 14 days of retention
release("prod", V2)
try:
    roots["prod"].apply(prod_plan)
except iac.TofuError as refused:
    print(refused)

# %% [markdown]
# ### Exercise 3 — apply exactly the reviewed plan
# Write `apply_reviewed(tofu, plan_file, reviewed_sha256)`: apply the plan file with `tofu.apply(plan_file)` only
# if its SHA-256 is the reviewed one, and raise otherwise; if OpenTofu refuses the plan (stale), let the error
# propagate — a new plan needs a new review. The check runs it where a later commit landed after the review,
# where the plan file was overwritten, and where the plan went stale.


# %%
### BEGIN SOLUTION
def apply_reviewed(tofu, plan_file, reviewed_sha256):
    """Apply plan_file if and only if it is the plan that was reviewed (same SHA-256)."""
    digest = hashlib.sha256(plan_file.read_bytes()).hexdigest()
    if digest != reviewed_sha256:
        raise ValueError(f"{plan_file} is not the reviewed plan (sha256 {digest[:12]}…)")
    tofu.apply(plan_file)


### END SOLUTION

# %%
check.m07.apply_reviewed_check(apply_reviewed)

# %% [markdown]
# The hotfix is merged into prod's code (its var file), prod is planned again, reviewed again, and applied with
# your function — release 2 reaches prod, the hotfix stays:

# %%
sizes_tfvars["prod"] = hotfix_tfvars
release("prod", V2)
prod_plan = roots["prod"].plan()
print("prod:", reviewed_changes(prod_plan) == promoted["dev"], prod_plan.summary())
apply_reviewed(roots["prod"], prod_plan.path, hashlib.sha256(prod_plan.path.read_bytes()).hexdigest())
sizes_tfvars["prod"] = prod_tfvars  # the next run of this notebook starts from the learner's sizes again
print("files holding prod's owner password now:", environments.files_containing(envs_dir, vault["prod_owner"]))
side_by_side() | {"refunds": {env: kafka_admin.topic_names(f"{PLATFORM}_{env}.refunds") != [] for env in ENVS}}

# %% [markdown]
# ## Recap
# - Environments share the platform's code and differ in sizes and secrets; a module takes that split as
#   variables (`streams` the same everywhere, `sizing` per environment) and validates it (replicas ≤ brokers).
# - Workspaces give one state per environment from one folder, but hide which environment you are in, share one
#   backend and credentials, and move every environment at once. One thin root per environment composing shared
#   modules is the layout to recommend; workspaces suit short-lived copies of one environment.
# - Promote a change through saved plans: the same reviewed shape per environment, prod applying exactly the
#   reviewed file (its digest), a stale plan refused and re-planned, never "fixed" by a silent re-plan.
# - Secrets come from the environment or a git-ignored file, are `sensitive`, have no default — and still live
#   in the state and in saved plans: protect both (lab 07.06 encrypts the state).
#
# **Going further:** pin each root to a *tagged* module version (`source = "git::…//modules/environment?ref=v2"`)
# so promotion becomes a one-line version bump per environment; run the plans in CI (Atlantis, Spacelift, a
# plain pipeline) with the plan file and its digest as build artefacts and an approval step before prod;
# Terragrunt generates the per-environment roots and backends from one definition.
