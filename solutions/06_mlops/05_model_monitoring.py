# ---
# jupyter:
#   kernelspec: {name: delab-mlops, display_name: "Python 3 (delab-mlops · MLflow, KServe)", language: python}
# ---

# %% [markdown]
# # 06.05 · Monitoring a model: service metrics, drift, delayed labels and alerts
#
# **You will:**
# - scrape a real model server's `/metrics` (Prometheus format) and compute an SLO report for a window: error rate,
#   **error budget** used, share of requests within a latency threshold;
# - detect **data drift and prediction drift** on a shifted week with Evidently, and read its report;
# - measure **model performance once the labels arrive**, days later, by joining predictions with ground truth in
#   Postgres;
# - write an **alert rule** that fires on a sustained breach but not on one noisy window.
#
# *Needs:* Postgres (started for you). Kernel: `delab-mlops`. About 40 minutes.

# %%
import httpx
import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
from IPython.display import HTML, display

from delab import check, clients, stack
from delab.mlops import load, monitoring, shop_models
from delab.mlops.bento import metric_samples, metric_total

stack.require("postgres")
ns = stack.namespace("m06_l05")  # this lab's Postgres schema: m06_l05
shop_models.load_shop(ns.schema, scale=0.25)
features = shop_models.order_features(ns.schema)
reference, normal_week = monitoring.split_weeks(features)  # three weeks of history, and a normal week
shifted_week = monitoring.shifted(normal_week)  # the same week during an electronics promotion in the app
model = shop_models.train_order_value(reference, n_estimators=20)
print(f"reference {len(reference)} orders, current week {len(normal_week)} orders")

# %% [markdown]
# ## Service metrics from `/metrics`
# The model runs behind a small FastAPI server (`delab/mlops/monitored_service.py`) that counts what it does in
# the Prometheus text format: `inference_requests_total{status=...}` (a counter per HTTP status) and
# `inference_request_duration_seconds` (a latency **histogram**: cumulative buckets `le=...`, a `_count` and a
# `_sum`). A Prometheus server would scrape it every 15 s; here we scrape it ourselves, before and after a window
# of traffic. During the window a fault is injected (every 25th request fails with 500) and some clients send
# invalid requests (422).

# %%
server = monitoring.serve(model, "m06_l05")
rows = shop_models.matrix(normal_week)
payloads = [{"rows": rows[i : i + 1].tolist()} for i in range(50)]
load.run_load(f"{server.url}/predict", payloads, requests=20, concurrency=2)  # warm-up, before the window
before = httpx.get(f"{server.url}/metrics").text
httpx.post(f"{server.url}/admin/faults", json={"error_every": 25})
window = load.run_load(f"{server.url}/predict", payloads, requests=300, concurrency=4)
invalid = load.run_load(f"{server.url}/predict", [{"rows": [[1, 2]]}, {"nothing": 1}], requests=10, concurrency=1)
after = httpx.get(f"{server.url}/metrics").text
server.stop()
print(window, invalid, sep="\n")
print([line for line in after.splitlines() if line.startswith("inference_requests_total")])

# %% [markdown]
# ## Exercise 1 — an SLO report for the window
# The service's SLOs: **99 % of requests succeed** (availability) and as many as possible are answered within a
# latency threshold. The **error budget** is the 1 % allowed to fail: `budget_used` = error rate ÷ (1 − SLO), so 1.0
# means the window spent all of it.
#
# Write `slo_report(before, after, slo, latency_threshold_s)` for two scrapes (texts) returning a dict with
# `requests`, `errors` (server errors: status 5xx), `error_rate`, `budget_used` and `within_latency` (share of the
# window's requests answered within the threshold, which is one of the histogram's bucket bounds).
# `metric_total(text, name, **labels)` adds up a metric's samples whose labels match; `metric_samples(text, name)`
# lists them as `(labels, value)` pairs.


# %%
### BEGIN SOLUTION
def slo_report(before: str, after: str, slo: float, latency_threshold_s: float) -> dict[str, float]:
    """SLO figures for the window between two scrapes of /metrics."""

    def delta(name: str, **labels: str) -> float:
        return metric_total(after, name, **labels) - metric_total(before, name, **labels)

    statuses = {labels["status"] for labels, _ in metric_samples(after, "inference_requests_total")}
    requests = delta("inference_requests_total")
    errors = sum(delta("inference_requests_total", status=s) for s in statuses if s.startswith("5"))
    within = delta("inference_request_duration_seconds_bucket", le=str(float(latency_threshold_s)))
    error_rate = errors / requests
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": error_rate,
        "budget_used": error_rate / (1 - slo),
        "within_latency": within / delta("inference_request_duration_seconds_count"),
    }


