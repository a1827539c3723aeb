"""Every stateful feature equals a pandas reference over the same events, per key and window,
on a stream with out-of-order events; the stage's state survives a replay unchanged."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from contracts import serde
from contracts.spec import load_spec_text
from processors.features import Featurizer
from processors.join import LabelJoin
from processors.stage import Stage, State
from processors.testing import mixed_stream, spec_text


@pytest.fixture(scope="module")
def spec():
    return load_spec_text(spec_text(partitions=1))


HORIZON = {"count": 20.0}  # the state keeps a field's events for its longest window (+ lateness)


def reference(df: pd.DataFrame, i: int, f, lateness: float):
    """Feature ``f`` for row ``i`` (arrival order) from the rows of its key that arrived up to it."""
    row = df.iloc[i]
    past = df.iloc[: i + 1]
    past = past[past.k == row.k]
    before = past.iloc[:-1]
    # events that entered the windows: not later than `lateness` behind the key's newest before them
    newest = past.t.cummax().shift(1)
    counted = past[newest.isna() | (past.t >= newest - lateness)]
    # a late event's windows see only what the state still keeps
    counted = counted[counted.t > past.t.max() - HORIZON.get(f.agg, 50.0) - lateness]
    if f.agg == "since_last":
        return f.default if before.empty else row.t - before.t.max()
    if f.agg == "last":
        return f.default if before.empty else before.v.iloc[-1]
    if f.agg == "ewm":
        return past.v.ewm(alpha=f.alpha, adjust=False).mean().iloc[-1]
    if f.kind == "sliding":
        win = counted[(counted.t > row.t - f.window) & (counted.t <= row.t)].v
    else:
        start = math.floor(row.t / f.window) * f.window
        win = counted[(counted.t >= start) & (counted.t < start + f.window)].v
    if f.agg == "count":
        return float(len(win))
    if win.empty or (f.agg == "var" and len(win) < 2):
        return f.default
    return float(getattr(win, f.agg)())


def test_stateful_features_equal_a_pandas_reference_with_out_of_order_events(spec):
    records = [r for r in mixed_stream(1500, keys=7, seed=11, disorder=25.0)]
    envs = [serde.loads(r.value) for r in records]
    df = pd.DataFrame([e["data"] for e in envs])
    assert (df.t.diff() < 0).sum() > 300, "the stream should be out of order"
    fz = Featurizer(spec)
    lateness = spec.features.allowed_lateness_seconds
    states, checked, late = {}, 0, 0
    for i, e in enumerate(envs):
        d = e["data"]
        x, states[d["k"]] = fz.features({"v": d["v"], "c": d["c"], "t": d["t"]}, d["t"], states.get(d["k"]))
        for f in spec.features.stateful:
            want = reference(df, i, f, lateness)
            assert x[f.out] == pytest.approx(want, rel=1e-9, abs=1e-9), (i, f.out)
            checked += 1
    late = sum(s["late"] for s in states.values())
    assert late > 0, "some events should be later than the allowed lateness"
    assert checked == 1500 * len(spec.features.stateful)


def test_stateless_features_onehot_and_square(spec):
    x, _ = Featurizer(spec).features({"v": 3.0, "c": "b", "t": 0.0}, 0.0, None)
    assert (x["c_onehot=a"], x["c_onehot=b"], x["c_onehot=c"], x["v_square"]) == (0.0, 1.0, 0.0, 9.0)
    assert "c" not in x  # passthrough: numeric fields only


def test_replaying_a_batch_leaves_the_state_and_outputs_of_a_single_pass(spec):
    stage = Stage(spec)
    records = list(mixed_stream(600, keys=5, poison_every=13, dup_every=31, seed=2))
    once, twice = State.empty(), State.empty()
    first = [stage.process(r.value, 0, o, once) for o, r in enumerate(records)]
    for o, r in enumerate(records[:400]):
        stage.process(r.value, 0, o, twice)
    for o, r in list(enumerate(records))[200:]:  # a replay from offset 200, as after a crash
        out = stage.process(r.value, 0, o, twice)
        if o >= 400:
            assert (out.reason, out.features) == (first[o].reason, first[o].features)
    assert (twice.seen, twice.keys, twice.clocks) == (once.seen, once.keys, once.clocks)
    assert [o.reason for o in first].count("duplicate") == sum(1 for r in records if r.expect == "dead" and r.ts)


def test_join_expires_unlabeled_events_and_dead_letters_unknown_and_late_labels():
    j, store = LabelJoin(ttl=10.0), {}
    j.on_pending({"id": "a", "key": "k", "ts": 0.0, "x": {}}, 0, store)
    j.on_label({"id": "ghost", "y": 1, "ts": 1.0}, b"{}", 0, store)
    actions = j.expire(list(store.items()), now=20.0)
    kinds = {eid: (a.kind, a.reason) for eid, a, _ in actions}
    assert kinds == {"a": ("expired", None), "ghost": ("dead", "unknown_label")}
    for eid, _, entry in actions:
        store.pop(eid) if entry is None else store.__setitem__(eid, entry)
    assert j.on_label({"id": "a", "y": 0, "ts": 21.0}, b"{}", 1, store)[0].reason == "expired_label"
