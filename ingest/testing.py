"""Test doubles: a producer that keeps what it is sent, and acknowledges (or fails) it.

>>> from contracts.spec import load_spec_text
>>> from contracts.topics import Role
>>> spec = load_spec_text("name: d\\nschema: {fields: {x: float}}\\nmodels: {m: {estimator: linear_model.LogisticRegression}}\\n"
...                       "task: anomaly")
>>> p = MemoryProducer(spec)
>>> _ = p.send(p.topics[Role.RAW].name, b"{}")
>>> p.flush(); p.tallies[Role.RAW].acked, len(p.sent[Role.RAW])
(1, 1)
"""

from __future__ import annotations

from collections import defaultdict

from contracts import serde
from contracts.spec import Spec
from contracts.topics import Role, pipeline_topics
from ingest.producer import _Tally

__all__ = ["MemoryProducer"]


class MemoryProducer:
    """Stands in for :class:`ingest.producer.EventProducer`; ``fail_after`` fails every later record."""

    def __init__(self, spec: Spec, namespace: str | None = None, fail_after: int | None = None):
        self.spec = spec
        self.topics = pipeline_topics(spec, namespace)
        self.tallies = {role: _Tally(role.value) for role in (Role.RAW, Role.LABELS, Role.DLQ)}
        self.sent: dict[Role, list[tuple[bytes | None, bytes, list]]] = defaultdict(list)
        self.fail_after = fail_after
        self._queued: list = []
        self.order: list[tuple[Role, bytes]] = []  # every send, in order

    def send(self, topic, value, key=None, headers=None, role: Role = Role.RAW):
        self.tallies[role].sent += 1
        self._queued.append((role, key, value, headers or []))
        self.order.append((role, value))

    def values(self, role: Role) -> list:
        return [serde.loads(v) for _, v, _ in self.sent[role]]

    def publish_metrics(self) -> None:
        pass

    def flush(self, timeout=None, check: bool = True) -> None:
        for role, key, value, headers in self._queued:
            n = sum(len(v) for v in self.sent.values())
            if self.fail_after is not None and n >= self.fail_after:
                self.tallies[role].err(RuntimeError("broker gone"))
                continue
            self.sent[role].append((key, value, headers))
            self.tallies[role].ok(None)
        self._queued.clear()

    def close(self, timeout=None) -> None:
        self.flush()
