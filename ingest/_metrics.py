"""Prometheus metrics of ingest, defined in this one module (``driftline_ingest_*``).

Labels are bounded sets (``reason``, ``topic role``), never an event id or a key.

>>> SENT.labels(role="raw")._name
'driftline_ingest_sent'
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

__all__ = ["SENT", "ACKNOWLEDGED", "FAILED", "REJECTED", "SEND_LATENCY", "HTTP_REQUESTS", "serve"]

SENT = Counter("driftline_ingest_sent_total", "Records handed to the Kafka producer", ["role"])
ACKNOWLEDGED = Counter("driftline_ingest_acknowledged_total", "Records the broker acknowledged", ["role"])
FAILED = Counter("driftline_ingest_failed_total", "Records the broker did not acknowledge", ["role"])
REJECTED = Counter("driftline_ingest_rejected_total", "Bad inputs, by reason", ["reason"])
SEND_LATENCY = Histogram("driftline_ingest_send_latency_seconds",
                         "From send to broker acknowledgement (sampled, 1 record in 16)",
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
HTTP_REQUESTS = Counter("driftline_ingest_http_requests_total", "Gateway POST /events answers, by status",
                        ["status"])


def serve(port: int) -> None:
    """Expose the metrics on ``http://0.0.0.0:port/metrics`` from a daemon thread."""
    start_http_server(port)
