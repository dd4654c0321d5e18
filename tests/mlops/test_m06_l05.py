"""Checks of lab 06.05 (monitoring): the right answer passes, realistic wrong answers are rejected with their own
message, the placeholder is not solved. e2 and e3 run on real Evidently reports and the stack's Postgres."""

from __future__ import annotations

import pandas as pd
import pytest

from delab import clients, stack
from delab.checks.m06 import l05_monitoring as checks
from delab.grading import NotSolvedYet, WrongAnswer
from delab.mlops import monitoring, shop_models
from delab.mlops.bento import metric_samples, metric_total

NS = stack.namespace("m06_l05_tests")

# ------------------------------------------------------------------------------------------- e1


def slo_right(before, after, slo, threshold, *, window=True, client_errors=False, budget=True, cumulative=True):
    def delta(name, **labels):
        return metric_total(after, name, **labels) - (metric_total(before, name, **labels) if window else 0)

    statuses = {labels["status"] for labels, _ in metric_samples(after, "inference_requests_total")}
    bad = ("4", "5") if client_errors else ("5",)
    requests = delta("inference_requests_total")
    errors = sum(delta("inference_requests_total", status=s) for s in statuses if s.startswith(bad))
    if cumulative:
        within = delta("inference_request_duration_seconds_bucket", le=str(float(threshold)))
    else:
        within = sum(
            delta("inference_request_duration_seconds_bucket", le=labels["le"])
            for labels, _ in metric_samples(after, "inference_request_duration_seconds_bucket")
            if labels["le"] != "+Inf" and float(labels["le"]) <= threshold
        )
    rate = errors / requests
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": rate,
        "budget_used": rate / (1 - slo) if budget else rate,
        "within_latency": within / delta("inference_request_duration_seconds_count"),
    }


def test_slo_report_right():
    checks.slo_report(slo_right)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": False}, "since the server started"),
        ({"client_errors": True}, "422 answers too"),
        ({"budget": False}, "equals the error rate"),
        ({"cumulative": False}, "cumulative"),
    ],
)
def test_slo_report_wrong(options, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.slo_report(lambda b, a, s, t: slo_right(b, a, s, t, **options))


def test_slo_report_placeholder():
    def todo(before, after, slo, threshold):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.slo_report(todo)


# ------------------------------------------------------------------------------------------- e2


@pytest.fixture(scope="module")
def data():
    stack.require("postgres", quiet=True)
    shop_models.load_shop(NS.schema, scale=0.25)
    frame = shop_models.order_features(NS.schema)
    reference, week = monitoring.split_weeks(frame)
    model = shop_models.train_order_value(reference, n_estimators=5, max_depth=5)
    return reference, week, monitoring.shifted(week), model


@pytest.fixture(scope="module")
def reports(data):
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference, week, shifted, model = data

    def frame(x):
        out = x[list(shop_models.FEATURES)].copy()
        out["prediction"] = model.predict(shop_models.matrix(x))
        return out

    report = Report([DataDriftPreset()], include_tests=True)
    return report.run(frame(week), frame(reference)), report.run(frame(shifted), frame(reference))


def drifted_right(snapshot, *, as_p_value=False, own_threshold=None, features_only=False):
    drifted = set()
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        score, threshold = float(metric["value"]), own_threshold or float(config["threshold"])
        if (score < threshold) if as_p_value else (score >= threshold):
            drifted.add(config["column"])
    return drifted - {"prediction"} if features_only else drifted


def test_drifted_right(reports):
    checks.drifted_columns(drifted_right, *reports)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"as_p_value": True}, "did NOT drift"),
        ({"own_threshold": 0.05}, r"not \['channel_marketplace'\]"),
        ({"features_only": True}, r"missing \['prediction'\]"),
    ],
)
def test_drifted_wrong(reports, options, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.drifted_columns(lambda s: drifted_right(s, **options), *reports)


def test_drifted_needs_prediction_column(data):
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference, _, shifted, _ = data
    cols = list(shop_models.FEATURES)
    report = Report([DataDriftPreset()], include_tests=True)
    plain = report.run(shifted[cols], reference[cols])
    with pytest.raises(WrongAnswer, match="prediction drift is not monitored"):
        checks.drifted_columns(drifted_right, plain, plain)


# ------------------------------------------------------------------------------------------- e3

RIGHT_SQL = """
SELECT (p.predicted_at AT TIME ZONE 'UTC')::date AS day, count(*) AS predictions, count(l.actual_value) AS labelled,
       count(l.actual_value)::float8 / count(*) AS coverage, avg(abs(p.predicted_value - l.actual_value)) AS mae
FROM {schema}.predictions p LEFT JOIN {schema}.labels l ON l.order_id = p.order_id GROUP BY 1 ORDER BY 1"""
INNER_SQL = RIGHT_SQL.replace("LEFT JOIN", "JOIN")
ZERO_SQL = RIGHT_SQL.replace("l.actual_value))", "coalesce(l.actual_value, 0)))")
LABEL_DAY_SQL = RIGHT_SQL.replace("SELECT (p.predicted_at", "SELECT (coalesce(l.labelled_at, p.predicted_at)")


@pytest.fixture(scope="module")
def logged(data):
    _, _, shifted, model = data
    monitoring.log_predictions(NS.schema, shifted, model.predict(shop_models.matrix(shifted)))
    monitoring.arrive_labels(NS.schema, shifted, as_of=monitoring.WEEK_START + pd.Timedelta(days=8))
    with clients.postgres() as conn:
        yield conn


def test_performance_right(logged):
    checks.performance_with_delayed_labels(RIGHT_SQL, logged, NS.schema)


@pytest.mark.parametrize(
    ("sql", "message"),
    [(INNER_SQL, "inner join"), (ZERO_SQL, "not an error of 0"), (LABEL_DAY_SQL, "the day the prediction was made")],
)
def test_performance_wrong(logged, sql, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.performance_with_delayed_labels(sql, logged, NS.schema)


def test_performance_placeholder(logged):
    with pytest.raises(NotSolvedYet):
        checks.performance_with_delayed_labels(..., logged, NS.schema)


# ------------------------------------------------------------------------------------------- e4


def firing_right(history, thresholds, for_windows, *, mode="consecutive"):
    alerts = set()
    for metric, limit in thresholds.items():
        values = history[history.metric == metric].sort_values("window").value
        if mode == "any":
            hit = (values > limit).any()
        elif mode == "count":
            hit = (values > limit).sum() >= for_windows
        elif mode == "unsorted":
            hit = (history[history.metric == metric].value.tail(for_windows) > limit).all()
        else:
            hit = len(values) >= for_windows and (values.tail(for_windows) > limit).all()
        if hit:
            alerts.add(metric)
    return alerts


def test_alert_right():
    checks.alert_rule(firing_right)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("any", "single window"),
        ("count", "for_windows=3|single window|still fires"),
        ("unsorted", "did not fire|single"),
    ],
)
def test_alert_wrong(mode, message):
    with pytest.raises(WrongAnswer, match=message):
        checks.alert_rule(lambda h, t, n: firing_right(h, t, n, mode=mode))


def test_alert_placeholder():
    def todo(history, thresholds, for_windows):
        raise NotImplementedError

    with pytest.raises(NotSolvedYet):
        checks.alert_rule(todo)
