# ---
# jupyter:
#   kernelspec: {name: delab-mlops, display_name: "Python 3 (delab-mlops · MLflow, KServe)", language: python}
# ---

# %% [markdown]
# # 06.01 · BentoML: package, serve, batch — and measure what makes it fast
#
# **You will:**
# - train a small order-value model on the shop data in Postgres and save it to BentoML's model store;
# - write a BentoML service with adaptive batching, build it into a bento and serve it on 127.0.0.1;
# - score a table through the server in chunks, with BentoML's own client;
# - load-test four ways of serving the same model (plain, batched, ONNX Runtime, cached) with a bounded load,
#   compute p50/p95/p99 and throughput, and pick the configuration that meets a latency SLO.
#
# *Needs:* Postgres (started for you). Kernel: `delab-mlops`. About 40 minutes.

# %%
import time
from pathlib import Path

import bentoml
import httpx
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from delab import check, config, stack
from delab.mlops import bento, load, shop_models

stack.require("postgres")
ns = stack.namespace("m06_l01")  # this lab's Postgres schema: m06_l01
store = bento.model_store("m06_l01")  # BENTOML_HOME: this lab's model store and bentos
workdir = config.lab_dir("m06_l01") / "service"
workdir.mkdir(exist_ok=True)
shop_models.load_shop(ns.schema)

# %% [markdown]
# ## A model worth serving
# The features are computed where the data lives — one SQL query over orders, items, products and customers —
# and the model is a small random forest that predicts an order's value. It trains in a few seconds: every run of
# this notebook trains what it serves, nothing is downloaded.

# %%
features = shop_models.order_features(ns.schema)
model = shop_models.train_order_value(features)
X = shop_models.matrix(features)
r2 = model.score(X, features.order_value)
print(f"{len(features)} orders, {len(shop_models.FEATURES)} features; R² on the training data {r2:.2f}")
features.head(3)

# %% [markdown]
# BentoML keeps models in a **model store** (here under the lab's folder): each save is a new version of the same
# name, `order_value:latest` is the newest. The same forest exported to ONNX goes in beside it, for later.

# %%
saved = bentoml.sklearn.save_model("order_value", model, labels={"lab": "06.01"})
with bentoml.models.create("order_value_onnx", labels={"lab": "06.01"}) as onnx_model:
    Path(onnx_model.path_of("model.onnx")).write_bytes(shop_models.to_onnx(model))
print(saved.tag, onnx_model.tag)

# %% [markdown]
# ## Exercise 1 — the service
# A BentoML service is a Python class decorated with `@bentoml.service`; each method decorated with
# `@bentoml.api` becomes an HTTP endpoint (`POST /predict` with a JSON body `{"rows": [[...], ...]}`).
#
# Write the module as a string `service_source`: a service class `OrderValue` whose `predict(self, rows:
# np.ndarray) -> np.ndarray` returns the model's predictions, one per row. Two requirements that matter in
# production:
# - **the model comes from the model store** by its tag (not from a file beside the notebook): `bentoml build`
#   then packs exactly that model version into the bento;
# - **adaptive batching**: requests that arrive together are merged into one call of the model (a batch of up to a
#   few dozen rows, waiting at most a second).

# %%
### BEGIN SOLUTION
service_source = """
import bentoml
import numpy as np


@bentoml.service(traffic={"timeout": 30})
class OrderValue:
    model_ref = bentoml.models.BentoModel("order_value:latest")

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.model_ref)

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.model.predict(rows.astype(np.float32))
"""
### END SOLUTION

# %%
check.m06.order_value_service(service_source, X[:20])

# %% [markdown]
# ## Build a bento, serve it
# `bentoml build` packs the service code, the model version it references and a description of its Python
# environment into a **bento** (`order_value_service:<version>` in the store) — the unit you would turn into a container
# image with `bentoml containerize`. `bentoml serve TAG` runs it. `bento.serve` starts it on a free port of
# 127.0.0.1, waits for `/readyz` and stops it (with its workers) at the end, or if the kernel dies.

# %%
(workdir / "service.py").write_text(service_source)
started = time.monotonic()
tag = bento.build(workdir, "service:OrderValue", "order_value_service", labels={"lab": "06.01"})
server = bento.serve(tag, name="order-value")
print(f"{tag} built and serving at {server.url} in {time.monotonic() - started:.1f} s")

# %%
one_order = X[:1].tolist()
print("plain HTTP:", httpx.post(f"{server.url}/predict", json={"rows": one_order}).json())
with bentoml.SyncHTTPClient(server.url) as client:  # BentoML's client: typed arguments, same endpoint
    print("BentoML client:", client.predict(rows=X[:3]))

# %% [markdown]
# ## Exercise 2 — batch scoring of a table
# Scoring a whole table through the service: one request per row spends its time on round trips; one request for
# the whole table can be too big for the server. Write `score_in_chunks(client, frame, chunk_size)` that sends the
# frame's feature rows (`shop_models.matrix(frame)`) in chunks of at most `chunk_size` rows through
# `client.predict(rows=...)` and returns one prediction per row, in the frame's order.


# %%
### BEGIN SOLUTION
def score_in_chunks(client, frame: pd.DataFrame, chunk_size: int) -> np.ndarray:
    """Predictions for every row of frame, chunk_size rows per request."""
    rows = shop_models.matrix(frame)
    parts = [np.asarray(client.predict(rows=rows[i : i + chunk_size])) for i in range(0, len(rows), chunk_size)]
    return np.concatenate(parts) if parts else np.array([])


