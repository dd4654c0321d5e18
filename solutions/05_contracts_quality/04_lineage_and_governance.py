# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 05.04 · Lineage and governance: OpenLineage, impact analysis, access control and audit trails
#
# **You will:**
# - make real jobs (SQL in Postgres, files on S3) emit **OpenLineage** run events — START, COMPLETE or FAIL, with
#   the datasets they read and write, their schemas and column lineage — to a receiver that stores the graph in
#   Postgres;
# - trace a column upstream (root cause) and downstream (impact analysis: what breaks if it is dropped?);
# - give each persona least privilege on the real Postgres: a **masked view** of personal data for analysts,
#   **row-level security** for support, proven by connecting as each role — a denied query is part of the proof;
# - keep an **audit trail** of who changed which row, and see an erasure request go through it.
#
# *Needs:* Postgres and the S3 store (started for you). Kernel: `delab`. About 40 minutes.

# %%
import json
import uuid

import matplotlib.pyplot as plt
import networkx as nx
import pandas as pd

from delab import check, clients, datasets, stack
from delab.contracts import governance, lineage, shop_etl

stack.require("postgres", "s3")
ns = stack.namespace("m05_l04")
STORE = f"{ns.schema}_lineage"  # the lineage graph lives in its own schema
shop = datasets.shop(scale=0.1)
customers = shop.customers.drop_duplicates("customer_id")
datasets.to_postgres(
    {"customers": customers, "orders": shop.orders, "order_items": shop.order_items},
    ns.schema,
    primary_keys={"customers": ["customer_id"]},
)
clients.s3_delete_prefix(ns.key())
with clients.postgres() as conn:
    lineage.create_store(conn, STORE)
receiver = lineage.LineageReceiver(STORE)  # POST /api/v1/lineage, the endpoint Marquez serves
client = lineage.http_client(receiver)  # openlineage-python's OpenLineageClient with its HttpTransport
print(f"shop loaded into {ns.schema}; lineage receiver on {receiver.url}, storing into {STORE}")

# %% [markdown]
# ## What an OpenLineage event says
# A **run event** tells a lineage server that a run of a job changed state: `START`, then `COMPLETE` or `FAIL`
# (also `RUNNING`, `ABORT`). It names the job, the run (a UUID shared by all events of that run), and the input
# and output **datasets** (`namespace` = where the data lives, `name` = what it is), with **facets**: the schema,
# and for outputs the *column lineage* — which input columns each output column is computed from, and how.
# Here is an output dataset as a job would declare it:

# %%
enriched = lineage.dataset(
    lineage.pg_namespace(),
    lineage.pg_name(ns.schema, "orders_enriched"),
    {"order_id": "bigint", "country": "text", "amount": "double precision"},
    {"country": [(lineage.pg_namespace(), lineage.pg_name(ns.schema, "customers"), "country", "IDENTITY")]},
    output=True,
)
print(json.dumps(lineage.as_dict(enriched), indent=1)[:900])

# %% [markdown]
# ### Exercise 1 — a run wrapper that reports honestly
# Write `run_job(client, job_name, inputs, outputs, work)`: it emits a `START` event, calls `work()` once, then
# emits `COMPLETE` — or, if `work()` raised, emits `FAIL` and **lets the exception go on** (the orchestrator must
# still see the failure). All events of one call share one run id; every event carries `inputs` and `outputs`.
# Return the run id (a string). Use `RunEvent`, `Run`, `Job` and `RunState` from `openlineage.client.event_v2`,
# `JOB_NAMESPACE` as the job's namespace and `lineage.PRODUCER` as the producer. An `ErrorMessageRunFacet`
# (`openlineage.client.facet_v2.error_message_run`) on the FAIL event is a kindness to whoever reads it.

# %%
JOB_NAMESPACE = "delab.shop_etl"

### BEGIN SOLUTION
from datetime import UTC, datetime

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run


