"""Checks of lab 05.04 (lineage and governance): the learner's run wrapper emits a real OpenLineage run lifecycle
over HTTP to the project's receiver, their impact query walks a column graph stored in Postgres, and their access
policy is proven by connecting to Postgres as each persona (a denied query is part of the proof)."""

from __future__ import annotations

import uuid

from delab import clients
from delab.contracts import governance, lineage
from delab.grading import WrongAnswer, exercise, learner_code

# ------------------------------------------------------------------------------------------ e1: run lifecycle


class JobCrashed(RuntimeError):
    """What the check's failing job raises; the learner's wrapper must let it through."""


def _scratch_schema(label: str) -> str:
    return f"m05_l04_check_{label}_{uuid.uuid4().hex[:8]}"


def _sql_template(answer, name: str, placeholders: str) -> None:
    """The learner's answer must be SQL text with ``{schema}`` in it (the check fills in its own names)."""
    if not isinstance(answer, str) or "{schema}" not in answer:
        raise WrongAnswer(
            f"{name} must be SQL text using {placeholders}",
            hint="write the placeholders literally, e.g. {schema}.customers; the check fills in its own names.",
        )


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _drop(schema: str) -> None:
    with clients.postgres() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@exercise("m05.l04.e1")
def run_lifecycle(run_job) -> None:
    """A run emits START before the work and COMPLETE after it, or FAIL and the error goes on, under one run id."""
    schema = _scratch_schema("runs")
    receiver = None
    try:
        with clients.postgres() as conn:
            lineage.create_store(conn, schema)
        receiver = lineage.LineageReceiver(schema)
        client = lineage.http_client(receiver)
        inputs = [lineage.dataset("postgres://check", "shop.orders", {"order_id": "bigint"})]
        outputs = [lineage.dataset("postgres://check", "mart.orders_daily", {"day": "date"}, output=True)]
        seen_before_work: list[list[str]] = []

        def stored(job: str) -> list[tuple[str, str]]:
            with clients.postgres() as conn:
                return conn.execute(
                    f"SELECT event_type, run_id::text FROM {schema}.lineage_events WHERE job LIKE %s ORDER BY id",
                    (f"%/{job}",),
                ).fetchall()

        def work_ok() -> str:
            seen_before_work.append([kind for kind, _ in stored("check_ok")])
            return "done"

        def work_crash() -> None:
            raise JobCrashed("the check's job crashed on purpose")

        run = learner_code("run_job")(run_job)
        returned = run(client, "check_ok", inputs, outputs, work_ok)
        crashed = False
        try:
            run(client, "check_crash", inputs, outputs, work_crash)
        except JobCrashed:
            crashed = True
        except WrongAnswer as verdict:
            if "JobCrashed" not in verdict.message:
                raise
            crashed = True
        ok, crash = stored("check_ok"), stored("check_crash")
        with clients.postgres() as conn:
            complete = conn.execute(
                f"SELECT payload FROM {schema}.lineage_events WHERE job LIKE '%%/check_ok' AND event_type = 'COMPLETE'"
            ).fetchone()
        receiver_errors = list(receiver.errors)
    finally:
        if receiver is not None:
            receiver.stop()
        _drop(schema)

    if receiver_errors:
        raise WrongAnswer(
            f"the receiver refused an event: {receiver_errors[0][:160]}",
            hint="emit openlineage RunEvent objects through client.emit (eventTime, run, job, producer are required).",
        )
    if len(seen_before_work) != 1:
        raise WrongAnswer(f"the job's work ran {len(seen_before_work)} times", hint="call work() exactly once per run.")
    kinds = [kind for kind, _ in ok]
    if "START" not in kinds:
        raise WrongAnswer(
            f"a successful run emitted {kinds or 'nothing'}: no START",
            hint="a run starts with a START event; without it nobody sees a run that hangs or is running.",
        )
    if seen_before_work[0] != ["START"]:
        raise WrongAnswer(
            f"while the work ran the receiver had {seen_before_work[0] or 'no events'}, not one START",
            hint="emit START before calling work(): a lineage server shows a running job from its START.",
        )
    if kinds != ["START", "COMPLETE"]:
        raise WrongAnswer(
            f"a successful run emitted {kinds}, not START then COMPLETE",
            hint="one START before the work, one COMPLETE after it succeeded.",
        )
    if len({run_id for _, run_id in ok}) != 1:
        raise WrongAnswer(
            "START and COMPLETE of one run carry different run ids",
            hint="create the Run (one uuid) once per call and send it in every event of that run.",
        )
    if str(returned) != ok[0][1]:
        raise WrongAnswer(
            f"run_job returned {returned!r}, not the run id of the events",
            hint="return the runId you sent: the caller uses it to find the run's events.",
        )
    payload = complete[0] if complete else {}
    if not payload.get("inputs") or not payload.get("outputs"):
        raise WrongAnswer(
            "the COMPLETE event has no inputs or outputs",
            hint="pass the job's inputs and outputs in the events: the lineage graph is built from them.",
        )
    crash_kinds = [kind for kind, _ in crash]
    if "COMPLETE" in crash_kinds:
        raise WrongAnswer(
            f"a run whose work raised emitted {crash_kinds}: it reported COMPLETE",
            hint="COMPLETE only when work() returned; an exception means FAIL (a finally: block sends it always).",
        )
    if crash_kinds != ["START", "FAIL"]:
        raise WrongAnswer(
            f"a run whose work raised emitted {crash_kinds or 'nothing'}, not START then FAIL",
            hint="catch the exception, emit FAIL for the same run, then let the exception go on.",
        )
    if not crashed:
        raise WrongAnswer(
            "run_job swallowed the job's exception: the caller thinks the job succeeded",
            hint="after emitting FAIL, re-raise (a bare `raise` in the except block).",
        )
    if len({run_id for _, run_id in crash}) != 1:
        raise WrongAnswer(
            "START and FAIL of one run carry different run ids",
            hint="create the Run once per call and send it in every event of that run.",
        )


