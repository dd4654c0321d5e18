"""Checks of module 00 (orientation). Expected values are recomputed from the generated shop with pandas,
independently of the SQL a learner writes; known mistakes are recognised and answered with a specific hint."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pandas as pd

from delab.datasets import cached
from delab.grading import WrongAnswer, exercise, learner_code

#: The shop every module-00 lab loads (the labs state these numbers too).
SEED, SCALE = 7, 0.25


def shop():
    return cached(SEED, SCALE)


# ------------------------------------------------------------------------------------- lab 01: how a lab works


def expected_orders_per_channel() -> dict[str, int]:
    orders = shop().orders.drop_duplicates("order_id")
    return {str(k): int(v) for k, v in orders.groupby("channel").order_id.nunique().items()}


@exercise("m00.l01.e1")
def orders_per_channel(answer: Mapping[str, int]) -> None:
    """Distinct orders per sales channel."""
    if isinstance(answer, pd.Series):
        answer = answer.to_dict()
    if not isinstance(answer, Mapping):
        raise WrongAnswer(
            f"expected a dict of channel -> count, got a {type(answer).__name__}.",
            hint="`some_series.to_dict()` turns a pandas Series into a dict.",
        )
    want = expected_orders_per_channel()
    got = {str(k): v for k, v in answer.items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise WrongAnswer(
            f"channels missing: {missing or 'none'}, unexpected: {extra or 'none'}.",
            hint="group by the `channel` column of `shop.orders`.",
        )
    try:
        got = {c: int(got[c]) for c in want}
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"the counts must be whole numbers; you gave {answer!r}.", hint="count rows: `.nunique()` or `.size()`."
        ) from None
    rows = shop().orders.groupby("channel").size()
    if all(int(got[c]) == int(rows[c]) for c in want) and any(rows[c] != want[c] for c in want):
        raise WrongAnswer(
            "your counts include some orders twice.",
            hint="this extract repeats a few order rows: count each order_id once.",
        )
    wrong = [c for c in want if int(got[c]) != want[c]]
    if wrong:
        raise WrongAnswer(
            f"the count for {', '.join(wrong)} is off.",
            hint="count orders (rows of shop.orders, each order_id once), not order lines.",
        )


def expected_captured_revenue() -> float:
    payments = shop().payments
    return round(float(payments.loc[payments.status == "captured", "amount"].sum()), 2)


@exercise("m00.l01.e2")
def captured_revenue(answer: float) -> None:
    """Money actually collected: the sum of captured payments."""
    try:
        value = float(answer)
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"expected a number, got {type(answer).__name__}.", hint="`.sum()` of a column gives one number."
        ) from None
    payments = shop().payments
    want = expected_captured_revenue()
    if abs(value - want) <= 0.01:
        return
    if abs(value - round(float(payments.amount.sum()), 2)) <= 0.01:
        raise WrongAnswer(
            "that is the sum of every payment attempt.",
            hint="failed attempts and refunds brought no money in: look at the `status` column.",
        )
    not_failed = payments.loc[payments.status != "failed", "amount"].sum()
    if abs(value - round(float(not_failed), 2)) <= 0.01:
        raise WrongAnswer("refunded payments are still in your total.", hint="keep only one status.")
    raise WrongAnswer(
        f"{value:,.2f} is not the captured total.",
        hint="filter shop.payments to status == 'captured' and add up `amount`.",
    )


# --------------------------------------------------------------------------------- lab 02: DuckDB data task


@learner_code("your query")
def _run(con, sql: str) -> pd.DataFrame:
    if not isinstance(sql, str) or not sql.strip():
        raise WrongAnswer("expected the SQL as a non-empty string.", hint='write it between triple quotes: """..."""')
    relation = con.sql(sql)
    if relation is None:
        raise WrongAnswer("the statement returned no rows.", hint="a query starts with SELECT (or WITH).")
    return relation.df()


@learner_code("your statement")
def _execute(con, sql: str) -> None:
    if not isinstance(sql, str) or not sql.strip():
        raise WrongAnswer("expected the SQL as a non-empty string.", hint='write it between triple quotes: """..."""')
    con.execute(sql)


def clean_orders() -> pd.DataFrame:
    """The `orders_clean` view of lab 02, rebuilt in pandas: distinct, known customers, no future timestamps."""
    s = shop()
    orders = s.orders.drop_duplicates()
    orders = orders[orders.customer_id.isin(s.customers.customer_id)]
    return orders[orders.order_ts < pd.Timestamp("2026-04-01")]


def orphan_fixture() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The lab's orders and customers, made able to tell a right orphan count from a lucky one: one orphan
    customer gets two more orders, one orphan row is repeated verbatim, a new orphan customer places an order,
    and a customer with two orders is listed twice in `customers`. Each shortcut then gives its own number."""
    s = shop()
    orders, customers = s.orders.copy(), s.customers.copy()
    orphans = orders[~orders.customer_id.isin(customers.customer_id)]
    first = orphans.iloc[[0]]
    next_id = int(orders.order_id.max()) + 1
    more = pd.concat([first] * 3, ignore_index=True)
    more["order_id"] = [next_id, next_id + 1, next_id + 2]
    more.loc[2, "customer_id"] = int(max(orders.customer_id.max(), customers.customer_id.max())) + 1  # a new orphan
    known = orders[orders.customer_id.isin(customers.customer_id)]
    per_customer = known.groupby("customer_id").size()
    twice = int(per_customer[per_customer == 2].index[0])  # a customer with exactly two order rows
    orders = pd.concat([orders, more, first], ignore_index=True)
    customers = pd.concat([customers, customers[customers.customer_id == twice]], ignore_index=True)
    return orders, customers


