# ---
# jupyter:
#   kernelspec: {name: delab-flink, display_name: "Python 3 (delab-flink · PyFlink)", language: python}
# ---

# %% [markdown]
# # 03.04 · Real-time aggregations: tumbling, sliding and session windows
#
# **You will:**
# - declare a Kafka topic as a Flink SQL table with **event time** and a **watermark**;
# - count clicks in **tumbling** windows, active sessions in **sliding (hopping)** windows and customer visits in
#   **session** windows — each a job on the stack's Flink cluster that writes its results back to Kafka;
# - see which events a watermark turns away as *late*, and plot the window results.
#
# *Needs:* Kafka and Flink (started for you). Kernel: `delab-flink`. About 30 minutes.

# %%
import pandas as pd

from delab import check, config, datasets, stack
from delab.streaming import flink_jobs, windows

stack.require("kafka", "flink")
ns = stack.namespace("m03_l04")
flink_jobs.cancel_jobs(ns.prefix)  # jobs an earlier run of this notebook may have left on the shared cluster
topics = flink_jobs.fresh_topics(ns, ["clicks", "per_hour", "active_sessions", "visits"])
shop = datasets.shop(seed=3, scale=0.02)
flink_jobs.produce_json(topics["clicks"], flink_jobs.click_events(shop.clicks), key="session_id")
t_env = flink_jobs.table_environment(f"{ns.prefix} notebook")
bootstrap = config.kafka().bootstrap_servers
topics

# %% [markdown]
# ## Events arrive out of order
# The shop's clickstream went to the topic in **arrival** order. Most clicks reach the broker within seconds, but
# phones go offline: a few arrive minutes or hours after they happened. In **event time** the stream is therefore
# out of order.

# %%
clicks = shop.clicks.sort_values("ingest_time", kind="stable")
delay = clicks.ingest_time - clicks.event_time
behind = clicks.event_time < clicks.event_time.cummax()  # an earlier-stamped click after a later one
pd.Series(
    {
        "clicks": len(clicks),
        "arrived > 1 min late": int((delay > pd.Timedelta(minutes=1)).sum()),
        "arrived > 1 h late": int((delay > pd.Timedelta(hours=1)).sum()),
        "out of order": int(behind.sum()),
    }
)

# %% [markdown]
# ## Event time and watermarks in Flink SQL
# A window on event time can only be closed once Flink believes no more events of it will come. The
# **watermark** is that belief: "no event older than *W* will arrive". Here `W = max event time seen - 5 minutes`
# (bounded out-of-orderness). When the watermark passes a window's end, the window **fires** — its result is
# emitted once, final — and its state is dropped. An event for a window that already fired is **late** and is
# dropped.
#
# `'scan.watermark.emit.strategy' = 'on-event'` makes the Kafka source emit a watermark after every event
# (instead of every 200 ms), so re-running the notebook fires exactly the same windows — handy for a lab.

# %%
print(windows.clicks_ddl(topics["clicks"], bootstrap))
t_env.execute_sql(windows.clicks_ddl(topics["clicks"], bootstrap))

# %% [markdown]
# Flink SQL writes windows as **table-valued functions**: `TUMBLE`, `HOP`, `CUMULATE` and `SESSION` take a
# table and add `window_start`, `window_end` and `window_time` to every row; a `GROUP BY window_start,
# window_end` then aggregates each window. A bounded source (`'scan.bounded.mode' = 'latest-offset'`) makes the
# job stop at the topic's current end; the final watermark then fires every window still open.
#
# ## Tumbling windows
# Fixed-size, non-overlapping: each event belongs to exactly one window.
#
# ### Exercise 1 — clicks per hour and event type
# Write `per_hour_sql`: insert into `clicks_per_hour` (created below) the number of clicks (`events`) per
# one-hour tumbling window and `event_type`. The check runs it as a job on the cluster and compares the topic
# with what the windows must contain.

# %%
t_env.execute_sql(
    windows.sink_ddl(
        "clicks_per_hour",
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), event_type STRING, events BIGINT",
        topics["per_hour"],
        bootstrap,
    )
)

### BEGIN SOLUTION
per_hour_sql = """
INSERT INTO clicks_per_hour
SELECT window_start, window_end, event_type, COUNT(*) AS events
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(event_time), INTERVAL '1' HOUR))
GROUP BY window_start, window_end, event_type
"""
### END SOLUTION

# %%
check.m03.tumbling_window_counts(t_env, per_hour_sql, topics)

# %% [markdown]
# The results are back in Kafka. Read them and plot one day; then count what the watermark turned away.

# %%
per_hour = flink_jobs.read_frame(topics["per_hour"])
one_day = per_hour[per_hour.window_start.dt.date == pd.Timestamp("2026-03-07").date()]
windows.chart(one_day, x="window_start", y="events", color="event_type", title="Clicks per hour, 7 March")

