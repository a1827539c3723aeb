"""A batch's output records, handed to the producer as whole record batches.

Sending record by record through ``AIOKafkaProducer.send`` costs, per record, a coroutine, a
future, a slot in the message accumulator and, when the broker answers, a callback that resolves
that future: about a quarter of the processor worker's time at 2,500 events/s (py-spy,
``bench/processors``). The agents produce a batch's outputs together and wait for all of them,
so per-record futures buy nothing. :class:`Outbox` appends each record to a
:class:`aiokafka.producer.message_accumulator.BatchBuilder` per topic-partition, in the order
given, and :meth:`Outbox.send` queues every builder with ``send_batch``: one future per
topic-partition and batch. Records of one partition keep their order, so does the changelog.

A send that fails after the producer's retries fails its future; :meth:`Outbox.send` returns the
futures so that the caller can wait on them (outputs) or watch them (changelogs).
"""

from __future__ import annotations

__all__ = ["Outbox"]


class Outbox:
    """Records to send, grouped per topic-partition; ``producer`` is an ``AIOKafkaProducer``."""

    __slots__ = ("producer", "_open", "_full")

    def __init__(self, producer):
        self.producer = producer
        self._open: dict[tuple[str, int], object] = {}
        self._full: list[tuple[str, int, object]] = []

    def __len__(self) -> int:
        return sum(b.record_count() for b in self._open.values()) + sum(b.record_count() for *_, b in self._full)

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers=None) -> None:
        """Append one record (timestamped now, as ``send`` would) to ``topic``'s ``partition``."""
        tp = (topic, partition)
        builder = self._open.get(tp)
        if builder is None:
            builder = self._open[tp] = self.producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=headers or []) is None:
            # Full: queue it, start another. A record larger than a batch gets a batch of its own.
            self._full.append((topic, partition, builder))
            builder = self._open[tp] = self.producer.create_batch()
            builder.append(timestamp=None, key=key, value=value, headers=headers or [])

    async def send(self) -> list:
        """Queue every builder with the producer, in the order filled; the delivery futures."""
        full, self._full = self._full, []
        batches = full + [(t, p, b) for (t, p), b in self._open.items()]
        self._open = {}
        futures = []
        for topic, partition, builder in batches:
            if builder.record_count():
                builder.close()  # complete: the producer sends it now instead of lingering for more
                futures.append(await self.producer.send_batch(builder, topic, partition=partition))
        return futures
