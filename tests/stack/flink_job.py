"""PyFlink jobs run by test_native_stack.py with the Flink environment's Python, on the stack's standalone cluster.

python flink_job.py kafka SOURCE SINK     count words from SOURCE (bounded at its end) into SINK (upsert-kafka)
python flink_job.py iceberg DATABASE TABLE  write 3 rows to an Iceberg table (JDBC catalog in Postgres, data in
                                           S3) and a JSON file to s3://, then print the table's row count
"""

import sys

from delab import config
from delab.stack import flink


def kafka(source: str, sink: str) -> None:
    bootstrap = config.kafka().bootstrap_servers
    t_env = flink.table_environment(streaming=True)
    t_env.execute_sql(
        f"""CREATE TABLE words (word STRING) WITH ('connector' = 'kafka', 'topic' = '{source}',
        'properties.bootstrap.servers' = '{bootstrap}', 'scan.startup.mode' = 'earliest-offset',
        'scan.bounded.mode' = 'latest-offset', 'format' = 'json')"""
    )
    t_env.execute_sql(
        f"""CREATE TABLE counts (word STRING, n BIGINT, PRIMARY KEY (word) NOT ENFORCED) WITH (
        'connector' = 'upsert-kafka', 'topic' = '{sink}', 'properties.bootstrap.servers' = '{bootstrap}',
        'key.format' = 'json', 'value.format' = 'json')"""
    )
    result = t_env.execute_sql("INSERT INTO counts SELECT word, COUNT(*) FROM words GROUP BY word")
    result.wait()
    print("job", result.get_job_client().get_job_id())


def iceberg(database: str, table: str) -> None:
    t_env = flink.table_environment(streaming=False)
    t_env.execute_sql(flink.iceberg_catalog_sql("lake"))
    t_env.execute_sql(f"CREATE DATABASE IF NOT EXISTS lake.{database}")
    t_env.execute_sql(f"CREATE TABLE lake.{database}.{table} (id INT, name STRING)")
    t_env.execute_sql(f"INSERT INTO lake.{database}.{table} VALUES (1, 'a'), (2, 'b'), (3, 'c')").wait()
    bucket = config.s3().bucket
    t_env.execute_sql(
        f"""CREATE TABLE files (id INT, name STRING) WITH ('connector' = 'filesystem',
        'path' = 's3://{bucket}/{database}/{table}_files', 'format' = 'json')"""
    )
    t_env.execute_sql("INSERT INTO files VALUES (1, 'a')").wait()
    with t_env.execute_sql(f"SELECT COUNT(*) FROM lake.{database}.{table}").collect() as rows:
        print("rows", next(iter(rows))[0])


if __name__ == "__main__":
    {"kafka": kafka, "iceberg": iceberg}[sys.argv[1]](*sys.argv[2:4])
