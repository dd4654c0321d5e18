# ---
# jupyter:
#   kernelspec: {name: delab-flink, display_name: "Python 3 (delab-flink · PyFlink)", language: python}
# ---

# %% [markdown]
# # 03.03 · Flink stateful processing with PyFlink
#
# **You will:**
# - run PyFlink DataStream jobs on the stack's Flink cluster, reading the shop's clickstream from Kafka;
# - keep **keyed state** (one value per session) that Flink checkpoints and restores for you;
# - use **event time** and **watermarks** on a stream that arrives out of order;
# - set **event-time timers** that fire when the watermark passes them;
# - route **late events** to a side output instead of losing them.
#
# *Needs:* Kafka and Flink (started for you). Kernel: `delab-flink`. About 35 minutes.

# %%
import pandas as pd
from pyflink.common import Types

from delab import check, datasets, stack
from delab.streaming import flink_jobs, flink_state, windows

stack.require("kafka", "flink")
ns = stack.namespace("m03_l03")
flink_jobs.cancel_jobs(ns.prefix)  # jobs an earlier run of this notebook may have left on the shared cluster
topics = flink_jobs.fresh_topics(ns, ["clicks"])
arrivals = datasets.shop(seed=3, scale=0.02).clicks.sort_values("ingest_time", kind="stable").head(600)
flink_jobs.produce_json(topics["clicks"], flink_jobs.click_events(arrivals), key="session_id")
env, t_env = flink_state.environments(f"{ns.prefix} notebook")
LATE = flink_state.late_tag()  # the side output for late clicks

# %% [markdown]
# ## A stream with event time
# 600 clicks went to the topic in the order they **arrived**. `flink_state.clicks_stream` declares the topic as
# a table with an event-time attribute and a watermark (`max event time seen - 5 minutes`, emitted after every
# click) and turns it into a DataStream of `Row`s: each record carries its event time as its **timestamp**, and
# watermarks flow between the records.

# %%
print(windows.clicks_ddl(topics["clicks"], "…"))
clicks = flink_state.clicks_stream(t_env, topics["clicks"])
clicks.get_type()

# %% [markdown]
# ## Keyed state
# `key_by(session_id)` sends all clicks of a session to the same parallel instance, and gives each key its own
# **state**: a `ValueState` read and written in `process_element` holds one value *per key*, kept by Flink in its
# state backend and saved in every checkpoint. A plain Python attribute would be shared by all the keys of the
# instance — and lost on a restart.
#
# ### Exercise 1 — number the clicks of each session
# A `KeyedProcessFunction` has an `open(self, runtime_context)` method, where it creates its state
# (`runtime_context.get_state(ValueStateDescriptor("count", Types.LONG()))`), and a
# `process_element(self, row, ctx)` method called for each record, which yields its outputs.
# `flink_state.keyed_function` builds such a class from your functions and creates one `ValueState` attribute
# per entry of `state` in its `open`.
#
# Write `number_click(self, row, ctx)`, the `process_element` of a function whose `self.count` is a
# `ValueState` (`.value()` is `None` for a new key, `.update(v)` sets it): for each click, yield
# `(row.event_id, n)` — `n` = 1 for the session's first click, 2 for its second, …


# %%
### BEGIN SOLUTION
def number_click(self, row, ctx):
    """Number each click within its session, with keyed state."""
    n = (self.count.value() or 0) + 1
    self.count.update(n)
    yield row.event_id, n


### END SOLUTION

# %%
check.m03.keyed_running_count(number_click, t_env, topics["clicks"])

# %% [markdown]
# The check ran this class (what you would write in a job file), keyed by session, and watched what it emitted
# and wrote to its state:
# `clicks.key_by(lambda r: r.session_id, key_type=Types.LONG()).process(RunningCount(), output_type=...)`.

# %%
RunningCount = flink_state.keyed_function(number_click, state={"count": Types.LONG()}, name="RunningCount")
RunningCount.__mro__[1].__name__, [name for name in ("open", "process_element") if name in vars(RunningCount)]

# %% [markdown]
# ## Event time, watermarks and timers
# The **watermark** is Flink's clock in event time: "no click older than *W* should still come". A timer set with
# `ctx.timer_service().register_event_time_timer(t)` fires — `on_timer` is called for its key — once the
# watermark reaches `t`. Timers are keyed and checkpointed, like state. At the end of a bounded input the
# watermark jumps to the end of time, so every timer left fires.
#
# Here a **visit** ends when 3 minutes pass (in event time) without a click of its session. So: on each click,
# move the session's timer to *latest click + 3 min*; when it fires, emit the visit's summary and clear the
# state — a click that comes later starts a new visit.
#
# ### Exercise 2 — emit a summary when a visit ends
# Write the two methods of a `SessionEnd` function whose `self.session` is a `ValueState` holding a list
# `[events, first, last]`: the number of clicks, and the earliest and latest event time among them (epoch ms, from
# `ctx.timestamp()`; clicks arrive out of order, so the latest to arrive is not always the latest in time):
# - `on_click(self, row, ctx)` (its `process_element`): update the list; if the session already had a timer,
#   delete it (`ctx.timer_service().delete_event_time_timer(old_last + GAP)`); register a new one at
#   `last + GAP`;
# - `on_session_timer(self, timestamp, ctx)` (its `on_timer`): yield
#   `(ctx.get_current_key(), events, first, last)` and clear the state.

