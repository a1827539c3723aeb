"""models/_scaler: river's StandardScaler, compiled (models/_scale_fast.pyx), gives river's floats.

Each test feeds the same stream to a scaler running river's own methods and to one running the
compiled ones, and compares every transform and the scalers' state after every step, bit for bit:
values by their IEEE bytes, types, and the order in which features entered each dictionary.
"""

from __future__ import annotations

import copy
import math
import random
import struct

import numpy as np
import pytest
from river import linear_model, preprocessing

from models import _scaler
from models._scale_fast import RIVER, learn_one, transform_one

# numpy warns when the odd stream's numpy float meets an infinity; river's arithmetic is the same.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning",
                                        "ignore:overflow encountered:RuntimeWarning")


def bits(v):
    if type(v) is float:
        return ("f", "nan") if math.isnan(v) else ("f", struct.pack("<d", v))
    return type(v).__name__, repr(v)


def dict_bits(d) -> list:
    return [(k, bits(v)) for k, v in d.items()]


def state(s) -> tuple:
    return dict_bits(s.counts), dict_bits(s.means), dict_bits(s.vars)


def odd_stream(n: int, seed: int):
    """Events whose features come and go, with ints, bools, numpy floats, NaN, infinities, signed
    zeros, a constant, huge and tiny values."""
    rng = random.Random(seed)
    odd = [0.0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 3, True, False, np.float64(0.25), -7]
    for i in range(n):
        x = {}
        for k in range(12):
            if rng.random() < 0.15:
                continue  # absent this time
            r = rng.random()
            if r < 0.03:
                v = rng.choice(odd)
            elif k == 11:
                v = 4.0  # constant: its variance stays 0
            elif k == 10:
                v = float(i)  # a count
            else:
                v = rng.gauss(k, 1 + k) * (1e6 if k == 9 else 1.0)
            x[f"f{(k * 7) % 12}"] = v
        yield x


def river_scaler(**kw):
    s = preprocessing.StandardScaler(**kw)
    return s, (lambda x: RIVER["learn_one"](s, x)), (lambda x: RIVER["transform_one"](s, x))


def compiled_scaler(**kw):
    s = preprocessing.StandardScaler(**kw)
    return s, (lambda x: learn_one(s, x)), (lambda x: transform_one(s, x))


def test_the_extension_is_built():
    assert _scaler.COMPILED, "models/_scale_fast is not built: `pip install -e .` builds it (needs a C compiler)"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_learn_and_transform_are_rivers_bit_for_bit(seed):
    a, a_learn, a_transform = river_scaler()
    b, b_learn, b_transform = compiled_scaler()
    compared = 0
    for x in odd_stream(4000, seed):
        # Predict, learn, transform again: what a Pipeline's predict and learn do with each event.
        assert dict_bits(b_transform(dict(x))) == dict_bits(a_transform(dict(x)))
        b_learn(dict(x))
        a_learn(dict(x))
        assert state(b) == state(a)
        assert dict_bits(b_transform(dict(x))) == dict_bits(a_transform(dict(x)))
        compared += 1
    assert compared == 4000
    assert any(math.isnan(v) for v in a.vars.values()), "the stream should reach a NaN variance"


def test_a_feature_seen_first_in_a_transform_enters_the_dictionaries_as_in_river():
    a, _, a_transform = river_scaler()
    b, _, b_transform = compiled_scaler()
    x = {"new": 1.5, "other": 2}
    assert dict_bits(b_transform(x)) == dict_bits(a_transform(x)) == [("new", bits(0.0)), ("other", bits(0.0))]
    assert state(b) == state(a)


def test_a_negative_variance_is_scaled_as_python_does_it():
    """Python raises a negative float to 0.5 as a complex number; the compiled path leaves that to it."""
    a, _, a_transform = river_scaler()
    b, _, b_transform = compiled_scaler()
    for s in (a, b):
        s.means["f"], s.vars["f"], s.counts["f"] = 1.0, -4.0, 3
    assert dict_bits(b_transform({"f": 2.0})) == dict_bits(a_transform({"f": 2.0}))
    assert type(b_transform({"f": 2.0})["f"]) is complex


@pytest.mark.parametrize("kw", [{"with_std": False}, {"window_size": 5}])
def test_other_scalers_run_rivers_own_methods(kw):
    a, a_learn, a_transform = river_scaler(**kw)
    b, b_learn, b_transform = compiled_scaler(**kw)
    for x in odd_stream(300, 4):
        x = {k: v for k, v in x.items() if type(v) is float and math.isfinite(v)}
        b_learn(dict(x))
        a_learn(dict(x))
        assert dict_bits(b_transform(dict(x))) == dict_bits(a_transform(dict(x)))
    assert dict_bits(b.counts) == dict_bits(a.counts)


def test_installed_a_pipeline_predicts_and_learns_as_with_rivers_scaler():
    rng = random.Random(11)
    events = []
    for _ in range(3000):
        x = {f"f{k}": rng.gauss(0, 1 + k) for k in range(8)}
        events.append((x, x["f0"] + 0.5 * x["f3"] + rng.gauss(0, 1) > 0))

    def run():
        model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
        out = []
        for x, y in events:
            out.append(bits(model.predict_proba_one(x)[True]))
            model.learn_one(x, y)
        return out, [bits(w) for w in model["LogisticRegression"].weights.values()], copy.deepcopy(model)

    _scaler.uninstall()
    plain = run()
    try:
        assert _scaler.install() and _scaler.installed()
        fast = run()
    finally:
        _scaler.uninstall()
    assert fast[0] == plain[0] and fast[1] == plain[1]
    assert state(fast[2]["StandardScaler"]) == state(plain[2]["StandardScaler"])