def _fixture_connection(
    orders: pd.DataFrame, customers: pd.DataFrame, order_items: pd.DataFrame | None = None
) -> duckdb.DuckDBPyConnection:
    """A private DuckDB database holding the shop with the given orders and customers (and order lines)."""
    con = duckdb.connect()
    s = shop()
    given = {"orders": orders, "customers": customers, "order_items": order_items}
    for table in s.tables:
        frame = given[table] if given.get(table) is not None else s.table(table)  # noqa: F841 — scanned
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM frame")
    return con


def _one_number(got: pd.DataFrame):
    if got.shape != (1, 1):
        raise WrongAnswer(
            f"expected one row with one number, got {got.shape[0]} rows x {got.shape[1]} columns.",
            hint="SELECT count(*) ... returns a single value.",
        )
    return got.iat[0, 0]


@exercise("m00.l02.e1")
def orphan_orders(con, sql: str) -> None:
    """Order rows whose customer_id matches no customer."""
    s = shop()
    want = int((~s.orders.customer_id.isin(s.customers.customer_id)).sum())
    value = _one_number(_run(con, sql))
    if value != want:
        if value == 0:
            raise WrongAnswer(
                "you found no orphans, but there are some.",
                hint="the customer_id is never NULL here: it points at a customer that does not exist.",
            )
        if value == len(s.orders) - want:
            raise WrongAnswer(
                "that counts the orders that DO have a customer.",
                hint="an anti-join: LEFT JOIN ... WHERE c.customer_id IS NULL, or NOT EXISTS.",
            )
        raise WrongAnswer(
            f"{value} is not the number of orphan order rows.",
            hint="compare orders.customer_id with customers.customer_id; count order rows.",
        )
    # right on the lab's data; the same query must stay right on data where the shortcuts give other numbers
    orders, customers = orphan_fixture()
    orphans = orders[~orders.customer_id.isin(customers.customer_id)]
    fixture = _fixture_connection(orders, customers)
    try:
        _copy_views(con, fixture)
        value = _one_number(_run(fixture, sql))
    finally:
        fixture.close()
    if value == len(orphans):
        return
    if value == want:
        raise WrongAnswer(
            f"on a copy of the shop with more orphan orders, your query still returns {want}.",
            hint="the query must compute the count from the tables, not state the number you saw.",
        )
    if value == orphans.customer_id.nunique():
        raise WrongAnswer(
            "on data where an unknown customer placed several orders, you counted the customers, not the orders.",
            hint="count order rows: count(*), not count(DISTINCT customer_id).",
        )
    if value == orphans.order_id.nunique():
        raise WrongAnswer(
            "on data where an orphan order row is repeated, you counted distinct order ids.",
            hint="the exercise asks for rows of orders: a repeated row is counted each time (count(*)).",
        )
    joined = len(orders.merge(customers[["customer_id"]], on="customer_id"))
    if value == len(orders) - joined:
        raise WrongAnswer(
            "on data where one customer is listed twice, the total minus the joined orders is off.",
            hint="a join repeats an order once per matching customer row: test for absence instead "
            "(NOT EXISTS, or LEFT JOIN ... WHERE c.customer_id IS NULL).",
        )
    raise WrongAnswer(
        f"on a copy of the shop with more orphan orders, your query returns {value}; it has {len(orphans)}.",
        hint="count the rows of orders whose customer_id matches no row of customers (NOT EXISTS).",
    )


