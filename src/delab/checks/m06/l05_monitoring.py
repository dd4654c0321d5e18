"""Checks of lab 06.05 (monitoring): an SLO report from two scrapes of ``/metrics``, the drifted columns read from
an Evidently report, model performance once delayed labels arrive (SQL on Postgres), and an alert rule that does
not fire on noise.

The SLO and alert checks feed known inputs (metrics written by ``prometheus_client`` itself, a fixed history), so
the verdict never depends on how fast this machine served; the drift check reads the verdicts Evidently itself
recorded (its tests) in the learner's report; the performance check recomputes the figures with pandas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from delab.grading import WrongAnswer, exercise, learner_code

# ------------------------------------------------------------------------------------------ e1: SLO report


def _scrapes() -> tuple[str, str, dict[str, float]]:
    """Two expositions of the monitored service's metrics and the figures between them."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from delab.mlops.monitored_service import LATENCY_BUCKETS

    registry = CollectorRegistry()
    requests = Counter("inference_requests", "by status", ["status"], registry=registry)
    latency = Histogram("inference_request_duration_seconds", "latency", buckets=LATENCY_BUCKETS, registry=registry)

    def serve(n: int, status: str, seconds: float) -> None:
        for _ in range(n):
            requests.labels(status=status).inc()
            latency.observe(seconds)

    serve(500, "200", 0.02)  # before the window: the process has been up a while
    serve(7, "500", 0.03)
    before = generate_latest(registry).decode()
    serve(700, "200", 0.02)
    serve(240, "200", 0.4)  # slow ones
    serve(40, "422", 0.004)  # the clients' fault, not the service's
    serve(20, "500", 0.03)
    after = generate_latest(registry).decode()
    total = 1000
    return (
        before,
        after,
        {
            "requests": total,
            "errors": 20,
            "error_rate": 20 / total,
            "budget_used": (20 / total) / (1 - 0.99),
            "within_latency": 760 / total,
        },
    )


@exercise("m06.l05.e1")
def slo_report(slo_report) -> None:
    """slo_report(before, after, slo, latency_threshold_s) measures the window between two scrapes: requests, server
    errors, error rate, error budget used, share of requests within the latency threshold."""
    before, after, want = _scrapes()
    got = learner_code("slo_report")(slo_report)(before, after, 0.99, 0.25)
    if not isinstance(got, dict) or set(want) - set(got):
        raise WrongAnswer(
            f"expected a dict with {', '.join(want)}; got {str(got)[:100]}.",
            hint="one entry per figure of the window.",
        )
    try:
        got = {key: float(got[key]) for key in want}
    except (TypeError, ValueError):
        raise WrongAnswer("every figure should be a number.") from None
    if math.isclose(got["requests"], want["requests"] + 507, rel_tol=1e-9):
        raise WrongAnswer(
            "requests counts everything since the server started, not the window between the two scrapes.",
            hint="counters only go up: a window's figure is the difference after − before.",
        )
    if not math.isclose(got["requests"], want["requests"], rel_tol=1e-9):
        raise WrongAnswer(
            f"{got['requests']:g} requests in the window; the counters say {want['requests']}.",
            hint="add up inference_requests_total over every status, after − before.",
        )
    if math.isclose(got["errors"], 60, rel_tol=1e-9):
        raise WrongAnswer(
            "errors counts the 422 answers too: those are the clients' invalid requests, not failures of the service.",
            hint="the availability SLI counts server errors (5xx) as bad; a 4xx is the service working as designed.",
        )
    if not math.isclose(got["errors"], want["errors"], rel_tol=1e-9) or not math.isclose(
        got["error_rate"], want["error_rate"], rel_tol=1e-6
    ):
        raise WrongAnswer(
            f"errors {got['errors']:g} / error rate {got['error_rate']:.4f}; expected {want['errors']} / "
            f"{want['error_rate']:.4f}.",
            hint="server errors in the window over all requests in the window.",
        )
    if math.isclose(got["budget_used"], want["error_rate"], rel_tol=1e-6):
        raise WrongAnswer(
            "budget_used equals the error rate: with a 99 % SLO the budget is the 1 % of requests allowed to fail.",
            hint="budget used = error rate ÷ (1 − SLO); 1.0 means the whole budget is gone.",
        )
    if not math.isclose(got["budget_used"], want["budget_used"], rel_tol=1e-6):
        raise WrongAnswer(
            f"budget_used {got['budget_used']:.3f}; expected {want['budget_used']:.3f}.",
            hint="budget used = error rate ÷ (1 − SLO).",
        )
    if got["within_latency"] > 1:
        raise WrongAnswer(
            f"within_latency is {got['within_latency']:.2f}, more than all requests: histogram buckets are "
            "cumulative, so adding them up counts requests several times.",
            hint="the bucket le=<threshold> already counts every request at or below the threshold.",
        )
    if not math.isclose(got["within_latency"], want["within_latency"], rel_tol=1e-6):
        raise WrongAnswer(
            f"within_latency {got['within_latency']:.3f}; expected {want['within_latency']:.3f}.",
            hint="the le=<threshold> bucket of inference_request_duration_seconds over its _count, both as "
            "after − before.",
        )


