"""Producing envelopes into the raw topic with kafka-python, with nothing lost.

Each record becomes an envelope ``{"v", "id", "ts", "key", "data"}``:

* ``id``: the spec's id field, or ``<source>:<position>``, so a replay gives the
  same ids and downstream can deduplicate;
* ``key``: the spec's key field (also the Kafka message key);
* ``ts``: the event time, from the spec's time field (seconds, or ISO-8601), else
  the time of ingest.

>>> from contracts.spec import load_spec_text
>>> spec = load_spec_text("name: d\\nschema: {fields: {k: str, t: datetime, y: bool}, key: k, time: t, label: y}\\n"
...                       "models: {m: {estimator: linear_model.LogisticRegression}}")
>>> envelope(spec, {"k": "u1", "t": "1970-01-01T00:01:00Z", "y": True}, 7, "file:a.csv")
(b'u1', {'v': 1, 'id': 'file:a.csv:7', 'ts': 60.0, 'key': 'u1', 'data': {'k': 'u1', 't': '1970-01-01T00:01:00Z', 'y': True}})

The producer is idempotent with ``acks=all``; a record counts as ingested only once
the broker has acknowledged it, and ``flush`` raises if any send failed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from contracts import serde
from contracts.settings import KafkaSettings
from contracts.spec import Spec
from contracts.topics import Role, pipeline_topics
from ingest import _metrics

__all__ = ["EventProducer", "envelope", "event_time", "PRODUCER_DEFAULTS"]

# Throughput: large batches that fill while the previous one is in flight, compressed.
PRODUCER_DEFAULTS = dict(
    acks="all", enable_idempotence=True, linger_ms=20, batch_size=1024 * 1024, compression_type="lz4",
    max_request_size=4 * 1024 * 1024, max_in_flight_requests_per_connection=5, retries=2_147_483_647,
    delivery_timeout_ms=120_000,
)
LATENCY_SAMPLE = 16  # measure the ack latency of one record in this many
MAX_PENDING_BYTES = 16 * 1024 * 1024  # kafka-python's buffer is unbounded: we bound it here


def event_time(value) -> float | None:
    """Seconds since the epoch from a number or an ISO-8601 string, else None.

    >>> event_time(5), event_time("1970-01-01T00:00:10+00:00"), event_time("soon"), event_time(True)
    (5.0, 10.0, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def envelope(spec: Spec, record: dict, position: int, stem: str, now: float | None = None) -> tuple[bytes | None, dict]:
    """The Kafka key and envelope for one source record."""
    sch = spec.schema
    event_id = record.get(sch.id) if sch.id else None
    event_id = f"{stem}:{position}" if event_id is None else str(event_id)
    key = record.get(sch.key) if sch.key else None
    ts = event_time(record.get(sch.time)) if sch.time else None
    if ts is None:
        ts = now if now is not None else time.time()
    env = {"v": sch.version, "id": event_id, "ts": ts, "key": None if key is None else str(key), "data": record}
    return (None if key is None else str(key).encode()), env


class _Tally:
    """Sent / acknowledged / failed for one topic role.

    The futures of the records sent wait in :attr:`_inflight`, in order, and :meth:`settle` counts
    the done ones at its head, so that reading :attr:`acked` or :attr:`failed` settles first. A
    callback per record (``add_callback`` and ``add_errback`` in the sending thread, the call in
    kafka-python's I/O thread) cost more than that and fought the sending thread for the
    interpreter lock. A future done behind one still in flight (another partition's batch) is
    counted when the head is, a batch later; after ``flush`` every one is done and counted.
    """

    def __init__(self, role: str):
        self.role = role
        self.sent = 0
        self._acked = 0
        self._failed: list[BaseException] = []
        self._inflight: deque = deque()
        self._settling = threading.Lock()
        self._published = (0, 0, 0)

    def track(self, fut) -> None:
        """One record sent, acknowledged when ``fut`` (a kafka-python future) succeeds."""
        with self._settling:
            self.sent += 1
            self._inflight.append(fut)

    def settle(self) -> None:
        """Count the futures done at the head of the queue (under the lock :meth:`track` takes too:
        the gateway's request threads send and read at once)."""
        q = self._inflight
        with self._settling:
            while q and q[0].is_done:
                fut = q.popleft()
                if fut.exception is None:
                    self._acked += 1
                else:
                    self._failed.append(fut.exception)

    @property
    def acked(self) -> int:
        self.settle()
        return self._acked

    @property
    def failed(self) -> list[BaseException]:
        self.settle()
        return self._failed

    def ok(self, _metadata=None):
        """Count one acknowledgement directly (test doubles)."""
        self._acked += 1

    def err(self, exc):
        """Count one failure directly (test doubles)."""
        self._failed.append(exc)

    def publish(self) -> None:
        """Add what changed since the last call to the Prometheus counters."""
        now = (self.sent, self.acked, len(self.failed))
        for counter, new, old in zip((_metrics.SENT, _metrics.ACKNOWLEDGED, _metrics.FAILED), now, self._published):
            if new > old:
                counter.labels(role=self.role).inc(new - old)
        self._published = now


class EventProducer:
    """Sends envelopes to the pipeline's topics and counts what the broker acknowledged."""

    def __init__(self, spec: Spec, settings: KafkaSettings, namespace: str | None = None,
                 max_pending_bytes: int = MAX_PENDING_BYTES, **overrides):
        self.spec = spec
        self.topics = pipeline_topics(spec, namespace)
        config = {**PRODUCER_DEFAULTS, **overrides}
        self._producer = KafkaProducer(**settings.kafka_python(), **config)
        self.tallies = {role: _Tally(role.value) for role in (Role.RAW, Role.LABELS, Role.DLQ)}
        self._n = self._bytes = 0
        self._partitions: dict[str, tuple[dict, int]] = {}
        self.max_pending_bytes = max_pending_bytes
        self._max_wait_s = config["delivery_timeout_ms"] / 1000

    @property
    def acked(self) -> int:
        return self.tallies[Role.RAW].acked

    @property
    def failed(self) -> list[BaseException]:
        return [e for t in self.tallies.values() for e in t.failed]

    @property
    def unacknowledged(self) -> int:
        return sum(t.sent - t.acked for t in self.tallies.values())

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None, role: Role = Role.RAW):
        """Hand one record to the producer; returns its future. Raises KafkaTimeoutError when
        the cluster's metadata is not available within ``max_block_ms``."""
        tally = self.tallies[role]
        partition = None if key is None else self._partition(topic, key)
        fut = self._producer.send(topic, value=value, key=key, headers=headers, partition=partition)
        tally.track(fut)
        self._n += 1
        self._bytes += len(value)
        if self._n % LATENCY_SAMPLE == 0:
            t0 = time.perf_counter()
            fut.add_callback(lambda _md: _metrics.SEND_LATENCY.observe(time.perf_counter() - t0))
            if self._n % (LATENCY_SAMPLE * 16) == 0:
                self._backpressure()
        return fut

    def _partition(self, topic: str, key: bytes) -> int:
        """kafka-python's default partitioner (Java's murmur2), cached per key: entity keys repeat,
        and the pure-Python hash is a tenth of the cost of a send. The partition count is read once."""
        cached = self._partitions.get(topic)
        if cached is None:
            cached = self._partitions[topic] = ({}, len(self._producer.partitions_for(topic)))
        by_key, n = cached
        p = by_key.get(key)
        if p is None:
            if len(by_key) >= 100_000:
                by_key.clear()
            p = by_key[key] = (murmur2(key) & 0x7FFFFFFF) % n
        return p

    @property
    def pending(self) -> int:
        """Records sent and neither acknowledged nor failed yet."""
        return sum(t.sent - t.acked - len(t.failed) for t in self.tallies.values())

    def _backpressure(self) -> None:
        """Wait while the records awaiting acknowledgement hold more than ``max_pending_bytes``."""
        avg = self._bytes / self._n
        deadline = time.monotonic() + self._max_wait_s
        while self.pending * avg > self.max_pending_bytes and time.monotonic() < deadline:
            time.sleep(0.002)

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

    def publish_metrics(self) -> None:
        for t in self.tallies.values():
            t.publish()

    def flush(self, timeout: float | None = None, check: bool = True) -> None:
        self._producer.flush(timeout=timeout)
        self.publish_metrics()
        failed = self.failed
        if check and failed:
            raise RuntimeError(f"{len(failed)} record(s) were not acknowledged: {failed[0]!r}")

    def close(self, timeout: float | None = None) -> None:
        self._producer.close(timeout=timeout)