### END SOLUTION

# %%
check.m06.chunked_scoring(score_in_chunks, server.url, features)

# %% [markdown]
# The server counts what it served: `/metrics` speaks the Prometheus text format (the same numbers a Prometheus
# server would scrape). Requests per endpoint and their latency histogram are there:

# %%
metrics = httpx.get(f"{server.url}/metrics").text
print("requests served by /predict:", bento.metric_total(metrics, "bentoml_service_request_total", endpoint="/predict"))
server.stop()

# %% [markdown]
# ## Performance: measured, not claimed
# One service, four endpoints serving the same forest (`delab/mlops/perf_service.py`): plain scikit-learn, the
# same with adaptive batching, the ONNX Runtime export, and scikit-learn behind an LRU cache keyed on the features
# (the load replays 40 distinct orders, as a hot product page would). Each gets the same **bounded** load: a fixed
# budget of single-order requests from 8 concurrent clients. Figures depend on this machine and on how busy it is:
# compare them with each other, measured one after another, never with someone else's numbers.

# %%
perf = bento.serve("delab.mlops.perf_service:OrderValuePerf", name="order-value-perf")
payloads = [{"rows": X[i : i + 1].tolist()} for i in range(40)]
configs = {"sklearn": "predict", "batched": "predict_batched", "onnx": "predict_onnx", "cached": "predict_cached"}
for endpoint in configs.values():  # warm-up: first calls load code paths and fill nothing we measure
    httpx.post(f"{perf.url}/{endpoint}", json=payloads[0])
runs = {
    name: load.run_load(f"{perf.url}/{endpoint}", payloads, requests=160, concurrency=8, label=name)
    for name, endpoint in configs.items()
}
perf_metrics = httpx.get(f"{perf.url}/metrics").text
perf.stop()
runs

# %% [markdown]
# ## Exercise 3 — percentiles and throughput
# Write `latency_summary(result)` for a `LoadResult` (`result.latencies_s`: the successful requests' latencies in
# seconds; `result.wall_s`: the run's wall-clock time; `result.errors`: failed requests) returning a dict with
# `p50_ms`, `p95_ms`, `p99_ms` and `throughput_rps` (successful requests per second).


# %%
### BEGIN SOLUTION
def latency_summary(result: load.LoadResult) -> dict[str, float]:
    """p50/p95/p99 latency in ms and throughput in requests/s of a bounded load run."""
    ms = result.latencies_s * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_rps": len(ms) / result.wall_s,
    }


### END SOLUTION

# %%
check.m06.latency_summary(latency_summary)

# %%
measured = pd.DataFrame([{"config": name, **latency_summary(run), "errors": run.errors} for name, run in runs.items()])
display(measured.round(1))
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.scatter(measured.throughput_rps, measured.p95_ms)
for row in measured.itertuples():
    ax.annotate(row.config, (row.throughput_rps, row.p95_ms), textcoords="offset points", xytext=(5, 5))
ax.set(xlabel="throughput (requests/s)", ylabel="p95 latency (ms)", title="Same model, four ways to serve it")
plt.show()

# %% [markdown]
# Adaptive batching is visible in the server's own metrics: the batched endpoint ran the model fewer times than it
# answered requests (each run covered several requests' rows).

# %%
for name in ("bentoml_service_adaptive_batch_size_sum", "bentoml_service_adaptive_batch_size_count"):
    print(name, bento.metric_total(perf_metrics, name))

# %% [markdown]
# ## Exercise 4 — the configuration that meets the SLO
# The service's SLO on this machine: **p95 ≤ twice the best p95 you measured**. Write `choose_config(table,
# slo_p95_ms)` that returns the `config` with the highest throughput among those meeting the SLO — or `None`
# when none does.


# %%
### BEGIN SOLUTION
def choose_config(table: pd.DataFrame, slo_p95_ms: float):
    """The config with the most throughput among those whose p95 meets the SLO (None when none does)."""
    within = table[table.p95_ms <= slo_p95_ms]
    if within.empty:
        return None
    return within.sort_values("throughput_rps").iloc[-1]["config"]


### END SOLUTION

# %%
slo_p95_ms = 2 * measured.p95_ms.min()
print(f"SLO: p95 <= {slo_p95_ms:.1f} ms → {choose_config(measured, slo_p95_ms)}")
check.m06.config_for_slo(choose_config, measured, slo_p95_ms)

# %% [markdown]
# ## Recap
# - A BentoML service is a class; its model comes from the model store by tag, so a bento carries the exact model
#   version it was built with. `bentoml serve` runs it; `/metrics` exposes what it served.
# - Adaptive batching trades a little waiting for far fewer model calls when requests arrive together; ONNX Runtime
#   cuts the cost of each call; a cache removes calls for inputs already seen (only when predictions are pure).
# - Latency is a distribution: report p50/p95/p99 from a bounded, repeatable load, and throughput over wall time.
#   Choose a configuration against an SLO, with figures measured on the machine that will serve.
#
# **Going further:** `bentoml containerize <tag>` turns the bento into an OCI image; BentoCloud or a Kubernetes
# Deployment with a HorizontalPodAutoscaler scales it out; `@bentoml.service(workers=N, resources={"gpu": 1})`
# scales it up. For load tests against a real deployment, `locust` (installed in this kernel) runs the same
# bounded load headless (`locust --headless -u 8 -r 8 --iterations 160`). Lab 06.02 serves the same model with
# KServe's model server and the Open Inference Protocol.
