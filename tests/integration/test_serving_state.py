"""Serving with stateful per-key features: a processors worker builds each key's state over a
keyed stream; ``/predict`` for a record of key k answers what the same model predicts in-process on
``Featurizer.features(x, ts, state_k)``, state_k being the state reached after k's events."""

from __future__ import annotations

import json

import httpx
import pytest

from contracts.spec import load_spec_text
from contracts.topics import Role, pipeline_topics, table_changelog
from deploy.serving.inference import predict_one
from deploy.serving.testing import ServerProcess, SnapshotPublisher
from driftline import kafkautil
from models import ModelRunner, build_estimator
from processors.clean import Cleaner
from processors.features import Featurizer
from processors.testing import Worker, end_total, mixed_stream, produce, read_topic, spec_text, wait_until

pytestmark = pytest.mark.integration

KEY = b"serving-state-key-0123456789abcdef"
N, KEYS = 600, 6


def changelog_states(settings, topic) -> dict:
    """The changelog's newest state per key (a tombstone deletes), decoded."""
    out = {}
    for r in read_topic(settings, topic):
        k = json.loads(r.key)
        if r.value is None:
            out.pop(k, None)
        else:
            out[k] = json.loads(r.value)["s"]
    return out


def test_predict_uses_the_keys_state_as_the_processors_left_it(tmp_path, settings, namespace, kafka):
    text = spec_text("serving-state", partitions=2)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    spec = load_spec_text(text)
    topics = pipeline_topics(spec, namespace)
    kafkautil.create_topics(settings, list(topics.values()))
    records = list(mixed_stream(N, keys=KEYS, seed=11))
    produce(settings, topics[Role.RAW].name, records)

    # In-process: each key's events in order (one key, one partition), through the same cleaner and
    # featurizer; a model trained on those features, so that its answers depend on every feature.
    cleaner, featurizer = Cleaner(spec), Featurizer(spec)
    states, counts = {}, {}
    runner = ModelRunner("lr", build_estimator(spec.models["lr"]), spec.metrics)
    for rec in records:
        clean = cleaner.clean_bytes(rec.value)
        x, states[clean.key] = featurizer.features(clean.x, clean.ts, states.get(clean.key))
        counts[clean.key] = counts.get(clean.key, 0) + 1
        runner.learn(x, clean.y, runner.predict(x))
    assert len(states) == KEYS

    worker = Worker(path, kafka, namespace, tmp_path / "home", log=tmp_path / "worker.log")
    publisher = SnapshotPublisher(spec, settings, KEY, namespace)
    server = None
    try:
        changelog = table_changelog(spec, namespace, "keys")

        def stream_done():
            assert worker.alive(), "the processors worker died"
            if end_total(settings, topics[Role.CLEAN].name) < N:
                return False
            on_topic = changelog_states(settings, changelog)
            return all(on_topic.get(k, {}).get("n") == counts[k] for k in states)

        wait_until(stream_done, 90, what="the stream's per-key state on the changelog")
        assert changelog_states(settings, changelog) == states  # the processors' state is the in-process one
        publisher.publish(runner, wait=True)
        server = ServerProcess(path, {"DRIFTLINE_NAMESPACE": namespace, "DRIFTLINE_SNAPSHOT_KEY": KEY.decode()})
        server.wait_up()
        wait_until(lambda: httpx.get(server.url + "/readyz", timeout=5).status_code == 200, 30, every=0.2,
                   what="serving ready")
        health = httpx.get(server.url + "/healthz", timeout=5).json()
        assert health["key_states"]["caught_up"] and health["key_states"]["records"] >= KEYS

        queries = []
        for i, (k, st) in enumerate(sorted(states.items())):
            # just after the key's newest event, and one behind it within the allowed lateness
            queries.append({"id": f"q{i}a", "k": k, "t": st["w"] + 1.5, "v": 7.25, "c": "a"})
            queries.append({"id": f"q{i}b", "k": k, "t": st["w"] - 4.0, "v": -3.0, "c": "c"})
        queries.append({"id": "q-new", "k": "never-seen", "t": 10.0, "v": 1.0, "c": "b"})
        for _ in range(2):  # twice: a prediction never changes the served state
            r = httpx.post(server.url + "/predict", json={"records": queries}, timeout=10)
            assert r.status_code == 200, r.text
            got = r.json()["predictions"]
            assert len(got) == len(queries)
            for q, p in zip(queries, got):
                clean = cleaner.clean_envelope({"v": 1, "id": q["id"], "ts": 0.0, "data": q})
                x, _ = featurizer.features(clean.x, clean.ts, states.get(q["k"]))
                want = predict_one(runner, x)
                assert (p["id"], p["y_pred"], p["version"]) == (q["id"], want["y_pred"], runner.n_learned), q
        # the answers depend on the state: the same record for two keys gets two predictions
        a, b = sorted(states)[:2]
        same = [{**queries[0], "k": a}, {**queries[0], "k": b}]
        r = httpx.post(server.url + "/predict", json={"records": same}, timeout=10).json()["predictions"]
        assert r[0]["y_pred"] != r[1]["y_pred"]
    finally:
        if server is not None:
            server.stop()
        publisher.close()
        worker.stop()