# ---------------------------------------------------------------------------------------- e2: impact analysis

#: a column graph with a branch, a three-hop chain, an upstream source, a neighbour column of the same datasets
#: and an incremental job (a dataset computed from itself): (source, field, target, field)
IMPACT_GRAPH = [
    ("raw.customers", "country", "stg.customers", "country"),
    ("stg.customers", "country", "mart.orders_enriched", "country"),
    ("mart.orders_enriched", "country", "mart.revenue_by_country", "country"),
    ("mart.revenue_by_country", "country", "s3.revenue_share", "country"),
    ("mart.orders_enriched", "country", "s3.customer_value", "country"),
    ("mart.revenue_by_country", "country", "mart.revenue_by_country", "country"),  # incremental merge
    ("raw.customers", "email", "stg.customers", "email"),
    ("stg.customers", "email", "crm.newsletter", "email"),
    ("raw.orders", "amount", "mart.orders_enriched", "amount"),
    ("mart.orders_enriched", "amount", "mart.revenue_by_country", "revenue"),
    ("crm.signup_form", "country", "raw.customers", "country"),
]
IMPACT_START = ("stg.customers", "country")


def _walk(start: tuple[str, str], direction: str, hops: int | None = None, by_dataset: bool = False) -> set:
    """The reference walks (and the wrong ones the check names) over IMPACT_GRAPH, in Python."""
    edges = [(s, sf, t, tf) if direction == "down" else (t, tf, s, sf) for s, sf, t, tf in IMPACT_GRAPH]
    frontier, seen, depth = {start}, set(), 0
    while frontier and (hops is None or depth < hops):
        depth += 1
        nxt = set()
        for s, sf, t, tf in edges:
            if any(s == ds and (by_dataset or sf == df) for ds, df in frontier):
                nxt.add((t, tf))
        frontier = nxt - seen
        seen |= nxt
    return seen


