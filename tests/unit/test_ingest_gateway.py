"""The HTTP gateway's answers (202, 413, 422, 503) against an in-memory sink."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from contracts import serde
from contracts.spec import load_spec_text
from ingest.gateway import Unavailable, create_app

SPEC = load_spec_text("""
name: gw
schema:
  fields: {id: str, user: str, x: {type: float, min: 0}, y: bool}
  key: user
  label: y
models: {m: {estimator: linear_model.LogisticRegression}}
""")


class Sink:
    topic = "gw.raw"

    def __init__(self, up=True, ready=True):
        self.up, self._ready, self.healthy, self.got = up, ready, up, []

    def ready(self):
        return self._ready

    async def deliver(self, records, role="raw"):
        if not self.up:
            raise Unavailable("broker down")
        self.got.extend(records)
        self.roles = getattr(self, "roles", []) + [role] * len(records)


def rec(i, x=1.0):
    return {"id": f"e{i}", "user": f"u{i % 3}", "x": x, "y": bool(i % 2)}


@pytest.fixture
def sink():
    return Sink()


@pytest.fixture
def client(sink):
    return TestClient(create_app(SPEC, sink, max_body_bytes=10_000))


def test_json_array_is_accepted_once_delivered(client, sink):
    r = client.post("/events", json=[rec(i) for i in range(5)])
    assert r.status_code == 202 and r.json() == {"accepted": 5}
    keys = [k for k, _ in sink.got]
    envs = [serde.loads(v) for _, v in sink.got]
    assert keys == [b"u0", b"u1", b"u2", b"u0", b"u1"]
    assert [e["data"] for e in envs] == [rec(i) for i in range(5)]


def test_ndjson_is_accepted_and_a_retried_body_keeps_its_ids(client, sink):
    body = b"\n".join(orjson.dumps(rec(i)) for i in range(3)) + b"\n"
    assert client.post("/events", content=body).status_code == 202
    assert client.post("/events", content=body).status_code == 202
    ids = [serde.loads(v)["id"] for _, v in sink.got]
    assert ids[:3] == ids[3:] and len(set(ids[:3])) == 3
    client.post("/events", content=body, headers={"Idempotency-Key": "batch-7"})
    assert serde.loads(sink.got[-1][1])["id"] == "gw:batch-7:2"


def test_over_the_size_limit_is_413(client, sink):
    big = [rec(i) for i in range(500)]
    assert client.post("/events", json=big).status_code == 413
    # without a Content-Length (chunked), the limit still holds
    chunks = (orjson.dumps(rec(i)) + b"\n" for i in range(500))
    assert client.post("/events", content=chunks).status_code == 413
    assert sink.got == []


def test_records_failing_the_schema_get_422_with_per_record_errors(client, sink):
    body = b"\n".join([orjson.dumps(rec(0)), orjson.dumps(rec(1, x=-3)), b"{nope", b"[1]",
                       orjson.dumps({**rec(4), "x": "abc"})])
    r = client.post("/events", content=body)
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert [(e["index"], e["reason"]) for e in errors] == [(1, "out_of_range"), (2, "bad_json"),
                                                            (3, "not_an_object"), (4, "wrong_type")]
    assert r.json()["accepted"] == 0 and sink.got == []


def test_kafka_unavailable_is_503_with_retry_after():
    down = TestClient(create_app(SPEC, Sink(up=False)))
    r = down.post("/events", json=[rec(0)])
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    busy = TestClient(create_app(SPEC, Sink(ready=False)))
    r = busy.post("/events", json=[rec(0)])
    assert r.status_code == 503 and "Retry-After" in r.headers
    assert down.get("/healthz").status_code == 503


def test_health_and_metrics(client):
    assert client.get("/healthz").json()["status"] == "ok"
    client.post("/events", json=[rec(0)])
    text = client.get("/metrics").text
    assert 'driftline_ingest_http_requests_total{status="202"}' in text


def test_labels_go_to_the_labels_topic_keyed_by_event_id(sink):
    from contracts.topics import Role

    client = TestClient(create_app(SPEC, sink))
    r = client.post("/labels", content=b'{"id": "e1", "y": true, "ts": "2026-01-01T00:00:00+00:00"}\n'
                                       b'{"id": "e2", "y": false}')
    assert r.status_code == 202 and r.json() == {"accepted": 2}
    assert [k for k, _ in sink.got] == [b"e1", b"e2"] and sink.roles == [Role.LABELS, Role.LABELS]
    first = orjson.loads(sink.got[0][1])
    assert first == {"v": 1, "id": "e1", "y": True, "ts": 1767225600.0, "event_ts": 1767225600.0}
    r = client.post("/labels", json=[{"id": "e3", "y": True, "ts": "soon"}, {"y": True}])
    assert r.status_code == 422 and [e["reason"] for e in r.json()["errors"]] == ["bad_time", "missing_field"]
    assert len(sink.got) == 2  # nothing of a rejected body is sent
    sink.up = False
    r = client.post("/labels", json=[{"id": "e4", "y": True}])
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
