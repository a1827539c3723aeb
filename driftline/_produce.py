"""The learner's output producer: librdkafka (confluent-kafka) behind the few calls the learner makes.

The learner writes one prediction record per event and model by default, so the producer's cost per
record is the learner's: kafka-python's ``send`` (a future and the batch append, in Python) took
about a third of an LR learner's time, where librdkafka's ``produce`` copies the record into its C
queue. ``bench/learner``'s LR learner went from 0.33-0.37 of its in-process ceiling to 0.44-0.66,
and 0.63-0.70 on a broker warmed before it is measured (README, *Learning*).

What the checkpoint protocol needs from it (``driftline.checkpoint``, step 1): every output sent
before a cut is acknowledged by the broker (``acks=all``) before the cut is written, and an output
the broker refused is never passed over. Delivery reports come back for failures only
(``delivery.report.only.error``), and each one is kept in :attr:`OutputProducer.failures` for the
checkpoint to see. The producer is idempotent, so librdkafka's retries neither duplicate nor
reorder records: the compacted models topic keeps a model's newest snapshot last.

Through a broker outage records wait in librdkafka's queue (up to ``message.timeout.ms``, ten
minutes); when the queue is full :meth:`OutputProducer.send` waits for room, which stops the learner
and so holds its input back: that is the back-pressure.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, Producer

from contracts.settings import KafkaSettings
from driftline._fetch import _report, partitions_for

__all__ = ["OutputProducer"]

log = logging.getLogger("driftline.kafka")

#: How long a record may wait for the broker before it counts as failed (librdkafka's
#: ``message.timeout.ms``; kafka-python's ``delivery_timeout_ms`` before).
DELIVERY_TIMEOUT_MS = 600_000


class OutputProducer:
    """Records to named topics (and partitions), acknowledged by all in-sync replicas."""

    def __init__(self, settings: KafkaSettings, *, max_message_bytes: int, linger_ms: float = 1.0,
                 request_timeout_s: float = 30.0):
        self.request_timeout_s = request_timeout_s
        #: Delivery errors not yet dealt with, oldest first (the checkpoint refuses to cut past them).
        self.failures: list[KafkaError] = []
        failures = self.failures  # the callback holds the list, not self: no cycle through the C handle
        self._producer = Producer({
            **settings.librdkafka(),
            "acks": "all",
            "enable.idempotence": True,
            # Keys go to kafka-python's and Java's partitions (murmur2), so a model's snapshots stay
            # in the partition they were in when another client wrote them.
            "partitioner": "murmur2_random",
            "linger.ms": linger_ms,
            "message.max.bytes": max_message_bytes,
            "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            "reconnect.backoff.max.ms": 5000,
            "delivery.report.only.error": True,
            "on_delivery": lambda err, _msg: failures.append(err),
            "error_cb": _report,
            "logger": log,
        })

    def partition_count(self, topic: str, timeout_s: float = 60.0) -> int:
        """How many partitions ``topic`` has, waiting up to ``timeout_s`` for it to exist."""
        return len(partitions_for(self._producer, topic, timeout_s, self.request_timeout_s))

    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        """Queue one record; while librdkafka's queue is full (the broker is slow or away), wait."""
        args = (topic, value, key) if partition is None else (topic, value, key, partition)
        try:
            self._producer.produce(*args)
        except BufferError:
            self._wait_for_room(args)

    def _wait_for_room(self, args: tuple) -> None:
        started = reported = time.monotonic()
        while True:
            self._producer.poll(0.5)
            try:
                self._producer.produce(*args)
                return
            except BufferError:
                if time.monotonic() - reported >= 10.0:
                    reported = time.monotonic()
                    log.warning("the learner's output queue has been full for %.0fs: waiting for Kafka "
                                "(broker unreachable?)", reported - started)

    def poll(self) -> None:
        """Serve delivery reports and errors; cheap, and due once per loop."""
        self._producer.poll(0)

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait until every queued record is acknowledged or failed, at most ``timeout_s``;
        returns how many are still waiting."""
        return self._producer.flush(-1 if timeout_s is None else timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush for up to ``timeout_s``, drop what is left (saying so), and let go of librdkafka."""
        left = self.flush(timeout_s)
        if left:
            log.warning("closing with %d output record(s) unacknowledged; the last checkpoint does not "
                        "cover them, so a restart writes them again", left)
            self._producer.purge()
        self._producer.close()
