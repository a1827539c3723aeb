"""Small kafka-python helpers every service shares: topic creation, offsets, reachability."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import TopicAlreadyExistsError

from contracts.settings import KafkaSettings
from contracts.topics import TopicContract

__all__ = ["create_topics", "delete_topics", "end_offsets", "read_range", "reachable", "wait_for_partitions"]


def reachable(settings: KafkaSettings, timeout_s: float = 3.0) -> bool:
    """Does the cluster answer a metadata request within ``timeout_s``?"""
    try:
        admin = KafkaAdminClient(**settings.kafka_python(), request_timeout_ms=int(timeout_s * 1000),
                                 reconnect_backoff_max_ms=500)
    except Exception:  # noqa: BLE001 - any failure means no
        return False
    try:
        admin.describe_cluster()
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        admin.close()


def create_topics(settings: KafkaSettings, contracts: list[TopicContract]) -> dict[str, str]:
    """Create the topics that do not exist yet. Idempotent. Returns ``{name: 'created'|'exists'}``."""
    admin = KafkaAdminClient(**settings.kafka_python())
    try:
        existing = set(admin.list_topics())
        brokers = len(admin.describe_cluster()["brokers"])
        todo = {}
        result = {}
        for c in contracts:
            if c.name in existing:
                result[c.name] = "exists"
                continue
            rf = c.replication or min(3, brokers)
            todo[c.name] = {"num_partitions": c.partitions, "replication_factor": rf, "configs": dict(c.configs)}
        if todo:
            try:
                admin.create_topics(todo, timeout_ms=30_000, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass
            for name in todo:
                result[name] = "created"
        return result
    finally:
        admin.close()


def delete_topics(settings: KafkaSettings, names: list[str]) -> list[str]:
    """Delete those of ``names`` that exist; returns the ones deleted."""
    admin = KafkaAdminClient(**settings.kafka_python())
    try:
        present = set(admin.list_topics())
        gone = [n for n in names if n in present]
        if gone:
            admin.delete_topics(gone, timeout_ms=30_000)
        return gone
    finally:
        admin.close()


def wait_for_partitions(consumer: KafkaConsumer, topic: str, timeout_s: float = 60.0) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic '{topic}' does not exist; run `driftline topics create SPEC` first")
        time.sleep(0.2)


def end_offsets(settings: KafkaSettings, topics: list[str], consumer: KafkaConsumer | None = None) -> dict:
    """``{TopicPartition: high watermark}`` for every partition of ``topics``."""
    own = consumer is None
    consumer = consumer or KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False)
    try:
        tps = [tp for t in topics for tp in wait_for_partitions(consumer, t)]
        return consumer.end_offsets(tps)
    finally:
        if own:
            consumer.close()


def read_range(consumer: KafkaConsumer, tp: TopicPartition, start: int, end: int, max_records: int = 10_000):
    """The records at offsets [start, end) of one partition, in order (``consumer`` is reassigned to it)."""
    consumer.assign([tp])
    consumer.seek(tp, start)
    while consumer.position(tp) < end:
        for records in consumer.poll(timeout_ms=500, max_records=max_records).values():
            yield from (r for r in records if r.offset < end)
