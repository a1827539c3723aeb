"""Producing envelopes into the raw topic with kafka-python, with nothing lost.

Each record becomes an envelope ``{"v", "id", "ts", "key", "data"}``:

* ``id``: the spec's id field, or ``<source>:<position>``, so a replay gives the
  same ids and downstream can deduplicate;
* ``key``: the spec's key field (also the Kafka message key);
* ``ts``: the event time, from the spec's time field, else the time of ingest.

The producer is idempotent with ``acks=all``; a record counts as ingested only
once the broker has acknowledged it, and ``flush`` raises if any send failed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import KafkaProducer

from contracts import serde
from contracts.settings import KafkaSettings
from contracts.spec import Spec
from contracts.topics import Role, pipeline_topics

__all__ = ["EventProducer", "envelope"]


def envelope(spec: Spec, record: dict, position: int, stem: str, now: float | None = None) -> tuple[bytes | None, dict]:
    """The Kafka key and envelope for one source record."""
    sch = spec.schema
    event_id = record.get(sch.id) if sch.id else None
    event_id = f"{stem}:{position}" if event_id is None else str(event_id)
    key = record.get(sch.key) if sch.key else None
    ts = record.get(sch.time) if sch.time else None
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        ts = now if now is not None else time.time()
    env = {"v": sch.version, "id": event_id, "ts": ts, "key": None if key is None else str(key), "data": record}
    return (None if key is None else str(key).encode()), env


class EventProducer:
    """Sends envelopes to the raw topic and counts what the broker acknowledged."""

    def __init__(self, spec: Spec, settings: KafkaSettings, namespace: str | None = None, **overrides):
        self.spec = spec
        self.topics = pipeline_topics(spec, namespace)
        config = dict(acks="all", linger_ms=5, batch_size=256 * 1024, compression_type=None,
                      max_in_flight_requests_per_connection=5, retries=2_147_483_647,
                      delivery_timeout_ms=120_000)
        config.update(overrides)
        self._producer = KafkaProducer(**settings.kafka_python(), **config)
        self.acked = 0
        self.failed: list[BaseException] = []

    def _ok(self, _metadata):
        self.acked += 1

    def _err(self, exc):
        self.failed.append(exc)

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None) -> None:
        fut = self._producer.send(topic, value=value, key=key, headers=headers)
        fut.add_callback(self._ok)
        fut.add_errback(self._err)

    def send_records(self, records: Iterable[dict], stem: str, start: int = 0, rate: float | None = None,
                     progress=None) -> int:
        """Send every record as an envelope to the raw topic; return how many were sent."""
        raw = self.topics[Role.RAW].name
        n = 0
        t0 = time.monotonic()
        for pos, rec in enumerate(records, start):
            key, env = envelope(self.spec, rec, pos, stem)
            self.send(raw, serde.dumps(env), key)
            n += 1
            if rate:
                ahead = n / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            if progress is not None and n % 1000 == 0:
                progress(n)
        return n

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)
        if self.failed:
            raise RuntimeError(f"{len(self.failed)} record(s) were not acknowledged: {self.failed[0]!r}")

    def close(self) -> None:
        self._producer.close()
