"""The outbox's grouping into record batches, and the tables' fast decoding, against the real
aiokafka builders and faust's own codec (no broker: the integration tests send through Kafka)."""

from __future__ import annotations

import asyncio
import weakref
from types import SimpleNamespace

import orjson
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from faust.serializers import codecs

from processors._outbox import Outbox
from processors._tables import DirectTable


class _Current:
    """Makes an event of partition ``p`` faust's current event, as the agent does: table reads and
    writes go to its partition. faust's context holds the event weakly, so it is kept here."""

    def __init__(self):
        self.calls: list[int] = []
        self.event = None

    def __call__(self, p: int) -> None:
        from faust.streams import _current_event

        self.calls.append(p)
        self.event = type("Event", (), {"message": SimpleNamespace(partition=p)})()
        _current_event.set(weakref.ref(self.event))


class Recorder:
    """Stands in for AIOKafkaProducer's two batch calls; keeps what would be sent, in order."""

    def __init__(self, batch_size: int = 1024):
        self.batch_size = batch_size
        self.sent: list[tuple[str, int, list]] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, builder, topic, *, partition):
        records = [(r.key, r.value, list(r.headers)) for r in DefaultRecordBatch(bytearray(builder._build()))]
        self.sent.append((topic, partition, records))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def test_records_are_grouped_per_topic_partition_in_order():
    rec = Recorder()
    out = Outbox(rec)
    out.add("a", 0, b"k1", b"v1")
    out.add("b", 1, None, b"v2", [("h", b"x")])
    out.add("a", 0, b"k3", None)
    out.add("a", 1, b"k4", b"v4")
    assert len(out) == 4
    futures = asyncio.run(out.send())
    assert len(futures) == 3
    assert rec.sent == [("a", 0, [(b"k1", b"v1", []), (b"k3", None, [])]),
                        ("b", 1, [(None, b"v2", [("h", b"x")])]),
                        ("a", 1, [(b"k4", b"v4", [])])]
    assert len(out) == 0 and asyncio.run(out.send()) == []


def test_a_full_batch_is_sent_before_the_next_of_its_partition_and_big_records_fit():
    rec = Recorder(batch_size=200)
    out = Outbox(rec)
    values = [bytes([65 + i]) * 60 for i in range(6)] + [b"z" * 5000]
    for v in values:
        out.add("t", 0, None, v)
    asyncio.run(out.send())
    assert len(rec.sent) > 2
    assert [v for _, _, records in rec.sent for _, v, _ in records] == values


def test_fast_item_decoding_matches_faust_json_codec():
    entries = {"ev-1": {"p": 0, "o": 12, "ts": 1.5}, "\x003": {"p": 3, "at": 7, "s": {"n": [1, 2.5, None]}},
               "ключ": {"wm": None, "o": -1}}

    class Store:
        def _iteritems(self):
            return [(codecs.dumps("json", k), codecs.dumps("json", v)) for k, v in entries.items()]

    class Table:
        data = Store()

    assert dict(DirectTable(None, Table()).items()) == entries
    assert all(orjson.loads(codecs.dumps("json", v)) == codecs.loads("json", codecs.dumps("json", v))
               for v in entries.values())


def test_scan_reads_one_partition_in_chunks_from_a_cursor(tmp_path):
    """DirectTable.scan on a real rocksdict database per partition, as faust's rocksdb store keeps them."""
    import rocksdict

    opts = rocksdict.Options(raw_mode=True)
    dbs = {p: rocksdict.Rdict(str(tmp_path / f"p{p}"), options=opts) for p in (0, 1)}
    for p, db in dbs.items():
        for i in range(25):
            db[codecs.dumps("json", f"k{p}-{i:02d}")] = codecs.dumps("json", {"p": p, "i": i})
        db[b"__faust\x00offset__"] = b"17"

    class Store:
        offset_key = b"__faust\x00offset__"

        def _db_for_partition(self, p):
            return dbs[p]

        def _iteritems(self):
            raise AssertionError("a partition scan must not read every partition")

    class Table:
        data = Store()

    t = DirectTable(None, Table())
    seen, after, calls = [], None, 0
    while True:
        items, after = t.scan(1, after, 10)
        calls += 1
        seen += items
        if after is None:
            break
    assert calls == 3
    assert [k for k, _ in seen] == [f"k1-{i:02d}" for i in range(25)]
    assert all(v == {"p": 1, "i": int(k[3:])} for k, v in seen)
    for db in dbs.values():
        db.close()


