# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 07.07 · Data platform components as code: topics, a database, a CDC connector, registry subjects, a lakehouse
#
# **You will:**
# - compose the project's modules into one platform — Kafka topics, a Postgres application database with its
#   roles, a Debezium connector with its own slot and publication, schema-registry subjects with a compatibility
#   mode, and a lakehouse namespace with its bucket — and apply it with OpenTofu, state in the stack's Postgres;
# - see which components have a real provider here and which go through a clearly labelled `terraform_data`
#   step, and what a real provider would do differently;
# - prove a CDC pipeline end to end on what OpenTofu created: rows written in the app database reach an Iceberg
#   table in the new namespace — an update and a delete included — and are read back the same;
# - `destroy` the platform and check that nothing is left: connector, slot, topics, subjects, bucket, namespace,
#   database.
#
# *Needs:* Kafka, Kafka Connect, Postgres, the object store and the schema registry (started for you; the
# registry takes ~20 s the first time). Kernel: `delab`. About 40 minutes.

# %%
import time

import psycopg
import requests

from delab import check, clients, config, iac, lakehouse, stack
from delab.iac import kafka_admin, platform
from delab.loading import cdc

stack.require("kafka", "connect", "postgres", "s3", "registry")
ns = stack.namespace("m07_l07")  # everything below is named m07_l07…; the state lives in schema m07_l07_state
work = config.lab_dir("m07_l07")

# %% [markdown]
# ## Which component, which route
# A data platform is more than topics. Each component needs something that speaks its API during `plan` and
# `apply` — a **provider**. Setup builds providers from their Go modules; this machine's module proxy serves one
# exact version at a time, and these were tried once each (docs/iac.md):
#
# | component | provider here | route in this lab |
# |---|---|---|
# | Kafka topics (+ ACLs) | Mongey/kafka v0.13.1 ✔ | `kafka_topics`: real resources |
# | Postgres database, roles, grants | terraform-providers/postgresql v1.7.1 ✔ | `postgres_app_database`: real |
# | Debezium connector (Connect REST) | Mongey/kafka-connect v0.4.3 ✘ not served | `cdc_connector`: labelled step |
# | registry subjects (REST) | none; hashicorp/http v3.5.0 ✘ not served | `schema_subjects`: labelled step |
# | bucket + Iceberg namespace | AWS provider too big a build; no catalog one | `lakehouse_namespace`: labelled step |
#
# The **labelled route**: a `terraform_data` resource holds the object's description in `input`; a `local-exec`
# provisioner runs `delab platform create` when the resource is created and `delab platform delete` (from
# `self.input`) when it is destroyed. The steps are idempotent and fail with one line. What you lose compared to
# a real provider, and must know:
# - **no refresh**: OpenTofu never reads the connector or the subject back, so a change made by hand (drift) is
#   invisible to `plan`. A provider's `Read` would show it;
# - **no in-place update**: a provisioner runs only at create, so the modules put what matters into
#   `triggers_replace` — changing the connector's table list *replaces* the connector (its slot is dropped and a
#   new one snapshots the tables again), where a provider would PUT the new config in place.
#
# Here is the connector module's resource (infra/terraform/modules/cdc_connector):

# %%
print("resource " + (iac.modules_dir() / "cdc_connector" / "main.tf").read_text().split("resource ", 1)[1])

# %% [markdown]
# ## The platform, composed
# One root calls five modules. The stack's endpoints come in as `var.stack` (filled from `delab.config`: no host,
# port or password in a `.tf` file) and the owner's password as a sensitive variable. `cdc_enabled` starts
# `false`: the connector needs the application's table, which the application creates *after* its database
# exists — a platform is applied in stages, like this, more often than not.

