"""Delayed ground truth: hold each label back for N events or T seconds, then release it.

Pure and clock-driven, so it is tested without a broker:

>>> d = DelayedLabels(delay_events=2)
>>> d.push("a", True, ts=1.0, now=0.0); d.push("b", False, ts=2.0, now=0.0)
[]
[]
>>> d.push("c", True, ts=3.0, now=0.0)    # "a" has now waited 2 events
[{'v': 1, 'id': 'a', 'y': True, 'ts': 3.0, 'event_ts': 1.0}]
>>> [x["id"] for x in d.drain(ts=4.0)]
['b', 'c']
"""

from __future__ import annotations

import time
from collections import deque

__all__ = ["DelayedLabels"]


class DelayedLabels:
    """``{"v", "id", "y", "ts", "event_ts"}`` values for the labels topic, keyed by event id.

    ``ts`` is when the label is revealed: the event time of the event it waited for
    (``delay_events``), or the event time plus ``delay_seconds``.
    """

    def __init__(self, delay_events: int | None = None, delay_seconds: float | None = None):
        if delay_events is None and delay_seconds is None:
            delay_events = 1
        self.delay_events, self.delay_seconds = delay_events, delay_seconds
        self._held: deque = deque()  # (count at push, wall time at push, id, y, event ts)
        self._count = 0

    def __len__(self) -> int:
        return len(self._held)

    def push(self, event_id: str, y, ts: float, now: float | None = None) -> list[dict]:
        """Hold the label of the event just sent; return the labels now due."""
        now = time.monotonic() if now is None else now
        due = self.due(ts, now)
        self._held.append((self._count, now, event_id, y, ts))
        self._count += 1
        return due

    def due(self, ts: float | None = None, now: float | None = None) -> list[dict]:
        now = time.monotonic() if now is None else now
        out = []
        while self._held:
            count, wall, event_id, y, event_ts = self._held[0]
            by_events = self.delay_events is not None and self._count - count >= self.delay_events
            by_time = self.delay_seconds is not None and now - wall >= self.delay_seconds
            if not (by_events or by_time):
                break
            self._held.popleft()
            out.append(self._value(event_id, y, event_ts, ts if by_events and ts is not None else None))
        return out

    def drain(self, ts: float | None = None) -> list[dict]:
        """Every held label (the source has ended)."""
        out = [self._value(i, y, ets, ts) for _, _, i, y, ets in self._held]
        self._held.clear()
        return out

    def _value(self, event_id, y, event_ts, revealed) -> dict:
        if revealed is None:
            revealed = event_ts + (self.delay_seconds or 0.0)
        return {"v": 1, "id": event_id, "y": y, "ts": max(revealed, event_ts), "event_ts": event_ts}
