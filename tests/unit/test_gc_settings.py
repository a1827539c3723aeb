"""The services' garbage-collector settings (driftline/_gc.py), applied and then undone."""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest

from driftline._gc import YOUNG, collector_paused, tune_for_streaming


def test_tuning_freezes_what_exists_and_widens_only_the_young_generation():
    before = gc.get_threshold()
    alive = [[]]  # a container the collector tracks
    assert gc.is_tracked(alive)
    try:
        tune_for_streaming()
        assert gc.get_freeze_count() > 0  # what was alive went to the permanent generation
        assert all(o is not alive for g in range(3) for o in gc.get_objects(generation=g))  # not walked
        assert gc.get_threshold() == (YOUNG, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


class _Node:
    def __init__(self):
        self.me = self  # a cycle: only the cyclic collector frees it


def test_a_paused_collector_does_not_collect_on_allocations():
    assert gc.isenabled()
    with collector_paused(every_s=3600):
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0
        assert any(t.name == "driftline-gc" for t in threading.enumerate())
        node = _Node()
        gone = weakref.ref(node)
        del node
        churn = [[] for _ in range(100_000)]  # enough allocations for many automatic passes
        del churn
        assert gone() is not None  # no pass ran: the cycle is still there
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert not any(t.name == "driftline-gc" for t in threading.enumerate())


def test_a_paused_collector_collects_on_its_clock():
    with collector_paused(every_s=0.05):
        node = _Node()
        gone = weakref.ref(node)
        del node
        deadline = time.monotonic() + 10
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gone() is None  # a pass on the clock freed it
    assert gc.isenabled()


def test_a_paused_collector_keeps_an_earlier_freeze():
    kept = [[]]
    gc.collect()
    gc.freeze()
    try:
        with collector_paused(every_s=3600):
            pass
        assert gc.get_freeze_count() > 0
        assert all(o is not kept for g in range(3) for o in gc.get_objects(generation=g))  # still frozen
    finally:
        gc.unfreeze()


def test_a_paused_collector_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        with collector_paused(every_s=60):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


_PROBE = """
import ctypes, sys
from driftline._gc import STREAM_MMAP_THRESHOLD, STREAM_TRIM_THRESHOLD, pin_mmap_threshold

class Mallinfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                              "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Mallinfo2
if sys.argv[1] == "pin":
    assert pin_mmap_threshold()
elif sys.argv[1] == "stream":
    assert pin_mmap_threshold(STREAM_MMAP_THRESHOLD, trim=STREAM_TRIM_THRESHOLD)
big = bytearray(16 << 20)  # mmapped at the default threshold; freeing it raises the threshold
del big


def mmapped(size):
    before = mallinfo2().hblkhd
    block = bytearray(size)
    return mallinfo2().hblkhd - before >= size


print(mmapped(1 << 20), mmapped(8 << 20))  # are blocks of 1 and 8 MiB mmapped (so given back when freed)?
"""


def _mmapped_after_a_big_free(mode: str) -> tuple[bool, bool]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    one, eight = out.stdout.split()
    return one == "True", eight == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
                    reason="glibc >= 2.33 only")
def test_a_pinned_mmap_threshold_keeps_large_blocks_out_of_the_heap():
    # glibc's default: after a 16 MiB block is freed, blocks of 1 and 8 MiB come from the heap, where
    # they can stay resident after they are freed. Pinned at 128 KiB (serving), both are mmapped and
    # given back; at the services' 4 MiB, the 1 MiB one (a produce request) reuses the heap.
    assert _mmapped_after_a_big_free("default") == (False, False)
    assert _mmapped_after_a_big_free("pin") == (True, True)
    assert _mmapped_after_a_big_free("stream") == (False, True)