# -------------------------------------------------------------------------------------- e2: drifted columns


def _evidently_verdicts(snapshot) -> dict[str, bool]:
    """Per column: did Evidently's own test for its drift fail (i.e. drift detected)?"""
    verdicts = {}
    for test in snapshot.dict().get("tests", []):
        name = str(test.get("name", ""))
        prefix = "Value Drift for column "
        if name.startswith(prefix):
            verdicts[name[len(prefix) :]] = str(getattr(test.get("status"), "value", test.get("status"))) == "FAIL"
    return verdicts


@exercise("m06.l05.e2")
def drifted_columns(drifted_columns, normal_snapshot, shifted_snapshot) -> None:
    """drifted_columns(snapshot) lists the columns whose drift score crossed their own threshold in an Evidently
    report — none in a normal week, the promoted features and the predictions in the shifted one."""
    for name, snapshot in (("normal", normal_snapshot), ("shifted", shifted_snapshot)):
        if not hasattr(snapshot, "dict") or not hasattr(snapshot, "get_html_str"):
            raise WrongAnswer(
                f"the {name} report is a {type(snapshot).__name__}, not what Report.run(...) returns.",
                hint="pass the result of Report([...]).run(current_data=..., reference_data=...).",
            )
    verdicts = {
        name: _evidently_verdicts(s) for name, s in (("normal", normal_snapshot), ("shifted", shifted_snapshot))
    }
    if not verdicts["shifted"]:
        raise WrongAnswer(
            "the reports hold no per-column drift tests.",
            hint="run the DataDriftPreset with include_tests=True on the Report.",
        )
    if "prediction" not in verdicts["shifted"]:
        raise WrongAnswer(
            "the reports have no 'prediction' column: prediction drift is not monitored.",
            hint="add the model's predictions as a column of both datasets before running the report.",
        )
    run = learner_code("drifted_columns")(drifted_columns)
    for name, snapshot in (("shifted", shifted_snapshot), ("normal", normal_snapshot)):
        got = run(snapshot)
        try:
            got = {str(column) for column in got}
        except TypeError:
            raise WrongAnswer(
                f"drifted_columns returned {type(got).__name__}; expected a set of column names."
            ) from None
        want = {column for column, drifted in verdicts[name].items() if drifted}
        stable = set(verdicts[name]) - want
        if want and got == stable:
            raise WrongAnswer(
                f"for the {name} week you list exactly the columns that did NOT drift.",
                hint="these scores are distances (Wasserstein, Jensen-Shannon): bigger means more drift, so a column "
                "drifts when its score reaches its threshold — the opposite of a p-value.",
            )
        if got - set(verdicts[name]):
            raise WrongAnswer(
                f"{sorted(got - set(verdicts[name]))[:3]} are not columns of the report.",
                hint="list column names as the report's ValueDrift metrics name them.",
            )
        if got != want:
            extra, missing = sorted(got - want), sorted(want - got)
            raise WrongAnswer(
                f"for the {name} week you list {sorted(got)}; Evidently found drift in {sorted(want)}"
                + (f" (not {extra[:3]})" if extra else "")
                + (f" (missing {missing[:3]})" if missing else "")
                + ".",
                hint="each ValueDrift metric carries its own method and threshold in its config: compare each "
                "column's score with its own threshold, and keep the prediction column.",
            )


# ------------------------------------------------------------------------- e3: performance, delayed labels


def _expected_performance(conn, schema: str) -> pd.DataFrame:
    predictions = pd.DataFrame(
        conn.execute(f"SELECT order_id, predicted_at, predicted_value FROM {schema}.predictions").fetchall(),
        columns=["order_id", "predicted_at", "predicted_value"],
    )
    labels = pd.DataFrame(
        conn.execute(f"SELECT order_id, actual_value FROM {schema}.labels").fetchall(),
        columns=["order_id", "actual_value"],
    )
    joined = predictions.merge(labels, on="order_id", how="left")
    joined["day"] = pd.to_datetime(joined.predicted_at, utc=True).dt.tz_convert("UTC").dt.date
    joined["error"] = (joined.predicted_value - joined.actual_value).abs()
    out = joined.groupby("day").agg(
        predictions=("order_id", "size"), labelled=("actual_value", "count"), mae=("error", "mean")
    )
    out["coverage"] = out.labelled / out.predictions
    return out


