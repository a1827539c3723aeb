"""Serving answers exactly as the stream did: /predict with the version that served an event
returns the prediction the pipeline wrote to the predictions topic for it."""

import itertools

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contracts import serde
from contracts.spec import load_spec
from contracts.topics import Role, pipeline_topics
from deploy.serving.testing import ServerProcess, SnapshotPublisher
from driftline import kafkautil
from ingest.producer import envelope
from ingest.sources import open_source, source_id
from models import LearnerCore
from processors.clean import Cleaner

pytestmark = pytest.mark.integration

SPEC_PATH = "examples/phishing.yaml"
KEY = b"serving-consistency-key-0123456789"
N = 1000


def read_all(settings, topic, n, timeout_s=60):
    consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False, group_id=None)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    out = []
    for _ in range(int(timeout_s * 5)):
        for records in consumer.poll(timeout_ms=200).values():
            out.extend(serde.loads(r.value) for r in records)
        if len(out) >= n:
            break
    consumer.close()
    return out


def test_predict_at_the_serving_version_equals_what_the_pipeline_wrote(settings, namespace):
    spec = load_spec(SPEC_PATH)
    topics = pipeline_topics(spec, namespace)
    kafkautil.create_topics(settings, list(topics.values()))
    # The stream: ingest's envelopes, the processors' cleaner, the learner's core. Each model state
    # is published (signed) before it predicts, as version = events learned.
    raw = list(itertools.islice(open_source(spec.source, spec.schema.label), N))
    cleaner = Cleaner(spec)
    core = LearnerCore(spec)
    runner = core.runners["lr"]
    publisher = SnapshotPublisher(spec, settings, KEY, namespace)
    producer = KafkaProducer(**settings.kafka_python(), acks="all", linger_ms=5)
    for i, rec in enumerate(raw):
        publisher.publish(runner)
        _, env = envelope(spec, rec, i, source_id(spec.source))
        features = cleaner.clean_envelope(env).as_value()
        preds, _ = core.on_event(features)
        for p in preds:
            producer.send(topics[Role.PREDICTIONS].name, key=features["id"].encode(), value=serde.dumps(p))
    publisher.publish(runner)
    publisher.close()
    producer.flush()
    producer.close()

    server = ServerProcess(SPEC_PATH, {"DRIFTLINE_NAMESPACE": namespace, "DRIFTLINE_SNAPSHOT_KEY": KEY.decode()},
                           "--history", str(N + 10))
    try:
        server.wait_up()
        server.wait_for(lambda ms: ms["lr"]["latest_version"] == N, timeout=120)
        written = read_all(settings, topics[Role.PREDICTIONS].name, N)
        assert len(written) == N
        by_id = {p["id"]: p for p in written}
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for i, rec in enumerate(raw):
                _, env = envelope(spec, rec, i, source_id(spec.source))
                want = by_id[env["id"]]
                r = client.post("/predict", params={"model": "lr", "version": want["version"]},
                                json={"record": {k: v for k, v in rec.items() if k != spec.schema.label}})
                assert r.status_code == 200, r.text
                got = r.json()["predictions"][0]
                assert (got["version"], got["y_pred"], got["proba"], got["score"]) == \
                    (want["version"], want["y_pred"], want["proba"], want["score"]), i
    finally:
        server.stop()
