"""The learner's Prometheus metrics: every name it exports, in one place.

The learner makes two calls: :meth:`LearnerMetrics.predicted` for each event it
predicts (the end-to-end latency needs that event's time), and
:meth:`LearnerMetrics.observe` once per loop turn, which reads the rest from the
service (its counts, its ``core``: models, champion, drift detectors, pending
labels; its consumer's positions; its checkpointer). Labels are bounded: a
model name (the spec's models, search candidates and the live challengers;
series of a model that is gone are removed), a metric name, a topic and a
partition; never an event id or a key.

===========================================  =========  ============================================
name                                         type       labels
===========================================  =========  ============================================
``driftline_stage_events_total``             counter    stage="learn", outcome (predicted, learned,
                                                        skipped)
``driftline_predictions_total``              counter    model
``driftline_end_to_end_latency_seconds``     histogram  (event time → prediction sent)
``driftline_batch_duration_seconds``         histogram  stage="learn" (one loop turn)
``driftline_consumer_lag_records``           gauge      topic, partition
``driftline_model_metric``                   gauge      model, metric, window (cumulative, rolling),
                                                        goal (max, min: which way is better)
``driftline_model_version``                  gauge      model (events it has learned)
``driftline_model_champion``                 gauge      model (1 for the champion, else 0)
``driftline_drift_events_total``             counter    model
``driftline_snapshot_age_seconds``           gauge      model (since its last published snapshot,
                                                        or since the learner started)
``driftline_snapshot_size_bytes``            gauge      model
``driftline_snapshot_duration_seconds``      histogram  (a whole checkpoint, fork to publish)
``driftline_checkpoint_pause_seconds``       histogram  (the stream's stop for a checkpoint: flushing
                                                        the outputs, the cut, the fork)
``driftline_snapshots_total``                counter    (checkpoints finished)
``driftline_state_store_entries``            gauge      store (pending_labels, merge_buffer, models)
===========================================  =========  ============================================

The exporter's port comes from ``DRIFTLINE_LEARNER_METRICS_PORT``, else
``DRIFTLINE_METRICS_PORT``, else 9102; ``0`` turns it off.

>>> m = LearnerMetrics(new_registry())
>>> m.predicted(ts=100.0, now=100.25)
>>> m.registry.get_sample_value("driftline_end_to_end_latency_seconds_count")
1.0
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from driftline.checkpoint import model_path
from processors._metrics import LATENCY_BUCKETS, EventHistogram, new_registry, serve as _serve

__all__ = ["LearnerMetrics", "DEFAULT_PORT", "LOWER_IS_BETTER", "serve", "new_registry"]

DEFAULT_PORT = 9102
LOWER_IS_BETTER = {"MAE", "MSE", "RMSE", "RMSLE", "LogLoss", "CrossEntropy", "SMAPE", "MAPE"}
SNAPSHOT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class LearnerMetrics:
    """The learner's metrics, registered in ``registry``; the service's state is read every ``every_s``."""

    def __init__(self, registry: CollectorRegistry | None = None, every_s: float = 0.25):
        self.registry = registry = registry if registry is not None else new_registry()
        self.events = Counter("driftline_stage_events", "Events handled by a stage, by outcome.",
                              ["stage", "outcome"], registry=registry)
        self.predictions = Counter("driftline_predictions", "Predictions sent, by model.", ["model"],
                                   registry=registry)
        self.e2e = EventHistogram("driftline_end_to_end_latency_seconds",
                                  "Seconds from an event's time to its predictions being sent.",
                                  LATENCY_BUCKETS, registry)
        self.batch = Histogram("driftline_batch_duration_seconds", "Seconds a stage spent on one batch.",
                               ["stage"], buckets=LATENCY_BUCKETS, registry=registry)
        self.lag = Gauge("driftline_consumer_lag_records",
                         "Records not yet learned: the partition's high watermark minus the consumer position, "
                         "plus records buffered for the merge.", ["topic", "partition"], registry=registry)
        self.metric = Gauge("driftline_model_metric", "A model's prequential metric.",
                            ["model", "metric", "window", "goal"], registry=registry)
        self.version = Gauge("driftline_model_version", "Events a model has learned (its version).", ["model"],
                             registry=registry)
        self.champion = Gauge("driftline_model_champion", "1 for the champion model, 0 for the others.",
                              ["model"], registry=registry)
        self.drift = Counter("driftline_drift_events", "Drifts detected in a model's error stream.", ["model"],
                             registry=registry)
        self.snap_age = Gauge("driftline_snapshot_age_seconds",
                              "Seconds since the model's last published snapshot (since start when none yet).",
                              ["model"], registry=registry)
        self.snap_size = Gauge("driftline_snapshot_size_bytes", "Size of the model's last snapshot.", ["model"],
                               registry=registry)
        self.snap_duration = Histogram("driftline_snapshot_duration_seconds",
                                       "Seconds from the start of a checkpoint to its snapshots being written.",
                                       buckets=SNAPSHOT_BUCKETS, registry=registry)
        self.snapshots = Counter("driftline_snapshots", "Checkpoints finished.", registry=registry)
        self.pause = Histogram("driftline_checkpoint_pause_seconds",
                               "Seconds the learner stopped learning to take a checkpoint: flushing its outputs, "
                               "recording the cut, forking the writer.", buckets=LATENCY_BUCKETS, registry=registry)
        self.store = Gauge("driftline_state_store_entries", "Entries held in a state store.", ["store"],
                           registry=registry)
        for outcome in ("predicted", "learned", "skipped"):
            self.events.labels("learn", outcome)
        self.started = time.time()
        self._counts = {"predicted": 0, "learned": 0, "skipped": 0}
        self._n_predicted: dict[str, int] = {}
        self._alarms: dict[int, int] = {}       # id(detector) → alarms already counted
        self._models: set[str] = set()
        self._published: dict[str, tuple[int, float]] = {}
        self._last_duration: float | None = None
        self._first = True
        self._last_turn = time.perf_counter()
        self._last_look = float("-inf")
        self.every_s = every_s

    # ---------------------------------------------------------------- per event

    def predicted(self, ts: float | None, now: float | None = None) -> None:
        """An event was predicted: observe its end-to-end latency (skipped without an event time)."""
        if ts:
            self.e2e.observe(max(0.0, (time.time() if now is None else now) - float(ts)))

    # ---------------------------------------------------------------- per loop turn

    def observe(self, svc) -> None:
        """Read the learner service's state into the metrics (cheap: no network call)."""
        turn = time.perf_counter()
        self.batch.labels("learn").observe(turn - self._last_turn)
        self._last_turn = turn
        if turn - self._last_look < self.every_s:
            return
        self._last_look = turn
        stats = svc.stats
        for outcome in self._counts:
            now_n = getattr(stats, outcome)
            delta = now_n - self._counts[outcome]
            if delta > 0:
                self.events.labels("learn", outcome).inc(delta)
            self._counts[outcome] = now_n
        self.observe_core(svc.core)
        self._observe_lag(svc)
        self._observe_snapshots(svc.checkpointer)
        self.store.labels("merge_buffer").set(sum(len(b) for b in svc.buffers.values()))
        pauses = svc.checkpoint_pauses
        while pauses:
            self.pause.observe(pauses.popleft())
        self._first = False

    def observe_core(self, core) -> None:
        """Models, champion, drift and pending labels from a :class:`models.LearnerCore`.

        >>> from contracts.spec import load_spec
        >>> from models import LearnerCore
        >>> core = LearnerCore(load_spec("examples/phishing.yaml"))
        >>> m = LearnerMetrics(new_registry())
        >>> m.observe_core(core)
        >>> m.registry.get_sample_value("driftline_drift_events_total", {"model": "lr"})
        0.0
        >>> core.drift["lr"].alarms.append(5)
        >>> m.observe_core(core)
        >>> m.registry.get_sample_value("driftline_drift_events_total", {"model": "lr"})
        1.0
        """
        champion = core.board.champion
        alive = set(core.runners)
        for name, runner in core.runners.items():
            if name not in self._models:
                self.drift.labels(name)  # start at 0, so that increase() sees the first drift
                self.predictions.labels(name)
            for window, values in (("cumulative", runner.metrics()), ("rolling", runner.metrics(rolling=True))):
                for metric, value in values.items():
                    if value is not None:
                        goal = "min" if metric in LOWER_IS_BETTER else "max"
                        self.metric.labels(name, metric, window, goal).set(value)
            self.version.labels(name).set(runner.n_learned)
            self.champion.labels(name).set(1 if name == champion else 0)
            n_pred = runner.n_predicted
            delta = n_pred - self._n_predicted.get(name, n_pred if self._first else 0)
            if delta > 0:
                self.predictions.labels(name).inc(delta)
            self._n_predicted[name] = n_pred
            detector = core.drift.get(name)
            if detector is not None:
                seen = self._alarms.get(id(detector))
                n_alarms = len(detector.alarms)
                if seen is None:
                    # Detectors there at the first look (restored from a checkpoint) may hold older alarms.
                    seen = n_alarms if self._first else 0
                if n_alarms > seen:
                    self.drift.labels(name).inc(n_alarms - seen)
                self._alarms[id(detector)] = n_alarms
        for gone in self._models - alive:
            self._forget(gone)
        self._models = alive
        self.store.labels("pending_labels").set(len(core.pending))
        self.store.labels("models").set(len(alive))

    def _forget(self, name: str) -> None:
        for gauge in (self.version, self.champion, self.snap_age, self.snap_size, self.drift, self.predictions):
            try:
                gauge.remove(name)
            except KeyError:
                pass
        for labels in list(self.metric._metrics):  # noqa: SLF001 - prometheus-client keeps children here
            if labels[0] == name:
                self.metric.remove(*labels)
        self._n_predicted.pop(name, None)
        self._published.pop(name, None)

    def _observe_lag(self, svc) -> None:
        consumer = svc.consumer
        for tp in svc.partitions:
            hw = consumer.highwater(tp)  # known from the last fetch; no request
            if hw is None:
                continue
            try:
                pos = consumer.position(tp, timeout_ms=0)
            except Exception:  # noqa: BLE001 - no position yet
                continue
            if pos is None:
                continue
            buffered = len(svc.buffers.get(tp, ()))
            self.lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - pos) + buffered)

    def _observe_snapshots(self, checkpointer) -> None:
        now = time.time()
        for name in self._models:
            version = checkpointer.published.get(name)
            known = self._published.get(name)
            if version is not None and (known is None or known[0] != version):
                self._published[name] = (version, now)
                try:
                    self.snap_size.labels(name).set(model_path(checkpointer.directory, name, version).stat().st_size)
                except OSError:
                    pass
            since = self._published[name][1] if name in self._published else self.started
            self.snap_age.labels(name).set(now - since)
        duration = checkpointer.last_duration_s
        if duration is not None and duration != self._last_duration:
            self.snap_duration.observe(duration)
            self.snapshots.inc()
            self._last_duration = duration


def serve(port: int | None = None) -> int | None:
    """Start the learner's ``/metrics`` endpoint (see :func:`processors._metrics.serve`)."""
    return _serve("learner", METRICS.registry, DEFAULT_PORT, port)


METRICS = LearnerMetrics()
