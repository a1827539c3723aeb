"""What an output partition already holds, so that a replayed input record is not written twice.

faust is at-least-once: after a crash (or a rebalance) a worker reads again
from the last committed offset, and the records it had already written for
those inputs are in the output topics. Every output record carries its origin
(``driftline.origin.topic`` / ``.offset`` headers), and each output partition
is written by one worker at a time, in origin-offset order per origin topic.
So the tail of an output partition says, per origin topic, the highest origin
offset already written: a replayed input at or below it is not written again.

The tail read is ``TAIL`` records long; it covers what can be written between
two offset commits (faust commits at least every ``broker_commit_every``
records and every second), with a wide margin.
"""

from __future__ import annotations

import asyncio
import threading

from kafka import KafkaConsumer, TopicPartition

from contracts.settings import KafkaSettings
from contracts.topics import Headers
from driftline.kafkautil import read_range

__all__ = ["Ledger", "SWEPT", "TAIL"]

TAIL = 40_000
SWEPT = "driftline.swept"  # dead letters made by a TTL sweep (out of origin order): not part of the ledger


def scan_tail(consumer: KafkaConsumer, topic: str, partition: int, tail: int = TAIL) -> dict[str, int]:
    """``{origin topic: highest origin offset}`` among the last ``tail`` records of ``topic[partition]``."""
    tp = TopicPartition(topic, partition)
    end = consumer.end_offsets([tp])[tp]
    start = max(consumer.beginning_offsets([tp])[tp], end - tail)
    hw: dict[str, int] = {}
    for r in read_range(consumer, tp, start, end, max_records=20_000):
        h = dict(r.headers or ())
        if SWEPT in h:
            continue
        origin, off = h.get(Headers.ORIGIN_TOPIC), h.get(Headers.ORIGIN_OFFSET)
        if origin is None or off is None:
            continue
        o = origin.decode()
        hw[o] = max(hw.get(o, -1), int(off))
    return hw


class Ledger:
    """Per (output topic, partition): the highest origin offset written, per origin topic."""

    def __init__(self, settings: KafkaSettings):
        self.settings = settings
        self._hw: dict[tuple[str, int], dict[str, int]] = {}
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Forget everything (after a rebalance: another worker may have written since)."""
        self._hw = {}

    def _scan(self, topic: str, partition: int) -> dict[str, int]:
        with self._lock:
            if self._consumer is None:
                self._consumer = KafkaConsumer(**self.settings.kafka_python(), enable_auto_commit=False,
                                               group_id=None, fetch_max_bytes=32 * 1024 * 1024)
            return scan_tail(self._consumer, topic, partition)

    async def snapshot(self, outputs: list[tuple[str, int]]) -> dict[tuple[str, int], dict[str, int]]:
        """The ledger for these (topic, partition) outputs, reading the tails not known yet."""
        hw = self._hw
        missing = [o for o in outputs if o not in hw]
        if missing:
            loop = asyncio.get_running_loop()
            for topic, partition in missing:
                hw[(topic, partition)] = await loop.run_in_executor(None, self._scan, topic, partition)
        return {o: hw[o] for o in outputs}

    def advance(self, outputs: list[str], partition: int, origin: str, offset: int) -> None:
        """This worker has handled ``origin`` up to ``offset`` for ``partition`` of these outputs.

        A rebalance that keeps the partition here makes faust deliver those records again, and the
        ledger read before them knows nothing of what this worker wrote since.
        """
        for topic in outputs:
            known = self._hw.get((topic, partition))
            if known is not None and known.get(origin, -1) < offset:
                known[origin] = offset

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
