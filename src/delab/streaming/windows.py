"""Lab 03.04 (windowed aggregations): the Kafka tables of the lab and an independent model of what Flink's
window aggregations emit for a stream that arrives out of order.

The model replays the events in arrival order (the topic's order, one partition) with the source's watermark
(``max event time so far - delay``, emitted after every event, as ``'scan.watermark.emit.strategy' = 'on-event'``
makes Flink do): an event counts in a window only if that window has not fired yet (``window end - 1 ms >
watermark``); a session window is late when the merged session's end has passed the watermark.
The checks compare Flink's output to it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

WATERMARK_DELAY = pd.Timedelta(minutes=5)
MS = pd.Timedelta(milliseconds=1)


def clicks_ddl(topic: str, bootstrap: str, delay_minutes: int = 5, name: str = "clicks") -> str:
    """The clicks table over a Kafka topic: event time, a bounded-out-of-orderness watermark emitted per event,
    bounded at the topic's current end so jobs finish."""
    return f"""CREATE TABLE {name} (
    event_id BIGINT, session_id BIGINT, customer_id BIGINT, event_type STRING, product_id BIGINT,
    event_time TIMESTAMP(3),
    WATERMARK FOR event_time AS event_time - INTERVAL '{delay_minutes}' MINUTE
) WITH (
    'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
    'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
    'scan.watermark.emit.strategy' = 'on-event', 'format' = 'json'
)"""


def sink_ddl(name: str, columns: str, topic: str, bootstrap: str) -> str:
    """An append-only Kafka sink table with JSON values."""
    return f"""CREATE TABLE {name} ({columns}) WITH (
    'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json'
)"""


def arrival_watermarks(event_time: pd.Series, delay: pd.Timedelta = WATERMARK_DELAY) -> pd.Series:
    """The watermark each event meets when it arrives: from the events before it (NaT for the first)."""
    return (event_time - delay).cummax().shift(1)


def _arrivals(clicks: pd.DataFrame, delay: pd.Timedelta) -> pd.DataFrame:
    events = clicks.reset_index(drop=True)  # in arrival order (the topic's order)
    events["watermark"] = arrival_watermarks(events.event_time, delay)
    return events


def _not_fired(window_end: pd.Series, watermark: pd.Series) -> pd.Series:
    return watermark.isna() | (window_end - MS > watermark)


def tumbling_expected(
    clicks: pd.DataFrame, size: pd.Timedelta, by: list[str], delay: pd.Timedelta = WATERMARK_DELAY
) -> tuple[pd.DataFrame, int]:
    """Events per tumbling window and ``by`` columns as Flink emits them, and how many late events it drops."""
    events = _arrivals(clicks, delay)
    events["window_start"] = events.event_time.dt.floor(size)
    events["window_end"] = events.window_start + size
    kept = _not_fired(events.window_end, events.watermark)
    counts = events[kept].groupby(["window_start", "window_end", *by]).size().rename("events").reset_index()
    return counts, int((~kept).sum())


def hopping_expected(
    clicks: pd.DataFrame,
    size: pd.Timedelta,
    slide: pd.Timedelta,
    delay: pd.Timedelta = WATERMARK_DELAY,
) -> pd.DataFrame:
    """Distinct sessions per hopping window (``size`` long, every ``slide``) as Flink emits them."""
    events = _arrivals(clicks, delay)
    copies = []
    for k in range(int(size / slide)):
        start = events.event_time.dt.floor(slide) - k * slide
        part = events.assign(window_start=start, window_end=start + size)
        copies.append(part[_not_fired(part.window_end, part.watermark)])
    rows = pd.concat(copies)
    return rows.groupby(["window_start", "window_end"]).session_id.nunique().rename("sessions").reset_index()


def session_expected(
    clicks: pd.DataFrame, gap: pd.Timedelta, key: str = "customer_id", delay: pd.Timedelta = WATERMARK_DELAY
) -> pd.DataFrame:
    """Session windows per ``key`` (events closer than ``gap`` merge) as Flink emits them, late events dropped:
    columns key, window_start, window_end, events."""
    events = _arrivals(clicks, delay)  # the source's watermark comes from every event, keyed or not
    events = events[events[key].notna()]
    open_windows: dict[Any, list[list]] = {}  # key -> [[start, end, count]] not fired yet
    fired: list[tuple] = []

    def fire_until(watermark: pd.Timestamp) -> None:
        for k, windows in open_windows.items():
            keep = []
            for window in windows:
                (fired.append((k, *window)) if window[1] - MS <= watermark else keep.append(window))
            windows[:] = keep

    last_watermark = None
    for row in events.itertuples():
        if row.watermark is not pd.NaT and not pd.isna(row.watermark) and row.watermark != last_watermark:
            fire_until(row.watermark)
            last_watermark = row.watermark
        start, end, count = row.event_time, row.event_time + gap, 1
        windows = open_windows.setdefault(getattr(row, key), [])
        keep = []
        for window in windows:  # Flink merges windows that overlap or touch
            if window[0] <= end and window[1] >= start:
                start, end, count = min(start, window[0]), max(end, window[1]), count + window[2]
            else:
                keep.append(window)
        if last_watermark is not None and end - MS <= last_watermark:
            continue  # the merged session has already ended: the event is late and dropped
        windows[:] = [*keep, [start, end, count]]
    for k, windows in open_windows.items():
        fired.extend((k, *window) for window in windows)
    return pd.DataFrame(fired, columns=[key, "window_start", "window_end", "events"])


def clicks_from_topic(topic: str) -> pd.DataFrame:
    """The clicks exactly as Flink reads them: the topic's messages in order, event time parsed."""
    from delab.streaming import flink_jobs

    frame = pd.DataFrame(flink_jobs.read_json(topic))
    frame["event_time"] = pd.to_datetime(frame.event_time)
    return frame


class Chart:
    """A Vega-Lite chart that JupyterLab draws by itself (no plotting library needed in the Flink kernel)."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        return {"application/vnd.vegalite.v5+json": self.spec, "text/plain": f"<chart: {self.spec.get('title', '')}>"}


def chart(frame: pd.DataFrame, x: str, y: str, color: str | None = None, mark: str = "line", title: str = "") -> Chart:
    """Plot ``y`` over ``x`` (one line or bar series per ``color``) in the notebook."""
    data = frame.copy()
    for column in data.columns:
        if pd.api.types.is_datetime64_any_dtype(data[column]):
            data[column] = data[column].dt.strftime("%Y-%m-%dT%H:%M:%S")
    kind = "temporal" if pd.api.types.is_datetime64_any_dtype(frame[x]) else "quantitative"
    encoding: dict[str, Any] = {"x": {"field": x, "type": kind}, "y": {"field": y, "type": "quantitative"}}
    if color:
        encoding["color"] = {"field": color, "type": "nominal"}
    return Chart(
        {
            "title": title,
            "width": 640,
            "height": 220,
            "data": {"values": data.to_dict(orient="records")},
            "mark": {"type": mark, "tooltip": True},
            "encoding": encoding,
        }
    )
