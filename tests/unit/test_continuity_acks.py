"""processors/_continuity.forget_acks: faust's record of acks ends at the committed offset.

The consumer here is a namespace holding faust's own structures (``Consumer.__init__`` makes the
same three); faust's ``Consumer._new_offset`` then computes its next commit from what is left.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import Interval, IntervalTree

from processors._continuity import forget_acks

TP0, TP1 = TP("raw", 0), TP("raw", 1)


def consumer(committed: dict, acked: dict, gaps: dict | None = None) -> SimpleNamespace:
    c = SimpleNamespace(_committed_offset=defaultdict(lambda: None, committed), _acked=defaultdict(list),
                        _acked_index=defaultdict(set), _gap=defaultdict(IntervalTree))
    for tp, offsets in acked.items():
        c._acked[tp].extend(offsets)
        c._acked_index[tp].update(offsets)
    for tp, intervals in (gaps or {}).items():
        c._gap[tp] = IntervalTree(Interval(a, b) for a, b in intervals)
    return c


def test_acks_below_the_committed_offset_are_let_go():
    c = consumer({TP0: 105}, {TP0: list(range(100, 111))})
    forget_acks(c, [TP0])
    assert c._acked[TP0] == list(range(105, 111))
    assert c._acked_index[TP0] == set(range(105, 111))
    # faust's own commit (at a rebalance) takes the run of acks from the committed offset on.
    assert Consumer._new_offset(c, TP0) == 111


def test_out_of_order_acks_and_gaps_keep_what_is_above():
    c = consumer({TP0: 50}, {TP0: [52, 40, 50, 41, 51, 49]}, gaps={TP0: [(30, 35), (45, 48), (53, 55)]})
    forget_acks(c, [TP0])
    assert c._acked[TP0] == [52, 50, 51]
    assert c._acked_index[TP0] == {50, 51, 52}
    assert sorted((i.begin, i.end) for i in c._gap[TP0]) == [(53, 55)]
    assert Consumer._new_offset(c, TP0) == 53  # 50-52; faust steps over the gap once an ack follows it


def test_only_the_given_partitions_and_only_with_a_committed_offset():
    c = consumer({TP0: 10}, {TP0: [8, 9, 10], TP1: [1, 2, 3]})
    forget_acks(c, [TP1])  # nothing committed for TP1
    forget_acks(c, [])
    assert c._acked[TP0] == [8, 9, 10] and c._acked[TP1] == [1, 2, 3]
    assert c._acked_index[TP1] == {1, 2, 3}
    forget_acks(c, [TP0, TP1])
    assert c._acked[TP0] == [10] and c._acked[TP1] == [1, 2, 3]


def test_nothing_acked_creates_nothing():
    c = consumer({TP0: 10}, {})
    forget_acks(c, [TP0])
    assert TP0 not in c._acked and TP0 not in c._acked_index and TP0 not in c._gap
