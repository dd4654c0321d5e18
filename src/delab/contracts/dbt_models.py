"""dbt on the stack's Postgres for module 05: a small project over a lab's ``orders`` table, run in-process with
dbt's programmatic entry point (``dbtRunner``), so a notebook or a check builds models and reads the outcome
without a subprocess.

Lab 05.02 uses it for model contracts (``contract: {enforced: true}``), lab 05.05 for dbt's data tests and unit
tests. Each project lives in the lab's folder; its models are built into the schema ``<lab schema>_dbt``.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from delab import config

MODEL_SQL = """select order_id, customer_id, order_ts, channel, status
from {{ source('shop', 'orders') }}
"""

#: the same model after a "harmless refactoring" that changed a column's type
DRIFTED_SQL = """select order_id, customer_id::text as customer_id, order_ts, channel, status
from {{ source('shop', 'orders') }}
"""

#: fct_orders' model YAML with an enforced contract (what lab 05.02 shows)
CONTRACT_YAML = {
    "version": 2,
    "models": [
        {
            "name": "fct_orders",
            "description": "One row per order, for reporting.",
            "config": {"contract": {"enforced": True}, "materialized": "table"},
            "columns": [
                {
                    "name": "order_id",
                    "data_type": "bigint",
                    "constraints": [{"type": "not_null"}, {"type": "primary_key"}],
                },
                {"name": "customer_id", "data_type": "bigint", "constraints": [{"type": "not_null"}]},
                {"name": "order_ts", "data_type": "timestamp"},
                {"name": "channel", "data_type": "text"},
                {"name": "status", "data_type": "text"},
            ],
        }
    ],
}


@dataclass
class DbtRun:
    """The outcome of one dbt invocation: success, and the error/warning messages dbt logged."""

    success: bool
    messages: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)  # node name -> success/error/pass/fail/skipped


def _profile(schema: str) -> dict:
    pg = config.postgres()
    return {
        "delab": {
            "target": "lab",
            "outputs": {
                "lab": {
                    "type": "postgres",
                    "host": pg.host,
                    "port": pg.port,
                    "user": pg.user,
                    "password": pg.password,
                    "dbname": pg.database,
                    "schema": f"{schema}_dbt",
                    "threads": 1,
                }
            },
        }
    }


def project(name: str, schema: str, files: dict[str, str | dict]) -> Path:
    """Write a dbt project ``name`` under the lab's folder: profile, ``shop.orders`` source in ``schema``, and
    ``files`` (relative path -> text, or a dict written as YAML). Files written by an earlier run are replaced."""
    root = config.lab_dir(schema) / "dbt" / name
    for old in root.glob("models/**/*"):
        if old.is_file():
            old.unlink()
    for old in root.glob("tests/**/*"):
        if old.is_file():
            old.unlink()
    base: dict[str, str | dict] = {
        "dbt_project.yml": {
            "name": name,
            "version": "1.0.0",
            "config-version": 2,
            "profile": "delab",
            "model-paths": ["models"],
            "test-paths": ["tests"],
            "target-path": "target",
            "flags": {"send_anonymous_usage_stats": False, "use_colors": False},
        },
        "profiles.yml": _profile(schema),
        "models/sources.yml": {
            "version": 2,
            "sources": [{"name": "shop", "schema": schema, "tables": [{"name": "orders"}]}],
        },
    }
    for relative, content in {**base, **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return root


def orders_project(schema: str, model_yaml: dict | str | None = None, sql: str = MODEL_SQL) -> Path:
    """The project of lab 05.02: ``fct_orders`` over ``<schema>.orders`` with its model YAML (default: enforced)."""
    return project(
        "orders_contract",
        schema,
        {"models/fct_orders.sql": sql, "models/fct_orders.yml": CONTRACT_YAML if model_yaml is None else model_yaml},
    )


def invoke(root: Path, *args: str) -> DbtRun:
    """Run ``dbt <args>`` in-process on the project at ``root``; dbt's console output is captured, not printed."""
    from dbt.cli.main import dbtRunner

    messages: list[str] = []

    def keep(event) -> None:
        level = getattr(event.info, "level", "")
        if level in ("error", "warn") and event.info.msg:
            messages.append(str(event.info.msg))

    argv = [*args, "--project-dir", str(root), "--profiles-dir", str(root)]
    with redirect_stdout(io.StringIO()):
        result = dbtRunner(callbacks=[keep]).invoke(argv)
    statuses: dict[str, str] = {}
    for node_result in getattr(result.result, "results", None) or []:
        node = getattr(node_result, "node", None)
        if node is not None:
            statuses[node.name] = str(getattr(node_result.status, "value", node_result.status))
    if result.exception is not None:
        messages.append(str(result.exception).splitlines()[0])
    return DbtRun(bool(result.success), messages, statuses)


def build(root: Path, schema: str, sql: str | None = None, select: str = "fct_orders") -> DbtRun:
    """``dbt build --select <select>`` (after replacing the model's SQL if ``sql`` is given)."""
    if sql is not None:
        (root / "models" / f"{select}.sql").write_text(sql)
    return invoke(root, "build", "--select", select)
