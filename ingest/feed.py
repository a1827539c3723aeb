"""The ingest run: read a source, check each record, send it, and account for every input.

Every input ends in exactly one of: **sent** (handed to the producer, then
acknowledged or failed) or **rejected** (bad input, by reason, under the policy
``on_error``: ``skip`` counts it, ``dlq`` also sends its bytes and reason to the
dead-letter topic, ``fail`` stops the run). The run is ok only when every record
sent was acknowledged and the policy was not tripped.

The steps for one record, in order:

1. a bad input (unparseable line, wrong column count, non-UTF-8) is rejected;
2. the record is checked against the spec's schema (the clean stage's rules);
3. with ``labels.mode: delayed`` the label leaves the record, to be released later;
4. pacing (``rate`` / ``speedup``) waits until the record is due;
5. the envelope is sent to the raw topic, then the labels now due to the labels topic.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import orjson

from contracts import serde
from contracts.spec import SourceSpec, Spec
from contracts.topics import Headers, Role
from ingest import _metrics
from ingest._files import Bad
from ingest._labels import DelayedLabels
from ingest._pace import Pacer
from ingest._validate import Validator
from ingest.producer import EventProducer, envelope, event_time
from ingest.sources import read_source, source_id

__all__ = ["Feed", "Summary", "ON_ERROR"]

ON_ERROR = ("skip", "dlq", "fail")
_SENT, _REJECTED, _STOP = "sent", "rejected", "stop"
KEEP_REJECTIONS = 1000  # rejections listed one by one in the summary (all are counted)
LOG_REJECTIONS = 100  # rejections logged one by one


@dataclass
class Summary:
    sent: int = 0
    acknowledged: int = 0
    rejected: int = 0
    failed: int = 0
    dead_lettered: int = 0
    labels_sent: int = 0
    labels_acknowledged: int = 0
    rejected_by_reason: dict = field(default_factory=dict)
    rejections: list = field(default_factory=list)
    stopped: str | None = None
    interrupted: bool = False
    seconds: float = 0.0
    topic: str = ""

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.sent == self.acknowledged and self.stopped is None

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def line(self) -> str:
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        return (f"sent={self.sent} acknowledged={self.acknowledged} rejected={self.rejected} "
                f"failed={self.failed} ({self.topic}, {self.seconds:.1f}s, {rate:,.0f} events/s)")


def _raw(record: dict) -> bytes:
    """The bytes of a parsed record that failed a check, for the dead-letter topic."""
    try:
        return serde.dumps(record)
    except (TypeError, orjson.JSONEncodeError):
        return repr(record).encode()


class Feed:
    """One ingest run of ``source`` into ``producer``'s pipeline topics."""

    def __init__(self, spec: Spec, producer: EventProducer, source: SourceSpec, *, on_error: str = "dlq",
                 rate: float | None = None, speedup: float | None = None, limit: int | None = None,
                 loop: bool = False, labels_file: bool = False, validate: bool = True, progress=None,
                 stop: threading.Event | None = None, log=None):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}")
        if speedup and not spec.schema.time:
            raise ValueError("--speedup replays at the event-time pace: the spec needs schema.time")
        self.spec, self.producer, self.source = spec, producer, source
        self.on_error, self.limit, self.loop, self.labels_file = on_error, limit, loop, labels_file
        self.pacer = Pacer(rate, speedup)
        self.validate = Validator(spec) if validate and not labels_file else None
        self.progress, self.log = progress, log
        self.stop = stop or threading.Event()
        self.delayed = spec.labels.mode == "delayed" and spec.schema.label is not None and not labels_file
        self.labels = DelayedLabels(spec.labels.delay_events, spec.labels.delay_seconds) if self.delayed else None
        self.summary = Summary(topic=producer.topics[Role.LABELS if labels_file else Role.RAW].name)
        self._reasons: Counter = Counter()
        self._last_ts = float("-inf")
        self._origin = f"file:{source.path.rsplit('/', 1)[-1]}" if source.kind == "file" else source_id(source)

    # ------------------------------------------------------------ the run

    def run(self) -> Summary:
        t0 = time.monotonic()
        try:
            self._feed()
        except Exception as exc:  # noqa: BLE001 - e.g. Kafka unreachable: still flush and account
            self.summary.stopped = f"{type(exc).__name__}: {exc}"
        finally:
            self._finish()
            self.summary.seconds = time.monotonic() - t0
        return self.summary

    def _feed(self) -> None:
        stem = source_id(self.source)
        types = {name: f.type for name, f in self.spec.schema.fields.items()}
        label = self.spec.schema.label
        n = 0  # records sent
        for pass_no in range(1 << 62):
            pass_stem = stem if pass_no == 0 else f"{stem}@{pass_no}"
            n_before = n
            for item in read_source(self.source, label, types):
                if self.stop.is_set():
                    self.summary.interrupted = True
                    return
                outcome = self._one(item, pass_stem, n)
                if outcome is _STOP:
                    return
                if outcome is _SENT:
                    n += 1
                    if not n & 1023:
                        self._tick()
                if self.limit and n + self.summary.rejected >= self.limit:
                    return
            if not self.loop or n == n_before or self.stop.is_set():
                return

    def _one(self, item, stem: str, n: int) -> str:
        """Steps 1 to 5 for one input: ``_SENT``, ``_REJECTED`` or ``_STOP``."""
        if type(item) is Bad:
            return _STOP if self._reject(item) else _REJECTED
        pos, rec = item
        problem = self.validate(rec) if self.validate is not None else None
        if problem is None and self.labels_file:
            problem = self._label_problem(rec)
        if problem is not None:
            return _STOP if self._reject(Bad(pos, problem[0], f"line {pos}: {problem[1]}", _raw(rec)), rec) \
                else _REJECTED
        try:
            if self.labels_file:
                self._send_label_record(rec)
            else:
                self._send_event(rec, pos, stem, n)
        except (TypeError, orjson.JSONEncodeError) as exc:  # e.g. an integer over 64 bits
            return _STOP if self._reject(Bad(pos, "wrong_type", f"line {pos}: cannot be serialized: {exc}",
                                             _raw(rec)), rec) else _REJECTED
        return _SENT

    def _send_event(self, rec: dict, pos: int, stem: str, n: int) -> None:
        y = rec.pop(self.spec.schema.label, None) if self.delayed else None
        key, env = envelope(self.spec, rec, pos, stem)
        if not self.spec.schema.time:
            # Ingest-time stamps are strictly increasing, so "labels first at equal time" in the
            # learner's merge can never put a label before an event that came earlier.
            env["ts"] = max(env["ts"], self._last_ts + 1e-6)
        self._last_ts = max(self._last_ts, env["ts"])
        if self.pacer.active:
            wait = self.pacer.delay(n, env["ts"])
            if wait > 0 and self.stop.wait(wait):
                return
        self.producer.send(self.producer.topics[Role.RAW].name, serde.dumps(env), key)
        if self.labels is not None:
            due = self.labels.push(env["id"], y, env["ts"]) if y is not None else self.labels.due(env["ts"])
            for value in due:
                self._send_label(value)

    def _label_problem(self, rec: dict) -> tuple[str, str] | None:
        sch = self.spec.schema
        for name in (sch.id or "id", sch.label or "y"):
            if rec.get(name) is None:
                return "missing_field", f"label record without '{name}'"
        return None

    def _send_label_record(self, rec: dict) -> None:
        """``--labels``: one record of a label file (id and label) → the labels topic."""
        sch = self.spec.schema
        ts = event_time(rec.get(sch.time or "ts"))
        ts = time.time() if ts is None else ts
        self._send_label({"v": 1, "id": str(rec[sch.id or "id"]), "y": rec[sch.label or "y"], "ts": ts,
                          "event_ts": ts})

    def _send_label(self, value: dict) -> None:
        self.producer.send(self.producer.topics[Role.LABELS].name, serde.dumps(value), value["id"].encode(),
                           role=Role.LABELS)

    # ------------------------------------------------------------ bad input

    def _reject(self, bad: Bad, record: dict | None = None) -> bool:
        """Account for one bad input under the policy; True when the run must stop."""
        s = self.summary
        s.rejected += 1
        self._reasons[bad.reason] += 1
        _metrics.REJECTED.labels(reason=bad.reason).inc()
        if len(s.rejections) < KEEP_REJECTIONS:
            s.rejections.append({"line": bad.line, "reason": bad.reason, "message": bad.message})
        if self.log is not None and s.rejected <= LOG_REJECTIONS:
            more = " (further rejections are counted, not logged)" if s.rejected == LOG_REJECTIONS else ""
            self.log(f"rejected {self._origin} line {bad.line}: {bad.reason}: {bad.message}{more}")
        if self.on_error == "dlq":
            key = record.get(self.spec.schema.key) if record is not None and self.spec.schema.key else None
            headers = [(Headers.REASON, bad.reason.encode()), (Headers.MESSAGE, bad.message.encode()[:1000]),
                       (Headers.ORIGIN_TOPIC, self._origin.encode()), (Headers.ORIGIN_PARTITION, b"-1"),
                       (Headers.ORIGIN_OFFSET, str(bad.line).encode()),
                       (Headers.SCHEMA_VERSION, str(self.spec.schema.version).encode())]
            self.producer.send(self.producer.topics[Role.DLQ].name, bad.raw,
                               None if key is None else str(key).encode(), headers, role=Role.DLQ)
        elif self.on_error == "fail":
            s.stopped = f"bad input at {self._origin} line {bad.line} ({bad.reason}) with --on-error fail"
            return True
        return False

    # ------------------------------------------------------------ the end

    def _tick(self) -> None:
        if self.progress is not None:
            t = self.producer.tallies[Role.LABELS if self.labels_file else Role.RAW]
            self.progress.update(t.sent, t.acked, self.summary.rejected)
        self.producer.publish_metrics()

    def _finish(self) -> None:
        """Release the held labels, flush, and count what the broker acknowledged."""
        s = self.summary
        try:
            if self.labels is not None and s.stopped is None:
                # The labels still held are revealed after the last event, as river does at the end.
                end = self._last_ts + 1e-6 if self._last_ts != float("-inf") else None
                for value in self.labels.drain(end):
                    self._send_label(value)
            self.producer.flush(check=False)
        except Exception as exc:  # noqa: BLE001
            s.stopped = s.stopped or f"flush failed: {exc}"
        tallies = self.producer.tallies
        main = tallies[Role.LABELS if self.labels_file else Role.RAW]
        s.sent, s.acknowledged = main.sent, main.acked
        s.failed = sum(t.sent - t.acked for t in tallies.values())
        s.dead_lettered = tallies[Role.DLQ].acked
        if not self.labels_file:
            s.labels_sent, s.labels_acknowledged = tallies[Role.LABELS].sent, tallies[Role.LABELS].acked
        s.rejected_by_reason = dict(self._reasons)
        if self.progress is not None:
            self.progress.update(main.sent, main.acked, s.rejected)
            self.progress.close()
