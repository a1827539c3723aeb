"""Hot swap under load, tampered snapshots, rollback by pinning, and freshness, through a real
broker and a real ``driftline serve`` process."""

import asyncio
import copy
import re
import statistics
import threading
import time

import httpx
import pytest
from river import datasets

from contracts.spec import load_spec
from contracts.topics import pipeline_topics
from deploy.serving.inference import predict_one
from deploy.serving.testing import ServerProcess, SnapshotPublisher
from driftline import kafkautil
from models import ModelRunner, build_estimator
from models.snapshot import dump_snapshot

pytestmark = pytest.mark.integration

SPEC_PATH = "examples/phishing.yaml"
SPEC = load_spec(SPEC_PATH)
KEY = b"serving-swap-key-0123456789abcdef"
TOKEN = "serving-admin-token-0123456789"
DATA = list(datasets.Phishing())
RECORDS = [dict(x) for x, _ in DATA[:50]]


def versions(*ns):
    """Runners trained on the first n events, for each n."""
    runner = ModelRunner("lr", build_estimator(SPEC.models["lr"]), SPEC.metrics)
    out = {}
    for n in sorted(ns):
        while runner.n_learned < n:
            x, y = DATA[runner.n_learned % len(DATA)]
            runner.learn(x, y, runner.predict(x))
        out[n] = copy.deepcopy(runner)
    return out


@pytest.fixture
def served(settings, namespace):
    kafkautil.create_topics(settings, list(pipeline_topics(SPEC, namespace).values()))
    publisher = SnapshotPublisher(SPEC, settings, KEY, namespace)
    server = ServerProcess(SPEC_PATH, {"DRIFTLINE_NAMESPACE": namespace, "DRIFTLINE_SNAPSHOT_KEY": KEY.decode(),
                                       "DRIFTLINE_SERVING_ADMIN_TOKEN": TOKEN}, "--history", "64")
    try:
        server.wait_up()
        yield server, publisher
    finally:
        server.stop()
        publisher.close()


def predict(url, **params):
    r = httpx.post(url + "/predict", params=params, json={"record": RECORDS[0]}, timeout=5)
    return r


def metric(url, name, **labels) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}{{{re.escape(sel)}}} (\S+)$" if sel else rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_hot_swap_under_load_answers_every_request_with_a_whole_published_version(served):
    server, publisher = served
    steps = [100 + 10 * i for i in range(21)]
    runners = versions(*steps)
    publisher.publish(runners[steps[0]], wait=True)
    server.wait_for(lambda ms: ms["lr"]["version"] == steps[0])
    published_at = {steps[0]: time.time()}

    def publish_rest():
        for v in steps[1:]:
            time.sleep(0.2)
            publisher.publish(runners[v], wait=True)
            published_at[v] = time.time()

    expected = {}

    def want(version, i):
        if (version, i) not in expected:
            expected[(version, i)] = predict_one(copy.deepcopy(runners[version]), RECORDS[i])
        return expected[(version, i)]

    results = []

    async def client(worker, n):
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            seen = []
            for j in range(n):
                i = (worker * n + j) % len(RECORDS)
                r = await c.post("/predict", json={"record": RECORDS[i]})
                results.append((worker, i, r.status_code, r.json(), time.time()))
                seen.append(r.json()["predictions"][0]["version"] if r.status_code == 200 else None)
            assert seen == sorted(seen), "a client saw the served version go backwards"

    thread = threading.Thread(target=publish_rest)
    t0 = time.time()
    thread.start()

    async def load():
        await asyncio.gather(*(client(w, 625) for w in range(16)))

    asyncio.run(load())
    t_end = time.time()
    thread.join()
    assert len(results) == 10_000
    assert [r for r in results if r[2] != 200] == []
    seen_versions = set()
    for _, i, _, body, t in results:
        p = body["predictions"][0]
        assert p["version"] in published_at and published_at[p["version"]] <= t + 0.5
        w = want(p["version"], i)
        assert (p["y_pred"], p["proba"]) == (w["y_pred"], w["proba"])  # a whole model, never a mix
        seen_versions.add(p["version"])
    assert max(published_at.values()) < t_end, "the load ended before the swaps did"
    assert len(seen_versions) >= 10, f"too few swaps seen under load: {sorted(seen_versions)}"
    print(f"\nhot swap: 10,000 requests in {t_end - t0:.1f} s, {len(seen_versions)} versions served")


