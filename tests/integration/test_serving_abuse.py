"""Abuse over real HTTP: 503 before any model, a schemathesis run over the OpenAPI spec that
finds no 5xx, and the explicit 401/403, 413 and 422 answers."""

import itertools
import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings as hsettings
from kafka import KafkaAdminClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from contracts.settings import KafkaSettings
from contracts.spec import load_spec
from contracts.topics import pipeline_topics
from deploy.serving.testing import ServerProcess, SnapshotPublisher
from driftline import kafkautil
from models import ModelRunner, build_estimator

pytestmark = pytest.mark.integration

SPEC_PATH = "examples/phishing.yaml"
SPEC = load_spec(SPEC_PATH)
KEY = b"serving-abuse-key-0123456789abcdef"
TOKEN = "serving-admin-token-abcdef012345"
RECORD = {"empty_server_form_handler": 0.0, "popup_window": 0.0, "https": 1.0, "request_from_other_domain": 0.0,
          "anchor_from_other_domain": 0.0, "is_popular": 0.5, "long_url": 1.0, "age_of_domain": 1, "ip_in_url": 0}


@pytest.fixture(scope="module")
def server(kafka):
    settings = KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": kafka})
    ns = f"t-{uuid.uuid4().hex[:8]}"
    kafkautil.create_topics(settings, list(pipeline_topics(SPEC, ns).values()))
    proc = ServerProcess(SPEC_PATH, {"DRIFTLINE_NAMESPACE": ns, "DRIFTLINE_SNAPSHOT_KEY": KEY.decode(),
                                     "DRIFTLINE_SERVING_ADMIN_TOKEN": TOKEN}, "--max-body-bytes", "65536",
                         "--max-batch", "64")
    try:
        proc.wait_up()
        proc.publish = lambda: SnapshotPublisher(SPEC, settings, KEY, ns)
        yield proc
    finally:
        proc.stop()
        admin = KafkaAdminClient(**settings.kafka_python())
        try:
            admin.delete_topics([t for t in admin.list_topics() if t.startswith(ns + ".")])
        finally:
            admin.close()


@pytest.fixture(scope="module")
def loaded(server):
    """The server, once a snapshot of 'lr' is served."""
    publisher = server.publish()
    runner = ModelRunner("lr", build_estimator(SPEC.models["lr"]), SPEC.metrics)
    runner.learn(RECORD, True, runner.predict(RECORD))
    publisher.publish(runner, wait=True)
    publisher.close()
    server.wait_for(lambda ms: ms["lr"]["loaded"])
    return server


def test_before_any_snapshot_predict_is_503_with_a_clear_body_and_not_ready(server):
    r = httpx.post(server.url + "/predict", json={"record": RECORD})
    assert r.status_code == 503
    assert r.json() == {"error": "no_model", "detail": "no snapshot of model 'lr' has been loaded yet; "
                                                       "waiting for the learner's snapshot on the models topic"}
    assert httpx.get(server.url + "/readyz").json()["missing"] == ["lr"]
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_readyz_turns_ready_once_every_model_has_a_snapshot(loaded):
    assert httpx.get(loaded.url + "/readyz").json() == {"ready": True, "caught_up": True, "missing": []}


def test_admin_without_the_right_token_is_401_or_403(loaded):
    url = loaded.url + "/admin/models/lr/pin"
    assert httpx.put(url, json={"version": 1}).status_code == 401
    assert httpx.put(url, json={"version": 1}, headers={"Authorization": "Basic eDp5"}).status_code == 401
    assert httpx.put(url, json={"version": 1}, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert httpx.delete(url, headers={"Authorization": "Bearer nope"}).status_code == 403


def test_a_body_over_the_limit_is_413(loaded):
    r = httpx.post(loaded.url + "/predict", json={"records": [RECORD] * 1000})
    assert r.status_code == 413 and "65536" in r.json()["detail"]


def test_bad_records_are_422_field_by_field(loaded):
    r = httpx.post(loaded.url + "/predict", json={"records": [RECORD, {**RECORD, "popup_window": None}]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "records", 1, "popup_window"]
    assert httpx.post(loaded.url + "/predict", content=b"{not json",
                      headers={"content-type": "application/json"}).status_code == 422


def test_a_schemathesis_run_over_the_openapi_spec_finds_no_5xx(loaded):
    """Every operation, with schema-conforming and (for /predict) arbitrary inputs, bounded."""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(loaded.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/models", "/models/{name}", "/admin/models/{name}/pin"}
    calls = []
    for op, mode in itertools.product(operations, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):
        @given(case=op.as_strategy(generation_mode=mode))
        @hsettings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            response = case.call_and_validate(base_url=loaded.url, checks=[not_a_server_error])
            calls.append(response.status_code)

        try:
            run()
        except Unsatisfiable:  # an operation without parameters has no invalid input to send
            assert mode is GenerationMode.NEGATIVE
    assert calls and all(code < 500 for code in calls)
    assert {200, 401, 404, 422} <= set(calls), sorted(set(calls))  # the run reached past validation