def expected_revenue_by_category(
    *, include_cancelled: bool = False, dedupe: bool = True, drop_negative: bool = True, order_items=None
) -> pd.DataFrame:
    s = shop()
    order_items = s.order_items if order_items is None else order_items
    orders = s.orders.drop_duplicates() if dedupe else s.orders
    orders = orders[orders.customer_id.isin(s.customers.customer_id) & (orders.order_ts < pd.Timestamp("2026-04-01"))]
    if not include_cancelled:
        orders = orders[orders.status != "cancelled"]
    items = order_items.merge(orders[["order_id"]], on="order_id").merge(s.products, on="product_id")
    if drop_negative:
        items = items[items.quantity > 0]
    revenue = (items.quantity * items.unit_price).groupby(items.category).sum().round(2)
    return revenue.rename("revenue").reset_index().sort_values("revenue", ascending=False, ignore_index=True)


ORDERS_CLEAN_VIEW = (
    "CREATE OR REPLACE VIEW orders_clean AS SELECT DISTINCT o.* FROM orders AS o JOIN customers AS c "
    "USING (customer_id) WHERE o.order_ts < TIMESTAMP '2026-04-01'"
)


def revenue_fixture() -> pd.DataFrame:
    """The shop's order lines with more lines in the smallest category (on orders that count): a query that
    states the numbers it saw instead of computing them gives the old numbers here."""
    s = shop()
    items = s.order_items.copy()
    smallest = expected_revenue_by_category().category.iloc[-1]
    product = int(s.products.loc[s.products.category == smallest, "product_id"].iloc[0])
    counted = clean_orders()
    order_ids = counted.loc[counted.status != "cancelled", "order_id"].drop_duplicates().head(5)
    extra = pd.DataFrame(
        {"order_id": order_ids.to_numpy(), "line_no": 99, "product_id": product, "quantity": 7, "unit_price": 1000.0}
    )
    return pd.concat([items, extra.astype(items.dtypes.to_dict())], ignore_index=True)


def _same_revenue(got: pd.DataFrame, want: pd.DataFrame) -> bool:
    if len(got) != len(want):
        return False
    merged = want.merge(got, on="category", how="left", suffixes=("", "_got"))
    return bool(merged.revenue_got.notna().all() and ((merged.revenue - merged.revenue_got).abs() <= 0.01).all())


@exercise("m00.l02.e2")
def revenue_by_category(con, sql: str) -> None:
    """Revenue per product category, largest first."""
    got = _run(con, sql)
    if list(got.columns) != ["category", "revenue"]:
        raise WrongAnswer(
            f"expected the columns [category, revenue], got {list(got.columns)}.", hint="name them with AS."
        )
    got = got.assign(revenue=pd.to_numeric(got.revenue, errors="coerce").astype(float))
    want = expected_revenue_by_category()
    if _same_revenue(got, want):
        if list(got.category) != list(want.category):
            raise WrongAnswer("the numbers are right but the order is not.", hint="largest revenue first.")
        _revenue_on_more_lines(con, sql)
        return
    if _same_revenue(got, expected_revenue_by_category(include_cancelled=True)):
        raise WrongAnswer("cancelled orders are counted.", hint="a cancelled order earned nothing.")
    if _same_revenue(got, expected_revenue_by_category(drop_negative=False)):
        raise WrongAnswer(
            "order lines with a negative quantity are in your sums.",
            hint="profiling showed impossible quantities: keep quantity > 0.",
        )
    if _same_revenue(got, expected_revenue_by_category(dedupe=False)):
        raise WrongAnswer("some orders are counted twice.", hint="join order_items to orders_clean, not to orders.")
    raise WrongAnswer(
        "the revenues differ from the expected ones.",
        hint="revenue of a line = quantity * unit_price; join order_items, orders_clean and products.",
    )


