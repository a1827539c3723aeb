"""The processors against a real broker: every raw record ends up exactly once, clean or
dead-lettered; a second worker changes nothing; labels join with the features of prediction time."""

from __future__ import annotations

import pytest

from contracts import serde
from contracts.spec import load_spec_text
from contracts.topics import Headers, Role, pipeline_topics
from driftline import kafkautil
from processors.testing import Worker, end_total, mixed_stream, produce, read_topic, spec_text, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(tmp_path, settings, namespace, kafka):
    """``make(**spec_kw)`` → (spec, spec path, topics); workers it starts are stopped at the end."""
    workers: list[Worker] = []

    def make(**kw):
        text = spec_text(**kw)
        path = tmp_path / "spec.yaml"
        path.write_text(text)
        spec = load_spec_text(text)
        topics = pipeline_topics(spec, namespace)
        kafkautil.create_topics(settings, list(topics.values()))
        return spec, path, topics

    def start(path, store="rocksdb", name="w"):
        w = Worker(path, kafka, namespace, tmp_path / "home", store=store, stats=tmp_path / f"{name}.json",
                   log=tmp_path / f"{name}.log")
        workers.append(w)
        return w

    make.start = start
    try:
        yield make
    finally:
        for w in workers:
            w.stop()


def wait_processed(settings, topics, total, workers, timeout=120):
    def done():
        assert any(w.alive() for w in workers), "the worker died"
        return end_total(settings, topics[Role.CLEAN].name) + end_total(settings, topics[Role.DLQ].name) >= total

    wait_until(done, timeout, what=f"{total} records processed")


def origin(r) -> tuple[int, int]:
    h = dict(r.headers)
    return int(h[Headers.ORIGIN_PARTITION]), int(h[Headers.ORIGIN_OFFSET])


def assert_exact_accounting(settings, topics, raw_records):
    """clean ∪ dlq covers every raw record exactly once (by origin), and by id: clean ids are unique."""
    raw = {(r.partition, r.offset) for r in raw_records}
    clean = read_topic(settings, topics[Role.CLEAN].name)
    dlq = read_topic(settings, topics[Role.DLQ].name)
    clean_origins = [origin(r) for r in clean]
    dlq_origins = [origin(r) for r in dlq]
    assert len(set(clean_origins)) == len(clean_origins), "a raw record was cleaned twice"
    assert len(set(dlq_origins)) == len(dlq_origins), "a raw record was dead-lettered twice"
    assert set(clean_origins).isdisjoint(dlq_origins)
    assert set(clean_origins) | set(dlq_origins) == raw
    clean_ids = [serde.loads(r.value)["id"] for r in clean]
    assert len(set(clean_ids)) == len(clean_ids), "an event id appears twice in clean"
    return clean, dlq


def test_every_raw_record_is_clean_or_dead_lettered_exactly_once(pipeline, settings):
    spec, path, topics = pipeline()
    records = list(mixed_stream(4000, keys=40, poison_every=25, dup_every=97, seed=3))
    produce(settings, topics[Role.RAW].name, records, partitions=2)
    w = pipeline.start(path)
    total = len(records)
    wait_processed(settings, topics, total, [w])
    assert w.alive()
    raw = read_topic(settings, topics[Role.RAW].name)
    clean, dlq = assert_exact_accounting(settings, topics, raw)
    # by id: every valid first occurrence is clean; the rest are dead-lettered with a reason
    expected_clean = {r.id for r in records if r.expect == "clean"}
    assert {serde.loads(r.value)["id"] for r in clean} == expected_clean
    reasons = [dict(r.headers)[Headers.REASON].decode() for r in dlq]
    assert reasons.count("duplicate") == sum(1 for r in records if r.expect == "dead" and r.key and r.ts)
    features = read_topic(settings, topics[Role.FEATURES].name)
    assert len(features) == len(clean)
    assert {serde.loads(r.value)["id"] for r in features} == expected_clean
