"""Test and benchmark doubles for the processors: a spec, a mixed stream, workers, topic readers.

The stream generator marks what each record should become, so a test can
check the accounting record by record:

>>> recs = list(mixed_stream(6, keys=2, poison_every=3, seed=1))
>>> [r.expect for r in recs]
['clean', 'clean', 'dead', 'clean', 'clean', 'dead']

Every kind of malformed record in :data:`POISON` comes in turn, whatever ``poison_every`` is:

>>> dead = [r for r in mixed_stream(1000, poison_every=100) if r.expect == "dead"]
>>> [POISON.index(r.value.replace(r.id.encode(), b"%s") if r.id else r.value) for r in dead]
[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contracts import serde
from contracts.settings import KafkaSettings

__all__ = ["SPEC", "spec_text", "Record", "mixed_stream", "produce", "read_topic", "Worker", "wait_until"]

SPEC = """\
name: {name}
task: regression
schema:
  fields:
    id: str
    k: str
    t: float
    v: {{type: float, min: -1000, max: 1000}}
    c: {{type: str, categories: [a, b, c]}}
    y: {{type: float, required: false}}
  id: id
  key: k
  time: t
  label: y
  dedup_seconds: 100000
features:
  stateless:
    - {{field: c, op: onehot, categories: [a, b, c]}}
    - {{field: v, op: square}}
  stateful:
    - {{agg: count, window: 20}}
    - {{agg: mean, field: v, window: 50}}
    - {{agg: var, field: v, window: 50, kind: tumbling}}
    - {{agg: sum, field: v, window: 30, kind: tumbling}}
    - {{agg: min, field: v, window: 40}}
    - {{agg: max, field: v, window: 40}}
    - {{agg: since_last}}
    - {{agg: last, field: v}}
    - {{agg: ewm, field: v, alpha: 0.2}}
  allowed_lateness_seconds: 15