# %%
dropped = len(shop.clicks) - int(per_hour.events.sum())
print(f"{dropped} of {len(shop.clicks)} clicks arrived after their hour had fired and were dropped")

# %% [markdown]
# ## Sliding (hopping) windows
# Fixed size, but a new window starts every *slide*: with size 1 hour and slide 15 minutes each event belongs to
# four windows — "the last hour, updated every quarter of an hour". `HOP(TABLE t, DESCRIPTOR(ts), slide, size)`.
#
# ### Exercise 2 — active sessions in the last hour
# Write `active_sessions_sql`: insert into `active_sessions` the number of **distinct** `session_id`s per one-hour
# window sliding every 15 minutes.

# %%
t_env.execute_sql(
    windows.sink_ddl(
        "active_sessions",
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), sessions BIGINT",
        topics["active_sessions"],
        bootstrap,
    )
)

### BEGIN SOLUTION
active_sessions_sql = """
INSERT INTO active_sessions
SELECT window_start, window_end, COUNT(DISTINCT session_id) AS sessions
FROM TABLE(HOP(TABLE clicks, DESCRIPTOR(event_time), INTERVAL '15' MINUTE, INTERVAL '1' HOUR))
GROUP BY window_start, window_end
"""
### END SOLUTION

# %%
check.m03.hopping_active_sessions(t_env, active_sessions_sql, topics)

# %% [markdown]
# Plot the active sessions of one weekend: the overlapping windows give a smoother curve than hourly buckets.
# *Your turn:* change the day, or plot `per_hour` summed over event types next to it.

# %%
active = flink_jobs.read_frame(topics["active_sessions"])
weekend = active[(active.window_end >= "2026-03-07") & (active.window_end < "2026-03-09")]
windows.chart(weekend, x="window_end", y="sessions", title="Sessions active in the hour before, 7-8 March")

# %% [markdown]
# ## Session windows
# No fixed size: a session window per key grows while events keep coming and closes after a **gap** of
# inactivity. Two windows of the same key merge when a (possibly late) event bridges them. In Flink SQL:
# `SESSION(TABLE t PARTITION BY key, DESCRIPTOR(ts), gap)`.
#
# ### Exercise 3 — customer visits
# Write `visits_sql`: insert into `visits` one row per visit of a **known** customer (`customer_id` not null):
# session windows per `customer_id` with a 30-minute gap, and the number of clicks (`events`) in each.

# %%
t_env.execute_sql(
    windows.sink_ddl(
        "visits",
        "customer_id BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), events BIGINT",
        topics["visits"],
        bootstrap,
    )
)

### BEGIN SOLUTION
visits_sql = """
INSERT INTO visits
SELECT customer_id, window_start, window_end, COUNT(*) AS events
FROM TABLE(SESSION(TABLE clicks PARTITION BY customer_id, DESCRIPTOR(event_time), INTERVAL '30' MINUTE))
WHERE customer_id IS NOT NULL
GROUP BY customer_id, window_start, window_end
"""
### END SOLUTION

# %%
check.m03.session_window_visits(t_env, visits_sql, topics)

# %% [markdown]
# How long is a visit? A session window ends one gap after its last click, so subtract the gap.

# %%
visits = flink_jobs.read_frame(topics["visits"])
visits["minutes"] = ((visits.window_end - visits.window_start) / pd.Timedelta(minutes=1) - 30).round()
length = visits.groupby("minutes").size().rename("visits").reset_index()
windows.chart(length[length.minutes <= 40], x="minutes", y="visits", mark="bar", title="Visit length (minutes)")

# %%
flink_jobs.cancel_jobs(ns.prefix)  # the jobs stopped at the topic's end; this clears anything left running

# %% [markdown]
# ## Recap
# - Event-time windows need a watermark; it trades latency (wait longer) against completeness (drop fewer late
#   events). A window fires once, when the watermark passes its end.
# - Tumbling: one window per event. Hopping: size/slide windows per event. Session: per key, closed by a gap,
#   merged when an event bridges two sessions.
# - Window TVFs + `GROUP BY window_start, window_end` give an **append-only** result: each window is written to
#   Kafka once, final — downstream consumers need no updates or retractions.
#
# **Going further:**
# - Keep windows open for stragglers instead of dropping them: lab 03.03 shows allowed lateness and side outputs
#   in the DataStream API. `CUMULATE` windows give "so far today" numbers that grow every few minutes.
# - The same SQL runs unchanged on a production cluster: the Flink Kubernetes Operator (a `FlinkDeployment` or
#   `FlinkSessionJob` resource) or a managed service (Amazon Managed Service for Apache Flink, Confluent Cloud for
#   Apache Flink, Ververica). Point the labs at one with the `external` profile (`DELAB_STACK=external`,
#   `DELAB_FLINK_URL`, `DELAB_KAFKA_BOOTSTRAP`).
