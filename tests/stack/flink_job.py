"""A PyFlink job run by test_native_stack.py with the Flink environment's Python: Kafka → Flink SQL → Kafka.

Usage: python flink_job.py SOURCE_TOPIC SINK_TOPIC — counts words from SOURCE (bounded at its current end) into
SINK (upsert), on the stack's standalone cluster.
"""

import sys

from delab import config
from delab.stack import flink

source, sink = sys.argv[1], sys.argv[2]
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