def _copy_views(source, target) -> None:
    """The learner's own views (orders_clean, and any helper view a query reads), recreated over the fixture's
    tables, so a right query that reads them runs there too."""
    try:
        views = source.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
    except (duckdb.Error, AttributeError):
        views = []
    pending = [statement for _, statement in views]
    for _ in range(len(pending)):  # a view may read another: retry until nothing more can be made
        left = []
        for statement in pending:
            try:
                target.execute(statement)
            except duckdb.Error:
                left.append(statement)
        if len(left) == len(pending):
            break
        pending = left


def _revenue_on_more_lines(con, sql: str) -> None:
    """The query, right on the lab's data, must also be right on the shop with more order lines."""
    s = shop()
    items = revenue_fixture()
    fixture = _fixture_connection(s.orders, s.customers, order_items=items)
    try:
        fixture.execute(ORDERS_CLEAN_VIEW)
        _copy_views(con, fixture)
        got = _run(fixture, sql)
    finally:
        fixture.close()
    got = got.assign(revenue=pd.to_numeric(got.revenue, errors="coerce").astype(float))
    if not _same_revenue(got, expected_revenue_by_category(order_items=items)):
        raise WrongAnswer(
            "on a copy of the shop with more order lines, your query returns the same revenues as before.",
            hint="compute the revenues from the tables (SUM over order_items), never type in the numbers you saw.",
        )


def expected_order_sequence(order_by: str = "order_ts") -> pd.DataFrame:
    orders = clean_orders().sort_values([order_by, "order_id"] if order_by != "order_id" else ["order_id"])
    by_customer = orders.groupby("customer_id")
    out = orders[["customer_id", "order_id", "order_ts"]].copy()
    out["order_seq"] = by_customer.cumcount() + 1
    out["hours_since_prev"] = (by_customer.order_ts.diff().dt.total_seconds() / 3600).round(2)
    return out.sort_values(["customer_id", "order_seq"], ignore_index=True)


@exercise("m00.l02.e3")
def order_sequence(con, sql: str) -> None:
    """Each customer's orders numbered in time order, with the hours since their previous order."""
    got = _run(con, sql)
    need = ["customer_id", "order_id", "order_seq", "hours_since_prev"]
    missing = [c for c in need if c not in got.columns]
    if missing:
        raise WrongAnswer(f"columns missing: {missing}.", hint="name the window results with AS.")
    if "over" not in sql.lower():
        raise WrongAnswer(
            "this exercise is about window functions, and the query has no OVER clause.",
            hint="ROW_NUMBER() OVER (...) and LAG(...) OVER (...).",
        )
    want = expected_order_sequence()
    if len(got) != len(want):
        raise WrongAnswer(
            f"expected {len(want)} rows (one per order in orders_clean), got {len(got)}.",
            hint="select from orders_clean and do not filter.",
        )
    try:
        got = got.assign(**{c: got[c].astype("int64") for c in ["customer_id", "order_id", "order_seq"]})
    except (TypeError, ValueError):
        raise WrongAnswer(
            "customer_id, order_id and order_seq must be whole numbers, never NULL.",
            hint="ROW_NUMBER() OVER (...) numbers every row.",
        ) from None
    got = got.sort_values(["customer_id", "order_seq"], ignore_index=True)
    if got.order_seq.max() == len(got):
        raise WrongAnswer("order_seq runs over all customers at once.", hint="PARTITION BY the customer.")
    seq_ok = (
        got[["customer_id", "order_id", "order_seq"]]
        .astype("int64")
        .equals(want[["customer_id", "order_id", "order_seq"]].astype("int64"))
    )
    if not seq_ok:
        by_id = expected_order_sequence(order_by="order_id")
        if got.order_id.astype("int64").tolist() == by_id.order_id.tolist():
            raise WrongAnswer(
                "orders are numbered in id order, not time order.",
                hint="ids are given when a row is inserted, which is not always when it happened.",
            )
        raise WrongAnswer(
            "order_seq does not number each customer's orders 1, 2, 3... in time order.",
            hint="ORDER BY order_ts, order_id inside the window.",
        )
    hours = pd.to_numeric(got.hours_since_prev, errors="coerce").astype(float)
    first = got.order_seq == 1
    if hours[first].notna().any():
        raise WrongAnswer("a first order has a previous order?", hint="LAG gives NULL on the first row: keep it.")
    if not ((hours[~first] - want.hours_since_prev[~first]).abs() <= 0.011).all():
        raise WrongAnswer(
            "hours_since_prev is off for some orders.",
            hint="epoch(order_ts - previous order_ts) / 3600, rounded to 2 decimals.",
        )


