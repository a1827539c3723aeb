"""Every Prometheus metric the serving service exports, defined here and nowhere else.

They live in their own registry, so that the service's ``/metrics`` shows
exactly these (and several apps in one test process do not collide).

>>> from prometheus_client import generate_latest
>>> b"driftline_serving_requests_total" in generate_latest(REGISTRY) or True
True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["REGISTRY", "REQUESTS", "LATENCY", "MODEL_VERSION", "SNAPSHOTS_ACCEPTED", "SNAPSHOTS_REFUSED",
           "SNAPSHOT_AGE", "SWAP_LAG", "PREDICTIONS", "READY"]

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "driftline_serving_requests_total", "HTTP requests answered, by route template and status code",
    ["route", "code"], registry=REGISTRY)
LATENCY = Histogram(
    "driftline_serving_request_duration_seconds", "Time to answer an HTTP request, by route template",
    ["route"], registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
MODEL_VERSION = Gauge(
    "driftline_serving_model_version", "Version (events learned) of the snapshot each model serves",
    ["model"], registry=REGISTRY)
SNAPSHOTS_ACCEPTED = Counter(
    "driftline_serving_snapshots_accepted_total", "Snapshots verified and swapped in", ["model"],
    registry=REGISTRY)
SNAPSHOTS_REFUSED = Counter(
    "driftline_serving_snapshots_refused_total", "Snapshots refused, by reason; the last good one keeps serving",
    ["reason"], registry=REGISTRY)
SNAPSHOT_AGE = Gauge(
    "driftline_serving_snapshot_age_seconds", "Seconds since the served snapshot was created by the learner",
    ["model"], registry=REGISTRY)
SWAP_LAG = Histogram(
    "driftline_serving_snapshot_swap_lag_seconds", "From a snapshot's publication on the topic to its swap-in",
    registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
PREDICTIONS = Counter(
    "driftline_serving_predictions_total", "Records predicted, by model", ["model"], registry=REGISTRY)
READY = Gauge(
    "driftline_serving_ready", "1 once every model of the spec has a snapshot, else 0", registry=REGISTRY)
