"""Every input record reaches the agent, in order, even where faust's consumer skips some.

faust tracks the offsets its agents acknowledge and commits the highest
contiguous one, treating a jump in fetched offsets as a gap to step over (for
compacted and transactional topics). Around a recovery or a restart after a
kill -9 it can drop records it had fetched into its in-memory queues and then
step over them as such a gap, committing past records no agent saw
(faust-streaming issues #596 and #312 describe the races). The chaos test
``tests/chaos/test_processors_crash.py`` saw whole batches go missing that way.

So the agents do not trust the stream to be contiguous. Per input partition,
:class:`Continuity` knows the next offset due: at the first record after an
assignment it is the group's committed offset (or the log start when nothing is
committed); after that it is one past the last record handled. A record below
it was handled already in this assignment and is skipped; a record above it
means records were skipped, and those are read from the broker directly and
handled first, in order. Once a batch's outputs are durable, :meth:`Continuity.acknowledge`
acks the offsets read directly to faust's consumer, so that its commit at a rebalance can move past
them; faust's stream acks the ones it delivered itself (``take_batches``). faust's own commit
still stalled for long stretches (its contiguity check waits on offsets it lost track of), so
:meth:`Continuity.commit` commits, once a second, the offset after the last record whose outputs
and table writes are done: a restart replays seconds, not the whole log. The output ledger
(:mod:`processors._ledger`) still suppresses what an earlier worker already wrote.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Iterable

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from contracts.settings import KafkaSettings
from driftline.kafkautil import read_range

__all__ = ["Continuity", "forget_acks"]

log = logging.getLogger("driftline.processors")


class Continuity:
    """Turns each batch of faust events into the contiguous run of input records it should have been."""

    def __init__(self, settings: KafkaSettings, group_id: str):
        self.settings, self.group_id = settings, group_id
        self._next: dict[tuple[str, int], int] = {}
        self._consumer: KafkaConsumer | None = None
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()
        self.refilled = 0  # records read directly because the stream skipped them
        self.skipped = 0  # records the stream delivered twice within one assignment
        self._holes: dict[tuple[str, int], list[tuple[int, int]]] = {}  # [start, end) read directly, to ack
        self._done: dict[tuple[str, int], int] = {}  # offsets below this have durable outputs and state
        self._moved: dict[tuple[str, int], float] = {}  # when a record of the partition last reached the agent

    def forget(self) -> None:
        """After a rebalance: the next record of each partition is checked against the committed offset."""
        self._next = {}
        self._holes = {}
        self._done = {}

    def due(self, tp: tuple[str, int]) -> int | None:
        """The next offset due of partition ``tp`` in this assignment, or None before its first record."""
        return self._next.get(tp)

    def moved_at(self, tp: tuple[str, int]) -> float:
        """When (``time.monotonic``) a record of ``tp`` last reached the agent; 0 if never."""
        return self._moved.get(tp, 0.0)

    def end_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The log end offset of each partition of ``tps``."""
        with self._lock:
            ends = self._reader().end_offsets([TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    def start_offset(self, topic: str, partition: int) -> int:
        """The committed offset of the group for this partition, or the log start when none is committed."""
        tp = TopicPartition(topic, partition)
        deadline = time.monotonic() + 60
        with self._lock:
            if self._admin is None:
                self._admin = KafkaAdminClient(**self.settings.kafka_python())
            while True:
                try:
                    offsets = self._admin.list_group_offsets({self.group_id: [tp]})
                    break
                except KafkaError as exc:  # e.g. no group coordinator yet on a fresh cluster
                    if not exc.retriable or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            committed = offsets.get(self.group_id, {}).get(tp)
            if committed is not None and committed.offset >= 0:
                return committed.offset
            return self._reader().beginning_offsets([tp])[tp]

    def _reader(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(**self.settings.kafka_python(), enable_auto_commit=False,
                                           group_id=None, fetch_max_bytes=32 * 1024 * 1024)
        return self._consumer

    def _read(self, topic: str, partition: int, start: int, end: int) -> list:
        """The records at offsets [start, end) of one partition."""
        with self._lock:
            return list(read_range(self._reader(), TopicPartition(topic, partition), start, end))

    async def plan(self, events: Iterable[Any]) -> list[tuple[Any, Any]]:
        """``[(message, event)]`` in order: the batch's records, with any the stream skipped put back.

        ``event`` is the faust event that carries the record's partition (for table writes); a record
        read directly shares the event of the record it was found before.
        """
        loop = asyncio.get_running_loop()
        out: list[tuple[Any, Any]] = []
        now = time.monotonic()
        for event in events:
            msg = event.message
            tp = (msg.topic, msg.partition)
            due = self._next.get(tp)
            if due is None:
                due = await loop.run_in_executor(None, self.start_offset, *tp)
            if msg.offset < due:
                self.skipped += 1
                continue
            if msg.offset > due:
                missed = await loop.run_in_executor(None, self._read, msg.topic, msg.partition, due, msg.offset)
                log.warning("the stream skipped %s[%s] offsets %s..%s; read %d records directly",
                            msg.topic, msg.partition, due, msg.offset - 1, len(missed))
                self.refilled += len(missed)
                self._holes.setdefault(tp, []).append((due, msg.offset))
                out.extend((r, event) for r in missed)
            out.append((msg, event))
            self._next[tp] = msg.offset + 1
            self._moved[tp] = now
        return out

    def acknowledge(self, consumer) -> None:
        """Once the outputs of everything planned so far are durable: :meth:`commit` may move past it,
        and the offsets read directly are acked to faust's ``consumer``. The records faust delivered
        are acked by its stream (``take_batches``); acking them here too, through a new ``Message``
        per offset, was 2% of the worker (py-spy, a 300,000-event drain)."""
        if self._holes:
            from faust.types import TP, Message

            for (topic, partition), ranges in self._holes.items():
                tp = TP(topic, partition)
                for start, end in ranges:
                    for offset in range(start, end):
                        consumer.ack(Message(topic, partition, offset, 0.0, 0, None, None, None, None, tp=tp))
            self._holes = {}
        self._done.update(self._next)

    async def commit(self, consumer) -> dict:
        """Commit the position after the last record whose outputs and table writes are done.

        Through faust's consumer (``_commit_offsets``: it flushes the producer, changelogs included,
        commits, and records the offsets for the tables), so faust never commits below it again;
        then faust's record of the acks below it is let go (:func:`forget_acks`).
        """
        from faust.types import TP

        committed = consumer._committed_offset
        offsets = {}
        for (topic, partition), done in self._done.items():
            tp = TP(topic, partition)
            current = committed.get(tp)
            if current is None or current < done:
                offsets[tp] = done
        if offsets:
            await consumer._commit_offsets(offsets)
            forget_acks(consumer, offsets)
        return offsets

    def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                client.close()


def forget_acks(consumer, tps: Iterable[Any]) -> None:
    """Drop what faust's ``consumer`` remembers of the acks below each partition's committed offset.

    faust keeps every offset a stream acks, in a list and a set per partition (``_acked``,
    ``_acked_index``), with the gaps it stepped over (``_gap``), and lets them go only in its own
    commit (``Consumer._new_offset``). The agents commit through :meth:`Continuity.commit`, so they
    were kept for good: an int per input record. Over the memory soak's 2,000,000 events the
    worker's allocated Python blocks grew from 0.8 to 2.7 million, and its peak RSS by 7-18% over
    the second half. ``Consumer.ack`` refuses an offset below the committed one from then on, and
    faust's own commit (at a rebalance) finds its next offset in what is left
    (``tests/unit/test_continuity_acks.py``).
    """
    from faust.types.tuples import ack_lock

    with ack_lock:  # as Consumer.ack, which updates the same three
        for tp in tps:
            committed = consumer._committed_offset.get(tp)
            if committed is None:
                continue
            acked = consumer._acked.get(tp)
            if acked:
                kept = [o for o in acked if o >= committed]
                if len(kept) < len(acked):
                    acked[:] = kept
                    index = consumer._acked_index[tp]
                    index.clear()
                    index.update(kept)
            gaps = consumer._gap.get(tp)
            if gaps:
                gaps.chop(0, committed)
