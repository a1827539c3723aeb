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

A serialized store (rocksdb) is written and read in the bytes faust's ``json`` codec makes
(:func:`encode`, faust's own orjson call), encoded once per write for both the store and the
changelog, and without the codec registry's layers. Encoding was 7% of the worker's time at 2,400
events/s (py-spy), half of it a second encoding of the same key and value; the change gave 3.7%
more events/s (``bench/processors``). The memory store holds the values themselves and goes
through faust.

The changelog records of a batch go to an :class:`processors._outbox.Outbox` and are queued
together by :meth:`DirectTable.send_changelog`, one record batch per partition. Durability is
unchanged: the worker flushes the producer before it commits input offsets
(:mod:`processors._continuity`), and it refuses to commit, and stops, once a changelog send has
failed (:attr:`DirectTable.failures`).
"""

from __future__ import annotations

import logging

from faust.stores.base import SerializedStore
from faust.utils.json import on_default as _on_default
from orjson import OPT_NON_STR_KEYS, OPT_UTC_Z
from orjson import dumps as _dumps
from orjson import loads as _loads
from rocksdict import WriteBatch

from processors._outbox import Outbox

__all__ = ["DirectTable", "encode"]


_OPTIONS = OPT_NON_STR_KEYS | OPT_UTC_Z


def encode(obj) -> bytes:
    """The bytes faust's ``json`` codec makes of a table key or value (bytes pass through raw, as
    faust's serializer registry passes them): ``orjson.dumps`` with the default and options of
    ``faust.utils.json.dumps``, called directly, which costs 0.13 µs for an event id where faust's
    wrapper cost 0.39 (four or five calls an event in the worker).

    >>> encode("k1"), encode({"n": 2, "x": [1.5, None]}), encode(b"raw")
    (b'"k1"', b'{"n":2,"x":[1.5,null]}', b'raw')
    >>> from faust.utils.json import dumps
    >>> value = {"p": 0, "at": 7, "s": {"w": 1.5, "buf": {"v": [[1.0, -2.5]]}, 3: None}}
    >>> encode(value) == dumps(value) and encode("e1") == dumps("e1")
    True
    """
    return obj if obj.__class__ is bytes else _dumps(obj, default=_on_default, option=_OPTIONS)


log = logging.getLogger("driftline.processors")

_UNSET = object()


class DirectTable:
    """A faust table's store plus its changelog, written directly. Call inside an agent, with the
    event of the partition written as faust's current event (the rocksdb store picks its database
    by it)."""

    __slots__ = ("app", "table", "_topic", "_outbox", "_json_store", "_dbs_for", "failures")

    def __init__(self, app, table):
        self.app = app
        self.table = table
        self._topic: str | None = None
        self._outbox: Outbox | None = None
        self._json_store: bool | None = None
        self._dbs_for = _UNSET
        self.failures: list[BaseException] = []

    @property
    def json_store(self) -> bool:
        """Is the store serialized with faust's ``json`` codec for keys and values (the fast path)?"""
        if self._json_store is None:
            store = self.store
            self._json_store = (isinstance(store, SerializedStore) and store.key_serializer == "json"
                                and store.value_serializer == "json" and store.key_type is None
                                and store.value_type is None)
        return self._json_store

    @property
    def store(self):
        return self.table.data

    @property
    def topic(self) -> str:
        if self._topic is None:
            self._topic = self.table.changelog_topic.get_topic_name()
        return self._topic

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self.app.producer._ensure_producer())
        return self._outbox

    def get(self, key, default=None):
        if not self.json_store:
            return self.store.get(key, default)
        raw = self.store._get(encode(key))
        return default if raw is None else _loads(raw)

    def get_in(self, key, partition: int, default=None):
        """``key``'s value in ``partition``'s store. On a rocksdict store (faust's rocksdb driver
        here) that is the partition's database, read directly: faust's ``_get`` finds the partition
        through the current event (a context variable) and then records it in a locked LRU index of
        keys, which :meth:`write` never reads. Any other store is read as :meth:`get` reads it."""
        db_for = self._rocksdict_dbs
        if db_for is None:
            return self.get(key, default)
        raw = db_for(partition).get(encode(key))
        return default if raw is None else _loads(raw)

    @property
    def _rocksdict_dbs(self):
        """The store's per-partition database getter, when this table's reads and writes may use it
        directly (a json-serialized rocksdict store); else ``None``."""
        if self._dbs_for is _UNSET:
            store = self.store
            db_for = getattr(store, "_db_for_partition", None)
            ok = self.json_store and db_for is not None and getattr(store, "use_rocksdict", False)
            self._dbs_for = db_for if ok else None
        return self._dbs_for

    def items(self):
        """Every ``(key, value)`` of the store. A serialized store (rocksdb) is decoded here with
        orjson: its keys and values are the JSON faust's ``json`` codec wrote, of plain strings and
        dicts, and faust's own decoding path (codec registry, model reconstruction) made the TTL
        sweep, which reads every entry, about 6% of the worker (py-spy, ``bench/processors``)."""
        store = self.store
        raw = getattr(store, "_iteritems", None)
        if raw is None:
            return store.items()  # the memory store holds the values themselves
        return ((_loads(k), _loads(v)) for k, v in raw())

    def scan(self, partition: int, after: bytes | None, limit: int) -> tuple[list, bytes | None]:
        """Up to ``limit`` decoded ``(key, value)`` entries of ``partition``'s store, from the first key
        after ``after`` (``None``: from the start); and the cursor to pass next (``None``: done).

        The rocksdb store keeps a database per partition, so a sweep of one partition reads only
        that partition's entries, and in chunks: no iterator is kept across calls (a rebalance may
        close the database in between), and a sweep of a large store never stalls the stream. The
        memory store is read whole.
        """
        store = self.store
        db_for = getattr(store, "_db_for_partition", None)
        if db_for is None or not hasattr(store, "_iteritems"):
            return list(store.items()), None
        out, last = [], None
        skip = {after, store.offset_key}
        for k, v in (db_for(partition).items(from_key=after) if after is not None else db_for(partition).items()):
            if k in skip:
                continue
            out.append((_loads(k), _loads(v)))
            last = k
            if len(out) >= limit:
                return out, last
        return out, None

    def set(self, key, value, partition: int) -> None:
        store = self.store
        if self.json_store:
            k, v = encode(key), encode(value)
            store._set(k, v)
        else:
            store[key] = value
            k, v = store._encode_key(key), store._encode_value(value)
        self.outbox.add(self.topic, partition, k, v)

    def write(self, changes, make_current) -> None:
        """Apply a batch's held writes, ``(key, value, partition, deleted)`` as
        :meth:`processors.stage.Overlay.drain` gives them, to the store and the changelog.

        On a rocksdict store (faust's rocksdb driver here) each partition's writes go to its
        database as one ``WriteBatch``: one write-ahead-log append per partition and batch, where
        ``put`` appended per key (6.5 µs a put against 0.85 in batches of 30, on this machine). The
        writes go to each partition's database directly, as faust's ``_set`` does, without its
        key-to-partition cache: a lookup without an event falls back to trying every partition, and
        a key never changes partition. Any other store is written key by key, with
        ``make_current(partition)`` making that partition's event faust's current event first.
        """
        db_for = self._rocksdict_dbs
        if db_for is None:
            for k, v, p, deleted in changes:
                make_current(p)
                if deleted:
                    self.delete(k, p)
                else:
                    self.set(k, v, p)
            return
        add, topic, batches = self.outbox.add, self.topic, {}
        for k, v, p, deleted in changes:
            wb = batches.get(p)
            if wb is None:
                wb = batches[p] = WriteBatch(raw_mode=True)
            kb = encode(k)
            if deleted:
                wb.delete(kb)
                add(topic, p, kb, None)
            else:
                vb = encode(v)
                wb.put(kb, vb)
                add(topic, p, kb, vb)
        for p, wb in batches.items():
            db_for(p).write(wb)

    def delete(self, key, partition: int) -> None:
        store = self.store
        if self.json_store:
            k = encode(key)
            store._del(k)
        else:
            k = store._encode_key(key)
            try:
                del store[key]
            except KeyError:
                pass
        self.outbox.add(self.topic, partition, k, None)

    async def send_changelog(self) -> None:
        """Queue the changelog records written since the last call (not waiting for the broker)."""
        if self._outbox is None:
            return
        for fut in await self._outbox.send():
            fut.add_done_callback(self._sent)

    def _sent(self, fut) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.error("a changelog batch of %s was not written: %r", self.topic, fut.exception())
            self.failures.append(fut.exception())