def run_job(client, job_name, inputs, outputs, work):
    """Run work() as one OpenLineage run: START, then COMPLETE or FAIL (re-raising); returns the run id."""
    run_id = str(uuid.uuid4())
    job = Job(namespace=JOB_NAMESPACE, name=job_name)

    def emit(state, facets=None):
        client.emit(
            RunEvent(
                eventType=state,
                eventTime=datetime.now(UTC).isoformat(),
                run=Run(runId=run_id, facets=facets or {}),
                job=job,
                inputs=inputs,
                outputs=outputs,
                producer=lineage.PRODUCER,
            )
        )

    emit(RunState.START)
    try:
        work()
    except Exception as error:
        message = f"{type(error).__name__}: {error}"
        emit(
            RunState.FAIL,
            {"errorMessage": error_message_run.ErrorMessageRunFacet(message=message, programmingLanguage="python")},
        )
        raise
    emit(RunState.COMPLETE)
    return run_id


### END SOLUTION

# %%
check.m05.run_lifecycle(run_job)

# %% [markdown]
# ## The shop's ETL, tracked
# Five jobs (`delab.contracts.shop_etl`): `enrich_orders` and `revenue_by_country` build tables in Postgres,
# `export_customer_value` writes Parquet to S3, `country_report` a CSV on S3, and `churn_features` reads a column
# the customers table does not have — it fails. Each job declares its inputs (schema read from Postgres' catalog)
# and outputs (with column lineage); your `run_job` emits its events over HTTP.

# %%
with clients.postgres() as conn:
    outcome = shop_etl.run_all(run_job, client, shop_etl.jobs(conn, ns.schema, ns.prefix))
    events = lineage.events(conn, STORE)
    graph = lineage.dataset_graph(conn, STORE)
print(outcome)
events[["event_type", "job", "inputs", "outputs", "error"]]

# %%
graph = nx.relabel_nodes(graph, {n: n.removeprefix(lineage.pg_name(ns.schema, "")) for n in graph})
for layer, names in enumerate(nx.topological_generations(graph)):  # sources left, reports right
    for name in names:
        graph.nodes[name]["layer"] = layer
layout = nx.multipartite_layout(graph, subset_key="layer")
plt.figure(figsize=(10, 4))
nx.draw_networkx(graph, layout, node_color="#cde", node_shape="s", node_size=2600, font_size=7, arrowsize=15)
nx.draw_networkx_edge_labels(graph, layout, nx.get_edge_attributes(graph, "job"), font_size=6)
plt.title("Dataset lineage from the COMPLETE events (the failed job added no edge)")
plt.axis("off")
plt.show()

# %% [markdown]
# The failed run is in the store with its error (`FAIL` + `errorMessage`), but it adds no edge: the graph is what
# completed runs did. **Root cause**: a number in the S3 report looks wrong — which columns is it computed from?
# `lineage.upstream` walks the column edges backwards with a recursive CTE:

# %%
report = f"{shop_etl.s3_namespace()}/{ns.key('reports/revenue_share.csv')}"
with clients.postgres() as conn:
    causes = lineage.upstream(conn, STORE, report, "revenue_share")
pd.DataFrame(causes, columns=["dataset", "column", "hops"])

# %% [markdown]
# ### Exercise 2 — impact analysis
# The other direction: someone wants to **drop** a column. Write `impact_sql`, a query over
# `{schema}.column_edges` (columns `source, source_field, target, target_field`; write `{schema}` literally, it is
# filled in) that lists every `(target, target_field)` that depends on the column `%(dataset)s` . `%(column)s`
# directly **or through other columns**. Beware: a job may read its own output (an incremental merge).

# %%
### BEGIN SOLUTION
impact_sql = """
WITH RECURSIVE impact(dataset, field) AS (
    SELECT target, target_field FROM {schema}.column_edges
     WHERE source = %(dataset)s AND source_field = %(column)s
    UNION
    SELECT e.target, e.target_field FROM {schema}.column_edges e
      JOIN impact i ON e.source = i.dataset AND e.source_field = i.field
)
SELECT dataset, field FROM impact ORDER BY 1, 2
"""
### END SOLUTION

# %%
check.m05.impact_query(impact_sql)