# %%
GAP = flink_state.GAP_MS  # 3 minutes in milliseconds


### BEGIN SOLUTION
def on_click(self, row, ctx):
    """Count the click and move the session's timer to latest click + GAP."""
    ts = ctx.timestamp()
    session = self.session.value()
    if session is None:
        session = [0, ts, ts]
    else:
        ctx.timer_service().delete_event_time_timer(session[2] + GAP)
    session = [session[0] + 1, min(session[1], ts), max(session[2], ts)]
    self.session.update(session)
    ctx.timer_service().register_event_time_timer(session[2] + GAP)


def on_session_timer(self, timestamp, ctx):
    """The session ended: emit its summary and forget it."""
    events, first, last = self.session.value()
    self.session.clear()
    yield ctx.get_current_key(), events, first, last


### END SOLUTION

# %%
check.m03.session_end_timer(on_click, on_session_timer, t_env, topics["clicks"])

# %% [markdown]
# Run it yourself and look at the sessions: how long did they last, and how many were cut in two by a click that
# arrived after its session had been closed?

# %%
keyed = flink_state.clicks_stream(t_env, topics["clicks"]).key_by(lambda r: r.session_id, key_type=Types.LONG())
SessionEnd = flink_state.keyed_function(
    on_click, on_session_timer, state={"session": Types.PICKLED_BYTE_ARRAY()}, name="SessionEnd"
)
summaries = flink_state.collect(
    keyed.process(SessionEnd(), output_type=Types.PICKLED_BYTE_ARRAY()), f"{ns.prefix} sessions"
)
sessions = pd.DataFrame(summaries, columns=["session_id", "events", "first", "last"])
sessions["minutes"] = (sessions["last"] - sessions["first"]) / 60_000
print(f"{len(sessions)} summaries for {sessions.session_id.nunique()} sessions")
sessions.describe()[["events", "minutes"]].round(1)

# %% [markdown]
# ## Late events
# A click whose event time is already behind the watermark when it arrives is **late**: the windows and timers it
# belongs to may have fired. Dropping it silently (what windows do by default) loses data. Better options:
# - **allowed lateness** on a window (`.allowed_lateness(ms)`) keeps fired windows for a while and re-emits an
#   updated result when a late event comes;
# - a **side output** collects late events in a stream of their own — to correct results downstream, or to count
#   and alert on them.
#
# ### Exercise 3 — a side output for late clicks
# Write `route_click(self, row, ctx)`, the `process_element` of a `ProcessFunction`: yield `LATE, row` (to the
# side output) when the click's event time `ctx.timestamp()` is below
# `ctx.timer_service().current_watermark()`, and yield `row` otherwise.


# %%
### BEGIN SOLUTION
def route_click(self, row, ctx):
    """Send clicks that arrive behind the watermark to the LATE side output."""
    if ctx.timestamp() < ctx.timer_service().current_watermark():
        yield LATE, row
    else:
        yield row


### END SOLUTION

# %%
check.m03.late_side_output(route_click, t_env, topics["clicks"])

# %% [markdown]
# How late were they? The side output is an ordinary stream: collect it and compare arrival and event time.

# %%
RouteLate = flink_state.process_function(route_click, name="RouteLate")
routed = flink_state.clicks_stream(t_env, topics["clicks"]).process(RouteLate(), output_type=Types.PICKLED_BYTE_ARRAY())
late_ids = flink_state.collect(
    routed.get_side_output(LATE).map(lambda r: r.event_id, output_type=Types.LONG()), f"{ns.prefix} late"
)
late = arrivals[arrivals.event_id.isin(late_ids)]
(late.ingest_time - late.event_time).describe()

# %%
flink_jobs.cancel_jobs(ns.prefix)

# %% [markdown]
# ## Recap
# - Keyed state is per key, managed and checkpointed by Flink; never keep per-key data in Python attributes.
# - Event time + watermarks give results that do not depend on when events arrive; the watermark delay trades
#   latency against how much lateness is tolerated.
# - Event-time timers fire when the watermark passes them — the building block of windows, sessions and
#   time-outs. Delete timers you move, clear state you no longer need.
# - Late events are a fact of mobile and IoT data: route them to a side output (or use allowed lateness) instead
#   of dropping them silently.
#
# **Going further:**
# - State TTL (`StateTtlConfig`) expires idle keys' state automatically — lab 03.05 measures what state costs.
# - The same job on a production cluster: package it (`flink run -py job.py` or a `FlinkDeployment` of the Flink
#   Kubernetes Operator with a Python job), with RocksDB state and checkpoints on S3; managed services (Amazon
#   Managed Service for Apache Flink runs PyFlink apps) do the packaging for you. The `external` profile points
#   these notebooks at such a cluster.
