"""Checks of lab 02.02 (incremental loading): keyset extraction, a newer-wins upsert, an SCD type 2 load and a
late-commit-safe incremental run with a persisted watermark.

Each check builds its own tables in Postgres (schema ``m02_l02``, tables ``check_*``; the last one a schema
``m02_l02_check``) from the shop data, runs the learner's code and compares the result with an expectation
computed independently in pandas.
"""

from __future__ import annotations

import time

import pandas as pd

from delab import clients, datasets
from delab.grading import WrongAnswer, exercise, learner_code
from delab.loading import incremental

SCHEMA = "m02_l02"


def _frame(conn, sql: str, params=None) -> pd.DataFrame:
    cur = conn.execute(sql, params)
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def _orders(scale: float = 0.25) -> pd.DataFrame:
    return incremental.source_orders(datasets.cached(seed=42, scale=scale))


# ------------------------------------------------------------------------------------------- keyset batches


@learner_code("next_batch")
def _next(fn, conn, table, after, limit):
    return fn(conn, table, after, limit)


@exercise("m02.l02.e1")
def keyset_batches(next_batch) -> None:
    """Paging with the (updated_at, order_id) keyset returns every row exactly once, in order — ties included."""
    orders = _orders()
    table = f"{SCHEMA}.check_keyset_orders"
    limit = 25
    with clients.postgres() as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        incremental.create_orders_table(conn, table)
        incremental.load_orders(conn, table, orders)
        seen: list[int] = []
        after = None
        for _ in range(len(orders) // limit + 20):  # generous, but finite: a page that never advances must stop
            page = _next(next_batch, conn, table, after, limit)
            page = list(page or [])
            if not page:
                break
            if len(page) > limit:
                raise WrongAnswer(
                    f"asked for at most {limit} rows, next_batch returned {len(page)}.",
                    hint="LIMIT the query.",
                )
            try:
                keys = [(row[-1], row[0]) for row in page]
                in_order = keys == sorted(keys)
            except (TypeError, KeyError, IndexError):
                raise WrongAnswer(
                    f"next_batch returned rows like {page[0]!r}: expected tuples of every column "
                    "(order_id, customer_id, channel, status, updated_at).",
                    hint="SELECT * with the default cursor: each row is a tuple.",
                ) from None
            if not in_order:
                raise WrongAnswer(
                    "a page is not ordered by (updated_at, order_id).",
                    hint="the next page starts after the last row of this one: that only works if pages are "
                    "sorted by exactly the watermark's columns.",
                )
            seen += [row[0] for row in page]
            after = keys[-1]
        else:
            raise WrongAnswer(
                "paging never ended: next_batch keeps returning rows it returned before.",
                hint="rows strictly after the watermark (`>`), not from it (`>=`).",
            )
    duplicated = len(seen) - len(set(seen))
    if duplicated:
        raise WrongAnswer(
            f"{duplicated} rows came back twice.",
            hint="a row equal to the watermark was already delivered: compare strictly.",
        )
    missing = set(orders.order_id) - set(seen)
    if missing:
        tied = orders[orders.order_id.isin(missing)].updated_at.isin(
            orders.updated_at[orders.updated_at.duplicated(keep=False)]
        )
        raise WrongAnswer(
            f"{len(missing)} of {len(orders)} rows were never returned"
            + (", all of them sharing their updated_at with other rows." if tied.all() else "."),
            hint="updated_at alone is not unique (the marketplace batch is stamped at midnight): compare the pair "
            "(updated_at, order_id) — Postgres compares row values: (a, b) > (x, y).",
        )


# -------------------------------------------------------------------------------------------------- upsert


@learner_code("upsert_sql")
def _upsert(conn, sql_template, target, staging):
    conn.execute(sql_template.format(target=target, staging=staging))


def _target(conn, table) -> pd.DataFrame:
    return _frame(conn, f"SELECT {', '.join(incremental.ORDER_COLUMNS)} FROM {table} ORDER BY order_id")


def _stage(conn, staging: str, frame: pd.DataFrame) -> None:
    conn.execute(f"TRUNCATE {staging}")
    incremental.load_orders(conn, staging, frame)


@exercise("m02.l02.e2")
def newer_wins_upsert(upsert_sql) -> None:
    """The upsert inserts new keys, applies newer versions, ignores older replays, and is idempotent."""
    if not isinstance(upsert_sql, str) or "{target}" not in upsert_sql or "{staging}" not in upsert_sql:
        raise WrongAnswer(
            "upsert_sql must be a string with the placeholders {target} and {staging}.",
            hint='write it like "INSERT INTO {target} … SELECT … FROM {staging} …".',
        )
    orders = _orders().head(400).reset_index(drop=True)
    first = orders.head(300)
    second = orders.iloc[:100].copy()  # 100 updated orders …
    second["status"] = "shipped"
    second["updated_at"] = second.updated_at + pd.Timedelta(hours=1)
    # … some of them corrected in other columns too, so an update of only status/updated_at shows
    second.loc[:29, "channel"] = second.loc[:29, "channel"].map(lambda c: "app" if c != "app" else "web")
    second.loc[20:39, "customer_id"] = second.loc[20:39, "customer_id"] + 1
    second = pd.concat([second, orders.iloc[300:350]], ignore_index=True)  # … and 50 new ones
    target, staging = f"{SCHEMA}.check_upsert_target", f"{SCHEMA}.check_upsert_staging"

    def expect(*batches):
        merged = pd.concat(batches).sort_values("updated_at", kind="stable")
        merged = merged.drop_duplicates("order_id", keep="last").sort_values("order_id", ignore_index=True)
        return merged[list(incremental.ORDER_COLUMNS)]

    with clients.postgres() as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute("SET timezone = 'UTC'")
        incremental.create_orders_table(conn, target)
        incremental.create_orders_table(conn, staging, primary_key=False)  # insert + truncate only
        steps = [
            (first, "the first batch into an empty target", expect(first)),
            (first, "the same batch a second time", expect(first)),
            (second, "a batch with 100 newer versions and 50 new orders", expect(first, second)),
            (first, "a replay of the first (older) batch", expect(first, second)),
        ]
        rewrites: list[tuple[str, int]] = []
        for batch, what, want in steps:
            _stage(conn, staging, batch)
            before = _versions(conn, target)
            _upsert(conn, upsert_sql, target, staging)
            got = _target(conn, target)
            got["updated_at"] = got.updated_at.dt.tz_convert("UTC").dt.tz_localize(None)
            if len(got) != len(want):
                raise WrongAnswer(
                    f"after applying {what}, the target has {len(got)} rows; expected {len(want)}.",
                    hint="one row per order_id: insert the keys the target does not have yet.",
                )
            merged = got.merge(want, on="order_id", suffixes=("", "_want"))
            versions = (merged.status != merged.status_want) | (merged.updated_at != merged.updated_at_want)
            others = (merged.channel != merged.channel_want) | (merged.customer_id != merged.customer_id_want)
            differs = versions | others
            if others.any() and not versions.any():
                stale = [c for c in ("customer_id", "channel") if (merged[c] != merged[f"{c}_want"]).any()]
                raise WrongAnswer(
                    f"after applying {what}, {int(others.sum())} rows have the new status and updated_at but an "
                    f"old {' and '.join(stale)}.",
                    hint="a newer version replaces the whole row: SET every non-key column from EXCLUDED "
                    "(or the MERGE source).",
                )
            if differs.any():
                if batch is first and len(want) > len(first):  # the replay step
                    raise WrongAnswer(
                        f"after {what}, {int(differs.sum())} rows went back to an older version.",
                        hint="batches can arrive twice or out of order: only overwrite a row with a NEWER one "
                        "(a WHERE on the DO UPDATE, or a condition in MERGE's WHEN MATCHED).",
                    )
                raise WrongAnswer(
                    f"after applying {what}, {int(differs.sum())} rows still hold an older version.",
                    hint="on a conflict, update the existing row with the staged values (EXCLUDED.…).",
                )
            after = _versions(conn, target)
            same_again = sum(
                1
                for key, (xmin, stamp) in before.items()
                if key in after and after[key][1] == stamp and after[key][0] != xmin  # same version, written again
            )
            rewrites.append((what, same_again))
    # the content is right at every step; still, re-applying a version the target already holds must write nothing
    for what, same_again in rewrites:
        if same_again:
            raise WrongAnswer(
                f"applying {what} rewrote {same_again} rows with the version they already had.",
                hint="update only when the staged row is strictly newer: an equal updated_at is the same "
                "version, and rewriting it costs a new row version (and WAL) for nothing.",
            )


def _versions(conn, table) -> dict[int, tuple[str, object]]:
    """Per order: (xmin, updated_at) — xmin changes whenever the row is rewritten, even with equal values."""
    return {
        key: (xmin, stamp) for key, xmin, stamp in conn.execute(f"SELECT order_id, xmin::text, updated_at FROM {table}")
    }


# ---------------------------------------------------------------------------------------------------- SCD 2


@learner_code("scd2_load")
def _scd2(fn, conn, dim, snapshot, as_of):
    return fn(conn, dim, snapshot, as_of)


def _snapshots() -> tuple[pd.DataFrame, pd.DataFrame]:
    customers = datasets.cached(seed=42, scale=0.25).customers
    first = customers[["customer_id", "country", "segment"]].head(300).copy()
    first["country"] = first.country.str.upper()
    second = first.copy()
    second.loc[10:39, "country"] = second.loc[10:39, "country"].map(lambda c: "FR" if c != "FR" else "DE")
    second.loc[30:49, "segment"] = second.loc[30:49, "segment"].map(
        lambda s: "business" if s != "business" else "student"
    )
    new = customers[["customer_id", "country", "segment"]].iloc[300:325].copy()
    new["country"] = new.country.str.upper()
    # unknown segments: five customers start without one, three of them get one, three others lose theirs —
    # changes to and from NULL, which `<>` does not see
    first["segment"] = first.segment.astype(object)
    first.loc[50:54, "segment"] = None
    second = pd.concat([second, new], ignore_index=True)
    second["segment"] = second.segment.astype(object)
    second.loc[50:54, "segment"] = None
    second.loc[50:52, "segment"] = "student"
    second.loc[55:57, "segment"] = None
    # a third snapshot: customers that changed at the second change again, so a load that closes more than the
    # current version rewrites history it should leave alone
    third = second.copy()
    third.loc[10:19, "country"] = "IT"
    third.loc[60:64, "country"] = third.loc[60:64, "country"].map(lambda c: "ES" if c != "ES" else "PT")
    return first, second, third


def _expected_dim(snapshots: list[tuple[pd.Timestamp, pd.DataFrame]]) -> pd.DataFrame:
    versions: list[dict] = []
    current: dict[int, dict] = {}
    for as_of, snap in snapshots:
        for row in snap.itertuples(index=False):
            now = current.get(row.customer_id)
            if now is not None and (now["country"], now["segment"]) == (row.country, row.segment):
                continue
            if now is not None:
                now["valid_to"], now["is_current"] = as_of, False
            new = {
                "customer_id": row.customer_id,
                "country": row.country,
                "segment": row.segment,
                "valid_from": as_of,
                "valid_to": pd.NaT,
                "is_current": True,
            }
            versions.append(new)
            current[row.customer_id] = new
    return pd.DataFrame(versions).sort_values(["customer_id", "valid_from"], ignore_index=True)


@exercise("m02.l02.e3")
def scd2_history(scd2_load) -> None:
    """SCD type 2: a changed customer gets a new current version and the old one is closed; re-runs add nothing."""
    first, second, third = _snapshots()
    t1, t2, t3 = (pd.Timestamp(f"2026-03-{d} 00:00:00") for d in ("01", "15", "29"))
    dim, snapshot = f"{SCHEMA}.check_dim_customer", f"{SCHEMA}.check_customer_snapshot"
    with clients.postgres() as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute("SET timezone = 'UTC'")
        conn.execute(f"DROP TABLE IF EXISTS {dim}")
        conn.execute(
            f"""CREATE TABLE {dim} (version_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                  customer_id bigint NOT NULL, country text, segment text,
                  valid_from timestamptz NOT NULL, valid_to timestamptz, is_current boolean NOT NULL)"""
        )
        conn.execute(f"DROP TABLE IF EXISTS {snapshot}")
        conn.execute(f"CREATE TABLE {snapshot} (customer_id bigint PRIMARY KEY, country text, segment text)")
        runs = [
            (t1, first, "the first snapshot"),
            (t2, second, "the second snapshot"),
            (t2, second, "the second snapshot again"),
            (t3, third, "a third snapshot"),
        ]
        for k, (as_of, snap, what) in enumerate(runs):
            conn.execute(f"TRUNCATE {snapshot}")
            with conn.cursor() as cur, cur.copy(f"COPY {snapshot} (customer_id, country, segment) FROM STDIN") as copy:
                for row in snap.itertuples(index=False, name=None):
                    copy.write_row(row)
            _scd2(scd2_load, conn, dim, snapshot, as_of.tz_localize("UTC").to_pydatetime())
            got = _frame(
                conn,
                f"SELECT customer_id, country, segment, valid_from, valid_to, is_current FROM {dim} "
                "ORDER BY customer_id, valid_from",
            )
            for column in ("valid_from", "valid_to"):
                got[column] = pd.to_datetime(got[column], utc=True).dt.tz_localize(None)
            want = _expected_dim([(t, s) for t, s, _ in runs[: k + 1]])
            _compare_dim(got, want, what)


def _compare_dim(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    current = got[got.is_current].customer_id
    if current.duplicated().any():
        raise WrongAnswer(
            f"after {what}, {int(current.duplicated().sum())} customers have more than one current version.",
            hint="before inserting a customer's new version, close the current one (valid_to, is_current).",
        )
    if len(got) > len(want):
        raise WrongAnswer(
            f"after {what}, the dimension has {len(got)} versions; expected {len(want)}.",
            hint="a customer whose attributes did not change gets no new version — so a re-run adds nothing.",
        )
    if len(got) < len(want):
        per_customer = got.groupby("customer_id").size().reindex(want.customer_id.unique(), fill_value=0)
        short = per_customer[per_customer < want.groupby("customer_id").size()].index
        missed = want[want.customer_id.isin(short)]
        if len(short) and missed.groupby("customer_id").segment.apply(lambda s: s.isna().any()).all():
            raise WrongAnswer(
                f"after {what}, {len(short)} customers whose segment changed to or from NULL got no new version.",
                hint="`a <> b` is NULL, not true, when either side is NULL: compare with IS DISTINCT FROM.",
            )
        raise WrongAnswer(
            f"after {what}, the dimension has {len(got)} versions; expected {len(want)}.",
            hint="type 2 keeps history: a change adds a version instead of overwriting the old one.",
        )
    got = got.reset_index(drop=True)
    closed = want.valid_to.notna() & got.valid_to.notna() & (got.valid_to > want.valid_to)
    if closed.any() and (got.customer_id == want.customer_id).all():
        raise WrongAnswer(
            f"after {what}, {int(closed.sum())} versions that were already closed got a later valid_to.",
            hint="close only the customer's current version (AND is_current): older versions are history.",
        )
    for column, hint in (
        ("customer_id", "one version per customer and change; new customers get their first version."),
        ("valid_from", "a new version is valid from the snapshot's as_of."),
        ("country", "the new version carries the snapshot's attributes."),
        ("segment", "the new version carries the snapshot's attributes."),
        ("is_current", "only the newest version of a customer is current."),
        ("valid_to", "close the old version at the new one's valid_from; a current version has valid_to NULL."),
    ):
        differs = ~((got[column] == want[column]) | (got[column].isna() & want[column].isna()))
        if differs.any():
            raise WrongAnswer(f"after {what}, {column} is wrong in {int(differs.sum())} versions.", hint=hint)


# ----------------------------------------------------------------------------------------- incremental run


@learner_code("run_increment")
def _run(fn, schema):
    with clients.postgres() as conn:  # a fresh connection each time: state must live in the database
        return fn(conn, schema)


def _xmins(conn, schema) -> dict[int, str]:
    return dict(conn.execute(f"SELECT order_id, xmin::text FROM {schema}.dw_orders").fetchall())


AT_BOUND = 10**12  # an order id the shop never uses


_FAIL_ONCE = """
CREATE OR REPLACE FUNCTION {schema}.check_fail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the check made this write fail on purpose'; END $$;
CREATE TRIGGER check_fail BEFORE INSERT OR UPDATE ON {schema}.{table} FOR EACH STATEMENT
EXECUTE FUNCTION {schema}.check_fail();
"""


def _atomic_or_nothing(run_increment, conn, schema: str) -> None:
    """From an empty target, make each of the run's two writes fail in turn: the other one must not stay behind
    (one transaction). Then load the first run again, as it was."""
    for table, what in (("watermarks", "saving the watermark"), ("dw_orders", "loading the rows")):
        conn.execute(f"TRUNCATE {schema}.dw_orders, {schema}.watermarks")
        conn.execute(_FAIL_ONCE.format(schema=schema, table=table))
        try:
            with clients.postgres() as fresh:
                run_increment(fresh, schema)
        except NotImplementedError:
            raise
        except Exception:  # expected: the write failed — what matters is what it left behind
            pass
        finally:
            conn.execute(f"DROP TRIGGER check_fail ON {schema}.{table}")
        loaded = conn.execute(f"SELECT count(*) FROM {schema}.dw_orders").fetchone()[0]
        saved = incremental.get_watermark(conn, schema)
        if loaded or saved is not None:
            left = f"{loaded} rows loaded" if loaded else "the watermark saved"
            raise WrongAnswer(
                f"when {what} failed, the run still left {left}.",
                hint="read the watermark, load the rows and save the new watermark in one transaction "
                "(with conn.transaction():), so a failure leaves nothing half done.",
            )
    conn.execute(f"TRUNCATE {schema}.dw_orders, {schema}.watermarks")
    _run(run_increment, schema)


@exercise("m02.l02.e4")
def late_commit_safe_run(run_increment) -> None:
    """Incremental runs keep a watermark in the database, catch a late-committing transaction, rewrite nothing twice."""
    schema = f"{SCHEMA}_check"
    with clients.postgres() as conn:
        incremental.prepare(conn, schema, datasets.cached(seed=42, scale=0.1))
        _run(run_increment, schema)
        state = incremental.get_watermark(conn, schema)
        if state is None:
            raise WrongAnswer(
                f"after a run, {schema}.watermarks has no row for the pipeline 'orders'.",
                hint="persist the watermark in the watermarks table, in the transaction that loads the rows.",
            )
        report = incremental.compare(conn, schema)
        if report["missing_in_target"]:
            raise WrongAnswer(
                f"the first run left {report['missing_in_target']} source rows out of the target.",
                hint="with no watermark yet, the first run takes everything up to its upper bound.",
            )
        _atomic_or_nothing(run_increment, conn, schema)

        late = clients.postgres(autocommit=False)
        try:
            late.execute(
                f"INSERT INTO {schema}.src_orders (order_id, customer_id, channel, status) VALUES (1, 1, 'web', 'new')"
            )  # updated_at = now() = this transaction's start; it commits only after the next run
            (late_start,) = late.execute("SELECT now()").fetchone()
            # a committed row stamped exactly at that start, which is where the next run's bound will be: it
            # belongs to the run after, and a run taking `<= bound` loads it twice
            conn.execute(f"INSERT INTO {schema}.src_orders VALUES (%s, 1, 'web', 'new', %s)", (AT_BOUND, late_start))
            time.sleep(0.05)
            conn.execute(
                f"INSERT INTO {schema}.src_orders (order_id, customer_id, channel, status) VALUES (2, 1, 'app', 'new')"
            )
            conn.execute(
                f"UPDATE {schema}.src_orders SET status = 'cancelled', updated_at = now() WHERE order_id = "
                f"(SELECT min(order_id) FROM {schema}.src_orders WHERE order_id > 2)"
            )
            _run(run_increment, schema)
            held_at = incremental.get_watermark(conn, schema)  # where the run stopped while order 1 was open
            at_bound_first = _xmins(conn, schema).get(AT_BOUND)
            late.commit()
        finally:
            late.close()
        # Another session of this role with an open write transaction (another notebook, say) rightly holds a
        # safe bound back for a moment: give the run a few tries before calling the late row lost.
        for _ in range(5):
            _run(run_increment, schema)
            in_target = {r[0] for r in conn.execute(f"SELECT order_id FROM {schema}.dw_orders WHERE order_id < 3")}
            if in_target == {1, 2}:
                break
            time.sleep(1)
        report = incremental.compare(conn, schema)
        if 1 not in in_target:
            (late_stamp,) = conn.execute(f"SELECT updated_at FROM {schema}.src_orders WHERE order_id = 1").fetchone()
            if held_at == late_stamp:
                raise WrongAnswer(
                    "your run stopped its watermark right at the open transaction's start, but the next run never "
                    "took order 1, stamped exactly at that watermark.",
                    hint="the bound of one run is where the next one starts: take [watermark, bound) — rows equal "
                    "to the watermark are in, rows equal to the bound wait for the next run.",
                )
            raise WrongAnswer(
                "order 1 — inserted by a transaction that started before order 2's but committed after a run had "
                "seen order 2 — never reached the target.",
                hint="a row's updated_at is its transaction's START; it becomes visible at COMMIT. Do not move the "
                "watermark past the start of a transaction that is still writing (pg_stat_activity: xact_start, "
                "backend_xid).",
            )
        if 2 not in in_target or report["stale_in_target"] or report["missing_in_target"]:
            raise WrongAnswer(
                f"after the runs, the target misses {report['missing_in_target']} rows and has "
                f"{report['stale_in_target']} out of date.",
                hint="upsert the extracted rows (new keys inserted, changed ones updated).",
            )
        if held_at == late_start and at_bound_first is not None and _xmins(conn, schema)[AT_BOUND] != at_bound_first:
            raise WrongAnswer(
                f"order {AT_BOUND}, stamped exactly at a run's upper bound, was loaded by that run and again by the "
                "next one.",
                hint="rows at exactly the bound belong to the next run: updated_at < bound, not <=.",
            )
        before = _xmins(conn, schema)
        _run(run_increment, schema)
        after = _xmins(conn, schema)
        rewritten = sum(before.get(k) != v for k, v in after.items())
        if rewritten:
            raise WrongAnswer(
                f"a run with nothing new in the source rewrote {rewritten} target rows.",
                hint="an incremental run only touches rows changed since its watermark; half-open ranges "
                "[watermark, upper bound) never take a row twice.",
            )