# %%
platform_tf = f"""
variable "stack" {{
  description = "The stack's endpoints, from delab.config"
  type = object({{
    connect_url  = string
    registry_url = string
    pg_host      = string
    pg_port      = number
    cdc_user     = string
  }})
}}

variable "owner_password" {{
  type      = string
  sensitive = true
}}

variable "cdc_enabled" {{
  type    = bool
  default = false
}}

locals {{
  tables       = ["public.orders"]
  topic_prefix = "{ns.prefix}_cdc"
  order_schema = {{
    type = "record", name = "Order", namespace = "{ns.prefix}"
    fields = [
      {{ name = "id", type = "int" }},
      {{ name = "customer", type = "string" }},
      {{ name = "amount_cents", type = "int" }},
      {{ name = "status", type = "string" }},
    ]
  }}
}}

# the change topics, made before Debezium writes to them: partitions and retention are decided here, not by a
# broker's auto-create (ACLs: readers/writers, applied on a broker with an authorizer — lab 07.06)
module "topics" {{
  source = "{iac.module_source("kafka_topics")}"
  prefix = local.topic_prefix
  topics = {{ for t in local.tables : t => {{ partitions = 1, retention_ms = 86400000 }} }}
}}

module "app" {{
  source           = "{iac.module_source("postgres_app_database")}"
  name             = "{ns.prefix}_shop"
  owner_password   = var.owner_password
  connection_limit = 20
}}

module "subjects" {{
  source       = "{iac.module_source("schema_subjects")}"
  registry_url = var.stack.registry_url
  subjects = {{
    "${{local.topic_prefix}}.public.orders-value" = {{
      schema        = jsonencode(local.order_schema)
      compatibility = "BACKWARD"
    }}
  }}
}}

module "lake" {{
  source        = "{iac.module_source("lakehouse_namespace")}"
  bucket        = "{ns.prefix.replace("_", "-")}-lake"
  namespace     = "{ns.prefix}_shop"
  force_destroy = true # a lab: destroy may drop the tables (the module's default refuses)
}}

module "cdc" {{
  source = "{iac.module_source("cdc_connector")}"
  count  = var.cdc_enabled ? 1 : 0

  name        = "{ns.prefix}_orders"
  connect_url = var.stack.connect_url
  database = {{
    host   = var.stack.pg_host
    port   = var.stack.pg_port
    dbname = module.app.database
    user   = var.stack.cdc_user
  }}
  tables                 = local.tables
  topic_prefix           = local.topic_prefix
  publication_name       = "{ns.prefix}_orders_pub"
  publication_autocreate = "disabled" # the tables' owner publishes them (below); the CDC login owns nothing
  extra_config = {{
    "key.converter"                  = "org.apache.kafka.connect.json.JsonConverter"
    "key.converter.schemas.enable"   = "false"
    "value.converter"                = "org.apache.kafka.connect.json.JsonConverter"
    "value.converter.schemas.enable" = "false"
  }}
  depends_on = [module.topics]
}}

output "platform" {{
  value = {{
    topics   = module.topics.topic_names
    database = module.app.database
    owner    = module.app.owner
    subjects = module.subjects.subjects
    lake     = {{ bucket = module.lake.bucket, namespace = module.lake.namespace, location = module.lake.location }}
    cdc      = var.cdc_enabled ? {{ connector = module.cdc[0].connector_name, slot = module.cdc[0].slot_name,
                                   topics = module.cdc[0].topics }} : null
  }}
}}
"""
stack_endpoints = platform.stack_endpoints()
secrets = {"owner_password": "owner-secret-0707"}  # a secret store's value, in real life
root = iac.write_root(work / "platform", platform_tf, providers=("kafka", "postgresql"), backend="pg")
tofu = iac.Tofu(root, variables={"stack": stack_endpoints, **secrets})
tofu.init(backend_config=iac.pg_backend(schema=f"{ns.prefix}_state"))
owner_dsn = (f"host={config.postgres().host} port={config.postgres().port} dbname={ns.prefix}_shop "
             f"user={ns.prefix}_shop_owner password={secrets['owner_password']}")  # fmt: skip

tofu.destroy(variables={"cdc_enabled": True})  # a re-run starts from nothing (a no-op the first time)
stack_endpoints

# %% [markdown]
# ### Exercise 1 — a second connector, done right
# The shop wants its `public.customers` table captured too, by a connector of its own (`m07_l07_customers`), so
# that a problem with one never stops the other. Write `customers_connector`, the HCL of a `module
# "customers_cdc"` block calling the `cdc_connector` module (`source` as in the root above) in the same root: the
# same Connect, the same database and login as the orders connector, the same topic prefix (so its changes go to
# the topic the `topics` module makes as `m07_l07_cdc.public.customers`). As for orders, the application's owner
# will create and publish the table; the CDC login owns nothing. The check plans your block next to the orders
# connector — what two connectors must never share is for you to work out.

# %%
### BEGIN SOLUTION
customers_connector = f"""
module "customers_cdc" {{
  source = "{iac.module_source("cdc_connector")}"

  name        = "{ns.prefix}_customers"
  connect_url = var.stack.connect_url
  database = {{
    host   = var.stack.pg_host
    port   = var.stack.pg_port
    dbname = module.app.database
    user   = var.stack.cdc_user
  }}
  tables                 = ["public.customers"]
  topic_prefix           = local.topic_prefix
  publication_name       = "{ns.prefix}_customers_pub"
  publication_autocreate = "disabled"
}}
"""
### END SOLUTION