@exercise("m00.l02.e4")
def partitioned_orders(con, copy_sql: str, folder: str | Path) -> None:
    """orders_clean written as Parquet, one hive partition per order day."""
    folder = Path(folder)
    if folder.is_dir():
        shutil.rmtree(folder)  # the check writes afresh each time, so a re-run is never polluted
    elif folder.exists():
        folder.unlink()
    _execute(con, copy_sql)
    if folder.is_file():
        raise WrongAnswer(
            "the output is one Parquet file, not partitioned folders.",
            hint="COPY ... (FORMAT parquet, PARTITION_BY (...)) writes a folder per value.",
        )
    if not folder.is_dir():
        raise WrongAnswer(f"nothing was written to {folder}.", hint="COPY (...) TO the folder given in the lab.")
    partitions = sorted(p for p in folder.iterdir() if p.is_dir())
    if not partitions:
        raise WrongAnswer(
            "the output is not partitioned: there is no order_date=... folder.",
            hint="COPY ... (FORMAT parquet, PARTITION_BY (order_date)).",
        )
    wrong_key = [p.name for p in partitions if not p.name.startswith("order_date=")]
    if wrong_key:
        raise WrongAnswer(
            f"partition folders should be named order_date=..., found {wrong_key[0]}.",
            hint="partition by a column called order_date.",
        )
    want = clean_orders()
    days = sorted(want.order_ts.dt.strftime("%Y-%m-%d").unique())
    got_days = [p.name.removeprefix("order_date=") for p in partitions]
    looks_like_days = all(len(d) == 10 and d[4] == d[7] == "-" for d in got_days)
    if looks_like_days and set(got_days) != set(days):
        early, late = min(got_days), max(got_days)
        raise WrongAnswer(
            f"your partitions run from {early} to {late}; orders_clean has orders from {days[0]} to {days[-1]}.",
            hint="write orders_clean (not orders), and take the day of order_ts as it is: CAST(order_ts AS DATE).",
        )
    if len(got_days) > len(days):
        raise WrongAnswer(
            f"{len(got_days)} partitions for {len(days)} days: the partition key is finer than a day.",
            hint="cast the timestamp to a DATE before partitioning by it.",
        )
    if got_days != days:
        raise WrongAnswer(
            f"expected one partition per day from {days[0]} to {days[-1]}.",
            hint="order_date = CAST(order_ts AS DATE), from orders_clean.",
        )
    files = [p for p in folder.rglob("*") if p.is_file()]
    not_parquet = sorted({p.suffix or p.name for p in files if p.suffix != ".parquet"})
    if not files or not_parquet:
        raise WrongAnswer(
            f"the partitions hold {', '.join(not_parquet) or 'no'} files, not Parquet.",
            hint="without FORMAT parquet, COPY writes CSV: add FORMAT parquet to the options.",
        )
    scan = f"read_parquet('{folder.as_posix()}/**/*.parquet', hive_partitioning = true)"
    reader = duckdb.connect()
    try:
        columns = [row[0] for row in reader.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
        missing = [c for c in [*want.columns, "order_date"] if c not in columns]
        if missing:
            raise WrongAnswer(
                f"columns missing from the files: {missing}.",
                hint="write every column of orders_clean (SELECT *, ...) plus order_date.",
            )
        back = reader.execute(
            f"SELECT CAST(order_date AS VARCHAR) AS order_date, CAST(order_ts AS DATE)::VARCHAR AS ts_day, "
            f"order_id FROM {scan}"
        ).df()
    except duckdb.Error as error:
        raise WrongAnswer(
            f"the files cannot be read back: {str(error).strip().splitlines()[0][:200]}",
            hint="write orders_clean with COPY ... (FORMAT parquet, PARTITION_BY (order_date)).",
        ) from None
    finally:
        reader.close()
    if len(back) != len(want):
        raise WrongAnswer(
            f"the files hold {len(back)} rows; orders_clean has {len(want)}.",
            hint="write orders_clean, every row, once.",
        )
    if sorted(back.order_id.astype("int64")) != sorted(want.order_id.astype("int64")):
        raise WrongAnswer("the files hold other orders than orders_clean.", hint="COPY (SELECT ... FROM orders_clean).")
    if (back.order_date != back.ts_day).any():
        raise WrongAnswer("some rows sit in the partition of another day.", hint="derive order_date from order_ts.")


# ------------------------------------------------------------------------------------------- lab 03: your stack

STACK_PREFIX = "m00_l03"


def session_events(n: int = 24) -> list[dict]:
    """The clicks lab 03 publishes: the first events of the shop's clickstream, as JSON-ready dicts."""
    clicks = shop().clicks.head(n)
    return [
        {
            "event_id": int(c.event_id),
            "session_id": int(c.session_id),
            "event_type": c.event_type,
            "event_time": c.event_time.isoformat(),
        }
        for c in clicks.itertuples()
    ]


@learner_code("your function")
def _call(fn, *args):
    return fn(*args)


@exercise("m00.l03.e1")
def produce_events(fn, topic: str) -> None:
    """Events published to Kafka as JSON, keyed by session so a session stays in order."""
    import json

    from delab import clients

    events = session_events()
    _call(fn, topic, events)
    messages = clients.kafka_messages(topic)
    if len(messages) < len(events):
        raise WrongAnswer(
            f"the topic holds {len(messages)} messages; you sent {len(events)}.",
            hint="send() only queues a message: flush() (or close()) the producer before returning.",
        )
    mine = messages[-len(events) :]
    keys = [k.decode() if isinstance(k, bytes) else k for k, _ in mine]
    if any(k is None for k in keys):
        raise WrongAnswer(
            "the messages have no key.",
            hint="key=str(session_id).encode(): the key decides the partition, so one session stays in order.",
        )
    try:
        values = [json.loads(v) for _, v in mine]
    except (TypeError, ValueError):
        raise WrongAnswer("the message values are not JSON.", hint="json.dumps(event).encode()") from None
    if not all(isinstance(v, dict) and "event_id" in v for v in values):
        sample = next(v for v in values if not (isinstance(v, dict) and "event_id" in v))
        raise WrongAnswer(
            f"a message value decodes to {sample!r}, not an event object.",
            hint="json.dumps(event).encode() once: encoding the JSON text again gives a quoted string.",
        )
    if sorted(values, key=lambda e: e["event_id"]) != events:
        raise WrongAnswer("the messages do not carry the events you were given.", hint="send each event once.")
    if keys != [str(v["session_id"]) for v in values]:
        raise WrongAnswer("the keys are not the events' session ids.", hint="key = the session_id, as text.")


def expected_orders_per_country() -> pd.DataFrame:
    s = shop()
    orders = s.orders.drop_duplicates("order_id").merge(s.customers, on="customer_id")
    counts = orders.assign(country=orders.country.str.upper()).groupby("country").size()
    return (
        counts.rename("orders")
        .reset_index()
        .sort_values(["orders", "country"], ascending=[False, True], ignore_index=True)
    )


@exercise("m00.l03.e2")
def orders_per_country(sql: str) -> None:
    """Orders per country, straight from Postgres."""
    from delab import clients

    if not isinstance(sql, str) or not sql.strip():
        raise WrongAnswer("expected the SQL as a non-empty string.", hint='"""SELECT ..."""')
    want = expected_orders_per_country()
    with clients.postgres() as conn:
        got = _frame_pg(conn, sql)
        _compare_orders_per_country(got, want)
        # right on the lab's data; the same query must stay right when the smallest country gets 3 more orders and
        # the largest a customer without any (every customer of the shop has orders), in a transaction the check
        # rolls back: the lab's tables are left as they were
        smallest, largest = str(want.country.iloc[-1]), str(want.country.iloc[0])
        s = shop()
        customer = int(s.customers.loc[s.customers.country.str.upper() == smallest, "customer_id"].iloc[0])
        with conn.transaction(force_rollback=True):
            conn.execute(
                f"CREATE TEMP TABLE delab_extra_customer AS SELECT * FROM {STACK_PREFIX}.customers "
                "WHERE upper(country) = %s ORDER BY customer_id LIMIT 1",
                [largest],
            )
            conn.execute(
                f"UPDATE delab_extra_customer SET customer_id = (SELECT max(customer_id) + 1 FROM "
                f"{STACK_PREFIX}.customers)"
            )
            conn.execute(f"INSERT INTO {STACK_PREFIX}.customers SELECT * FROM delab_extra_customer")
            conn.execute(
                f"CREATE TEMP TABLE delab_extra_order AS SELECT * FROM {STACK_PREFIX}.orders ORDER BY order_id LIMIT 1"
            )
            first_new = conn.execute(f"SELECT max(order_id) + 1 FROM {STACK_PREFIX}.orders").fetchone()[0]
            for order_id in range(first_new, first_new + 3):
                conn.execute("UPDATE delab_extra_order SET order_id = %s, customer_id = %s", [order_id, customer])
                conn.execute(f"INSERT INTO {STACK_PREFIX}.orders SELECT * FROM delab_extra_order")
            again = _frame_pg(conn, sql)
    more = want.assign(orders=want.orders + 3 * (want.country == smallest))
    more = more.sort_values(["orders", "country"], ascending=[False, True], ignore_index=True)
    try:
        _compare_orders_per_country(again, more)
    except WrongAnswer:
        if _same_counts(again, want):
            raise WrongAnswer(
                f"with 3 more orders from {smallest}, your query returns the same counts as before.",
                hint="compute the counts from the tables (count(*) ... GROUP BY); never type in the numbers you saw.",
            ) from None
        counted_the_customer = more.assign(orders=more.orders + (more.country == largest))
        if _same_counts(again, counted_the_customer.sort_values(["orders", "country"], ascending=[False, True])):
            raise WrongAnswer(
                f"with a new customer from {largest} who has not ordered yet, your query counts one more order.",
                hint="customers LEFT JOIN orders keeps a customer without orders as one row: join orders to "
                "customers (or count o.order_id).",
            ) from None
        raise


def _same_counts(got: pd.DataFrame, want: pd.DataFrame) -> bool:
    try:
        return list(got.country) == list(want.country) and [int(n) for n in got.orders] == list(want.orders)
    except (AttributeError, TypeError, ValueError):
        return False


def _compare_orders_per_country(got: pd.DataFrame, want: pd.DataFrame) -> None:
    if list(got.columns) != ["country", "orders"]:
        raise WrongAnswer(f"expected the columns [country, orders], got {list(got.columns)}.", hint="AS country ...")
    if len(got) > len(want) and got.country.astype(str).str.islower().any():
        raise WrongAnswer(
            "some countries appear twice, once in lower case.",
            hint="a few rows have lower-case codes: upper() them before grouping.",
        )
    try:
        got = got.assign(orders=got.orders.astype(int))
    except (TypeError, ValueError):
        raise WrongAnswer("orders must be whole numbers (no NULL, no text).", hint="count(*) AS orders") from None
    if got.sort_values("country").reset_index(drop=True).equals(want.sort_values("country").reset_index(drop=True)):
        if list(got.country) != list(want.country):
            raise WrongAnswer("the counts are right, the order is not.", hint="most orders first, then by country.")
        return
    raise WrongAnswer(
        "the counts differ from the orders in the database.",
        hint="count orders (join orders to customers), not customers.",
    )


@learner_code("your query")
def _frame_pg(conn, sql: str) -> pd.DataFrame:
    cursor = conn.execute(sql)
    return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])


