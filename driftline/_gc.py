"""Garbage-collector settings for the long-running services (worker, learner).

Two things, both measured on the reference pipeline (``bench/``):

* ``gc.freeze()`` at start: the modules, clients, the app and the restored models live as long as
  the process, so the cyclic collector's full passes need not walk them again and again. Full
  passes took 50-110 ms in the worker and the learner (timed with ``gc.callbacks``); 2-4 ms after.
* a young generation of 20,000 objects instead of 700: a service decodes a fetched batch of up
  to thousands of records into dicts that live until the batch is handled, and then are freed
  by reference counting. With the default, the collector ran every couple of hundred records
  while a batch was decoded, walking objects that were about to be freed anyway. The learner's
  throughput (LR, batched predictions, checkpoints off) went from 19k to 25k events/s; the
  in-process ceiling is unchanged by it.

Each benchmark applies the same settings to its in-process ceiling, so ratios compare like with
like.
"""

from __future__ import annotations

import gc

__all__ = ["tune_for_streaming", "YOUNG"]

YOUNG = 20_000


def tune_for_streaming() -> None:
    """Freeze what exists now and widen the young generation (call once, after start-up)."""
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(YOUNG, g1, g2)
