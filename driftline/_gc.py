"""Garbage-collector and allocator settings for the long-running services (worker, learner; serving
pins the mmap threshold only).

Three things, measured on the reference pipeline (``bench/``) and the chaos suite's memory soak:

* ``gc.freeze()`` at start: the modules, clients, the app and the restored models live as long as
  the process, so the cyclic collector's full passes need not walk them again and again. Full
  passes took 50-110 ms in the worker and the learner (timed with ``gc.callbacks``); 2-4 ms after.
* a young generation of 20,000 objects instead of 700: a service decodes a fetched batch of up
  to thousands of records into dicts that live until the batch is handled, and then are freed
  by reference counting. With the default, the collector ran every couple of hundred records
  while a batch was decoded, walking objects that were about to be freed anyway. The learner's
  throughput (LR, batched predictions, checkpoints off) went from 19k to 25k events/s; the
  in-process ceiling is unchanged by it.
* glibc's mmap threshold pinned at 128 KiB (``mallopt(M_MMAP_THRESHOLD)``). glibc serves a large
  block with ``mmap`` and gives it back on ``free``, but each such free raises the threshold to that
  block's size (up to 32 MiB), and from then on blocks below it come from the heap, where a freed
  block in the middle stays resident. The services make such blocks all the time: fetch responses of
  up to 16 MiB, model snapshots of megabytes. In a run of the learner over a million events of the
  memory soak's stream, the peak RSS was 461 MiB, still rising over the second half; with the
  threshold pinned, 343 MiB. Setting it also turns off glibc's moving trim threshold.

Each benchmark applies the same settings to its in-process ceiling, so ratios compare like with
like.
"""

from __future__ import annotations

import ctypes
import gc
import sys

__all__ = ["tune_for_streaming", "pin_mmap_threshold", "YOUNG", "MMAP_THRESHOLD"]

YOUNG = 20_000
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def pin_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Serve blocks of ``size`` bytes and more by ``mmap`` for good (glibc). False where not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, size) == 1


def tune_for_streaming() -> None:
    """Freeze what exists now, widen the young generation, pin the mmap threshold (call once,
    after start-up)."""
    pin_mmap_threshold()
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(YOUNG, g1, g2)