def test_tampered_forged_and_foreign_snapshots_are_refused_and_the_last_good_keeps_serving(served):
    server, publisher = served
    runners = versions(10, 20, 30)
    publisher.publish(runners[10], wait=True)
    server.wait_for(lambda ms: ms["lr"]["version"] == 10)
    before = {r: metric(server.url, "driftline_serving_snapshots_refused_total", reason=r)
              for r in ("bad_signature", "not_a_snapshot")}
    from deploy.serving.testing import snapshot_meta

    good = dump_snapshot(snapshot_meta(SPEC, runners[20]), {"model": runners[20].model}, KEY)
    tampered = bytearray(good)
    tampered[len(tampered) // 2] ^= 0x01
    forged = dump_snapshot(snapshot_meta(SPEC, runners[20]), {"model": runners[20].model}, b"not-our-key-" * 3)
    for blob in (bytes(tampered), forged, b"\x80\x04 a raw pickle"):
        publisher.send("lr", blob, wait=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = {r: metric(server.url, "driftline_serving_snapshots_refused_total", reason=r) for r in before}
        if now["bad_signature"] >= before["bad_signature"] + 2 and now["not_a_snapshot"] >= before["not_a_snapshot"] + 1:
            break
        time.sleep(0.05)
    assert now["bad_signature"] == before["bad_signature"] + 2
    assert now["not_a_snapshot"] == before["not_a_snapshot"] + 1
    r = predict(server.url)
    assert r.status_code == 200 and r.json()["predictions"][0]["version"] == 10
    publisher.publish(runners[30], wait=True)  # the follower lives on: the next good one is taken
    server.wait_for(lambda ms: ms["lr"]["version"] == 30)


def test_pinning_a_version_serves_it_until_unpinned_even_as_newer_ones_arrive(served):
    server, publisher = served
    runners = versions(10, 20, 30, 40)
    for v in (10, 20):
        publisher.publish(runners[v], wait=True)
    server.wait_for(lambda ms: ms["lr"]["latest_version"] == 20)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.put(server.url + "/admin/models/lr/pin", json={"version": 10}).status_code == 401
    r = httpx.put(server.url + "/admin/models/lr/pin", json={"version": 10}, headers=auth)
    assert r.status_code == 200 and r.json()["pinned"] == 10
    for v in (30, 40):
        publisher.publish(runners[v], wait=True)
    server.wait_for(lambda ms: ms["lr"]["latest_version"] == 40)
    assert predict(server.url).json()["predictions"][0]["version"] == 10
    assert httpx.get(server.url + "/models/lr").json()["version"] == 10
    assert httpx.delete(server.url + "/admin/models/lr/pin", headers=auth).json()["version"] == 40
    assert predict(server.url).json()["predictions"][0]["version"] == 40


def test_freshness_from_publication_to_first_served_prediction(served):
    server, publisher = served
    steps = list(range(1, 42))
    runners = versions(*steps)
    publisher.publish(runners[1], wait=True)
    server.wait_for(lambda ms: ms["lr"]["version"] == 1)
    lags = []
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for v in steps[1:]:
            t_pub = publisher.publish(runners[v])
            publisher.producer.flush()
            while True:
                r = c.post("/predict", json={"record": RECORDS[0]})
                if r.json()["predictions"][0]["version"] == v:
                    lags.append(time.time() - t_pub)
                    break
                assert time.time() - t_pub < 10, f"version {v} never served"
    lags.sort()
    p50, p99 = statistics.median(lags), lags[int(0.99 * (len(lags) - 1))]
    print(f"\nfreshness over {len(lags)} publications: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert p99 < 1.0
