"""Integration tests of delab.loading's helpers for labs 02.01, 02.02 and 02.06, against the stack's Postgres."""

from __future__ import annotations

import time
from datetime import date

import pandas as pd
import pytest

from delab import clients, datasets, stack
from delab.loading import bulk, incremental, performance, quality

pytestmark = pytest.mark.stack
SCHEMA = "m02_tests"


@pytest.fixture(scope="module")
def pg():
    stack.require("postgres", quiet=True)
    conn = clients.postgres()
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    conn.execute(f"CREATE SCHEMA {SCHEMA}")
    yield conn
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    conn.close()


def _fingerprint(conn, table):
    return conn.execute(
        "SELECT count(*), sum(quantity), sum(round(unit_price * 100))::bigint, sum(order_id * 10 + line_no) "
        f"FROM {table}"
    ).fetchone()


def test_every_loader_writes_the_same_rows(pg):
    items = datasets.cached(seed=5, scale=0.1).order_items
    rows, columns = bulk.rows_of(items), list(items.columns)
    table = f"{SCHEMA}.items"
    loaders = {
        "row": lambda: bulk.insert_row_by_row(pg, table, columns, rows),
        "executemany": lambda: bulk.insert_executemany(pg, table, columns, rows),
        "values": lambda: bulk.insert_multirow_values(pg, table, columns, rows, batch_size=97),
        "copy": lambda: bulk.copy_rows(pg, table, columns, rows),
        "parallel": lambda: bulk.parallel_copy(clients.postgres, table, columns, rows, 3),
        "frame": lambda: bulk.copy_frame(pg, table, items),
    }
    fingerprints = {}
    for name, load in loaders.items():
        bulk.create_table(pg, table, items, primary_key=["order_id", "line_no"])
        timing = bulk.timed(name, load, len(rows))
        assert timing.rows_per_second > 0
        fingerprints[name] = _fingerprint(pg, table)
    assert len(set(fingerprints.values())) == 1, fingerprints
    assert fingerprints["copy"][0] == len(items)


def test_chunks_cover_every_row_once():
    parts = bulk.chunks(list(range(10)), 3)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert [x for part in parts for x in part] == list(range(10))


def test_copy_frame_keeps_nulls_and_timestamps(pg):
    clicks = datasets.cached(seed=5, scale=0.1).clicks.head(500)
    table = f"{SCHEMA}.clicks"
    bulk.create_table(pg, table, clicks, primary_key=["event_id"])
    bulk.copy_frame(pg, table, clicks)
    nulls, first_time = pg.execute(
        f"SELECT count(*) FILTER (WHERE customer_id IS NULL), min(event_time) FROM {table}"
    ).fetchone()
    assert nulls == int(clicks.customer_id.isna().sum())
    assert pd.Timestamp(first_time) == clicks.event_time.min()


def test_naive_watermark_pitfalls_are_real(pg):
    schema = f"{SCHEMA}_inc"
    incremental.prepare(pg, schema, datasets.cached(seed=5, scale=0.25))
    total = pg.execute(f"SELECT count(*) FROM {schema}.src_orders").fetchone()[0]
    assert len(incremental.naive_batches(pg, schema, limit=50)) < total  # ties at midnight are skipped
    assert incremental.naive_run(pg, schema) == total
    late = clients.postgres(autocommit=False)
    try:
        late.execute(
            f"INSERT INTO {schema}.src_orders (order_id, customer_id, channel, status) VALUES (1, 1, 'web', 'x')"
        )
        time.sleep(0.05)
        pg.execute(
            f"INSERT INTO {schema}.src_orders (order_id, customer_id, channel, status) VALUES (2, 1, 'web', 'x')"
        )
        assert incremental.naive_run(pg, schema) == 1
        late.commit()
    finally:
        late.close()
    assert incremental.naive_run(pg, schema) == 0
    assert incremental.compare(pg, schema)["missing_in_target"] == 1
    pg.execute(f"DELETE FROM {schema}.src_orders WHERE order_id = 2")
    assert incremental.compare(pg, schema)["deleted_in_source"] == 1
    pg.execute(f"DROP SCHEMA {schema} CASCADE")


def test_explain_json_shows_pruning_and_indexes(pg):
    table = f"{SCHEMA}.events"
    pg.execute(f"DROP TABLE IF EXISTS {table}")
    pg.execute(f"CREATE TABLE {table} (id bigint, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)")
    pg.execute(f"CREATE TABLE {table}_a PARTITION OF {table} FOR VALUES FROM ('2026-03-01') TO ('2026-03-02')")
    pg.execute(f"CREATE TABLE {table}_b PARTITION OF {table} FOR VALUES FROM ('2026-03-02') TO ('2026-03-03')")
    plan = performance.explain(pg, f"SELECT count(*) FROM {table} WHERE at = %s", (date(2026, 3, 2),))
    assert performance.scanned_tables(plan) == ["events_b"]
    analysed = performance.explain(pg, f"SELECT * FROM {table} WHERE id = 1 AND at = '2026-03-01'", analyze=True)
    assert performance.summary(analysed)["ms"] >= 0
    assert set(performance.relation_sizes(pg, f"{table}_a").kind) == {"table", "index"}


def test_parquet_codecs_table(tmp_path):
    frame = datasets.cached(seed=5, scale=0.1).clicks
    table = performance.parquet_codecs(frame, tmp_path, ["none", "zstd", "gzip:6"])
    assert list(table.format) == ["csv (no compression)", "parquet none", "parquet zstd", "parquet gzip:6"]
    assert (table.ratio_vs_csv.iloc[1:] > 1).all()


def test_load_log_sums_reruns_and_profile(pg):
    quality.create_load_log(pg, SCHEMA)
    for day, n in ((date(2026, 3, 1), 10), (date(2026, 3, 1), 10), (date(2026, 3, 2), 7)):
        pg.execute(f"INSERT INTO {SCHEMA}.load_log (day, rows_loaded) VALUES (%s, %s)", (day, n))
    assert quality.daily_volumes(pg, SCHEMA).to_dict() == {date(2026, 3, 1): 20, date(2026, 3, 2): 7}
    profile = quality.profile(datasets.cached(seed=5, scale=0.1).customers).set_index("column")
    assert profile.loc["email", "null_%"] > 0
    assert profile.loc["customer_id", "distinct"] == 200
