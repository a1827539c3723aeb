"""The models being served: the newest verified snapshot per model, a bounded history, pins.

Pure logic, no Kafka: the follower hands each record of the models topic to
:meth:`ModelStore.offer`, which goes through these steps, in order:

1. **Verify, then unpickle** (:func:`models.snapshot.load_snapshot`): magic,
   HMAC, meta, a version newer than the one served, payload digest. Nothing is
   unpickled before the signature checks out.
2. **Check it is ours**: the record key names the model in the meta, and the
   meta's spec fingerprint is this spec's (features of another spec would be
   silently wrong).
3. **Build the predictor** (a :class:`models.prequential.ModelRunner` around
   the estimator), completely, before anyone can see it.
4. **Swap** by rebinding one dict entry: a request holds the entry it read
   for its whole life, so it never sees a half-loaded model.

A refused snapshot leaves the last good one serving and counts its reason.

>>> from contracts.spec import load_spec
>>> from models.snapshot import dump_snapshot
>>> from river import linear_model
>>> spec = load_spec("examples/phishing.yaml")
>>> store = ModelStore(spec, key=b"k" * 32, history=2)
>>> blob = lambda v, key=b"k" * 32: dump_snapshot(
...     {"model": "lr", "version": v, "spec": spec.fingerprint(), "champion": True},
...     {"model": linear_model.LogisticRegression()}, key)
>>> store.offer("lr", blob(1)).version
1
>>> store.offer("lr", blob(2, key=b"x" * 32))
Traceback (most recent call last):
...
models.snapshot.SnapshotRefused: bad_signature: the HMAC does not match (tampered, or signed with another key)
>>> store.get("lr").version, store.offer("lr", blob(3)).version, store.versions("lr")
(1, 3, [1, 3])
>>> store.pin("lr", 1).version, store.get("lr").version
(1, 1)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from contracts.spec import Spec
from models.prequential import ModelRunner
from models.snapshot import SnapshotRefused, load_snapshot

from deploy.serving import _metrics as m

__all__ = ["ModelStore", "ServedModel", "UnknownModel", "NoModelYet", "UnknownVersion"]

log = logging.getLogger("driftline.serving.store")


class UnknownModel(LookupError):
    """The model is neither in the spec nor on the models topic (404)."""


class NoModelYet(LookupError):
    """The model is known, but no snapshot of it has been loaded yet (503)."""


class UnknownVersion(LookupError):
    """The version is not (or no longer) held in memory (404)."""


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One verified snapshot, ready to predict. Never mutated after it is built."""

    name: str
    version: int
    meta: dict
    runner: ModelRunner
    received_at: float
    published_at: float | None

    @property
    def champion(self) -> bool:
        return bool(self.meta.get("champion"))


