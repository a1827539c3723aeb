"""Pacing: a fixed rate (events/s), or a replay at the event-time pace sped up.

:meth:`Pacer.delay` is pure: it says how long to wait before the next event.

>>> p = Pacer(rate=100, start=0.0)
>>> p.delay(n=50, ts=None, now=0.2)     # 50 events are due at 0.5 s
0.3
>>> r = Pacer(speedup=10, start=0.0)
>>> r.delay(n=0, ts=1000.0, now=0.0), r.delay(n=1, ts=1060.0, now=1.0)   # 60 s of events in 6 s
(0.0, 5.0)
"""

from __future__ import annotations

import time

__all__ = ["Pacer"]


class Pacer:
    def __init__(self, rate: float | None = None, speedup: float | None = None, start: float | None = None):
        if rate is not None and rate <= 0 or speedup is not None and speedup <= 0:
            raise ValueError("--rate and --speedup must be positive")
        self.rate, self.speedup = rate, speedup
        self.start = time.monotonic() if start is None else start
        self.ts0: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.rate or self.speedup)

    def delay(self, n: int, ts: float | None, now: float | None = None) -> float:
        """Seconds to wait before the event number ``n`` (0-based) with event time ``ts``."""
        now = time.monotonic() if now is None else now
        due = self.start
        if self.rate:
            due = max(due, self.start + n / self.rate)
        if self.speedup and ts is not None:
            if self.ts0 is None:
                self.ts0 = ts
            due = max(due, self.start + (ts - self.ts0) / self.speedup)
        return round(max(0.0, due - now), 9)
