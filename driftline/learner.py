"""The learner service: wires the pure prequential core (``models``) to Kafka.

It reads feature vectors (inline labels) from the features topic, and for
every event and every model: predicts, writes the prediction to the
predictions topic, scores it against the label, and learns. Partitions are
assigned explicitly and read in offset order, so the model sees the stream
exactly in the order it was produced.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer

from contracts import serde
from contracts.settings import KafkaSettings
from contracts.spec import Spec
from contracts.topics import Role, pipeline_topics
from driftline.kafkautil import wait_for_partitions
from models import ModelRunner, build_estimator

__all__ = ["LearnerService", "LearnerStats"]

log = logging.getLogger("driftline.learner")


@dataclass
class LearnerStats:
    consumed: int = 0
    predicted: int = 0
    learned: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)


def _proba_pairs(proba: dict | None):
    return None if proba is None else [[k, v] for k, v in proba.items()]


class LearnerService:
    def __init__(self, spec: Spec, settings: KafkaSettings, namespace: str | None = None):
        self.spec = spec
        self.settings = settings
        self.topics = pipeline_topics(spec, namespace)
        self.input_topic = self.topics[Role.FEATURES].name
        self.predictions_topic = self.topics[Role.PREDICTIONS].name
        self.runners = {name: ModelRunner(name, build_estimator(m), spec.metrics, spec.metrics_window)
                        for name, m in spec.models.items()}
        self.stats = LearnerStats()
        self.stopping = threading.Event()
        self.consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False, group_id=None,
                                      max_poll_records=5000, fetch_max_bytes=64 * 1024 * 1024,
                                      max_partition_fetch_bytes=16 * 1024 * 1024)
        self.producer = KafkaProducer(**settings.kafka_python(), acks="all", linger_ms=5,
                                      batch_size=512 * 1024)
        self.partitions = wait_for_partitions(self.consumer, self.input_topic)
        self.consumer.assign(self.partitions)
        self.consumer.seek_to_beginning(*self.partitions)

    # ---------------------------------------------------------------- the step

    def handle(self, value: bytes) -> None:
        """Predict, emit, score and learn one event, for every model."""
        rec = serde.loads(value)
        x = rec["x"]
        y = rec.get("y")
        event_id = rec["id"]
        self.stats.consumed += 1
        send = self.producer.send
        for name, runner in self.runners.items():
            p = runner.predict(x)
            send(self.predictions_topic, key=event_id.encode(), value=serde.dumps({
                "v": 1, "id": event_id, "model": name, "version": runner.n_learned, "y_pred": p.y_pred, "proba": _proba_pairs(p.proba),
                "score": p.score, "latency_s": p.latency_s, "ts": rec.get("ts"),
            }))
            runner.learn(x, y, p)
        self.stats.predicted += 1
        self.stats.learned += 1

    # ---------------------------------------------------------------- the loop

    def run(self, until_drained: bool = False, on_progress=None, progress_every_s: float = 1.0) -> None:
        """Learn until :meth:`stop` (or, with ``until_drained``, until the input's end at start)."""
        targets = self.consumer.end_offsets(self.partitions) if until_drained else None
        last = time.monotonic()
        while not self.stopping.is_set():
            if targets is not None and all(self.consumer.position(tp) >= off for tp, off in targets.items()):
                break
            batches = self.consumer.poll(timeout_ms=200)
            for tp, records in batches.items():
                for r in records:
                    try:
                        self.handle(r.value)
                    except (KeyError, TypeError, ValueError) as exc:
                        # The processors only emit valid records; anything else is counted, not fatal.
                        self.stats.skipped += 1
                        log.warning("skipping malformed record at %s@%s: %s", tp, r.offset, exc)
            if on_progress and time.monotonic() - last >= progress_every_s:
                last = time.monotonic()
                on_progress(self)
        self.producer.flush()

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()

    def summary(self) -> dict:
        return {
            "models": {name: r.metrics() for name, r in self.runners.items()},
            "rolling": {name: r.metrics(rolling=True) for name, r in self.runners.items()},
            "learned": self.stats.learned,
            "predicted": self.stats.predicted,
            "skipped": self.stats.skipped,
        }
