"""The helpers behind labs 04.01-04.03 on the real object store: Delta commits that refuse a lost race, the
raw-file search that proves an erasure."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from deltalake.exceptions import CommitFailedError

from delab import clients, config
from delab.lakehouse import compliance, storage

pytestmark = pytest.mark.stack

NAMESPACE = "test_lakehouse_formats"


@pytest.fixture(autouse=True)
def clean():
    storage.fresh_delta_namespace(NAMESPACE)
    storage.delete_under(storage.s3_uri("hudi", NAMESPACE))
    yield
    storage.fresh_delta_namespace(NAMESPACE)
    storage.delete_under(storage.s3_uri("hudi", NAMESPACE))


def test_object_store_refuses_a_second_create_of_the_same_key():
    s3, bucket = clients.s3(), config.s3().bucket
    key = f"delta/{NAMESPACE}/probe"
    s3.put_object(Bucket=bucket, Key=key, Body=b"1", IfNoneMatch="*")
    with pytest.raises(s3.exceptions.ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"2", IfNoneMatch="*")


def test_delta_concurrent_appends_both_land_and_a_stale_merge_fails():
    uri = storage.delta_uri(NAMESPACE, "t")
    write_deltalake(uri, pa.table({"id": [1, 2]}), storage_options=storage.delta_storage_options())
    first, second = storage.delta_table(uri), storage.delta_table(uri)
    write_deltalake(first, pa.table({"id": [3]}), mode="append")
    write_deltalake(second, pa.table({"id": [4]}), mode="append")  # stale, but appends do not conflict
    assert sorted(storage.delta_table(uri).to_pyarrow_table()["id"].to_pylist()) == [1, 2, 3, 4]
    stale = storage.delta_table(uri, version=1)
    write_deltalake(storage.delta_table(uri), pa.table({"id": [5]}), mode="append")
    with pytest.raises(CommitFailedError):
        stale.merge(pa.table({"id": [2]}), "s.id = t.id", "s", "t").when_matched_delete().execute()


def test_rows_in_stored_files_counts_matches_per_file():
    uri = storage.delta_uri(NAMESPACE, "people")
    options = storage.delta_storage_options()
    write_deltalake(uri, pa.table({"customer_id": [7, 8, 7]}), storage_options=options)
    write_deltalake(uri, pa.table({"customer_id": [9]}), mode="append", storage_options=options)
    assert sorted(compliance.rows_in_stored_files(uri, "customer_id", 7).values()) == [2]
    assert compliance.rows_in_stored_files(uri, "customer_id", 10) == {}
