"""`driftline gateway` against a private broker: 202 only for acknowledged records,
and 503 with Retry-After (never 202) once the broker is stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from contracts.settings import KafkaSettings
from contracts.spec import load_spec
from contracts.topics import Role, pipeline_topics
from driftline import kafkautil, localkafka
from tests.conftest import free_port_block

pytestmark = pytest.mark.integration

SPEC = """
name: gwi
schema:
  fields: {id: str, user: str, x: {type: float, min: 0}, y: bool}
  id: id
  key: user
  label: y
models: {m: {estimator: linear_model.LogisticRegression}}
"""


@pytest.fixture
def private_broker(tmp_path):
    """A broker of this test's own, so the test can stop it; always stopped at the end."""
    data_dir = tmp_path / "kafka"
    layout = localkafka.KafkaLayout(data_dir, nodes=1, port=free_port_block(1, start=43000))
    try:
        yield localkafka.start(layout, timeout=180), data_dir
    finally:
        localkafka.stop(data_dir)


def _wait_healthy(url: str, proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("the gateway did not come up")


def test_gateway_answers_202_while_kafka_takes_records_and_503_once_it_cannot(private_broker, tmp_path):
    bootstrap, data_dir = private_broker
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    settings = KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": bootstrap})
    topics = pipeline_topics(load_spec(spec_path))
    raw, labels = topics[Role.RAW], topics[Role.LABELS]
    kafkautil.create_topics(settings, [raw, labels])
    port = free_port_block(1, start=44000)
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "driftline", "gateway", str(spec_path), "--port", str(port),
                             "--max-body-bytes", "100000"],
                            env=dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=bootstrap),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_healthy(url, proc)
        events = [{"id": f"e{i}", "user": f"u{i % 4}", "x": i, "y": i % 2 == 0} for i in range(50)]
        r = httpx.post(f"{url}/events", json=events, timeout=30)
        assert r.status_code == 202 and r.json() == {"accepted": 50}
        assert sum(kafkautil.end_offsets(settings, [raw.name]).values()) == 50  # acknowledged means on the topic
        r = httpx.post(f"{url}/events", json=[{"id": "bad", "user": "u", "x": -1, "y": True}], timeout=30)
        assert r.status_code == 422 and r.json()["errors"][0]["reason"] == "out_of_range"
        r = httpx.post(f"{url}/events", content=b"[" + b"0," * 60_000 + b"0]", timeout=30)
        assert r.status_code == 413
        r = httpx.post(f"{url}/labels", json=[{"id": f"e{i}", "y": True} for i in range(7)], timeout=30)
        assert r.status_code == 202 and r.json() == {"accepted": 7}
        assert sum(kafkautil.end_offsets(settings, [labels.name]).values()) == 7

        localkafka.stop(data_dir)
        answers = []
        for i in range(4):
            r = httpx.post(f"{url}/events", json=[{"id": f"late{i}", "user": "u", "x": 1, "y": True}], timeout=60)
            answers.append(r.status_code)
            if r.status_code == 503:
                assert int(r.headers["Retry-After"]) > 0
        assert answers == [503] * 4, answers
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 503
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'driftline_ingest_http_requests_total{status="503"} 4.0' in metrics
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
