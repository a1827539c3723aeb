"""Memory soak: a long stream over many keys whose population moves on, with TTL state. The peak
resident set of each service stays flat (within 10%) over the second half of the run.

Bounded: 30,000 events over 6,000 keys; full (``DRIFTLINE_CHAOS_FULL=1``): the issue's 2,000,000
events over 100,000 keys. At any time a tenth of the keys is active; the featurizer's key state
and the dedup memory expire 300 s of event time after a key's (an id's) last event.

The Hoeffding tree gets a memory budget, as any long-running tree should. It grows with the stream
by design: on this stream about 320 leaves per million events, each holding ~120 KB of split
statistics (15 features × 2 classes × a Gaussian). Left at river's defaults (100 MiB, checked every
million events), the tree alone would add some 40 MiB to the learner over the second half of the
full run (320 leaves × 120 KB), and its snapshots grow linearly (7.7 MB at 200,000 events, 14.9 MB
at 400,000); that is the model's memory, not the service's. With river's own
``max_size`` of 16 MiB, checked every 100,000 events, the tree deactivates its least promising leaves
at the budget, and what this test measures is the services' memory."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaProducer

from bench._stream import envelopes
from contracts.topics import Role
from processors.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

TREE_MIB = 16


def flat_within(samples: list[tuple[float, int]], t0: float, t1: float) -> tuple[int, int]:
    """(peak RSS up to the middle of [t0, t1], peak RSS over the second half)."""
    mid = (t0 + t1) / 2
    first = max(r for t, r in samples if t <= mid)
    second = max(r for t, r in samples if mid < t <= t1)
    return first, second


def test_peak_rss_of_each_service_is_flat_over_the_second_half(kafka, make_pipeline, spec_for, full, rss):
    n, keys = (2_000_000, 100_000) if full else (30_000, 6_000)
    p = make_pipeline(spec_for(schema={"dedup_seconds": 300}, features={"ttl_seconds": 300},
                               snapshots={"every_events": 20_000, "every_seconds": 30},
                               models={"tree": {"estimator": "tree.HoeffdingTreeClassifier",
                                                "params": {"grace_period": 200, "max_size": TREE_MIB,
                                                           "memory_estimate_period": 100_000}}}), kafka)
    producer = KafkaProducer(**p.settings.kafka_python(), acks="all", linger_ms=20, batch_size=1 << 20)
    for key, value in envelopes(n, keys=keys, seed=4, active=keys // 10):
        producer.send(p.topics[Role.RAW].name, key=key, value=value)
    producer.flush()
    producer.close()
    services = {"process": p.worker(), "learn": p.learner()}
    sampler = rss(services)
    sampler.start()
    try:
        wait_until(lambda: p.count(Role.FEATURES) > 0, 300, what="the first feature vector")
        t0 = time.monotonic()
        wait_until(lambda: p.count(Role.PREDICTIONS) >= 2 * n, 600 + n / 50, every=2.0,
                   what="every event predicted")
        t1 = time.monotonic()
    finally:
        sampler.stop()
    for name, proc in services.items():
        assert proc.alive(), proc.tail()
    report = {}
    for name, samples in sampler.samples.items():
        first, second = flat_within(samples, t0, t1)
        report[name] = (first, second)
        print(f"{name}: peak RSS {first / 2**20:.0f} MiB by mid-run, {second / 2**20:.0f} MiB over the second half "
              f"({second / first - 1:+.1%}; {len(samples)} samples over {t1 - t0:.0f} s)")
    for model_dir in sorted({f.parent for f in p.home.rglob("models/*/*.snap")}):
        snap = max(model_dir.glob("*.snap"))
        print(f"{model_dir.name}'s last snapshot: {snap.stat().st_size / 2**20:.1f} MiB (tree budget {TREE_MIB} MiB)")
    for name, (first, second) in report.items():
        assert second <= first * 1.10, f"{name}'s peak RSS grew {second / first - 1:+.1%} over the second half"