# %%
customers_table = f"{lineage.pg_namespace()}/{lineage.pg_name(ns.schema, 'customers')}"
with clients.postgres() as conn:
    for column in ["country", "segment", "email"]:
        broken = conn.execute(impact_sql.format(schema=STORE), {"dataset": customers_table, "column": column})
        names = [f"{dataset.rsplit('/', 1)[-1]}.{field}" for dataset, field in broken]
        print(f"drop customers.{column:8} breaks {names or 'nothing'}")

# %% [markdown]
# `email` breaks nothing *that lineage knows of* — column lineage is only as complete as the jobs that declare it
# (a job that emits no facet is invisible). That is why the emitting belongs in the shared run wrapper and the
# orchestrator's integration (Airflow's and dbt's OpenLineage integrations do it for you), not in each job.
#
# ## Governance: who may see what
# Governance starts from the contract (lab 05.02's ODCS): the customers contract gives every property a
# `classification`, and what is `restricted` is personal data (PII) that only some roles may see in clear.

# %%
PII = governance.classified(governance.CUSTOMERS_CONTRACT, "customers", "restricted")
print("restricted (PII) columns per the contract:", PII)

# %% [markdown]
# Three personas get login roles with nothing granted yet (`governance.create_roles`; passwords derived locally):
# - an **analyst** counts customers by country and segment — no names, no e-mails;
# - **support** for Germany handles German customers only, reading but not changing them;
# - a **data steward** executes erasure requests (lab 04's right to be forgotten) and nothing else.

# %%
ANALYST, SUPPORT, STEWARD = "m05_l04_analyst", "m05_l04_support_de", "m05_l04_steward"
with clients.postgres() as conn:
    governance.create_roles(conn, ANALYST, SUPPORT, STEWARD)
    personas = conn.execute(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = ANY(%s)",
        ([ANALYST, SUPPORT, STEWARD],),
    ).fetchall()
personas

# %% [markdown]
# ### Exercise 3 — least privilege, a masked view and row-level security
# Write `policy_sql` (statements separated by `;`, with `{schema}`, `{analyst}` and `{support}` filled in by the
# caller) so that on `{schema}.customers`:
# - the analyst reads a view `{schema}.customers_masked` with **every customer**, its `country` and `segment`, and
#   the `PII` columns masked (e-mail reduced to its domain, say) — and **cannot** read the table itself;
# - support reads the table itself, but only customers whose `country = 'DE'`, and changes nothing.
#
# Tip: a view reads its tables with its **owner's** rights; row-level security applies to everyone but the table's
# owner.

# %%
### BEGIN SOLUTION
policy_sql = """
GRANT USAGE ON SCHEMA {schema} TO {analyst}, {support};
CREATE VIEW {schema}.customers_masked AS
    SELECT customer_id, country, segment, signup_at,
           left(name, 1) || '.' AS name, '***@' || split_part(email, '@', 2) AS email
      FROM {schema}.customers;
GRANT SELECT ON {schema}.customers_masked TO {analyst};
GRANT SELECT ON {schema}.customers TO {support};
ALTER TABLE {schema}.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY support_sees_germany ON {schema}.customers FOR SELECT TO {support} USING (country = 'DE');
"""
### END SOLUTION

# %%
check.m05.access_policy(policy_sql)

# %% [markdown]
# The check ran your policy on its own copy and connected as each role. Now on the lab's table — and the proof,
# as the roles themselves:

# %%
with clients.postgres() as conn:
    conn.execute(policy_sql.format(schema=ns.schema, analyst=ANALYST, support=SUPPORT))
with governance.connect_as(ANALYST) as analyst:
    print("analyst, table :", governance.denied(analyst, f"SELECT email FROM {ns.schema}.customers"))
    print(
        "analyst, view  :",
        analyst.execute(f"SELECT name, email, country FROM {ns.schema}.customers_masked LIMIT 2").fetchall(),
    )
with governance.connect_as(SUPPORT) as support:
    print(
        "support, rows  :",
        support.execute(f"SELECT country, count(*) FROM {ns.schema}.customers GROUP BY 1").fetchall(),
    )
    print("support, update:", governance.denied(support, f"UPDATE {ns.schema}.customers SET segment = 'vip'"))