# %%
check.m07.customers_connector_check(customers_connector)

# %% [markdown]
# ### Exercise 2 — the contract of the customers topic
# Consumers of `m07_l07_cdc.public.customers` (the lakehouse sink among them) read the rows with the registry's
# schema. The table is `customers (id int PRIMARY KEY, name text NOT NULL, country text NOT NULL, email text)`.
# Write `customers_subjects`, the HCL of a `module "customer_subjects"` block calling `schema_subjects` that
# registers an Avro record schema for the topic's *values* under the subject name the TopicNameStrategy gives
# (`<topic>-value`), with a compatibility mode that lets the sink read old rows with the newest schema (and
# refuses a new field without a default). Columns that may be NULL are `["null", …]` unions with `default: null`.

# %%
### BEGIN SOLUTION
customers_subjects = f"""
module "customer_subjects" {{
  source       = "{iac.module_source("schema_subjects")}"
  registry_url = var.stack.registry_url
  subjects = {{
    "${{local.topic_prefix}}.public.customers-value" = {{
      compatibility = "BACKWARD"
      schema = jsonencode({{
        type = "record", name = "Customer", namespace = "m07_l07"
        fields = [
          {{ name = "id", type = "int" }},
          {{ name = "name", type = "string" }},
          {{ name = "country", type = "string" }},
          {{ name = "email", type = ["null", "string"], default = null }},
        ]
      }})
    }}
  }}
}}
"""
### END SOLUTION

# %%
check.m07.customers_subjects_check(customers_subjects)

# %% [markdown]
# ## Stage 1: the platform without the pipeline
# The plan lists real resources (topics, roles, the database, its grants) and the labelled steps
# (`terraform_data`) side by side:

# %%
plan = tofu.plan()
print(plan.summary())
sorted(plan.actions)

# %%
started = time.monotonic()
tofu.apply(plan)
print(f"applied in {time.monotonic() - started:.1f} s")
outputs = tofu.outputs()["platform"]
outputs

# %% [markdown]
# Each component exists where it should — asked of each service, not of OpenTofu:

# %%
topic = outputs["topics"]["public.orders"]
subject = f"{topic}-value"
registry = stack_endpoints["registry_url"]
print("topic:    ", kafka_admin.topic_settings(topic))
print("subject:  ", requests.get(f"{registry}/config/{subject}", timeout=10).json(),
      platform.latest_schema(registry, subject)["name"])  # fmt: skip
print(
    "bucket:   ", [b["Name"] for b in clients.s3().list_buckets()["Buckets"] if b["Name"] == outputs["lake"]["bucket"]]
)
print("namespace:", lakehouse.catalog().load_namespace_properties(outputs["lake"]["namespace"]))
with clients.postgres() as pg:
    print("database: ", pg.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                                   [outputs["database"]]).fetchone())  # fmt: skip

# %% [markdown]
# What the labelled route cannot see: someone relaxes the subject's compatibility to `NONE` by hand. A provider
# would read the subject back during `plan` and propose to set `BACKWARD` again; here the plan is empty — the
# drift is invisible until a breaking schema gets through. (We put the mode back by hand.)

# %%
requests.put(f"{registry}/config/{subject}", json={"compatibility": "NONE"}, timeout=10)
print("changes proposed after the drift:", tofu.plan().changes)
requests.put(f"{registry}/config/{subject}", json={"compatibility": "BACKWARD"}, timeout=10)
print("mode back to", requests.get(f"{registry}/config/{subject}", timeout=10).json()["compatibilityLevel"])

# %% [markdown]
# ## The application's migration
# The application (its owner role) creates its table, **publishes** it for CDC and lets the CDC login read it for
# the initial snapshot (and connect, should PUBLIC not be allowed to). The CDC login (the stack's role, which has
# `REPLICATION`) owns nothing in this database: that is why the connector uses `publication_autocreate =
# "disabled"` — with `filtered`, Debezium would create the publication itself, which only a table owner may do.
# Note also what is *not* here: the stack's `dbz_publication FOR ALL TABLES` lives in database `shop` only (a
# publication belongs to one database), and the `cdc_connector` module refuses that name anyway.

# %%
with psycopg.connect(owner_dsn, autocommit=True) as owner:
    owner.execute("""CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL,
                                         amount_cents int NOT NULL, status text NOT NULL)""")  # fmt: skip
    owner.execute(
        "INSERT INTO orders VALUES (1, 'ada', 1250, 'new'), (2, 'grace', 990, 'new'), (3, 'linus', 4200, 'paid')"
    )
    owner.execute(f"CREATE PUBLICATION {ns.prefix}_orders_pub FOR TABLE orders")
    owner.execute(f'GRANT SELECT ON orders TO "{stack_endpoints["cdc_user"]}"')
    owner.execute(f'GRANT CONNECT ON DATABASE {outputs["database"]} TO "{stack_endpoints["cdc_user"]}"')
