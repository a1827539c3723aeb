"""The learner service: wires the pure core (``models.LearnerCore``) to Kafka.

Inputs: the features topic, where every event is predicted, and with
``labels.mode: delayed`` the examples topic, where labels arrive. The two are
merged in one deterministic order, by ``(ts, labels first, partition, offset)``,
so a label revealed at time t is learned before an event at t is predicted,
as river's ``progressive_val_score(delay=…)`` does. A record is taken from the
merge only once every input partition has a record buffered or is caught up.

Outputs: predictions (one per event and model), decisions (promotions, drift,
pruning) on the events topic, and checkpoints (``driftline.checkpoint``) on
local disk and per-model snapshots on the compacted models topic.

Partitions are assigned explicitly, positions come from the checkpoint, and a
restart resumes right after the last checkpoint's cut: every event is learned
exactly once across crashes (predictions after the cut may be written twice;
they carry the same id and version).
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException
from kafka import TopicPartition

from contracts import serde
from contracts.settings import FETCH_MAX_WAIT_MS, KafkaSettings
from contracts.spec import Spec
from contracts.topics import Role, pipeline_topics
from driftline import _learner_metrics
from driftline._fetch import InputConsumer
from driftline._produce import OutputProducer
from driftline.checkpoint import Checkpointer
from models import LearnerCore, snapshot_key

__all__ = ["LearnerService", "LearnerStats"]

log = logging.getLogger("driftline.learner")

EVENT, LABEL = 1, 0  # at equal time a label goes first


@dataclass
class LearnerStats:
    consumed: int = 0
    predicted: int = 0
    learned: int = 0
    skipped: int = 0
    checkpoints: int = 0
    refused_checkpoints: int = 0
    restored_from: int | None = None
    started: float = field(default_factory=time.monotonic)


def _home() -> Path:
    return Path(os.environ.get("DRIFTLINE_HOME", Path.home() / ".driftline"))


class LearnerService:
    def __init__(self, spec: Spec, settings: KafkaSettings, namespace: str | None = None, *,
                 from_beginning: bool = False, from_timestamp: float | None = None,
                 only_models: list[str] | None = None, snapshot_dir: str | Path | None = None,
                 key: bytes | None = None, shard: tuple[int, int] = (0, 1)):
        self.spec = spec
        self.settings = settings
        self.topics = pipeline_topics(spec, namespace)
        self.delayed = spec.labels.mode == "delayed"
        self.stats = LearnerStats()
        self.stopping = threading.Event()
        self.key = key if key is not None else snapshot_key()
        ns_part = namespace or os.environ.get("DRIFTLINE_NAMESPACE") or "default"
        self.shard = shard
        directory = Path(snapshot_dir or spec.snapshots.directory or _home() / "snapshots" / ns_part / spec.name)
        if shard[1] > 1:
            directory = directory / f"shard-{shard[0]}of{shard[1]}"
        self.checkpointer = Checkpointer(directory, self.key, keep=spec.snapshots.keep)

        # The inputs come through librdkafka, which parses records in C (driftline/_fetch.py).
        self.consumer = InputConsumer(settings, max_records=5000, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                                      fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
        # Through a broker outage the producer holds and retries (up to 10 minutes) rather than fail:
        # send() waits while its queue is full, which is the back-pressure we want.
        self.producer = OutputProducer(settings, max_message_bytes=200 * 1024 * 1024)
        self.kinds: dict[str, int] = {self.topics[Role.FEATURES].name: EVENT}
        if self.delayed:
            self.kinds[self.topics[Role.EXAMPLES].name] = LABEL
        # A shard owns the partitions p with p % n == i of every input: features and examples are
        # both keyed by entity key, so a key's events and labels land in the same shard.
        i, n = shard
        self.partitions = [tp for t in self.kinds for tp in self.consumer.partitions_for(t)
                           if tp.partition % n == i]
        if not self.partitions:
            raise SystemExit(f"driftline: shard {i}/{n} owns no partition; the input has fewer than {n} partitions")
        self.consumer.assign(self.partitions)

        self.core: LearnerCore
        self.version = 0
        self._position(from_beginning, from_timestamp, only_models)
        self.buffers: dict[TopicPartition, deque] = {tp: deque() for tp in self.partitions}
        # The next offset to fetch per partition, kept here as records arrive: the consumer's
        # position() is the start offset only, and the checkpoint's cut and the drain test must not
        # ask the broker, which may be away.
        self.next_offsets: dict[TopicPartition, int] = {tp: self.consumer.position(tp) for tp in self.partitions}
        self._since_checkpoint = 0
        self._last_checkpoint_t = time.monotonic()
        self._pred_batch = spec.predictions_batch
        self._pred_buf: dict[str, list[dict]] = {}
        self._pred_partitions: int | None = None  # the predictions topic's, at the first prediction
        self._pred_topic = self.topics[Role.PREDICTIONS].name
        self._predicted = _learner_metrics.METRICS.predicted  # per event: its end-to-end latency
        # Seconds each checkpoint stopped the stream (flush, cut, fork), for the metrics to take.
        self.checkpoint_pauses: deque[float] = deque(maxlen=1000)

    # ---------------------------------------------------------------- start

    def _position(self, from_beginning: bool, from_timestamp: float | None, only) -> None:
        if from_beginning or from_timestamp is not None:
            self.core = LearnerCore(self.spec, only=only)
            if from_timestamp is not None:
                found = self.consumer.offsets_for_times({tp: int(from_timestamp * 1000) for tp in self.partitions})
                ends = self.consumer.end_offsets(self.partitions)
                for tp in self.partitions:
                    self.consumer.seek(tp, found[tp] if found.get(tp) is not None else ends[tp])
            else:
                self.consumer.seek_to_beginning(*self.partitions)
            self._checkpoint_version_floor()
            return
        snap, refused = self.checkpointer.latest()
        self.stats.refused_checkpoints += len(refused)
        for r in refused:
            log.warning("refused checkpoint %s", r)
        if snap is None:
            self.core = LearnerCore(self.spec, only=only)
            self.consumer.seek_to_beginning(*self.partitions)
            return
        if snap.meta.get("spec") != self.spec.fingerprint():
            raise SystemExit(
                f"driftline: the checkpoint in {self.checkpointer.directory} was taken with another version "
                "of this spec; start over with `driftline learn SPEC --from-beginning` (it rebuilds the models "
                "from the retained log), or point snapshots.directory elsewhere.")
        self.core = snap.state["core"]
        self.version = snap.meta["version"]
        self.stats.restored_from = self.version
        self.stats.learned = snap.meta["counts"]["learned"]
        self.stats.predicted = snap.meta["counts"]["predicted"]
        offsets = snap.meta["offsets"]
        for tp in self.partitions:
            off = offsets.get(f"{tp.topic}:{tp.partition}")
            if off is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, off)
        log.info("restored checkpoint %s (%s events learned)", self.version, self.stats.learned)

    def _checkpoint_version_floor(self) -> None:
        snap, _ = self.checkpointer.latest()
        if snap is not None:
            self.version = snap.meta["version"]

    # ---------------------------------------------------------------- the step

    def model_key(self, name: str) -> str:
        """The models-topic key: the model name, with ``#i/n`` when the learner is sharded."""
        i, n = self.shard
        return name if n == 1 else f"{name}#{i}of{n}"

    def _emit(self, topic: Role, key: str, value: dict, partition: int | None = None) -> None:
        self.producer.send(self.topics[topic].name, key.encode(), serde.dumps(value), partition)

    def _handle(self, kind: int, rec: dict, partition: int) -> None:
        if kind == EVENT:
            preds, decisions = self.core.on_event(rec)
            if self._pred_batch > 1:
                for p in preds:
                    buf = self._pred_buf.setdefault(p["model"], [])
                    buf.append(p)
                    if len(buf) >= self._pred_batch:
                        self._flush_predictions(p["model"])
            elif preds:
                key, n = rec["id"].encode(), self._pred_partitions
                if n is None:
                    n = self._pred_partitions = self.producer.partition_count(self._pred_topic)
                send, topic, dumps = self.producer.send, self._pred_topic, serde.dumps
                # Each keyed by the event's id, to its event's partition (the features record's; modulo
                # the predictions topic's partitions, read once): naming it skips the key's hash.
                for p in preds:
                    send(topic, key, dumps(p), partition % n)
            self._predicted(rec.get("ts"))
            self.stats.predicted += 1
            if not self.delayed:
                self.stats.learned += 1
        else:
            decisions = self.core.on_label(rec["id"], rec.get("y"), rec.get("ts"))
            self.stats.learned += 1
        for d in decisions:
            self._emit(Role.EVENTS, d.get("model") or d.get("to") or "-", {"v": 1, **d})
            if d["type"] in ("promotion", "drift"):
                log.info("%s", d)

    def _flush_predictions(self, model: str | None = None) -> None:
        """Send buffered predictions (``predictions_batch > 1``): one record per model and batch."""
        for name in [model] if model else list(self._pred_buf):
            buf = self._pred_buf.pop(name, None)
            if buf:
                self._emit(Role.PREDICTIONS, name, {"v": 1, "batch": buf})

    def _ready(self, targets) -> bool:
        """May the merge take its head? Only when every partition has a head or is caught up."""
        for tp, buf in self.buffers.items():
            if buf:
                continue
            pos = self.next_offsets[tp]
            end = targets[tp] if targets is not None else self.consumer.highwater(tp)
            if end is None or pos < end:
                return False
        return True

    def _drain_buffers(self, targets) -> None:
        if len(self.buffers) == 1:
            (buf,) = self.buffers.values()
            while buf:
                self._take(buf.popleft())
            return
        heap = []
        for tp, buf in self.buffers.items():
            if buf:
                r = buf[0]
                heapq.heappush(heap, (r[0], r[1], tp.partition, r[2], tp))
        while heap and self._ready(targets):
            _, _, _, _, tp = heapq.heappop(heap)
            buf = self.buffers[tp]
            self._take(buf.popleft())
            if buf:
                r = buf[0]
                heapq.heappush(heap, (r[0], r[1], tp.partition, r[2], tp))

    def _take(self, item) -> None:
        _, kind, _offset, rec, partition = item
        try:
            self._handle(kind, rec, partition)
        except (KeyError, TypeError, ValueError) as exc:
            self.stats.skipped += 1
            log.warning("skipping malformed record: %s", exc)
        self._since_checkpoint += 1

    def _fill(self, batches) -> None:
        loads, stats = serde.loads, self.stats
        for tp, records in batches.items():
            if not records:
                continue
            kind, partition, append = self.kinds[tp.topic], tp.partition, self.buffers[tp].append
            self.next_offsets[tp] = records[-1].offset() + 1
            stats.consumed += len(records)
            for r in records:
                try:
                    rec = loads(r.value())
                    ts = float(rec.get("ts") or 0.0)
                except (serde.DecodeError, TypeError, ValueError):
                    stats.skipped += 1
                    continue
                append((ts, kind, r.offset(), rec, partition))

    # ---------------------------------------------------------------- checkpoints

    def checkpoint(self, block: bool = False) -> None:
        """Take a checkpoint at the current cut (see driftline.checkpoint for the steps)."""
        started = time.perf_counter()
        self._finish_checkpoint(block=True)
        self._flush_predictions()
        self._flush_outputs()                                                   # step 1
        if self.producer.failures:
            # Never move the cut past outputs the broker did not take: stop, and a restart redoes them.
            raise RuntimeError(f"{len(self.producer.failures)} output record(s) were not acknowledged "
                               f"({self.producer.failures[0].str()}); stopping before the checkpoint so that a "
                               "restart resumes from the last good one")
        offsets = self._cut()                                                   # step 2
        self.version += 1
        now = time.time()
        counts = {"learned": self.stats.learned, "predicted": self.stats.predicted,
                  "labeled": self.core.n_labeled, "events": self.core.n_events}
        meta = {"kind": "checkpoint", "version": self.version, "spec": self.spec.fingerprint(), "created_at": now,
                "offsets": offsets, "counts": counts, "models": sorted(self.core.runners),
                "champion": self.core.board.champion}
        model_metas = {}
        for name, r in self.core.runners.items():
            if r.n_learned <= self.checkpointer.published.get(name, -1):
                continue
            model_metas[name] = {
                "kind": "model", "model": name, "version": r.n_learned, "spec": self.spec.fingerprint(),
                "created_at": now, "offsets": offsets, "counts": {"learned": r.n_learned,
                                                                 "predicted": r.n_predicted},
                "metrics": {"cumulative": r.metrics(), "rolling": r.metrics(rolling=True)},
                "champion": name == self.core.board.champion, "params": repr(r.model),
                "checkpoint": self.version,
            }
        self.checkpointer.start(self.version, meta, self.core, model_metas)    # steps 3-4
        self._since_checkpoint = 0
        self._last_checkpoint_t = time.monotonic()
        self.stats.checkpoints += 1
        self.checkpoint_pauses.append(time.perf_counter() - started)
        if block:
            self._finish_checkpoint(block=True)

    def _cut(self) -> dict[str, int]:
        """Per input partition, the offset of the first record the models have not taken: the head
        of its merge buffer, or the next to fetch. A restore seeks there and fetches the buffered
        records again, so a checkpoint may be taken between any two records, even in a backlog,
        when the merge always holds some (it waits for every partition to have a head)."""
        return {f"{tp.topic}:{tp.partition}": buf[0][2] if (buf := self.buffers[tp]) else self.next_offsets[tp]
                for tp in self.partitions}

    def _finish_checkpoint(self, block: bool) -> None:
        done = self.checkpointer.poll(block=block)
        if done is None:
            return
        models_topic = self.topics[Role.MODELS].name
        for name, version in done.models.items():                              # step 5
            self.producer.send(models_topic, self.model_key(name).encode(),
                               self.checkpointer.model_blob(name, version))
            self.checkpointer.published[name] = version
        if block:
            self._flush_outputs()

    def _flush_outputs(self) -> None:
        """Wait until the broker has every output, saying so while it is unreachable."""
        waited = 0.0
        while self.producer.flush(5.0):
            waited += 5.0
            log.warning("waiting %.0fs for Kafka to acknowledge the learner's outputs (broker unreachable?)",
                        waited)
        if waited:
            log.warning("Kafka is back: outputs acknowledged after %.0fs", waited)

    def _maybe_checkpoint(self) -> None:
        snap = self.spec.snapshots
        due = (self._since_checkpoint >= snap.every_events
               or (self._since_checkpoint and time.monotonic() - self._last_checkpoint_t >= snap.every_seconds))
        try:
            if due and self.checkpointer.pending is None:
                self.checkpoint()
            else:
                self._finish_checkpoint(block=False)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            # The broker is away: keep learning, try again after the snapshot interval.
            log.warning("checkpoint postponed, Kafka is unreachable (%s); retrying in %.0fs", exc, snap.every_seconds)
            self._last_checkpoint_t = time.monotonic()

    # ---------------------------------------------------------------- the loop

    def run(self, until_drained: bool = False, on_progress=None, progress_every_s: float = 1.0) -> None:
        """Learn until :meth:`stop` (or, with ``until_drained``, until the input's end at start).

        A final checkpoint is taken on the way out of a clean stop, so it loses nothing. An exception
        (a second Ctrl-C, say) may have cut a record's handling short, so it takes none: a restart
        resumes from the last checkpoint, as after a crash.
        """
        targets = self.consumer.end_offsets(self.partitions) if until_drained else None
        _learner_metrics.serve()
        last = time.monotonic()
        clean = False
        try:
            while not self.stopping.is_set():
                if targets is not None and all(self.next_offsets[tp] >= off and not self.buffers[tp]
                                               for tp, off in targets.items()):
                    break
                self._fill(self.consumer.poll(timeout_ms=100))
                self._drain_buffers(targets)
                self._flush_predictions()
                self._maybe_checkpoint()
                self.producer.poll()
                _learner_metrics.METRICS.observe(self)
                if on_progress and time.monotonic() - last >= progress_every_s:
                    last = time.monotonic()
                    on_progress(self)
            clean = True
        finally:
            if clean:
                self.checkpoint(block=True)
            self._flush_outputs()

    @property
    def runners(self):
        return self.core.runners

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        try:
            self._finish_checkpoint(block=True)
        finally:
            self.producer.close()
            self.consumer.close()

    def summary(self) -> dict:
        s = self.core.summary()
        return {**s, "learned": self.stats.learned, "predicted": self.stats.predicted, "skipped": self.stats.skipped,
                "checkpoints": self.stats.checkpoints, "restored_from": self.stats.restored_from,
                "refused_checkpoints": self.stats.refused_checkpoints}