@exercise("m06.l05.e3")
def performance_with_delayed_labels(performance_sql: str, conn, schema: str) -> None:
    """performance_sql gives, per day of prediction, the predictions, how many have a label yet, the coverage and
    the mean absolute error over the labelled ones."""
    if not isinstance(performance_sql, str) or "select" not in performance_sql.lower():
        raise WrongAnswer("performance_sql should be the text of a SELECT query.")
    sql = performance_sql.replace("{schema}", schema)

    @learner_code("your query")
    def run() -> pd.DataFrame:
        conn.execute("SET TIME ZONE 'UTC'")
        cursor = conn.execute(sql)
        return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])

    got = run()
    needed = {"day", "predictions", "labelled", "coverage", "mae"} - set(got.columns)
    if needed:
        raise WrongAnswer(
            f"the result has no column {', '.join(sorted(needed))} (it has {', '.join(got.columns)}).",
            hint="name the columns day, predictions, labelled, coverage, mae.",
        )
    want = _expected_performance(conn, schema)
    try:
        got["day"] = pd.to_datetime(got["day"]).dt.date
        got = got.set_index("day").sort_index()
        for column in ("predictions", "labelled", "coverage", "mae"):
            got[column] = pd.to_numeric(got[column]).astype(float)
    except (TypeError, ValueError) as error:
        raise WrongAnswer(f"the result's columns could not be read as a date and numbers ({error}).") from None
    if got.index.duplicated().any():
        raise WrongAnswer("a day appears more than once.", hint="one row per day of prediction (GROUP BY the day).")
    if set(got.index) != set(want.index) or not np.allclose(got.predictions, want.predictions.reindex(got.index)):
        if np.allclose(got.predictions.sum(), want.labelled.sum()):
            raise WrongAnswer(
                "predictions counts only the labelled ones: an inner join drops every prediction still waiting for "
                "its label, so coverage always looks perfect.",
                hint="keep every prediction (a LEFT JOIN onto the labels) and count the labels separately.",
            )
        raise WrongAnswer(
            f"days or prediction counts differ: expected {len(want)} days, {int(want.predictions.sum())} predictions.",
            hint="group by the day the prediction was made (predicted_at, in UTC), not the day its label arrived.",
        )
    want = want.reindex(got.index)
    if not np.allclose(got.labelled, want.labelled):
        raise WrongAnswer(
            "labelled differs from the number of predictions with a label, per day.",
            hint="count(actual_value) counts non-null values only.",
        )
    if not np.allclose(got.coverage, want.coverage, atol=1e-6):
        raise WrongAnswer("coverage should be labelled ÷ predictions (a share between 0 and 1), per day.")
    both = want.mae.notna()
    if not np.allclose(got.mae[both].fillna(-1), want.mae[both], rtol=1e-6, atol=1e-6):
        raise WrongAnswer(
            "mae differs from the mean absolute error over the labelled predictions: a prediction without its "
            "label yet is not an error of 0 (nor of its whole value) — it is unknown.",
            hint="average abs(predicted − actual) over the rows that have an actual value; avg() skips NULLs.",
        )


# ---------------------------------------------------------------------------------------- e4: alert rule


def _history() -> pd.DataFrame:
    rows = []
    noise = {
        "error_budget_burn": [0.1, 0.3, 1.4, 0.2, 0.1, 0.2],
        "prediction_drift": [0.02, 0.03, 0.02, 0.12, 0.03, 0.02],
    }
    sustained = {"mae_ratio": [1.0, 1.1, 1.3, 1.0, 1.6, 1.7]}
    for metric, values in {**noise, **sustained}.items():
        rows += [{"window": w, "metric": metric, "value": v} for w, v in enumerate(values)]
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)  # rows in no particular order


THRESHOLDS = {"error_budget_burn": 1.0, "prediction_drift": 0.1, "mae_ratio": 1.25}


@exercise("m06.l05.e4")
def alert_rule(firing) -> None:
    """firing(history, thresholds, for_windows) names the metrics above their threshold in each of the last
    for_windows windows — a sustained breach, not a one-window blip."""
    history = _history()
    run = learner_code("firing")(firing)
    got = run(history.copy(), dict(THRESHOLDS), 2)
    try:
        got = {str(metric) for metric in got}
    except TypeError:
        raise WrongAnswer(f"firing returned {type(got).__name__}; expected a set of metric names.") from None
    noisy = {"error_budget_burn", "prediction_drift"} & got
    if noisy:
        raise WrongAnswer(
            f"{sorted(noisy)} fired on a single window above the threshold, followed by normal windows: noise pages "
            "someone for nothing.",
            hint="fire only when the threshold is crossed in every one of the last for_windows windows (in window "
            "order).",
        )
    if "mae_ratio" not in got:
        raise WrongAnswer(
            "mae_ratio is above its threshold in the last two windows and did not fire.",
            hint="sort each metric's values by window and look at the most recent for_windows of them.",
        )
    longer = {str(metric) for metric in run(history.copy(), dict(THRESHOLDS), 3)}
    if longer:
        raise WrongAnswer(
            f"with for_windows=3, {sorted(longer)} fired, but no metric is above its threshold in each of the last "
            "three windows.",
            hint="use for_windows as the number of consecutive recent windows that must all breach.",
        )
    recovered = history[~((history.metric == "mae_ratio") & (history.window == 5))].copy()
    recovered = pd.concat([recovered, pd.DataFrame([{"window": 5, "metric": "mae_ratio", "value": 1.1}])])
    if run(recovered, dict(THRESHOLDS), 2):
        raise WrongAnswer(
            "after the last window came back below its threshold, the alert still fires.",
            hint="the breach must include the most recent window: an alert resolves when the metric recovers.",
        )