print("table, 3 rows and publication made by", outputs["owner"])

# %% [markdown]
# ## Stage 2: the pipeline
# `cdc_enabled = true`: the plan adds exactly one resource, the connector. Applying it runs `delab platform
# create`, which PUTs the config (with the password from the environment, never from the plan) and waits until
# the task runs.

# %%
stage2 = tofu.plan(variables={"cdc_enabled": True})
print({address: actions for address, actions in stage2.actions.items() if actions != ["no-op"]})
tofu.apply(stage2)
outputs = tofu.outputs()["platform"]
print(outputs["cdc"], cdc.connector_status(outputs["cdc"]["connector"])["connector"]["state"])
snapshot = cdc.wait_for_snapshot(topic, rows=3)  # the 3 rows the table held, read once (op = r)
print(len(snapshot), "snapshot records on", topic)

# %% [markdown]
# Now the application works as usual: two new orders, one paid, one cancelled (deleted).

# %%
with psycopg.connect(owner_dsn, autocommit=True) as owner:
    owner.execute("INSERT INTO orders VALUES (4, 'ada', 300, 'new'), (5, 'barbara', 7700, 'new')")
    owner.execute("UPDATE orders SET status = 'paid' WHERE id = 2")
    owner.execute("DELETE FROM orders WHERE id = 1")
    source_rows = owner.execute("SELECT * FROM orders ORDER BY id").fetchall()


def all_changes_arrived(messages: list) -> bool:
    ops = [m.op for m in messages if m.op]
    return ops.count("r") >= 3 and ops.count("c") >= 2 and "u" in ops and "d" in ops


changes = cdc.wait_for(topic, all_changes_arrived, timeout=90, what="the snapshot and the four changes")
[(m.offset, m.key, m.op, (m.value or {}).get("after")) for m in changes]

# %% [markdown]
# Debezium wrote 3 snapshot reads (`r`), 2 creates, 1 update, 1 delete — and a **tombstone** (a record whose
# value is null) after the delete, so a compacted topic can forget key 1.
#
# ## Landing the changes in the lakehouse
# The Iceberg table is created in the namespace OpenTofu made, **from the registry subject's schema** (the
# contract), so it lands under the namespace's location in the new bucket.
#
# ### Exercise 3 — apply change events to an Iceberg table
# Write `land_changes(table, messages)`: given a pyiceberg table and the topic's records in offset order
# (`delab.loading.cdc.Message`: `.key`, `.value`, `.op`), make the table hold exactly the rows the source holds
# now. Debezium's value has `op` (`r`, `c`, `u`, `d`), `before` and `after`; the key is `{"id": …}`. Useful:
# `table.upsert(arrow_table, join_cols=["id"])`, `table.delete(pyiceberg.expressions.In("id", ids))`,
# `pyarrow.Table.from_pylist(rows, schema=table.schema().as_arrow())`. The check runs your function on a fresh
# table with a sequence of its own (a key deleted and inserted again, a key updated twice, tombstones).


# %%
### BEGIN SOLUTION
def land_changes(table, messages) -> None:
    """Apply Debezium change events to an Iceberg table: the last event of each key wins; deletes delete."""
    import pyarrow as pa
    from pyiceberg.expressions import In

    last: dict = {}
    for message in messages:
        if message.value is None:  # a tombstone: the delete before it already said it all
            continue
        last[message.key["id"]] = message.value
    upserts = [event["after"] for event in last.values() if event["op"] != "d"]
    deleted = [key for key, event in last.items() if event["op"] == "d"]
    if upserts:
        table.upsert(pa.Table.from_pylist(upserts, schema=table.schema().as_arrow()), join_cols=["id"])
    if deleted:
        table.delete(In("id", deleted))


### END SOLUTION

# %%
check.m07.land_changes_check(land_changes)

# %%
catalog = lakehouse.catalog()
order_schema = platform.iceberg_schema(platform.latest_schema(registry, subject))
table_name = f"{outputs['lake']['namespace']}.orders"
orders_table = catalog.create_table(table_name, schema=order_schema)
print("table location:", orders_table.location())
land_changes(orders_table, changes)
landed = orders_table.scan().to_arrow().sort_by("id").to_pylist()
landed

# %% [markdown]
# The end-to-end proof: what the lakehouse holds is what the application's database holds — the update applied,
# the deleted order gone — and the files are in the bucket OpenTofu created.

