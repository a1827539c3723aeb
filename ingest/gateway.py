"""HTTP ingest gateway for applications that do not speak Kafka.

``POST /events`` takes a JSON array or NDJSON and answers:

* **202** ``{"accepted": n}`` only once the broker acknowledged all n records;
* **413** when the body is over ``max_body_bytes``;
* **422** ``{"accepted": 0, "errors": [{"index", "reason", "message"}, …]}`` when any
  record fails the spec's schema (the clean stage's rules); nothing is sent;
* **503** with ``Retry-After`` while Kafka cannot take records (back-pressure).

``POST /labels`` takes the ground truth that arrives later (``labels: {mode: delayed}``), one
``{"<id field>": ..., "<label field>": ..., "<time field>": ...}`` per record (the time is optional:
the gateway's clock otherwise), and writes each to the labels topic keyed by event id, under the
same rules (202 once acknowledged, 413, 422 per record, 503).

Event ids come from the spec's id field, else ``gw:<Idempotency-Key or body hash>:<index>``,
so a client that retries the same body gets the same ids and downstream deduplicates.
``GET /healthz`` and ``GET /metrics`` (Prometheus) complete it.

The Kafka side is behind :class:`Sink`, so the HTTP rules are tested without a broker:

>>> import asyncio
>>> from fastapi.testclient import TestClient
>>> from contracts.spec import load_spec_text
>>> spec = load_spec_text("name: d\\nschema: {fields: {x: float, y: bool}, label: y}\\n"
...                       "models: {m: {estimator: linear_model.LogisticRegression}}")
>>> class Memory:
...     topic, healthy, got = "d.raw", True, []
...     def ready(self): return True
...     async def deliver(self, records, role=None): self.got.extend(records)
>>> client = TestClient(create_app(spec, Memory()))
>>> r = client.post("/events", content=b'{"x": 1, "y": true}\\n{"x": 2, "y": false}')
>>> r.status_code, r.json()
(202, {'accepted': 2})
>>> client.post("/events", json=[{"x": "a", "y": True}]).json()["errors"]
[{'index': 0, 'reason': 'wrong_type', 'message': "field 'x': 'a' is not a number"}]
>>> client.post("/labels", json=[{"id": "e1", "y": True, "ts": 5}, {"id": "e2"}]).json()["errors"]
[{'index': 1, 'reason': 'missing_field', 'message': "record 1 has no 'y' (the label)"}]
>>> r = client.post("/labels", json=[{"id": "e1", "y": True, "ts": 5}])
>>> r.status_code, Memory.got[-1]
(202, (b'e1', b'{"v":1,"id":"e1","y":true,"ts":5.0,"event_ts":5.0}'))
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Protocol

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from contracts import serde
from contracts.settings import KafkaSettings
from contracts.spec import Spec
from contracts.topics import Role
from driftline._fastapi import telemetry_off
from ingest import _metrics
from ingest._validate import Validator
from ingest.producer import EventProducer, envelope, event_time

__all__ = ["create_app", "Sink", "KafkaSink", "Unavailable"]

RETRY_AFTER_S = 2


class Unavailable(Exception):
    """Kafka cannot take the records now; the client should retry later."""


class Sink(Protocol):
    topic: str
    healthy: bool

    def ready(self) -> bool:
        """False when records would not be delivered now (recent failure, too much in flight)."""

    async def deliver(self, records: list[tuple[bytes | None, bytes]], role: Role = Role.RAW) -> None:
        """Return once the broker acknowledged every ``(key, value)`` on the ``role`` topic; raise
        :class:`Unavailable` if not."""


class KafkaSink:
    """Delivers to the raw topic and waits for each record's acknowledgement."""

    def __init__(self, spec: Spec, settings: KafkaSettings, namespace: str | None = None,
                 max_in_flight: int = 100_000, timeout_s: float = 10.0, **overrides):
        config = dict(linger_ms=5, max_block_ms=2000, request_timeout_ms=int(timeout_s * 500),
                      delivery_timeout_ms=int(timeout_s * 1000), reconnect_backoff_max_ms=1000)
        self.producer = EventProducer(spec, settings, namespace, **{**config, **overrides})
        self.topic = self.producer.topics[Role.RAW].name
        self.timeout_s, self.max_in_flight = timeout_s, max_in_flight
        self.in_flight = 0
        self.healthy = True
        self._failed_at = 0.0

    def ready(self) -> bool:
        if time.monotonic() - self._failed_at < RETRY_AFTER_S:
            return False
        return self.in_flight < self.max_in_flight

    async def deliver(self, records, role: Role = Role.RAW):
        self.in_flight += len(records)
        try:
            await asyncio.to_thread(self._deliver, records, role)
            self.healthy = True
        except Exception as exc:  # noqa: BLE001 - every failure means: not delivered
            self.healthy = False
            self._failed_at = time.monotonic()
            raise Unavailable(f"{type(exc).__name__}: {exc}") from None
        finally:
            self.in_flight -= len(records)

    def _deliver(self, records, role: Role = Role.RAW) -> None:
        deadline = time.monotonic() + self.timeout_s + 1
        topic = self.producer.topics[role].name
        futures = [self.producer.send(topic, value, key, role=role) for key, value in records]
        for fut in futures:
            fut.get(timeout=max(0.1, deadline - time.monotonic()))
        self.producer.publish_metrics()

    def close(self) -> None:
        self.producer.close(timeout=5)