# %% [markdown]
# ## An audit trail of changes
# `governance.install_audit` adds a trigger that writes every INSERT/UPDATE/DELETE of the table into
# `audit_log` with the **login role** (`session_user`), the row's key, and its old and new values. The steward may
# update only the `PII` columns (column privileges) and, under row-level security, needs a policy of its own.
# An erasure request for customer 7:

# %%
with clients.postgres() as conn:
    governance.install_audit(conn, ns.schema, "customers", key="customer_id")
    conn.execute(f"GRANT USAGE ON SCHEMA {ns.schema} TO {STEWARD}")
    conn.execute(f"GRANT SELECT, UPDATE ({', '.join(PII)}) ON {ns.schema}.customers TO {STEWARD}")  # PII only
    conn.execute(f"CREATE POLICY steward_all ON {ns.schema}.customers TO {STEWARD} USING (true)")
with governance.connect_as(STEWARD) as steward:
    steward.execute(f"UPDATE {ns.schema}.customers SET name = 'erased', email = NULL WHERE customer_id = 7")
    print("steward, segment:", governance.denied(steward, f"UPDATE {ns.schema}.customers SET segment = 'x'"))
with clients.postgres() as conn:
    audit = pd.DataFrame(
        conn.execute(
            f"""SELECT at, login_role, operation, row_key, old_row->>'email', new_row->>'email'
                  FROM {ns.schema}.audit_log ORDER BY id"""
        ).fetchall(),
        columns=["at", "login_role", "operation", "row_key", "email before", "email after"],
    )
audit

# %% [markdown]
# What the trail cannot show: **reads** (the analyst's SELECTs) and **denied attempts** never fire a trigger.
# Postgres's own log can: it logs every failed statement, denied ones included, and — for a role whose
# `log_statement` is `all` — every statement it runs. The stack's log line starts with `role@database`
# (`log_line_prefix`), so each line says who. `log_statement` is a superuser setting: `governance.log_statements`
# calls a superuser-owned function the stack provides for the learner's own roles. Tag the statements, then find
# them in the server log:

# %%
with clients.postgres() as conn:
    governance.log_statements(conn, ANALYST, "all")  # for the analyst's sessions from now on
probe = f"/* audit probe {uuid.uuid4().hex[:8]} */"
with governance.connect_as(ANALYST) as analyst:
    analyst.execute(f"SELECT count(*) FROM {ns.schema}.customers_masked {probe}").fetchone()
    governance.denied(analyst, f"SELECT email FROM {ns.schema}.customers {probe}")
print("\n".join(governance.server_log_lines(probe)) or "server log not reachable from here")

# %% [markdown]
# The read of the masked view and the refused read of the raw table are both there, with the analyst's name.
# Logging every statement of a busy role is heavy; **pgaudit** (`shared_preload_libraries`, `pgaudit.log =
# 'read'`, or object auditing with `pgaudit.role` for chosen tables only) is the production tool — see
# docs/contracts.md for why the stack does not preload it.

# %%
receiver.stop()

# %% [markdown]
# ## Recap
# - OpenLineage: jobs emit START/COMPLETE/FAIL run events with datasets, schema and column-lineage facets; a
#   receiver keeps them as a graph; recursive queries answer "what is this made of?" and "what breaks if…?".
# - Least privilege is granted, never assumed: views with their owner's rights for masking, row-level security for
#   rows, column privileges for narrow writes — proven by connecting as each role.
# - An audit trail answers "who changed this?"; reads need pgaudit or the server log.
#
# **Going further:**
# - Marquez (the reference OpenLineage server, not on Maven Central) accepts the same `POST /api/v1/lineage`: point
#   `HttpConfig(url=...)` at it. Airflow's OpenLineage provider and `openlineage-dbt` emit these events without code.
# - Managed catalogs do the same at scale: Unity Catalog, AWS Lake Formation (column masks, row filters), Google
#   Dataplex lineage; on RDS/Aurora, pgaudit is a parameter-group setting (`external` profile).
# - Snowflake's and BigQuery's masking policies attach the mask to the column instead of a view.
