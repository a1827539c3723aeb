"""``bench.pipeline.feed``: the latency runs' producer, through librdkafka."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from driftline import kafkautil

pytestmark = pytest.mark.integration


def test_feed_delivers_every_event_paced_stamped_and_partitioned_by_key(settings):
    from bench.pipeline import Run, feed
    from processors.app import id_partition

    run = Run(settings, 2)  # the benchmark's topics, the raw one with two partitions
    topic = run.raw
    n, rate = 300, 1000.0
    made: dict[bytes, float] = {}

    def item(i: int):
        key = f"k{i % 37}".encode()

        def make() -> bytes:
            made[key + b"/%d" % i] = time.time()
            return b"%d" % i

        return key, make

    try:
        seconds = feed(settings, topic, (item(i) for i in range(n)), rate)
        assert seconds >= (n - 1) / rate * 0.9  # paced, not sent at once
        consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False, group_id=None)
        try:
            got = []
            for p in (0, 1):
                tp = TopicPartition(topic, p)
                for r in kafkautil.read_range(consumer, tp, 0, consumer.end_offsets([tp])[tp]):
                    # Kafka's default partitioner's choice for the key, as the worker's peers see it.
                    assert p == id_partition(r.key.decode(), 2)
                    # CreateTime is the moment librdkafka took the event, right after it was made.
                    stamped = made[r.key + b"/" + r.value]
                    assert stamped * 1000 - 1 <= r.timestamp <= stamped * 1000 + 1000
                    got.append(int(r.value))
        finally:
            consumer.close()
        assert sorted(got) == list(range(n))  # every event, once
    finally:
        run.delete()
