"""The clean, dedup and featurize step for one raw record, as plain Python over dict-like state.

The faust app (``processors.app``) runs it with faust tables behind an
:class:`Overlay`; the benchmark's in-process ceiling and the tests run it with
plain dicts. Every state change records the source offset it came from, so
that replaying a record whose effect is already in the state (after a crash
or a rebalance, because faust is at-least-once) changes nothing:

>>> from contracts.spec import load_spec_text
>>> spec = load_spec_text('''
... name: demo
... schema: {fields: {id: str, k: str, v: float, y: bool}, id: id, key: k, label: y}
... features: {stateful: [{agg: count, window: 100}]}
... models: {lr: {estimator: linear_model.LogisticRegression}}
... ''')
>>> stage, state = Stage(spec), State.empty()
>>> raw = b'{"v":1,"id":"a","ts":1.0,"key":"k1","data":{"id":"a","k":"k1","v":2,"y":true}}'
>>> out = stage.process(raw, 0, 0, state)
>>> out.reason, out.features["count_s100s"]
(None, 1.0)
>>> stage.process(raw, 0, 0, state).replayed          # the same offset again: a replay
True
>>> stage.process(raw, 0, 1, state).reason            # the same id at a new offset: a duplicate
'duplicate'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from processors.clean import Clean, Cleaner, Rejection
from processors.features import Featurizer

__all__ = ["Stage", "State", "Outcome", "Overlay", "state_key"]

_DELETED = object()


class Overlay:
    """Reads through to ``base``; holds writes, with the partition they belong to, until :meth:`drain`
    (the app applies them only after the batch's outputs are acknowledged).

    >>> o = Overlay({"a": 1, "b": 2})
    >>> o["a"] = 10; o.partition = 1; del o["b"]
    >>> o.get("a"), o.get("b"), o.base["b"]
    (10, None, 2)
    >>> o.drain(), o.changes
    ([('a', 10, 0, False), ('b', None, 1, True)], {})
    """

    __slots__ = ("base", "changes", "partition", "_read_in")

    def __init__(self, base):
        self.base = base
        self.changes: dict = {}
        self.partition = 0
        # A base that keeps each partition apart (processors._tables.DirectTable) is read in the
        # partition being written, with no lookup of which partition that is.
        self._read_in = getattr(base, "get_in", None)

    def get(self, key):
        v = self.changes.get(key)
        if v is None:
            read_in = self._read_in
            return self.base.get(key) if read_in is None else read_in(key, self.partition)
        return None if v[0] is _DELETED else v[0]

    def __setitem__(self, key, value) -> None:
        self.changes[key] = (value, self.partition)

    def __delitem__(self, key) -> None:
        self.changes[key] = (_DELETED, self.partition)

    def drain(self):
        """Take the held writes: ``(key, value, partition, deleted)``."""
        changes, self.changes = self.changes, {}
        return [(k, None, p, True) if v is _DELETED else (k, v, p, False) for k, (v, p) in changes.items()]


@dataclass
class State:
    """The three stores of the stage: event ids seen, per-key feature state, per-partition clocks."""

    seen: object
    keys: object
    clocks: object

    @classmethod
    def empty(cls) -> "State":
        return cls({}, {}, {})


@dataclass(slots=True)
class Outcome:
    """What became of one raw record: a clean record and its features, or a rejection reason."""

    clean: Clean | None = None
    features: dict | None = None
    reason: str | None = None
    message: str = ""
    replayed: bool = False
    event_id: str | None = None
    extra: dict = field(default_factory=dict)


def state_key(key: str | None, partition: int) -> str:
    """The per-key state's table key. Records without a key share one state per partition."""
    return key if key is not None else f"\x00{partition}"


class Stage:
    """Clean → deduplicate → featurize, one raw record at a time. Never raises on bad input."""

    def __init__(self, spec):
        self.spec = spec
        self.cleaner = Cleaner(spec)
        self.featurizer = Featurizer(spec)
        self.dedup_ttl = spec.schema.dedup_seconds

    def clock(self, state: State, partition: int) -> dict:
        return state.clocks.get(str(partition)) or {"wm": None, "o": -1}

    def process(self, raw: bytes | None, partition: int, offset: int, state: State) -> Outcome:
        result = self.cleaner.clean_bytes(raw)
        if isinstance(result, Rejection):
            return Outcome(reason=result.reason, message=result.message, event_id=result.event_id)
        clean: Clean = result
        # 1. The partition's event-time clock (idempotent: it remembers the last offset it saw).
        clock = self.clock(state, partition)
        if offset > clock["o"]:
            wm = clock["wm"]
            clock = {"wm": clean.ts if wm is None else max(wm, clean.ts), "o": offset}
            state.clocks[str(partition)] = clock
        now = clock["wm"]
        # 2. Deduplicate by event id within dedup_seconds of event time.
        seen = state.seen.get(clean.id)
        if seen is not None and seen["ts"] >= now - self.dedup_ttl and (seen["p"], seen["o"]) != (partition, offset):
            return Outcome(reason="duplicate", event_id=clean.id,
                           message=f"event id seen before at partition {seen['p']} offset {seen['o']}")
        if seen is None or (seen["p"], seen["o"]) != (partition, offset):
            state.seen[clean.id] = {"p": partition, "o": offset, "ts": clean.ts}
        # 3. Featurize with the key's state, unless this offset is already in it (a replay).
        if not self.featurizer.stateful_enabled:
            x, _ = self.featurizer.features(clean.x, clean.ts, None)
            return Outcome(clean=clean, features=x, event_id=clean.id)
        skey = state_key(clean.key, partition)
        entry = state.keys.get(skey)
        if entry is not None and entry["p"] == partition and entry["at"] >= offset:
            return Outcome(clean=clean, replayed=True, event_id=clean.id)
        prior = entry["s"] if entry is not None and not self.featurizer.expired(entry["s"], now) else None
        x, new = self.featurizer.features(clean.x, clean.ts, prior)
        state.keys[skey] = {"p": partition, "at": offset, "s": new}
        return Outcome(clean=clean, features=x, event_id=clean.id)

    def expired(self, store: str, items, partition: int, now: float):
        """Keys among ``items`` of ``store`` (``"seen"`` or ``"keys"``) of ``partition`` past their TTL at ``now``.

        >>> from contracts.spec import load_spec_text
        >>> stage = Stage(load_spec_text('''
        ... name: demo
        ... schema: {fields: {id: str, v: float, y: bool}, id: id, label: y, dedup_seconds: 10}
        ... models: {lr: {estimator: linear_model.LogisticRegression}}
        ... '''))
        >>> list(stage.expired("seen", [("a", {"p": 0, "o": 1, "ts": 5.0}), ("b", {"p": 0, "o": 2, "ts": 50.0}),
        ...                             ("c", {"p": 1, "o": 1, "ts": 5.0})], 0, 30.0))
        ['a']
        """
        if store == "seen":
            for k, v in items:
                if v["p"] == partition and v["ts"] < now - self.dedup_ttl:
                    yield k
        else:
            for k, v in items:
                if v["p"] == partition and self.featurizer.expired(v["s"], now):
                    yield k