# %%
assert [tuple(row.values()) for row in landed] == source_rows, (landed, source_rows)
print("source == lakehouse:", len(source_rows), "rows")
print(clients.s3_keys(outputs["lake"]["namespace"] + "/", bucket=outputs["lake"]["bucket"])[:4], "…")

# %% [markdown]
# ## A compute engine, as code?
# The fifth kind of component, the engine that transforms the stream (a Flink job, a Flink SQL statement), is
# modelled the same way as the connector: a module whose resource is the *job* (its SQL or its jar, parallelism,
# savepoint path), created through the engine's REST API and replaced when its code changes — with a savepoint
# taken before the old one stops, so no state is lost. No Flink provider is served here either; lab 03's jobs
# are submitted from Python, and this lab's landing step plays the sink's part.
#
# ## The cost of `terraform_data`: a changed include list replaces the connector
# Capture one more table and ask the plan what it would do:

# %%
(root / "main.tf").write_text(platform_tf.replace('tables       = ["public.orders"]',
                                                  'tables       = ["public.orders", "public.refunds"]'))  # fmt: skip
wider = tofu.plan(variables={"cdc_enabled": True})
(root / "main.tf").write_text(platform_tf)  # not applied
{address: actions for address, actions in wider.actions.items() if actions not in (["no-op"], ["read"])}

# %% [markdown]
# `module.cdc[0].terraform_data.connector` is **replaced** (`delete`, `create`): its slot would be dropped and the
# new connector would snapshot both tables again — a real Kafka Connect provider would update the config in
# place and keep the slot. The new topic is a plain `create`.
#
# ## Destroy, and prove it is all gone
# The destroy order is the reverse of the dependencies: the connector first (its delete step drops the slot,
# else `DROP DATABASE` fails: a slot belongs to its database), then the subjects, the namespace (with its table:
# `force_destroy`), the bucket, the topics, the database and its roles.
#
# The database goes before its group roles on purpose: the groups hold privileges on the application's tables,
# and PostgreSQL refuses to drop a role that still does ("cannot be dropped because some objects depend on it").
# The `postgres_app_database` module makes the database depend on the groups so that the reverse order of
# destroy drops the database, and its tables with it, first.

# %%
connector, slot = outputs["cdc"]["connector"], outputs["cdc"]["slot"]
started = time.monotonic()
tofu.destroy(variables={"cdc_enabled": True})
print(f"destroyed in {time.monotonic() - started:.1f} s; state:", tofu.state_list())


def count(query: str, value: str) -> int:
    with clients.postgres() as pg:
        return pg.execute(query, [value]).fetchone()[0]


gone = {
    "connector": connector not in cdc.connectors(),
    "slot": count("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", slot) == 0,
    "database": count("SELECT count(*) FROM pg_database WHERE datname = %s", outputs["database"]) == 0,
    "topic": topic not in kafka_admin.topic_names(ns.prefix),
    "subject": requests.get(f"{registry}/subjects/{subject}/versions", timeout=10).status_code == 404,
    "namespace": not catalog.namespace_exists(outputs["lake"]["namespace"]),
    "bucket": outputs["lake"]["bucket"] not in [b["Name"] for b in clients.s3().list_buckets()["Buckets"]],
}
gone

# %%
assert all(gone.values()), gone

# %% [markdown]
# ## Recap
# - A data platform is several APIs: each module hides one (topics, database and roles, connector, subjects,
#   bucket and namespace) behind variables with validation, and the root composes them by their outputs.
# - Where a provider exists, use it. Where none does, a labelled `terraform_data` step with create and destroy
#   provisioners is the honest stand-in — but it cannot see drift and replaces what a provider would update.
# - A CDC connector owns a slot and a publication: its own, never shared, never `FOR ALL TABLES`; destroying it
#   must drop the slot, or WAL piles up and the database cannot be dropped.
# - The registry subject is the pipeline's contract: the lakehouse table is made from it, and its compatibility
#   mode decides which changes the registry refuses.
#
# **Going further:** with network access to a registry, `Mongey/kafka-connect` (connectors), a schema-registry
# provider (e.g. Confluent's `confluent_schema` or community ones for Apicurio), `hashicorp/aws` (buckets, Glue
# or S3 Tables catalogs) and `hashicorp/http` (reads) replace the labelled steps one by one: the modules'
# variables stay, only `main.tf` changes. Managed services (MSK Connect, Confluent Cloud connectors, AWS Glue)
# are configured through the same providers. Lab 07.04 puts this platform in dev, staging and prod.
