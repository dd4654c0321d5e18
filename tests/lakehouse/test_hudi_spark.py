"""The launcher side of delab.lakehouse.hudi_spark: the Hudi options a job gets and the timeline read from the
object store's listing. The Spark job itself runs in lab 04.01 (a solution notebook CI executes)."""

from __future__ import annotations

import pytest

from delab.lakehouse import hudi_spark, storage


def test_write_options_name_the_keys_and_refuse_an_unknown_table_type():
    options = hudi_spark.HudiTableSpec("t", "s3://b/t", "MERGE_ON_READ", "id", "ts", "day").options()
    assert options["hoodie.datasource.write.table.type"] == "MERGE_ON_READ"
    assert options["hoodie.datasource.write.recordkey.field"] == "id"
    assert options["hoodie.datasource.write.precombine.field"] == "ts"
    assert options["hoodie.datasource.write.partitionpath.field"] == "day"
    assert options["hoodie.embed.timeline.server"] == "false"  # it would listen on every interface
    unpartitioned = hudi_spark.write_options("t", "COPY_ON_WRITE", "id", "ts")
    assert unpartitioned["hoodie.datasource.write.keygenerator.class"].endswith("NonpartitionedKeyGenerator")
    with pytest.raises(ValueError, match="table_type"):
        hudi_spark.write_options("t", "MERGE_ON_WRITE", "id", "ts")


def test_timeline_reads_states_and_completion_times_and_skips_the_metadata_table(monkeypatch):
    base = "hudi/ns/t/.hoodie"
    keys = [
        f"{base}/hoodie.properties",
        f"{base}/timeline/",
        f"{base}/timeline/200.deltacommit.requested",
        f"{base}/timeline/200.deltacommit.inflight",
        f"{base}/timeline/100.commit.requested",
        f"{base}/timeline/100.inflight",
        f"{base}/timeline/100_150.commit",
        f"{base}/timeline/history/",
        f"{base}/metadata/.hoodie/timeline/00000000000000000_120.deltacommit",
    ]
    monkeypatch.setattr(storage, "objects_under", lambda uri: keys)
    assert hudi_spark.timeline("s3://bucket/hudi/ns/t") == [
        {"instant": "100", "action": "commit", "states": ["requested", "inflight", "completed"], "completed": "150"},
        {"instant": "200", "action": "deltacommit", "states": ["requested", "inflight"], "completed": None},
    ]


def test_a_job_without_batches_is_refused_in_one_line():
    with pytest.raises(hudi_spark.HudiJobError, match="at least one batch"):
        hudi_spark.run(hudi_spark.HudiJob(batches=[], tables=[]))