def _parse(body: bytes) -> tuple[list, list[dict]]:
    """Records and per-record parse errors of a JSON array or NDJSON body."""
    text = body.strip()
    if text.startswith(b"["):
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return [], [{"index": None, "reason": "bad_json", "message": f"the body is not JSON: {exc}"}]
        lines = list(enumerate(items))
    else:
        lines = []
        for i, line in enumerate(x for x in text.split(b"\n") if x.strip()):
            try:
                lines.append((i, orjson.loads(line)))
            except orjson.JSONDecodeError as exc:
                lines.append((i, _BadLine(str(exc))))
    records, errors = [], []
    for i, item in lines:
        if isinstance(item, _BadLine):
            errors.append({"index": i, "reason": "bad_json", "message": f"record {i} is not JSON: {item.message}"})
        elif not isinstance(item, dict):
            errors.append({"index": i, "reason": "not_an_object",
                           "message": f"record {i} is a {type(item).__name__}, not an object"})
        else:
            records.append((i, item))
    return records, errors


class _BadLine:
    def __init__(self, message: str):
        self.message = message


def create_app(spec: Spec, sink: Sink, max_body_bytes: int = 10 * 1024 * 1024):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    app = FastAPI(title="driftline gateway", telemetry=telemetry_off())
    validate = Validator(spec)

    def answer(status: int, body: dict, headers: dict | None = None):
        _metrics.HTTP_REQUESTS.labels(status=str(status)).inc()
        return JSONResponse(body, status_code=status, headers=headers)

    async def _body(request: Request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return answer(413, {"error": f"body of {declared} bytes is over the limit of {max_body_bytes}"})
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return answer(413, {"error": f"body is over the limit of {max_body_bytes} bytes"})
            chunks.append(chunk)
        return b"".join(chunks)

    async def _send(out: list, errors: list, role: Role):
        if errors:
            for e in errors:
                _metrics.REJECTED.labels(reason=e["reason"]).inc()
            errors.sort(key=lambda e: -1 if e["index"] is None else e["index"])
            return answer(422, {"accepted": 0, "errors": errors})
        if not sink.ready():
            return answer(503, {"error": "Kafka cannot take records now; retry later"},
                          {"Retry-After": str(RETRY_AFTER_S)})
        try:
            await sink.deliver(out, role)
        except Unavailable as exc:
            return answer(503, {"error": f"not delivered: {exc}; retry later"}, {"Retry-After": str(RETRY_AFTER_S)})
        return answer(202, {"accepted": len(out)})

    @app.post("/events")
    async def events(request: Request):
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        records, errors = _parse(body)
        for i, rec in records:
            problem = validate(rec)
            if problem is not None:
                errors.append({"index": i, "reason": problem[0], "message": problem[1]})
        stem = "gw:" + (request.headers.get("idempotency-key") or hashlib.sha256(body).hexdigest()[:16])
        now = time.time()
        out = []
        if not errors:
            for i, rec in records:
                key, env = envelope(spec, rec, i, stem, now=now)
                out.append((key, serde.dumps(env)))
        return await _send(out, errors, Role.RAW)

    @app.post("/labels")
    async def labels(request: Request):
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        id_field, label_field, time_field = spec.schema.id or "id", spec.schema.label or "y", spec.schema.time or "ts"
        records, errors = _parse(body)
        out, now = [], time.time()
        for i, rec in records:
            missing = [f"'{name}' ({what})" for name, what in ((id_field, "the event id"), (label_field, "the label"))
                       if rec.get(name) is None]
            if missing:
                errors.append({"index": i, "reason": "missing_field", "message": f"record {i} has no {missing[0]}"})
                continue
            ts = event_time(rec.get(time_field)) if rec.get(time_field) is not None else now
            if ts is None:
                errors.append({"index": i, "reason": "bad_time",
                               "message": f"record {i}: '{time_field}' is not a time: {rec[time_field]!r}"})
                continue
            eid = str(rec[id_field])
            out.append((eid.encode(), serde.dumps({"v": 1, "id": eid, "y": rec[label_field], "ts": ts,
                                                   "event_ts": ts})))
        return await _send(out, errors, Role.LABELS)

    @app.get("/healthz")
    async def healthz():
        ok = sink.healthy and sink.ready()
        return JSONResponse({"status": "ok" if ok else "unavailable", "topic": sink.topic},
                            status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