@exercise("m05.l04.e2")
def impact_query(impact_sql: str) -> None:
    """Your query lists every column downstream of a column, transitively, and nothing else."""
    import psycopg

    _sql_template(impact_sql, "impact_sql", "{schema}.column_edges")
    schema = _scratch_schema("impact")
    try:
        with clients.postgres() as conn:
            lineage.create_store(conn, schema)
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {schema}.column_edges VALUES (%s, %s, %s, %s, 'IDENTITY')", IMPACT_GRAPH)
            conn.execute("SET statement_timeout = '5s'")
            dataset, column = IMPACT_START
            try:
                rows = conn.execute(impact_sql.format(schema=schema), {"dataset": dataset, "column": column}).fetchall()
            except psycopg.errors.QueryCanceled:
                raise WrongAnswer(
                    "your query did not finish in 5 s on a graph of 11 edges",
                    hint="a job may read its own output (an incremental merge): the walk must stop on a column "
                    "it has already seen (UNION rather than UNION ALL, or a depth limit).",
                ) from None
            except psycopg.Error as error:
                raise WrongAnswer(
                    f"your query failed: {_first_line(error)}",
                    hint="parameters are %(dataset)s and %(column)s; the table is {schema}.column_edges.",
                ) from None
    finally:
        _drop(schema)
    try:
        got = {(str(row[0]), str(row[1])) for row in rows}
    except (IndexError, TypeError):
        raise WrongAnswer(
            "each row must start with (dataset, column)", hint="SELECT target, target_field FROM ..."
        ) from None
    right = _walk(IMPACT_START, "down")
    if got == right:
        return
    if got == _walk(IMPACT_START, "up"):
        raise WrongAnswer(
            "your query lists the sources of the column (root cause), not what depends on it",
            hint="impact goes from source to target: join the next edge's source to the column you reached.",
        )
    if got == _walk(IMPACT_START, "down", hops=1):
        raise WrongAnswer(
            f"your query stops after one hop ({len(got)} column(s)): what depends on those is missed",
            hint="a recursive CTE (WITH RECURSIVE) keeps following edges from the columns it found.",
        )
    if got >= right and got & (_walk(IMPACT_START, "down", by_dataset=True) - right):
        raise WrongAnswer(
            f"your query reports {len(got - right)} column(s) that do not depend on the column (e.g. "
            f"{sorted(got - right)[0]})",
            hint="follow column edges on the dataset AND the column: other columns of the same table are safe.",
        )
    missing, extra = sorted(right - got), sorted(got - right)
    raise WrongAnswer(
        f"your query gives {len(got)} columns: {len(missing)} missed (e.g. {missing[:1]}), {len(extra)} too many",
        hint="start from edges whose source is the column, and keep joining edge.source = found dataset and "
        "edge.source_field = found column.",
    )


# ------------------------------------------------------------------------------------------ e3: access policy


def _customers(conn, schema: str) -> list[tuple]:
    """The check's copy of the shop's customers (countries upper-cased: the policy is about people, not defects)."""
    from delab import datasets

    customers = datasets.shop(scale=0.1).customers.drop_duplicates("customer_id").copy()
    customers["country"] = customers.country.str.upper()
    datasets.to_postgres({"customers": customers}, schema, primary_keys={"customers": ["customer_id"]}, conn=conn)
    return list(customers[["customer_id", "name", "email", "country"]].itertuples(index=False, name=None))