def test_json_store_fast_path_writes_and_reads_the_bytes_faust_does(tmp_path):
    """On a real faust RocksDB store: DirectTable encodes each key and value once, with faust's own
    json call, and the store and the changelog get exactly the bytes faust's ``store[key] = value``
    would write; reads and deletes see faust's writes and vice versa."""
    import faust

    app = faust.App("t-direct", broker="kafka://localhost:1", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("seen", partitions=2, schema=faust.Schema(key_serializer="json", value_serializer="json"))
    current = _Current()
    current(1)
    sent = []
    t = DirectTable(app, table)
    t._topic = "t-direct-seen-changelog"
    t._outbox = SimpleNamespace(add=lambda *rec: sent.append(rec))
    assert t.json_store
    values = {"ev-1": {"p": 1, "o": 12, "ts": 1.5}, "ключ": {"wm": None, "n": [1, 2.5]}, "\x003": 7}
    store = table.data
    for k, v in values.items():
        t.set(k, v, 1)
        assert store._get(store._encode_key(k)) == store._encode_value(v)  # what faust would have written
        assert sent[-1] == (t._topic, 1, store._encode_key(k), store._encode_value(v))
        assert store[k] == t.get(k) == v
    store["by-faust"] = {"x": [None, 1.0]}
    assert t.get("by-faust") == {"x": [None, 1.0]} and t.get("absent", "dflt") == "dflt"
    t.delete("ev-1", 1)
    assert t.get("ev-1") is None and "ev-1" not in store
    assert sent[-1] == (t._topic, 1, b'"ev-1"', None)
    for db in store._dbs.values():
        db.close()


def test_a_batch_of_writes_lands_per_partition_as_faust_would_write_it(tmp_path):
    """DirectTable.write on a real faust RocksDB store: each partition's database gets one write
    batch, with the same bytes as faust's per-key writes; the changelog gets every change in order;
    faust reads the result, with or without a current event."""
    import faust
    from faust.streams import _current_event

    app = faust.App("t-write", broker="kafka://localhost:1", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("keys", partitions=2, schema=faust.Schema(key_serializer="json", value_serializer="json"))
    store = table.data
    current = _Current()
    current(0)
    store["gone"] = {"n": 1}
    sent = []
    t = DirectTable(app, table)
    t._topic = "t-write-keys-changelog"
    t._outbox = SimpleNamespace(add=lambda *rec: sent.append(rec))
    changes = [("a", {"n": 1}, 0, False), ("b", {"x": [1.5, None]}, 1, False),
               ("gone", None, 0, True), ("c", "v", 1, False)]
    calls = []
    t.write(changes, calls.append)
    assert calls == []  # the rocksdb fast path needs no current event
    enc = store._encode_key
    assert sent == [(t._topic, 0, enc("a"), store._encode_value({"n": 1})),
                    (t._topic, 1, enc("b"), store._encode_value({"x": [1.5, None]})),
                    (t._topic, 0, enc("gone"), None),
                    (t._topic, 1, enc("c"), store._encode_value("v"))]
    assert store._db_for_partition(0).get(enc("a")) == store._encode_value({"n": 1})
    assert store._db_for_partition(1).get(enc("a")) is None  # each key in its own partition's database
    assert store._db_for_partition(0).get(enc("gone")) is None
    for p, k, v in ((0, "a", {"n": 1}), (1, "b", {"x": [1.5, None]}), (1, "c", "v")):
        current(p)
        assert store[k] == t.get(k) == v
    _current_event.set(None)
    assert store["c"] == "v" and "gone" not in store  # without an event faust tries every partition
    for db in store._dbs.values():
        db.close()


def test_a_batch_of_writes_to_a_memory_store_goes_key_by_key():
    import faust

    app = faust.App("t-write-mem", broker="kafka://localhost:1", store="memory://")
    table = app.Table("keys", partitions=2)
    sent, current = [], _Current()
    t = DirectTable(app, table)
    t._topic = "t-write-mem-keys-changelog"
    t._outbox = SimpleNamespace(add=lambda *rec: sent.append(rec))
    t.write([("a", {"n": 1}, 0, False), ("b", 2, 1, False), ("a", None, 0, True)], current)
    assert current.calls == [0, 1, 0]
    assert [(p, v is None) for _, p, _, v in sent] == [(0, False), (1, False), (0, True)]
    assert table.data.get("b") == 2 and "a" not in table.data


def test_a_sweeps_deletes_land_in_the_swept_partitions_database_only(tmp_path):
    """The TTL sweep deletes through DirectTable.write on a real faust RocksDB store: one write batch
    on the partition's database, a tombstone per key in the changelog, and the same key in the other
    partition's database (a duplicate id sent under another key) left alone, where faust's own
    delete would have tried every partition's database."""
    import faust

    app = faust.App("t-del", broker="kafka://localhost:1", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("seen", partitions=2, schema=faust.Schema(key_serializer="json", value_serializer="json"))
    store = table.data
    sent = []
    t = DirectTable(app, table)
    t._topic = "t-del-seen-changelog"
    t._outbox = SimpleNamespace(add=lambda *rec: sent.append(rec))
    t.write([("e1", {"ts": 1.0}, 0, False), ("e2", {"ts": 2.0}, 0, False), ("e3", {"ts": 3.0}, 0, False),
             ("e1", {"ts": 9.0}, 1, False)], lambda p: None)
    sent.clear()
    t.write([(k, None, 0, True) for k in ("e1", "e2")], lambda p: None)
    enc = store._encode_key
    assert sent == [(t._topic, 0, enc("e1"), None), (t._topic, 0, enc("e2"), None)]
    assert t.get_in("e1", 0) is None and t.get_in("e2", 0) is None
    assert t.get_in("e3", 0) == {"ts": 3.0} and t.get_in("e1", 1) == {"ts": 9.0}
    for db in store._dbs.values():
        db.close()
