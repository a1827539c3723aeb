"""Featurize, as plain Python: the same code in the stream and at serving time.

A :class:`Featurizer` turns one clean record into its feature vector. Stateless
features need only the record; stateful ones need the key's past, kept in a
plain, JSON-serializable ``dict`` that the caller stores (a faust table in the
stream, a dict in serving or in a test). :meth:`Featurizer.features` never
mutates the state it is given; it returns the features and the next state.

>>> from contracts.spec import load_spec_text
>>> spec = load_spec_text('''
... name: demo
... schema: {fields: {k: str, t: float, v: float, y: bool}, key: k, time: t, label: y}
... features:
...   stateless: [{field: v, op: square}]
...   stateful:
...     - {agg: mean, field: v, window: 10}
...     - {agg: count, window: 10, kind: tumbling}
...     - {agg: since_last}
... models: {lr: {estimator: linear_model.LogisticRegression}}
... ''')
>>> f = Featurizer(spec)
>>> x, state = f.features({"v": 2.0}, ts=1.0, state=None)
>>> x
{'v': 2.0, 'v_square': 4.0, 'v_mean_s10s': 2.0, 'count_t10s': 1.0, 'since_last': 0.0}
>>> x, state = f.features({"v": 4.0}, ts=3.0, state=state)
>>> x["v_mean_s10s"], x["count_t10s"], x["since_last"]
(3.0, 2.0, 2.0)

Without a ``features`` section the vector is the clean fields, exactly:

>>> plain = load_spec_text("name: p\\nschema: {fields: {v: float, y: bool}, label: y}\\n"
...                        "models: {lr: {estimator: linear_model.LogisticRegression}}")
>>> Featurizer(plain).features({"v": 1.5}, ts=0.0, state=None)
({'v': 1.5}, None)

Windows are in event time. An event later than ``allowed_lateness_seconds``
behind the key's newest event gets features but does not enter the windows; it
is counted in ``state["late"]``; its windows see only the events the state still keeps (each
field's events are kept for its longest window plus the allowed lateness). State older than ``ttl_seconds`` behind the
partition's clock is dropped (:meth:`Featurizer.expired`).
"""

from __future__ import annotations

import math
import zlib
from datetime import datetime, timezone

from contracts.spec import Spec, StatefulFeature, StatelessFeature

__all__ = ["Featurizer", "stateless_value"]

_WINDOWED = ("count", "sum", "mean", "var", "min", "max")


def stateless_value(f: StatelessFeature, value) -> dict:
    """The output(s) of one stateless feature for one field value (``{}`` when it is null)."""
    if value is None:
        return {}
    op = f.op
    if op == "onehot":
        if f.categories is None:
            return {f"{f.out}={value}": 1.0}
        return {f"{f.out}={c}": 1.0 if value == c else 0.0 for c in f.categories}
    if op == "hash":
        bucket = zlib.crc32(str(value).encode()) % f.buckets
        return {f"{f.out}={bucket}": 1.0}
    if op in ("hour", "minute", "weekday", "day", "month"):
        t = datetime.fromtimestamp(float(value), tz=timezone.utc)
        part = {"hour": t.hour, "minute": t.minute, "weekday": t.weekday(), "day": t.day, "month": t.month}[op]
        return {f.out: float(part)}
    v = float(value)
    if op == "log1p":
        out = math.log1p(v) if v > -1 else 0.0
    elif op == "sqrt":
        out = math.sqrt(v) if v >= 0 else 0.0
    elif op == "abs":
        out = abs(v)
    elif op == "square":
        out = v * v
    elif op == "scale":
        out = (v - f.offset) * f.scale
    else:  # clip
        out = min(max(v, f.min if f.min is not None else v), f.max if f.max is not None else v)
    return {f.out: out}


def _aggregate(agg: str, values: list[float], default: float) -> float:
    n = len(values)
    if agg == "count":
        return float(n)
    if n == 0:
        return default
    if agg == "sum":
        return math.fsum(values)
    if agg == "mean":
        return math.fsum(values) / n
    if agg == "min":
        return min(values)
    if agg == "max":
        return max(values)
    # var: the sample variance (ddof=1, as pandas), two-pass for accuracy
    if n < 2:
        return default
    mean = math.fsum(values) / n
    return math.fsum((v - mean) ** 2 for v in values) / (n - 1)


