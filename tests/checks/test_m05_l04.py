"""Checks of lab 05.04 (lineage and governance): right answers pass, realistic wrong ones are rejected with their
own hint. Events travel over real HTTP into the real Postgres; policies are proven by logging in as each role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from delab import stack
from delab.checks.m05 import l04_lineage_governance as checks
from delab.contracts import lineage
from delab.grading import NotSolvedYet, WrongAnswer

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module", autouse=True)
def postgres_running():
    stack.require("postgres", quiet=True)


# ---------------------------------------------------------------------------------------------------- e1


def _emitter(client, job_name, inputs, outputs, run_id=None):
    from openlineage.client.event_v2 import Job, Run, RunEvent

    def emit(state, new_run=False):
        client.emit(
            RunEvent(
                eventType=state,
                eventTime=datetime.now(UTC).isoformat(),
                run=Run(runId=str(uuid.uuid4()) if new_run else run_id),
                job=Job(namespace="delab.test", name=job_name),
                inputs=inputs,
                outputs=outputs,
                producer=lineage.PRODUCER,
            )
        )

    return emit


def right_run_job(client, job_name, inputs, outputs, work):
    from openlineage.client.event_v2 import RunState

    run_id = str(uuid.uuid4())
    emit = _emitter(client, job_name, inputs, outputs, run_id)
    emit(RunState.START)
    try:
        work()
    except Exception:
        emit(RunState.FAIL)
        raise
    emit(RunState.COMPLETE)
    return run_id


def completes_in_finally(client, job_name, inputs, outputs, work):
    from openlineage.client.event_v2 import RunState

    run_id = str(uuid.uuid4())
    emit = _emitter(client, job_name, inputs, outputs, run_id)
    emit(RunState.START)
    try:
        work()
    finally:
        emit(RunState.COMPLETE)
    return run_id


def swallows(client, job_name, inputs, outputs, work):
    from openlineage.client.event_v2 import RunState

    run_id = str(uuid.uuid4())
    emit = _emitter(client, job_name, inputs, outputs, run_id)
    emit(RunState.START)
    try:
        work()
    except Exception:
        emit(RunState.FAIL)
        return run_id
    emit(RunState.COMPLETE)
    return run_id


def new_run_per_event(client, job_name, inputs, outputs, work):
    from openlineage.client.event_v2 import RunState

    emit = _emitter(client, job_name, inputs, outputs)
    emit(RunState.START, new_run=True)
    try:
        work()
    except Exception:
        emit(RunState.FAIL, new_run=True)
        raise
    emit(RunState.COMPLETE, new_run=True)
    return "?"


def starts_after_work(client, job_name, inputs, outputs, work):
    from openlineage.client.event_v2 import RunState

    run_id = str(uuid.uuid4())
    emit = _emitter(client, job_name, inputs, outputs, run_id)
    try:
        work()
    except Exception:
        emit(RunState.START)
        emit(RunState.FAIL)
        raise
    emit(RunState.START)
    emit(RunState.COMPLETE)
    return run_id


def test_the_right_run_wrapper_passes():
    checks.run_lifecycle(right_run_job)


@pytest.mark.parametrize(
    ("answer", "message", "hint"),
    [
        (completes_in_finally, "it reported COMPLETE", "COMPLETE only when work() returned"),
        (swallows, "swallowed the job's exception", "re-raise"),
        (new_run_per_event, "different run ids", "create the Run"),
        (starts_after_work, "while the work ran the receiver had no events", "before calling work()"),
    ],
)
def test_a_dishonest_run_wrapper_is_named(answer, message, hint):
    with pytest.raises(WrongAnswer, match=message) as verdict:
        checks.run_lifecycle(answer)
    assert hint in verdict.value.hint


def test_the_stub_is_not_solved():
    def run_job(client, job_name, inputs, outputs, work):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.run_lifecycle(run_job)


# ---------------------------------------------------------------------------------------------------- e2

RIGHT_IMPACT = """
WITH RECURSIVE impact(dataset, field) AS (
    SELECT target, target_field FROM {schema}.column_edges WHERE source = %(dataset)s AND source_field = %(column)s
    UNION
    SELECT e.target, e.target_field FROM {schema}.column_edges e
      JOIN impact i ON e.source = i.dataset AND e.source_field = i.field)