@exercise("m05.l04.e3")
def access_policy(policy_sql: str) -> None:
    """The analyst reads only the masked view, support reads only German customers and changes nothing."""
    import psycopg

    _sql_template(policy_sql, "policy_sql", "{schema}, {analyst} and {support}")
    schema = _scratch_schema("policy")
    analyst, support = "m05_l04_check_analyst", "m05_l04_check_support"
    try:
        with clients.postgres() as conn:
            governance.create_roles(conn, analyst, support)
            people = _customers(conn, schema)
            try:
                conn.execute(policy_sql.format(schema=schema, analyst=analyst, support=support))
            except (psycopg.Error, KeyError, IndexError, ValueError) as error:
                raise WrongAnswer(
                    f"your policy failed: {_first_line(error)}",
                    hint="run it in a cell of its own to see the whole error.",
                ) from None
        with governance.connect_as(analyst) as as_analyst:
            raw = governance.denied(as_analyst, f"SELECT email FROM {schema}.customers LIMIT 1")
            try:
                view = as_analyst.execute(f"SELECT * FROM {schema}.customers_masked")
                columns = [d.name for d in view.description]
                masked = view.fetchall()
            except psycopg.Error as error:
                masked, columns = None, [_first_line(error)]
            analyst_writes = governance.denied(as_analyst, f"DELETE FROM {schema}.customers")
        with governance.connect_as(support) as as_support:
            try:
                support_rows = as_support.execute(f"SELECT customer_id, country FROM {schema}.customers").fetchall()
            except psycopg.Error:
                support_rows = None
            support_update = governance.denied(as_support, f"UPDATE {schema}.customers SET segment = 'x'")
    finally:
        _drop(schema)

    if raw is None:
        raise WrongAnswer(
            "the analyst read the customers table itself: e-mails in clear",
            hint="grant the analyst SELECT on the masked view only; a view reads the table with its owner's "
            "rights, so the analyst needs no grant on the table.",
        )
    if masked is None:
        raise WrongAnswer(
            f"the analyst cannot read {schema}.customers_masked: {columns[0][:160]}",
            hint="the view must exist, and the analyst needs USAGE on the schema and SELECT on the view (a view "
            "WITH (security_invoker) reads the table with the analyst's rights, which it must not have).",
        )
    if "country" not in columns or len(masked) != len(people):
        raise WrongAnswer(
            f"the masked view has {len(masked)} rows and columns {columns}: the analyst needs every customer "
            "with its country",
            hint="mask the personal columns, keep the others (country, segment…) and every row.",
        )
    secrets = {p[2].split("@")[0].lower() for p in people if p[2]} | {p[1].lower() for p in people if p[1]}
    leaks = [v for row in masked for v in row if isinstance(v, str) and any(s in v.lower() for s in secrets)]
    if leaks:
        raise WrongAnswer(
            f"the masked view still shows personal data ({len(leaks)} values, e.g. {leaks[0]!r})",
            hint="mask name and e-mail (e.g. keep the domain only); a partial mask must hide the person.",
        )
    if analyst_writes is None:
        raise WrongAnswer("the analyst may delete customers", hint="grant only what each role needs: SELECT.")
    if support_rows is None:
        raise WrongAnswer(
            "support cannot read the customers table",
            hint="support needs USAGE on the schema and SELECT on the table (row-level security then filters).",
        )
    german = sum(1 for p in people if p[3] == "DE")
    if len(support_rows) == len(people):
        raise WrongAnswer(
            f"support sees all {len(people)} customers, not only the {german} German ones",
            hint="ENABLE ROW LEVEL SECURITY on the table and a policy for support USING (country = 'DE').",
        )
    if not support_rows:
        raise WrongAnswer(
            "support sees no customer at all",
            hint="row-level security without a policy for a role hides every row: add a policy USING (...).",
        )
    if {c for _, c in support_rows} != {"DE"} or len(support_rows) != german:
        raise WrongAnswer(
            f"support sees {len(support_rows)} customers of {sorted({c for _, c in support_rows})}, not the "
            f"{german} of DE",
            hint="the policy's USING condition decides which rows a role sees: country = 'DE'.",
        )
    if support_update is None:
        raise WrongAnswer(
            "support may change customers (an UPDATE went through)",
            hint="least privilege: support reads; grant SELECT, not ALL.",
        )
