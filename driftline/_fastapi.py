"""What driftline's two HTTP services, the serving API and the ingest gateway, give FastAPI alike."""

from __future__ import annotations

__all__ = ["telemetry_off"]


def telemetry_off() -> dict:
    """FastAPI's ``telemetry`` argument for a service whose telemetry is Prometheus (``/metrics``):
    FastAPI's OpenTelemetry hooks would otherwise look up three unconfigured providers on every
    request."""
    return {"tracing": False, "metrics": False, "logs": False}