SELECT * FROM impact
"""


def test_the_right_impact_query_passes():
    checks.impact_query(RIGHT_IMPACT)
    assert checks._walk(checks.IMPACT_START, "down") == {
        ("mart.orders_enriched", "country"),
        ("mart.revenue_by_country", "country"),
        ("s3.revenue_share", "country"),
        ("s3.customer_value", "country"),
    }


@pytest.mark.parametrize(
    ("query", "message", "hint"),
    [
        (
            "SELECT target, target_field FROM {schema}.column_edges WHERE source = %(dataset)s "
            "AND source_field = %(column)s",
            "stops after one hop",
            "WITH RECURSIVE",
        ),
        (
            RIGHT_IMPACT.replace("SELECT target, target_field", "SELECT source, source_field")
            .replace("WHERE source =", "WHERE target =")
            .replace("AND source_field", "AND target_field")
            .replace("SELECT e.target, e.target_field", "SELECT e.source, e.source_field")
            .replace("e.source = i.dataset AND e.source_field", "e.target = i.dataset AND e.target_field"),
            "sources of the column",
            "from source to target",
        ),
        (
            RIGHT_IMPACT.replace(" AND e.source_field = i.field", ""),
            "do not depend on the column",
            "AND the column",
        ),
        (RIGHT_IMPACT.replace("UNION", "UNION ALL"), "did not finish", "UNION rather than UNION ALL"),
        ("SELECT nonsense FROM {schema}.column_edges", "your query failed", "%(dataset)s"),
    ],
)
def test_a_wrong_impact_query_is_named(query, message, hint):
    with pytest.raises(WrongAnswer, match=message) as verdict:
        checks.impact_query(query)
    assert hint in verdict.value.hint


def test_the_placeholder_is_not_solved():
    with pytest.raises(NotSolvedYet):
        checks.impact_query(...)


# ---------------------------------------------------------------------------------------------------- e3

RIGHT_POLICY = """
GRANT USAGE ON SCHEMA {schema} TO {analyst}, {support};
CREATE VIEW {schema}.customers_masked AS
    SELECT customer_id, country, segment, left(name, 1) || '.' AS name, '***@' || split_part(email, '@', 2) AS email
      FROM {schema}.customers;
GRANT SELECT ON {schema}.customers_masked TO {analyst};
GRANT SELECT ON {schema}.customers TO {support};
ALTER TABLE {schema}.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY support_de ON {schema}.customers FOR SELECT TO {support} USING (country = 'DE');
"""


def test_the_right_policy_passes():
    checks.access_policy(RIGHT_POLICY)


@pytest.mark.parametrize(
    ("policy", "message", "hint"),
    [
        (
            RIGHT_POLICY.replace("customers_masked TO {analyst}", "customers_masked, {schema}.customers TO {analyst}"),
            "the analyst read the customers table",
            "masked view only",
        ),
        (
            RIGHT_POLICY.replace("'***@' || split_part(email, '@', 2) AS email", "email"),
            "still shows personal data",
            "mask name and e-mail",
        ),
        (
            RIGHT_POLICY.replace("ALTER TABLE {schema}.customers ENABLE ROW LEVEL SECURITY;", ""),
            "support sees all",
            "ENABLE ROW LEVEL SECURITY",
        ),
        (
            RIGHT_POLICY.split("CREATE POLICY")[0],
            "support sees no customer",
            "without a policy",
        ),
        (
            RIGHT_POLICY.replace("GRANT SELECT ON {schema}.customers TO", "GRANT ALL ON {schema}.customers TO").replace(
                "FOR SELECT TO", "TO"
            ),
            "support may change customers",
            "grant SELECT, not ALL",
        ),
        (
            RIGHT_POLICY.replace("customers_masked AS", "customers_masked WITH (security_invoker = true) AS"),
            "the analyst cannot read",
            "security_invoker",
        ),
        ("CREATE VIEW {schema}.customers_masked AS SELECT * FROM nowhere", "your policy failed", "cell of its own"),
    ],
)
def test_a_wrong_policy_is_named(policy, message, hint):
    with pytest.raises(WrongAnswer, match=message) as verdict:
        checks.access_policy(policy)
    assert hint in verdict.value.hint