class Featurizer:
    """Computes feature vectors for one spec. Stateless itself; the caller keeps per-key state.

    The state of a key is ``{"w": newest event time, "n": events, "late": late events,
    "buf": {field: [[ts, value], …]}, "last": {field: value}, "ewm": {name: value}}``.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        fs = spec.features
        self.enabled = fs is not None
        self.stateless: list[StatelessFeature] = list(fs.stateless) if fs else []
        self.stateful: list[StatefulFeature] = list(fs.stateful) if fs else []
        self.lateness = fs.allowed_lateness_seconds if fs else 0.0
        self.ttl = fs.ttl_seconds if fs else math.inf
        types = {n: f.type for n, f in spec.schema.fields.items()}
        mode = fs.passthrough if fs else "all"
        if mode == "all":
            self.passthrough = None
        elif mode == "none":
            self.passthrough = set()
        else:
            self.passthrough = {n for n, t in types.items() if t in ("float", "int", "bool", "datetime")}
        # Each buffered field is kept as long as its longest window (plus the lateness).
        self.horizon: dict[str, float] = {}
        for s in self.stateful:
            if s.agg in _WINDOWED:
                field = s.field or "_"
                self.horizon[field] = max(self.horizon.get(field, 0.0), s.window)
        self.stateful_enabled = bool(self.stateful)
        # What features() reads of each stateful feature per event, read once (the spec is frozen).
        self._plan = [(s.out, s.agg, s.field, s.field or "_", s.window, s.kind == "sliding", s.default, s.alpha)
                      for s in self.stateful]
        self._after = [(s.agg == "ewm", s.field, s.out, s.alpha) for s in self.stateful if s.agg in ("last", "ewm")]

    # ---------------------------------------------------------------- one event

    def features(self, x: dict, ts: float, state: dict | None) -> tuple[dict, dict | None]:
        """The feature vector of one clean record (``x``: its clean fields), and the key's next state."""
        if not self.enabled:
            return x, state
        out = dict(x) if self.passthrough is None else {k: v for k, v in x.items() if k in self.passthrough}
        for f in self.stateless:
            out.update(stateless_value(f, x.get(f.field)))
        if not self.stateful_enabled:
            return out, state
        st = _copy(state) if state else {"w": None, "n": 0, "late": 0, "buf": {}, "last": {}, "ewm": {}}
        newest = st["w"]
        late = newest is not None and ts < newest - self.lateness
        if late:
            st["late"] += 1
        else:
            for field, horizon in self.horizon.items():
                buf = st["buf"].setdefault(field, [])
                value = x.get(field) if field != "_" else 1.0
                if value is not None:
                    buf.append([ts, float(value)])
        st["n"] += 1
        w = ts if newest is None else max(newest, ts)
        bufs, ewm = st["buf"], st["ewm"]
        for name, agg, field, buffered, window, sliding, default, alpha in self._plan:
            if agg in _WINDOWED:
                buf = bufs.get(buffered, ())
                if sliding:
                    lo = ts - window
                    values = [v for t, v in buf if lo < t <= ts]
                else:
                    start = math.floor(ts / window) * window
                    values = [v for t, v in buf if start <= t < start + window]
                out[name] = _aggregate(agg, values, default)
            elif agg == "since_last":
                out[name] = default if newest is None else ts - newest
            elif agg == "last":
                out[name] = st["last"].get(field, default)
            else:  # ewm, including this event
                v = x.get(field)
                prev = ewm.get(name)
                if v is None:
                    out[name] = default if prev is None else prev
                else:
                    out[name] = float(v) if prev is None else alpha * float(v) + (1 - alpha) * prev
        # state updates that depend on this event, after every feature has read the past
        for is_ewm, field, name, alpha in self._after:
            value = x.get(field)
            if value is None:
                continue
            if is_ewm:
                prev = ewm.get(name)
                v = float(value)
                ewm[name] = v if prev is None else alpha * v + (1 - alpha) * prev
            else:
                st["last"][field] = float(value)
        st["w"] = w
        for field, horizon in self.horizon.items():
            keep_from = w - horizon - self.lateness
            buf = st["buf"].get(field)
            if buf:  # arrival order is not time order: look at every entry
                st["buf"][field] = [e for e in buf if e[0] > keep_from]
        return out, st

    # ---------------------------------------------------------------- state lifetime

    def expired(self, state: dict | None, clock: float) -> bool:
        """Is this key's state older than the TTL behind ``clock`` (the partition's newest event time)?"""
        return bool(state) and state.get("w") is not None and state["w"] < clock - self.ttl


def _copy(state: dict) -> dict:
    return {"w": state["w"], "n": state["n"], "late": state["late"],
            "buf": {k: list(v) for k, v in state["buf"].items()},
            "last": dict(state["last"]), "ewm": dict(state["ewm"])}