### END SOLUTION

# %%
check.m06.slo_report(slo_report)
service = slo_report(before, after, 0.99, 0.25)
service

# %% [markdown]
# ## Data drift and prediction drift
# Labels (the true order values) arrive days after a prediction; drift is visible **at once**. Evidently compares
# each column of the current week with the reference: a statistical distance per column (Wasserstein for numbers
# with many values, Jensen-Shannon for few), flagged when it reaches the column's threshold. The model's
# predictions are a column too: **prediction drift** says the model now answers differently, before any label can
# say whether it is wrong.

# %%
columns = list(shop_models.FEATURES)


def with_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[columns].copy()
    out["prediction"] = model.predict(shop_models.matrix(frame))
    return out


report = Report([DataDriftPreset()], include_tests=True)
normal_report = report.run(current_data=with_predictions(normal_week), reference_data=with_predictions(reference))
shifted_report = report.run(current_data=with_predictions(shifted_week), reference_data=with_predictions(reference))
display(HTML(shifted_report.get_html_str(as_iframe=True)))

# %% [markdown]
# ## Exercise 2 — which columns drifted?
# A report is also data: `snapshot.dict()["metrics"]` holds one `ValueDrift` metric per column with its score
# (`value`) and, in its `config`, the `column`, the `method` and its `threshold`. Write `drifted_columns(snapshot)`
# returning the set of columns whose drift was detected. Careful: these scores are *distances*, not p-values.


# %%
### BEGIN SOLUTION
def drifted_columns(snapshot) -> set[str]:
    """The columns whose drift score reached their threshold in an Evidently drift report."""
    drifted = set()
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        score, threshold = float(metric["value"]), float(config["threshold"])
        is_p_value = "p_value" in str(config.get("method", ""))
        if (score < threshold) if is_p_value else (score >= threshold):
            drifted.add(config["column"])
    return drifted


### END SOLUTION

# %%
check.m06.drifted_columns(drifted_columns, normal_report, shifted_report)
print("normal week:", drifted_columns(normal_report) or "no drift")
print("shifted week:", sorted(drifted_columns(shifted_report)))
print("share of drifted columns (shifted):", shifted_report.dict()["metrics"][0]["value"])

# %% [markdown]
# Note the dataset-level verdict: four drifting columns out of fifteen is below the preset's default
# `drift_share=0.5`, so "dataset drift" says no — while the predictions moved a lot. Watch the columns that matter
# (the prediction first), not only the share.
#
# ## Model performance once labels arrive
# Every prediction is logged (`predictions`: order, when, value). The true value of an order is confirmed later —
# one to six days, when it is not returned — into `labels`. On any given day, recent predictions have no label
# yet: performance is computed over the labelled ones, and **coverage** says how much that is.

# %%
monitoring.log_predictions(ns.schema, shifted_week, model.predict(shop_models.matrix(shifted_week)))
day_3 = monitoring.WEEK_START + pd.Timedelta(days=3)
print("labels known on day 3:", monitoring.arrive_labels(ns.schema, shifted_week, as_of=day_3))
print("labels known on day 9:", monitoring.arrive_labels(ns.schema, shifted_week, as_of=day_3 + pd.Timedelta(days=6)))
conn = clients.postgres()

# %% [markdown]
# ## Exercise 3 — performance with delayed labels
# Write `performance_sql`, a query over `{schema}.predictions` and `{schema}.labels` (write `{schema}`: the check
# fills it in) returning one row per **day of prediction** (`predicted_at`'s date, in UTC) with `day`,
# `predictions`, `labelled`, `coverage` (labelled ÷ predictions) and `mae` (mean absolute error over the labelled
# predictions), ordered by day.

# %%
### BEGIN SOLUTION
performance_sql = """
SELECT (p.predicted_at AT TIME ZONE 'UTC')::date AS day,
       count(*) AS predictions,
       count(l.actual_value) AS labelled,
       count(l.actual_value)::float8 / count(*) AS coverage,
       avg(abs(p.predicted_value - l.actual_value)) AS mae
FROM {schema}.predictions p
LEFT JOIN {schema}.labels l ON l.order_id = p.order_id
GROUP BY 1
ORDER BY 1
"""
### END SOLUTION

