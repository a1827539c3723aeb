"""The benchmark's (and the chaos suite's) synthetic stream for ``examples/bench.yaml``.

Ten Gaussian features, a label from a fixed linear rule plus noise, entity keys drawn at random
from ``keys`` (or, with ``active``, from a window of that many keys that moves through the key
space, so old keys fall idle and their state can expire), event time advancing ``dt`` per event:

>>> r = next(records(1, keys=5, seed=1))
>>> r["id"], r["k"], r["t"], sorted(r)[:4]
('e0', 'k1', 0.0, ['f0', 'f1', 'f2', 'f3'])
>>> key, value = next(envelopes(1, keys=5, seed=1))
>>> key, orjson.loads(value)["data"] == r
(b'k1', True)
"""

from __future__ import annotations

import random

import orjson

__all__ = ["records", "envelopes", "envelope", "record", "weights", "stamped"]


def weights() -> list[float]:
    r = random.Random(42)
    return [r.uniform(-1, 1) for _ in range(10)]


def record(i: int, key: str, t: float, rng: random.Random, w: list[float]) -> dict:
    x = {f"f{j}": round(rng.gauss(0.0, 1.0), 6) for j in range(10)}
    y = sum(w[j] * x[f"f{j}"] for j in range(10)) + rng.gauss(0.0, 0.5) > 0
    return {"id": f"e{i}", "k": key, "t": t, **x, "y": y}


def envelope(i: int, key: str, t: float, rng: random.Random, w: list[float]) -> bytes:
    """The raw-topic value of one event, as ``driftline ingest`` would write it."""
    return orjson.dumps({"v": 1, "id": f"e{i}", "ts": t, "key": key, "data": record(i, key, t, rng, w)})


_STAMP = 1234567.0078125  # exact in binary, so orjson writes it the same way every time
_STAMP_TEXT = orjson.dumps(_STAMP)


def stamped(i: int, key: str, rng: random.Random, w: list[float]):
    """The envelope of event ``i`` made now, its time filled in later: a function that returns
    :func:`envelope`'s bytes with ``t`` set to the time it is called.

    The benchmark's latency feed makes its events before the run and stamps each as it is sent,
    so the feed's own CPU (18 µs an event for :func:`envelope`) is not taken from the pipeline
    under test. The bytes are those :func:`envelope` makes at that time:

    >>> import time
    >>> rng1, rng2, w = random.Random(3), random.Random(3), weights()
    >>> make = stamped(7, "k1", rng1, w)
    >>> t = time.time()
    >>> make(t) == envelope(7, "k1", t, rng2, w)
    True
    """
    template = envelope(i, key, _STAMP, rng, w)
    if template.count(_STAMP_TEXT) != 2:  # the top-level ts and the source record's t
        raise RuntimeError(f"the time placeholder {_STAMP} must occur twice in {template!r}")
    head, middle, tail = template.split(_STAMP_TEXT)

    def at(t: float) -> bytes:
        stamp = orjson.dumps(t)
        return b"".join((head, stamp, middle, stamp, tail))

    return at


def records(n: int, keys: int = 20_000, seed: int = 0, start: int = 0, dt: float = 0.05,
            active: int | None = None):
    """``n`` source records with event time ``i * dt``."""
    rng, w = random.Random(seed), weights()
    for i in range(start, start + n):
        k = rng.randrange(keys) if active is None else (i * keys // n + rng.randrange(active)) % keys
        yield record(i, f"k{k}", i * dt, rng, w)


def envelopes(n: int, keys: int = 20_000, seed: int = 0, start: int = 0, dt: float = 0.05,
              active: int | None = None):
    """``n`` (key bytes, envelope bytes) pairs: :func:`records` as ingest writes them."""
    for r in records(n, keys, seed, start, dt, active):
        yield r["k"].encode(), orjson.dumps({"v": 1, "id": r["id"], "ts": r["t"], "key": r["k"], "data": r})