@exercise("m00.l03.e3")
def object_round_trip(fn) -> None:
    """A report stored in the object store under the lab's prefix, and read back byte for byte."""
    from delab import clients, config

    report = f"orders,country\n{len(shop().orders)},all\n"
    key = _call(fn, report)
    if not isinstance(key, str):
        raise WrongAnswer("return the key you wrote to.", hint="return key")
    if not key.startswith(f"{STACK_PREFIX}/"):
        raise WrongAnswer(
            f"{key!r} is outside this lab's prefix {STACK_PREFIX}/.",
            hint="ns.key('reports/...') builds a key under the lab's prefix.",
        )
    try:
        body = clients.s3().get_object(Bucket=config.s3().bucket, Key=key)["Body"].read()
    except Exception as error:
        raise WrongAnswer(
            f"cannot read s3://{config.s3().bucket}/{key}: {type(error).__name__}.",
            hint=f"put_object(Bucket={config.s3().bucket!r}, Key=key, Body=...)",
        ) from None
    if body != report.encode():
        raise WrongAnswer("the object's content differs from the report.", hint="Body=report.encode()")


def expected_counts(events: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        counts[event["event_type"]] = counts.get(event["event_type"], 0) + 1
    return counts


@exercise("m00.l03.e4")
def flink_counts(count_sql: str, ddl: list[str], source_topic: str, sink_topic: str) -> None:
    """A Flink job on the cluster counting events per type from Kafka into Kafka."""
    import json

    from delab import clients, flinksql

    if not isinstance(count_sql, str) or "insert" not in count_sql.lower():
        raise WrongAnswer("expected an INSERT INTO ... SELECT statement.", hint="INSERT INTO event_counts SELECT ...")
    flinksql.run([*ddl, count_sql])
    events = [json.loads(v) for _, v in clients.kafka_messages(source_topic)]
    latest: dict[str, int] = {}
    for _, value in clients.kafka_messages(sink_topic):
        if value is not None:
            row = json.loads(value)
            latest[str(row.get("event_type"))] = int(row.get("events", -1))
    want = expected_counts(events)
    if set(latest) != set(want):
        raise WrongAnswer(
            f"the sink has counts for {sorted(latest)}, expected {sorted(want)}.", hint="GROUP BY event_type."
        )
    if latest != want:
        raise WrongAnswer("the counts differ from the events in the source topic.", hint="COUNT(*) per event_type.")


@exercise("m00.l03.e5")
def changed_columns(fn, event: dict) -> None:
    """The columns an UPDATE changed, read from a real Debezium change event."""
    if not isinstance(event, dict) or event.get("op") != "u":
        raise WrongAnswer("the lab did not capture an update event yet.", hint="run the cells above this one.")
    import copy

    # the real event, and the same event with one more column changed: the answer must hold for both
    variant = copy.deepcopy(event)
    variant["after"]["name"] = f"{variant['before'].get('name')} Jr."
    for sample in (event, variant):
        _changed_columns_match(fn, sample)


def _changed_columns_match(fn, event: dict) -> None:
    before, after = event["before"], event["after"]
    want = {k: (before.get(k), after.get(k)) for k in after if before.get(k) != after.get(k)}
    got = _call(fn, event)
    if not isinstance(got, dict):
        raise WrongAnswer(f"expected a dict, got {type(got).__name__}.", hint="{column: (old, new)}")
    got = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in got.items()}
    if set(got) - set(want):
        raise WrongAnswer(
            f"{sorted(set(got) - set(want))} did not change.",
            hint="keep only the columns whose before and after values differ.",
        )
    if set(want) - set(got):
        raise WrongAnswer(f"{sorted(set(want) - set(got))} changed but is missing.", hint="compare every column.")
    for column, (old, new) in want.items():
        if got[column] == (new, old):
            raise WrongAnswer(f"{column}: old and new are swapped.", hint="before is the old row, after the new.")
        if got[column] != (old, new):
            raise WrongAnswer(
                f"{column}: expected ({old!r}, {new!r}), got {got[column]!r}.",
                hint="(event['before'][column], event['after'][column])",
            )
