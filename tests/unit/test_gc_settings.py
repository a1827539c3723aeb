"""The services' garbage-collector settings (driftline/_gc.py), applied and then undone."""

from __future__ import annotations

import ctypes
import gc
import sys
from pathlib import Path

import pytest

from driftline._gc import YOUNG, tune_for_streaming


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


_PROBE = """
import ctypes, sys
from driftline._gc import pin_mmap_threshold

class Mallinfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                              "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Mallinfo2
if sys.argv[1] == "pin":
    assert pin_mmap_threshold()
big = bytearray(8 << 20)  # mmapped at the default threshold; freeing it raises the threshold
del big
before = mallinfo2().hblkhd
block = bytearray(1 << 20)
print(mallinfo2().hblkhd - before >= 1 << 20)  # is the 1 MiB block mmapped (so given back when freed)?
"""


def _mmapped_after_a_big_free(mode: str) -> bool:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
                    reason="glibc >= 2.33 only")
def test_a_pinned_mmap_threshold_keeps_large_blocks_out_of_the_heap():
    # glibc's default: after an 8 MiB block is freed, a 1 MiB one comes from the heap, where it can
    # stay resident after it is freed; pinned, it is mmapped and given back.
    assert _mmapped_after_a_big_free("default") is False
    assert _mmapped_after_a_big_free("pin") is True
