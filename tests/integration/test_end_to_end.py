"""Phishing through Kafka is exactly Phishing in-process: river's published figures,
every event once, in order, with every float intact."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from contracts import serde
from contracts.spec import load_spec
from contracts.topics import Role, owned_topic_names, pipeline_topics
from models import ModelRunner, build_estimator

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "examples" / "phishing.yaml"

pytestmark = pytest.mark.integration


def in_process(spec):
    """The same model over the same stream, with river's own evaluator."""
    from river import datasets, evaluate, metrics

    out = {}
    for name in spec.metrics:
        model = build_estimator(spec.models["lr"])
        metric = getattr(metrics, name)()
        evaluate.progressive_val_score(datasets.Phishing(), model, metric)
        out[name] = metric.get()
    runner = ModelRunner("lr", build_estimator(spec.models["lr"]), spec.metrics)
    probas = []
    for x, y in datasets.Phishing():
        p = runner.predict(x)
        probas.append(p.proba)
        runner.learn(x, y, p)
    return out, probas


def read_all(settings, topic):
    consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    out = []
    while consumer.position(tp) < end:
        for recs in consumer.poll(timeout_ms=1000).values():
            out.extend(recs)
    consumer.close()
    return out


def run_until_drained(spec_path, kafka: str, tmp_path) -> dict:
    """``driftline run SPEC --until-drained`` as a user runs it; its summary (topics kept for checking)."""
    summary_path = tmp_path / "summary.json"
    env = dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=kafka, DRIFTLINE_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "driftline", "run", str(spec_path), "--until-drained",
                           "--summary-json", str(summary_path), "--keep-topics"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(summary_path.read_text())


def test_phishing_through_kafka_reproduces_rivers_published_result_exactly(kafka, settings, tmp_path):
    spec = load_spec(SPEC)
    summary = run_until_drained(SPEC, kafka, tmp_path)
    ns = summary["namespace"]
    try:
        assert summary["events"]["ingested"] == 1250
        assert summary["events"]["dead_lettered"] == 0
        assert summary["events"]["learned"] == 1250

        expected, expected_probas = in_process(spec)
        got = summary["models"]["lr"]
        assert got == expected  # exact, not approximate
        assert round(got["Accuracy"] * 100, 2) == 89.28  # river's README figure
        assert round(got["ROCAUC"] * 100, 2) == 95.07

        # Nothing lost, duplicated or reordered, no float damaged: every prediction, in order.
        preds = [serde.loads(r.value) for r in read_all(settings, pipeline_topics(spec, ns)[Role.PREDICTIONS].name)]
        assert [p["id"] for p in preds] == [f"river:Phishing::{i}" for i in range(1250)]
        for p, want in zip(preds, expected_probas):
            assert {k: v for k, v in p["proba"]} == want
    finally:
        from driftline import kafkautil

        kafkautil.delete_topics(settings, owned_topic_names(spec, ns))


def test_topics_delete_removes_every_topic_a_run_leaves_and_asks_first(kafka, settings, tmp_path):
    """A kept run leaves its pipeline topics and the processors' changelogs, pending and assignor
    topics; ``driftline topics delete`` removes all of them, and without a terminal only with --yes."""
    from kafka import KafkaAdminClient

    def left(ns):
        admin = KafkaAdminClient(**settings.kafka_python())
        try:
            return sorted(t for t in admin.list_topics() if t.startswith(ns + "."))
        finally:
            admin.close()

    summary = run_until_drained(SPEC, kafka, tmp_path)
    ns = summary["namespace"]
    before = left(ns)
    assert sorted(owned_topic_names(load_spec(SPEC), ns)) == before  # the run made exactly what it owns
    env = dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=kafka)
    cmd = [sys.executable, "-m", "driftline", "topics", "delete", str(SPEC), "--namespace", ns]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert left(ns) == before
    done = subprocess.run([*cmd, "--yes"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(line.split()[1] for line in done.stdout.splitlines() if line.startswith("deleted")) == before
    assert left(ns) == []


def test_phishing_with_labels_delayed_by_100_events_matches_rivers_delayed_evaluation(kafka, settings, tmp_path):
    """Ingest holds each label back 100 events, the processors join it to the features used for the
    prediction, and the learner learns when it arrives: river's progressive_val_score(delay=100)."""
    import yaml
    from river import datasets, evaluate, metrics

    doc = yaml.safe_load(SPEC.read_text())
    doc["labels"] = {"mode": "delayed", "delay_events": 100}
    path = tmp_path / "phishing-delayed.yaml"
    path.write_text(yaml.safe_dump(doc))
    spec = load_spec(path)
    summary = run_until_drained(path, kafka, tmp_path)
    try:
        assert summary["events"]["ingested"] == 1250
        assert summary["events"]["learned"] == 1250
        expected = {}
        for name in spec.metrics:
            metric = getattr(metrics, name)()
            evaluate.progressive_val_score(datasets.Phishing(), build_estimator(spec.models["lr"]), metric,
                                           delay=100)
            expected[name] = metric.get()
        assert summary["models"]["lr"] == expected  # exact, not approximate
    finally:
        from driftline import kafkautil

        kafkautil.delete_topics(settings, owned_topic_names(spec, summary["namespace"]))
