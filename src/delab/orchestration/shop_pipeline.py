"""The building blocks of lab 01.04's daily pipeline (staging, validation, quarantine, task log), kept in the
package so the lab, its checks and their tests share one definition. Each function takes a psycopg connection
and a schema, and is idempotent."""

from __future__ import annotations

from delab import datasets

DDL = """
CREATE TABLE {s}.staging_lines (day date, order_id bigint, line_no bigint, product_id bigint, quantity bigint,
                                unit_price double precision, PRIMARY KEY (day, order_id, line_no));
CREATE TABLE {s}.fact_order_revenue (order_id bigint PRIMARY KEY, day date NOT NULL, revenue numeric(12, 2));
CREATE TABLE {s}.quarantine (day date, order_id bigint, line_no bigint, reason text NOT NULL,
                             PRIMARY KEY (day, order_id, line_no));
CREATE TABLE {s}.task_log (id bigserial PRIMARY KEY, task_id text, day date, at timestamptz DEFAULT now());
"""


def prepare(schema: str, seed: int = 7, scale: float = 0.25) -> dict[str, int]:
    """(Re)create the schema with the shop's orders and order lines plus the pipeline's empty tables."""
    from delab import clients

    shop = datasets.shop(seed=seed, scale=scale)
    loaded = datasets.to_postgres(
        {"orders": shop.orders.drop_duplicates("order_id"), "order_items": shop.order_items},
        schema=schema,
        primary_keys={"orders": ["order_id"], "order_items": ["order_id", "line_no"]},
    )
    with clients.postgres() as conn:
        conn.execute(DDL.format(s=schema))
    return loaded


def log_task(conn, schema: str, task_id: str, day: str) -> None:
    """Note that a task ran for a day (monitoring: how often did each step run?)."""
    conn.execute(f"INSERT INTO {schema}.task_log (task_id, day) VALUES (%s, %s)", (task_id, day))


def extract_day(conn, schema: str, day: str) -> int:
    """Copy the day's lines of non-cancelled orders into staging, replacing what a previous run staged."""
    with conn.transaction():
        conn.execute(f"DELETE FROM {schema}.staging_lines WHERE day = %s", (day,))
        cursor = conn.execute(
            f"""INSERT INTO {schema}.staging_lines
                SELECT %(day)s::date, i.order_id, i.line_no, i.product_id, i.quantity, i.unit_price
                FROM {schema}.order_items i JOIN {schema}.orders o USING (order_id)
                WHERE o.order_ts >= %(day)s::date AND o.order_ts < %(day)s::date + 1 AND o.status <> 'cancelled'""",
            {"day": day},
        )
        return cursor.rowcount


INVALID_LINES = """
SELECT s.order_id, s.line_no,
       CASE WHEN s.quantity <= 0 THEN 'quantity ' || s.quantity ELSE 'unit_price ' || s.unit_price END AS reason
FROM {s}.staging_lines s
WHERE s.day = %(day)s AND (s.quantity <= 0 OR s.unit_price <= 0)
  AND NOT EXISTS (SELECT 1 FROM {s}.quarantine q WHERE q.day = s.day AND q.order_id = s.order_id)
ORDER BY s.order_id, s.line_no
"""


def invalid_lines(conn, schema: str, day: str) -> list[tuple[int, int, str]]:
    """Staged lines that break the rules (quantity and price must be positive) and are not quarantined yet."""
    return conn.execute(INVALID_LINES.format(s=schema), {"day": day}).fetchall()


def validate_day(conn, schema: str, day: str) -> None:
    """Fail fast on invalid data: raise with the first offenders named."""
    bad = invalid_lines(conn, schema, day)
    if bad:
        examples = ", ".join(f"order {o} line {n} ({r})" for o, n, r in bad[:3])
        raise ValueError(f"{len(bad)} invalid line(s) staged for {day}: {examples}")


def reset_day(conn, schema: str, day: str) -> None:
    """Forget everything the pipeline did for one day (used by checks to start from a clean slate)."""
    for table in ("staging_lines", "fact_order_revenue", "quarantine", "task_log"):
        conn.execute(f"DELETE FROM {schema}.{table} WHERE day = %s", (day,))
