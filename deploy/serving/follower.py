"""Topic followers: a thread reads a topic from the beginning, all partitions, and keeps following.

:class:`TopicFollower` is the loop; a subclass says what one record does
(:meth:`TopicFollower.offer`). :class:`SnapshotFollower` follows the compacted
models topic into the :class:`ModelStore`:

1. **Wait for the topic**: the learner may create it after the service starts.
2. **Read from the beginning**: compaction keeps (at least) the newest snapshot
   per model, so a fresh service rebuilds the current set from the topic alone.
3. **Catch up, then say so**: :attr:`caught_up` is set once the offsets as of
   start are read; ``/readyz`` waits for it.
4. **Follow**: each new record is offered to the store, which verifies it
   before unpickling and swaps it in; refusals are counted there and never
   stop the loop. Offsets are never committed: every start re-reads the topic.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaConsumer, TopicPartition

from contracts.settings import KafkaSettings
from models.snapshot import SnapshotRefused

from deploy.serving.store import ModelStore

__all__ = ["SnapshotFollower", "TopicFollower"]

log = logging.getLogger("driftline.serving.follower")


class TopicFollower(threading.Thread):
    """Reads ``topic`` from the beginning and follows it; :meth:`offer` handles each record."""

    def __init__(self, settings: KafkaSettings, topic: str, name: str, poll_ms: int = 100):
        super().__init__(name=name, daemon=True)
        self.settings = settings
        self.topic = topic
        self.poll_ms = poll_ms
        self.caught_up = threading.Event()
        self.stopping = threading.Event()
        self.records = 0
        self.error: str | None = None

    def offer(self, record) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._follow()
            except Exception as exc:  # noqa: BLE001 - a broker hiccup must not end serving
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("topic follower failed; retrying", extra={"topic": self.topic})
                self.stopping.wait(1.0)

    def _follow(self) -> None:
        consumer = KafkaConsumer(**self.settings.kafka_python(), group_id=None, enable_auto_commit=False,
                                 fetch_max_wait_ms=self.poll_ms, max_partition_fetch_bytes=256 * 1024 * 1024,
                                 fetch_max_bytes=256 * 1024 * 1024, receive_buffer_bytes=4 * 1024 * 1024)
        try:
            parts = self._partitions(consumer)
            if parts is None:
                return
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            targets = consumer.end_offsets(parts)
            log.info("following a topic", extra={"topic": self.topic, "records": sum(targets.values())})
            while not self.stopping.is_set():
                for records in consumer.poll(timeout_ms=self.poll_ms).values():
                    for r in records:
                        self.records += 1
                        self.offer(r)
                if not self.caught_up.is_set() and all(consumer.position(tp) >= off for tp, off in targets.items()):
                    self.caught_up.set()
                    log.info("caught up with a topic", extra={"topic": self.topic, "records": self.records})
                self.error = None
        finally:
            consumer.close()

    def _partitions(self, consumer: KafkaConsumer) -> list[TopicPartition] | None:
        while not self.stopping.is_set():
            parts = consumer.partitions_for_topic(self.topic)
            if parts:
                return [TopicPartition(self.topic, p) for p in sorted(parts)]
            self.error = f"topic {self.topic!r} does not exist yet"
            self.stopping.wait(0.5)
        return None

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout)

    def wait_caught_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return self.caught_up.wait(max(0.0, deadline - time.monotonic()))

    def status(self) -> dict:
        """What ``/healthz`` shows of this follower."""
        return {"alive": self.is_alive(), "caught_up": self.caught_up.is_set(), "records": self.records,
                "error": self.error}


class SnapshotFollower(TopicFollower):
    def __init__(self, store: ModelStore, settings: KafkaSettings, topic: str, poll_ms: int = 100):
        super().__init__(settings, topic, "snapshot-follower", poll_ms)
        self.store = store

    def offer(self, record) -> None:
        name = record.key.decode("utf-8", "replace") if record.key is not None else ""
        if record.value is None:  # a tombstone: the learner deleted the model; keep serving what we have
            log.info("tombstone on the models topic", extra={"model": name})
            return
        published = record.timestamp / 1000.0 if record.timestamp and record.timestamp > 0 else None
        try:
            self.store.offer(name, record.value, published_at=published)
        except SnapshotRefused:
            pass  # counted and logged by the store; the last good model keeps serving
