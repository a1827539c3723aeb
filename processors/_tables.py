"""Table writes that skip faust's per-write machinery, for the processors' hot path.

faust's ``Table.__setitem__`` sends each change to the changelog through the topic's channel:
a ``FutureMessage``, the ``ProducerBuffer`` queue, a publish task, a callback that records the
persisted offset. At 2,000 events/s, with a dedup entry and a key-state entry per event, that was
about a fifth of the processor worker's time (py-spy, ``bench/processors``).

:class:`DirectTable` writes the table's store and then hands the changelog record straight to
the app's producer, with the bytes faust itself would send (the store's own key and value
encoding), so faust's changelog recovery reads the records as its own. Every write of a table
goes through here, sweeps included, so the changelog keeps the order of the writes. What faust
no longer does per write is record the store's persisted changelog offset: a recovery replays
the changelog from the offset faust last persisted (during its previous recovery), which gives
the same state, since a changelog replayed in order ends at the last write of each key.

Durability is unchanged: the worker flushes the producer before it commits input offsets
(:mod:`processors._continuity`).
"""

from __future__ import annotations

__all__ = ["DirectTable"]


class DirectTable:
    """A faust table's store plus its changelog, written directly. Call inside an agent, with the
    event of the partition written as faust's current event (the rocksdb store picks its database
    by it)."""

    __slots__ = ("app", "table", "_topic")

    def __init__(self, app, table):
        self.app = app
        self.table = table
        self._topic: str | None = None

    @property
    def store(self):
        return self.table.data

    @property
    def topic(self) -> str:
        if self._topic is None:
            self._topic = self.table.changelog_topic.get_topic_name()
        return self._topic

    def get(self, key, default=None):
        return self.store.get(key, default)

    def items(self):
        return self.store.items()

    async def set(self, key, value, partition: int):
        store = self.store
        store[key] = value
        return await self.app.producer.send(self.topic, store._encode_key(key), store._encode_value(value),
                                            partition, None, None)

    async def delete(self, key, partition: int):
        store = self.store
        try:
            del store[key]
        except KeyError:
            pass
        return await self.app.producer.send(self.topic, store._encode_key(key), None, partition, None, None)