class ModelStore:
    """Thread-safe: one writer (the follower) under a lock, many lock-free readers."""

    def __init__(self, spec: Spec, key: bytes, history: int = 32):
        self.spec = spec
        self._key = key
        self._fingerprint = spec.fingerprint()
        self.history = history
        self._lock = threading.Lock()
        self._latest: dict[str, ServedModel] = {}
        self._versions: dict[str, dict[int, ServedModel]] = {}
        self._order: dict[str, deque[int]] = {}
        self._pins: dict[str, int] = {}

    # ---------------------------------------------------------------- writing

    def offer(self, name: str, blob: bytes, published_at: float | None = None) -> ServedModel:
        """Verify and swap in one snapshot; raise :class:`SnapshotRefused` (counted) if it is not good."""
        try:
            served = self._build(name, blob, published_at)
        except SnapshotRefused as exc:
            m.SNAPSHOTS_REFUSED.labels(exc.reason).inc()
            log.warning("snapshot refused", extra={"model": name, "reason": exc.reason, "detail": str(exc)})
            raise
        with self._lock:
            current = self._latest.get(name)
            if current is not None and served.version <= current.version:  # a racing writer won
                m.SNAPSHOTS_REFUSED.labels("stale_version").inc()
                raise SnapshotRefused("stale_version", f"version {served.version} is not newer")
            versions = self._versions.setdefault(name, {})
            order = self._order.setdefault(name, deque())
            versions[served.version] = served
            order.append(served.version)
            while len(order) > self.history:
                old = order.popleft()
                if self._pins.get(name) != old:
                    versions.pop(old, None)
            self._latest[name] = served  # the swap: one atomic rebinding
        m.SNAPSHOTS_ACCEPTED.labels(name).inc()
        m.MODEL_VERSION.labels(name).set(self.get(name).version)
        if published_at is not None:
            m.SWAP_LAG.observe(max(0.0, served.received_at - published_at))
        m.READY.set(0 if self.missing() else 1)
        log.info("snapshot swapped in", extra={"model": name, "version": served.version})
        return served

    def _build(self, name: str, blob: bytes, published_at: float | None) -> ServedModel:
        current = self._latest.get(name)
        snap = load_snapshot(blob, self._key, newer_than=None if current is None else current.version)
        meta = snap.meta
        if name != meta.get("model") and name.partition("#")[0] != meta.get("model"):  # "lr#0of2": a shard
            raise SnapshotRefused("wrong_model", f"record key {name!r} but the snapshot is of {meta.get('model')!r}")
        if meta.get("spec") != self._fingerprint:
            raise SnapshotRefused("spec_mismatch", f"snapshot of spec {meta.get('spec')!r}, serving "
                                                   f"{self._fingerprint!r}")
        if not isinstance(meta.get("version"), int):
            raise SnapshotRefused("corrupt", "meta has no integer version")
        state = snap.state
        if not isinstance(state, dict) or "model" not in state:
            raise SnapshotRefused("corrupt", "the state holds no 'model'")
        try:
            runner = ModelRunner(name, state["model"], self.spec.metrics, self.spec.metrics_window)
        except Exception as exc:  # noqa: BLE001 - a signed but unusable estimator is refused, not fatal
            raise SnapshotRefused("unusable", f"{type(exc).__name__}: {exc}") from None
        return ServedModel(name, meta["version"], meta, runner, time.time(), published_at)

    def pin(self, name: str, version: int) -> ServedModel:
        """Serve ``version`` of ``name`` until :meth:`unpin`, whatever arrives (rollback)."""
        with self._lock:
            served = self._lookup(name, version)
            self._pins[name] = version
        m.MODEL_VERSION.labels(name).set(version)
        log.info("model pinned", extra={"model": name, "version": version})
        return served

    def unpin(self, name: str) -> ServedModel | None:
        with self._lock:
            self._known(name)
            self._pins.pop(name, None)
            order = set(self._order.get(name, ()))
            for v in [v for v in self._versions.get(name, {}) if v not in order]:
                del self._versions[name][v]  # a pinned version that fell out of the history
        latest = self._latest.get(name)
        if latest is not None:
            m.MODEL_VERSION.labels(name).set(latest.version)
        log.info("model unpinned", extra={"model": name})
        return latest

    # ---------------------------------------------------------------- reading

    def names(self) -> list[str]:
        """The spec's models, then any other model seen on the topic (search candidates, challengers)."""
        return list(self.spec.models) + [n for n in list(self._latest) if n not in self.spec.models]

    def _known(self, name: str) -> None:
        if name not in self.spec.models and name not in self._latest:
            raise UnknownModel(f"no model named {name!r}; models: {', '.join(self.names())}")

    def _lookup(self, name: str, version: int) -> ServedModel:
        self._known(name)
        served = self._versions.get(name, {}).get(version)
        if served is None:
            held = self.versions(name)
            span = f"{held[0]}..{held[-1]} ({len(held)} held)" if held else "none yet"
            raise UnknownVersion(f"version {version} of {name!r} is not in memory; versions held: {span}")
        return served

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """What answers for ``name``: an exact ``version``, else the pinned one, else the newest."""
        if version is not None:
            return self._lookup(name, version)
        pinned = self._pins.get(name)
        if pinned is not None:
            return self._lookup(name, pinned)
        served = self._latest.get(name)
        if served is None:
            self._known(name)
            raise NoModelYet(f"no snapshot of model {name!r} has been loaded yet")
        return served

    def latest(self, name: str) -> ServedModel | None:
        return self._latest.get(name)

    def pinned(self, name: str) -> int | None:
        return self._pins.get(name)

    def versions(self, name: str) -> list[int]:
        return sorted(self._versions.get(name, {}))

    def champion(self) -> str:
        """The model the learner last marked champion; with none marked, the spec's first model."""
        marked = [s for s in list(self._latest.values()) if s.champion]
        if marked:
            return max(marked, key=lambda s: (s.meta.get("created_at") or 0, s.received_at)).name
        return next(iter(self.spec.models))

    def missing(self) -> list[str]:
        """The spec's models without a snapshot yet (ready when empty)."""
        return [n for n in self.spec.models if n not in self._latest]

    def update_ages(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for name in list(self._latest):
            served = self.get(name)
            created = served.meta.get("created_at")
            if isinstance(created, (int, float)):
                m.SNAPSHOT_AGE.labels(name).set(max(0.0, now - created))
