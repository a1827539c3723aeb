"""The serving API without a broker: the store is fed directly, the app is called over ASGI."""

import pickle

import pytest
from fastapi.testclient import TestClient
from river import datasets

from contracts.spec import load_spec
from deploy.serving import ModelStore, ServingConfig, create_app
from models import ModelRunner, build_estimator
from models.snapshot import SnapshotRefused, dump_snapshot

KEY = b"unit-test-key-0123456789abcdef"
TOKEN = "admin-token-0123456789"
SPEC = load_spec("examples/phishing.yaml")
FIELDS = [f for f in SPEC.schema.fields if f != SPEC.schema.label]


def trained(n: int):
    runner = ModelRunner("lr", build_estimator(SPEC.models["lr"]), SPEC.metrics)
    for x, y in list(datasets.Phishing())[:n]:
        runner.learn(x, y, runner.predict(x))
    return runner


def blob(runner, key=KEY, **meta):
    base = {"model": "lr", "version": runner.n_learned, "spec": SPEC.fingerprint(), "created_at": 1.0,
            "champion": True, "counts": {"learned": runner.n_learned}, "offsets": {"t:0": runner.n_learned},
            "metrics": {"cumulative": runner.metrics(), "rolling": runner.metrics(rolling=True)},
            "params": "StandardScaler | LogisticRegression"}
    return dump_snapshot({**base, **meta}, {"model": runner.model}, key)


def record(i=0):
    x, _ = list(datasets.Phishing())[i]
    return dict(x)


@pytest.fixture
def app():
    store = ModelStore(SPEC, KEY, history=4)
    config = ServingConfig(admin_token=TOKEN, max_body_bytes=4096, max_batch=5)
    with TestClient(create_app(SPEC, store, config)) as client:
        yield client, store


def test_predict_is_503_with_a_clear_body_until_a_model_is_loaded(app):
    client, store = app
    r = client.post("/predict", json={"record": record()})
    assert r.status_code == 503
    assert r.json()["error"] == "no_model" and "lr" in r.json()["detail"]
    assert client.get("/readyz").status_code == 503
    store.offer("lr", blob(trained(10)))
    assert client.get("/readyz").json() == {"ready": True, "caught_up": True, "missing": []}
    assert client.post("/predict", json={"record": record()}).status_code == 200


def test_predict_answers_what_the_runner_answers_and_never_changes_the_model(app):
    client, store = app
    runner = trained(200)
    store.offer("lr", blob(runner))
    before = pickle.dumps(store.get("lr").runner.model)
    recs = [record(i) for i in range(200, 205)]
    got = client.post("/predict", json={"records": recs}).json()["predictions"]
    for rec, p in zip(recs, got):
        want = runner.predict(rec)
        assert (p["model"], p["version"]) == ("lr", 200)
        assert p["y_pred"] == want.y_pred
        assert p["proba"] == [[k, v] for k, v in want.proba.items()]
    assert pickle.dumps(store.get("lr").runner.model) == before


def test_bad_records_get_422_naming_the_field(app):
    client, store = app
    store.offer("lr", blob(trained(5)))
    bad = {**record(), "https": "very"}
    r = client.post("/predict", json={"records": [record(), bad]})
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", "records", 1, "https"], "type": "wrong_type",
                                   "msg": "field 'https': 'very' is not a number"}]
    missing = {k: v for k, v in record().items() if k != "long_url"}
    assert client.post("/predict", json={"record": missing}).json()["detail"][0]["loc"] == \
        ["body", "record", "long_url"]
    assert client.post("/predict", json={"record": {**record(), "extra": 1}}).json()["detail"][0]["type"] == \
        "unknown_field"
    assert client.post("/predict", json={"record": record(), "records": [record()]}).status_code == 422
    assert client.post("/predict", json={"records": [record()] * 6}).status_code == 422
    huge = {**record(), "age_of_domain": 10 ** 400}
    assert client.post("/predict", content=b'{"record": ' + str(huge).replace("'", '"').encode() + b"}",
                       headers={"content-type": "application/json"}).status_code == 422


