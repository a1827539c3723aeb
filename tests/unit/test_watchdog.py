"""processors._watchdog: when an input partition counts as stalled (the decision only; the restart
itself acts on faust's consumer, and tests/integration/test_processors.py exercises it on a live worker)."""

from __future__ import annotations

from processors._watchdog import Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Moves:
    """A continuity's view of when each partition last moved."""

    def __init__(self) -> None:
        self.at: dict = {}

    def moved_at(self, tp) -> float:
        return self.at.get(tp, 0.0)

    def due(self, tp):
        return None


TP = ("raw", 0)


def watchdog(stall_s: float = 30.0):
    clock, moves = Clock(), Moves()
    return Watchdog(app=None, continuities=[moves], inputs=["raw"], stall_s=stall_s, clock=clock), clock, moves


def test_records_waiting_with_no_progress_for_the_stall_time_is_a_stall_and_reported_once():
    w, clock, _ = watchdog()
    assert w.stalled({TP: True}) == []
    clock.now += 29.9
    assert w.stalled({TP: True}) == []
    clock.now += 0.2
    assert w.stalled({TP: True}) == [TP]
    clock.now += 1
    assert w.stalled({TP: True}) == [], "a restarted partition gets another quiet stretch before a second repair"
    clock.now += 30
    assert w.stalled({TP: True}) == [TP]


def test_a_partition_that_keeps_moving_is_never_stalled_however_long_it_has_a_backlog():
    w, clock, moves = watchdog()
    for _ in range(20):
        moves.at[TP] = clock.now
        assert w.stalled({TP: True}) == []
        clock.now += 10


def test_a_caught_up_partition_is_never_stalled_and_its_quiet_time_starts_when_records_arrive():
    w, clock, _ = watchdog()
    for _ in range(10):
        assert w.stalled({TP: False}) == []
        clock.now += 10
    assert w.stalled({TP: True}) == []
    clock.now += 29
    assert w.stalled({TP: True}) == []
    clock.now += 2
    assert w.stalled({TP: True}) == [TP]


def test_forget_after_a_rebalance_restarts_the_quiet_time():
    w, clock, _ = watchdog()
    w.stalled({TP: True})
    clock.now += 25
    w.forget()
    assert w.stalled({TP: True}) == []
    clock.now += 25
    assert w.stalled({TP: True}) == []
    clock.now += 6
    assert w.stalled({TP: True}) == [TP]


def test_progress_after_the_quiet_time_began_resets_it():
    w, clock, moves = watchdog()
    w.stalled({TP: True})
    clock.now += 20
    moves.at[TP] = clock.now
    clock.now += 20
    assert w.stalled({TP: True}) == [], "moved 20 s ago: not stalled"
    clock.now += 11
    assert w.stalled({TP: True}) == [TP]