# %%
check.m06.performance_with_delayed_labels(performance_sql, conn, ns.schema)
cursor = conn.execute(performance_sql.replace("{schema}", ns.schema))
performance = pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])
baseline_mae = float(np.mean(np.abs(model.predict(shop_models.matrix(normal_week)) - normal_week.order_value)))
performance["mae_ratio"] = performance.mae.astype(float) / baseline_mae
performance.round(3)

# %% [markdown]
# ## Exercise 4 — an alert that does not cry wolf
# Three signals, each measured per window: `error_budget_burn` (budget used in the window), `prediction_drift`
# (Evidently's score of the prediction column) and `mae_ratio` (MAE over the MAE of a normal week). Any one crossing
# its threshold should alert — but a single noisy window must not page anyone. Like Prometheus' `for:` clause,
# write `firing(history, thresholds, for_windows)` for a frame with columns `window`, `metric`, `value` (rows in
# any order) returning the set of metrics whose value is **above** their threshold in each of the last
# `for_windows` windows.


# %%
### BEGIN SOLUTION
def firing(history: pd.DataFrame, thresholds: dict[str, float], for_windows: int) -> set[str]:
    """Metrics above their threshold in every one of the last for_windows windows."""
    alerts = set()
    for metric, limit in thresholds.items():
        values = history[history.metric == metric].sort_values("window").value
        recent = values.tail(for_windows)
        if len(recent) == for_windows and (recent > limit).all():
            alerts.add(metric)
    return alerts


### END SOLUTION

# %%
check.m06.alert_rule(firing)

# %% [markdown]
# The signals measured in this notebook, as a history: a normal week (no fault, the normal report), then the
# faulty, shifted window twice (the scraped window's budget, the shifted report's prediction score, the MAE ratio
# of the labelled days).

# %%
thresholds = {"error_budget_burn": 1.0, "prediction_drift": 0.1, "mae_ratio": 1.25}


def prediction_score(snapshot) -> float:
    return next(m["value"] for m in snapshot.dict()["metrics"] if m["config"].get("column") == "prediction")


labelled = performance[performance.labelled > 0]
now = {
    "error_budget_burn": service["budget_used"],
    "prediction_drift": prediction_score(shifted_report),
    "mae_ratio": float((labelled.mae * labelled.labelled).sum() / labelled.labelled.sum()) / baseline_mae,
}
normal = {"error_budget_burn": 0.0, "prediction_drift": prediction_score(normal_report), "mae_ratio": 1.0}
history = pd.DataFrame(
    [
        {"window": w, "metric": k, "value": v}
        for w, values in enumerate([normal, normal, now, now])
        for k, v in values.items()
    ]
)
display(history.pivot(index="window", columns="metric", values="value").round(3))
print("firing:", sorted(firing(history, thresholds, for_windows=2)))
conn.close()

# %% [markdown]
# ## Recap
# - Service health comes from counters and histograms scraped from `/metrics`; a window's figures are differences
#   between scrapes. Availability counts server errors only; the **error budget** turns an SLO into a quantity you
#   can spend (deploys, experiments) and an alert when it burns too fast.
# - **Drift** is visible at once, labels are not: monitor the features and the **predictions** per column, each
#   against its own threshold, and know whether a score is a distance or a p-value.
# - **Performance** needs the labels: join predictions with the ground truth when it arrives, per day of prediction,
#   and report the **coverage** beside the error.
# - Alert on a **sustained** breach (`for:`), so noise does not page anyone, and let the alert resolve when the
#   signal recovers.
#
# **Going further:** in production Prometheus scrapes `/metrics` and evaluates the alert rules (`expr` +
# `for:`), Alertmanager routes the pages, and Grafana shows the SLO and burn-rate dashboards (multi-window burn-rate
# alerts from the SRE workbook). Evidently's workspace or a cloud monitor (SageMaker Model Monitor, Vertex AI Model
# Monitoring, Arize, WhyLabs) runs the drift reports on a schedule; the labels usually arrive through the same
# pipelines as in lab 06.04. Lab 06.06 turns a firing alert into a retraining run with automated gates.