labels: {{mode: {labels}, ttl_seconds: {ttl}}}
topics: {{partitions: {partitions}}}
models: {{lr: {{estimator: linear_model.LinearRegression}}}}
"""


def spec_text(name: str = "proc", partitions: int = 2, labels: str = "inline", ttl: float = 3000.0) -> str:
    return SPEC.format(name=name, partitions=partitions, labels=labels, ttl=ttl)


@dataclass
class Record:
    id: str | None
    key: bytes | None
    value: bytes
    expect: str  # "clean" or "dead"
    ts: float = 0.0


POISON = [
    b"{not json",
    b"\x00\xff\xfe garbage",
    b"[1, 2, 3]",
    b'{"v": 1, "id": "%s", "ts": 1.0}',                                      # no data
    b'{"v": 9, "id": "%s", "ts": 1.0, "data": {}}',                          # unknown schema version
    b'{"v": 1, "id": "%s", "ts": 1.0, "data": {"id": "%s", "k": "x", "t": 1, "v": "NaN", "c": "a"}}',
    b'{"v": 1, "id": "%s", "ts": 1.0, "data": {"id": "%s", "k": "x", "t": 1, "v": 5000, "c": "a"}}',
    b'{"v": 1, "id": "%s", "ts": 1.0, "data": {"id": "%s", "k": "x", "t": 1, "v": 1, "c": "zzz"}}',
    b'{"v": 1, "id": "%s", "ts": 1.0, "data": {"id": "%s", "k": "x", "t": 1, "c": "a"}}',   # missing v
    b'{"v": 1, "id": "%s", "ts": 1.0, "data": {"id": "%s", "k": "x", "t": 1, "v": 1, "c": "a", "zz": 1}}',
]


DUP_WINDOW = 20_000  # events: SPEC's dedup_seconds is 100,000 and events are ~1 s apart


def mixed_stream(n: int, keys: int = 50, poison_every: int = 0, seed: int = 0, disorder: float = 10.0,
                 start: int = 0, dup_every: int = 0):
    """``n`` records: valid events over ``keys`` keys with event times jittered by up to ``disorder``
    seconds (out of order), every ``poison_every``-th a malformed one, every ``dup_every``-th a
    re-send of one of the last ``DUP_WINDOW`` valid events (a duplicate id, well within the spec's
    ``dedup_seconds``: a re-send from further back is a new event by design, not a duplicate)."""
    rng = random.Random(seed)
    sent: list[Record] = []
    poisoned = 0
    for i in range(start, start + n):
        eid = f"e{i}"
        if poison_every and (i + 1) % poison_every == 0:
            # The kinds in turn. Picked by ``i`` (``POISON[i % 10]``), a ``poison_every`` of 10, 40, 50 or
            # 100 gave one kind only.
            tpl = POISON[poisoned % len(POISON)]
            poisoned += 1
            value = tpl.replace(b"%s", eid.encode()) if b"%s" in tpl else tpl
            yield Record(eid if b"%s" in tpl else None, b"x", value, "dead")
            continue
        if dup_every and sent and (i + 1) % dup_every == 0:
            old = sent[rng.randrange(max(0, len(sent) - DUP_WINDOW), len(sent))]
            yield Record(old.id, old.key, old.value, "dead", old.ts)
            continue
        k = f"k{rng.randrange(keys)}"
        t = float(i) + rng.uniform(-disorder, disorder) if disorder else float(i)
        data = {"id": eid, "k": k, "t": t, "v": round(rng.gauss(0, 10), 6), "c": rng.choice("abc"),
                "y": round(rng.random(), 6)}
        rec = Record(eid, k.encode(), serde.dumps({"v": 1, "id": eid, "ts": t, "key": k, "data": data}), "clean", t)
        sent.append(rec)
        yield rec


def produce(settings: KafkaSettings, topic: str, records, partitions: int | None = None) -> int:
    """Send raw values (with keys); return how many the broker acknowledged. Keyless ones go round-robin."""
    producer = KafkaProducer(**settings.kafka_python(), acks="all", linger_ms=5, batch_size=256 * 1024)
    n = 0
    try:
        for i, r in enumerate(records):
            part = None if r.key is not None or not partitions else i % partitions
            producer.send(topic, value=r.value, key=r.key, partition=part)
            n += 1
        producer.flush()
    finally:
        producer.close()
    return n


def read_topic(settings: KafkaSettings, topic: str, timeout_s: float = 60.0) -> list:
    """Every record of ``topic`` up to its end as of now (all partitions)."""
    consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False, group_id=None,
                             fetch_max_bytes=64 * 1024 * 1024)
    try:
        deadline = time.monotonic() + timeout_s
        while not (parts := consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                return []
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for recs in consumer.poll(timeout_ms=500, max_records=50_000).values():
                out.extend(recs)
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took over {timeout_s}s")
        return out
    finally:
        consumer.close()


def end_total(settings: KafkaSettings, topic: str, retry_s: float = 30.0) -> int:
    """The sum of ``topic``'s end offsets; retried while a broker of the cluster is unreachable
    (a metadata request sent to a node that just died fails instead of moving to another)."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + retry_s
    while True:
        try:
            consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False, group_id=None)
            try:
                parts = consumer.partitions_for_topic(topic) or set()
                tps = [TopicPartition(topic, p) for p in parts]
                return sum(consumer.end_offsets(tps).values()) if tps else 0
            finally:
                consumer.close()
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_until(predicate, timeout_s: float, every: float = 0.5, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s}s")
        time.sleep(every)


class Worker:
    """A ``driftline process`` child process; ``kill()`` is a kill -9 (the crash marker).

    ``program`` replaces ``-m driftline process`` (a test's wrapper script taking the same
    arguments); ``extra_env`` is added to its environment."""

    def __init__(self, spec_path: str | Path, bootstrap: str, namespace: str, home: str | Path,
                 store: str = "rocksdb", stats: str | Path | None = None, log: str | Path | None = None,
                 program: list[str] | None = None, extra_env: dict[str, str] | None = None):
        env = dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=bootstrap, DRIFTLINE_NAMESPACE=namespace,
                   DRIFTLINE_HOME=str(home), DRIFTLINE_PROCESSOR_METRICS_PORT="0", DRIFTLINE_METRICS_PORT="0",
                   **(extra_env or {}))
        if stats:
            env["DRIFTLINE_PROCESSOR_STATS"] = str(stats)
        self._log = open(log, "ab") if log else subprocess.DEVNULL
        program = program or ["-m", "driftline", "process"]
        self.proc = subprocess.Popen([sys.executable, *program, str(spec_path), "--store", store], env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