def test_a_bad_query_or_a_body_that_is_not_json_gets_422_naming_where(app):
    client, store = app
    store.offer("lr", blob(trained(5)))
    r = client.post("/predict?version=-1", json={"record": record()})
    assert r.status_code == 422
    assert [(e["loc"], e["type"]) for e in r.json()["detail"]] == [(["query", "version"], "greater_than_equal")]
    assert client.post("/predict?model=" + "m" * 201, json={"record": record()}).json()["detail"][0]["loc"] == \
        ["query", "model"]
    r = client.post("/predict", content=b'{"record": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = client.post("/predict", json={"record": record(), "extra": 1})
    assert [(e["loc"], e["type"]) for e in r.json()["detail"]] == [(["body", "extra"], "extra_forbidden")]
    r = client.post("/predict", json=[record()])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
    assert client.post("/predict?model=lr&version=5&other=1", json={"record": record()}).status_code == 200


def test_predict_documents_its_body_and_query_in_openapi(app):
    client, _ = app
    op = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    body = op["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["properties"]) == {"record", "records"}
    assert set(body["examples"]) == {"one", "batch"}
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"model", "version"} and {p["in"] for p in params.values()} == {"query"}
    assert {"type": "integer", "minimum": 0} in params["version"]["schema"]["anyOf"]
    assert set(op["responses"]) >= {"200", "404", "413", "422", "503"}


def test_bodies_over_the_limit_get_413(app):
    client, store = app
    store.offer("lr", blob(trained(5)))
    r = client.post("/predict", json={"records": [record()] * 40})
    assert r.status_code == 413 and r.json()["error"] == "too_large"

    def chunks():  # no Content-Length: the limit holds for a streamed body too
        for _ in range(10):
            yield b" " * 1000

    assert client.post("/predict", content=chunks(), headers={"content-type": "application/json"}).status_code == 413


def test_admin_routes_need_the_bearer_token(app):
    client, store = app
    store.offer("lr", blob(trained(5)))
    assert client.put("/admin/models/lr/pin", json={"version": 5}).status_code == 401
    assert client.put("/admin/models/lr/pin", json={"version": 5},
                      headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 403
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert client.put("/admin/models/lr/pin", json={"version": 5}, headers=ok).json()["pinned"] == 5
    assert client.put("/admin/models/lr/pin", json={"version": 99}, headers=ok).status_code == 404
    assert client.put("/admin/models/nope/pin", json={"version": 5}, headers=ok).status_code == 404
    assert client.delete("/admin/models/lr/pin", headers=ok).json()["pinned"] is None


def test_admin_routes_are_403_when_no_token_is_configured():
    store = ModelStore(SPEC, KEY)
    with TestClient(create_app(SPEC, store, ServingConfig())) as client:
        r = client.put("/admin/models/lr/pin", json={"version": 1}, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403


def test_pinning_serves_the_pinned_version_while_newer_ones_arrive(app):
    client, store = app
    store.offer("lr", blob(trained(10)))
    store.offer("lr", blob(trained(20)))
    client.put("/admin/models/lr/pin", json={"version": 10}, headers={"Authorization": f"Bearer {TOKEN}"})
    for n in (30, 40, 50, 60, 70):  # the history (4) rolls past the pinned version: it is kept
        store.offer("lr", blob(trained(n)))
        assert client.post("/predict", json={"record": record()}).json()["predictions"][0]["version"] == 10
    client.delete("/admin/models/lr/pin", headers={"Authorization": f"Bearer {TOKEN}"})
    assert client.post("/predict", json={"record": record()}).json()["predictions"][0]["version"] == 70
    assert 10 not in store.versions("lr")


def test_unknown_model_and_version_are_404(app):
    client, store = app
    store.offer("lr", blob(trained(5)))
    assert client.post("/predict?model=nope", json={"record": record()}).json()["error"] == "unknown_model"
    assert client.post("/predict?version=3", json={"record": record()}).json()["error"] == "unknown_version"
    assert client.get("/models/nope").status_code == 404


def test_models_list_what_the_snapshot_says(app):
    client, store = app
    runner = trained(50)
    store.offer("lr", blob(runner))
    (info,) = client.get("/models").json()
    assert info["name"] == "lr" and info["version"] == 50 and info["champion"] is True
    assert info["learned"] == 50 and info["offsets"] == {"t:0": 50}
    assert info["metrics"]["cumulative"]["Accuracy"] == runner.metrics()["Accuracy"]
    detail = client.get("/models/lr").json()
    assert detail["params"] == "StandardScaler | LogisticRegression" and detail["versions"] == [50]


def test_refused_snapshots_keep_the_last_good_model_and_are_counted(app):
    client, store = app
    store.offer("lr", blob(trained(5)))
    good = blob(trained(6))
    tampered = bytearray(good)
    tampered[-10] ^= 0xFF
    cases = {"bad_signature": bytes(tampered), "not_a_snapshot": b"pickle bytes",
             "spec_mismatch": blob(trained(7), spec="another"), "wrong_model": blob(trained(8), model="other"),
             "stale_version": blob(trained(4))}
    for reason, bad in cases.items():
        with pytest.raises(SnapshotRefused) as exc:
            store.offer("lr", bad)
        assert exc.value.reason == reason
        assert store.get("lr").version == 5
    text = client.get("/metrics").text
    assert 'driftline_serving_snapshots_refused_total{reason="bad_signature"}' in text
    assert 'driftline_serving_model_version{model="lr"} 5.0' in text
    assert 'driftline_serving_requests_total{code="200",route="/metrics"}' in client.get("/metrics").text


def test_no_route_accepts_model_bytes(app):
    client, _ = app
    for route in client.get("/openapi.json").json()["paths"].values():
        for op in route.values():
            content = op.get("requestBody", {}).get("content", {})
            assert set(content) <= {"application/json"}
