"""Garbage-collector and allocator settings for the long-running services (worker, learner, ingest
gateway; serving pins the mmap threshold only), and for the batch commands (``ingest``, ``export``).

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
* glibc's mmap threshold pinned (``mallopt(M_MMAP_THRESHOLD)``) at 4 MiB, and its trim threshold at
  16 MiB. glibc serves a large block with ``mmap`` and gives it back on ``free``, but each such free
  raises the threshold to that block's size (up to 32 MiB), and from then on blocks below it come
  from the heap, where a freed block in the middle stays resident. The services make such blocks
  all the time: fetch responses of up to 16 MiB, model snapshots of megabytes. In a run of the
  learner over a million events of the memory soak's stream, the peak RSS was 461 MiB, still rising
  over the second half; with the threshold pinned, 343 MiB. Pinned at glibc's own 128 KiB, though,
  every produce request of the worker (about 1 MiB, encoded by aiokafka in a few joins) and every
  256 KiB record batch was a fresh ``mmap``, paid again in page faults as it was filled: 2.0-2.3 page
  faults an event, about 2 µs each on this machine. At 4 MiB, with the heap's free top kept up to
  16 MiB (pinning the threshold also stops glibc moving the trim threshold, which stays at 128 KiB),
  0.07-0.09 an event, and 69-77 µs of the worker's CPU an event against 75-80 in four alternating
  pairs of backlog drains. Blocks of 4 MiB and more are still mmapped and given back.

Each benchmark applies the same settings to its in-process ceiling, so ratios compare like with
like.

``driftline ingest`` goes further (:func:`collector_paused`): while it feeds, the cyclic collector
runs on a clock, not on allocations. Each record sent is a handful of tracked objects in
kafka-python (its future, the future's callback lists, the bound methods its batch's future keeps)
that live until the broker acknowledges the batch, up to 16 MiB of records at a time
(``ingest.producer.MAX_PENDING_BYTES``), and are then freed by reference counting: kafka-python
clears the callback lists when a batch completes, which breaks the one cycle. Counting allocations,
the collector walked those objects again and again. On 300,000 lines of ``bench/ingest``'s file
(timed with ``gc.callbacks``, 2026-12-07) it ran about 3,000 times, 20-24 of them full passes of up
to 270 ms: 2.7-4.7 s of runs of 11.0-12.8 s (23,346-27,166 events/s). With the services' settings
above, 33,077-40,129 events/s, still 1.6-1.7 s in the collector. Paused, in three alternating pairs:
34,113-50,989 against 26,233-26,693 events/s; on 1,000,000 lines, in two, 51,480-52,446 against
28,224-29,475, with the same peak RSS (190 MB). A pass on the clock found nothing to free in these
runs and took 76-164 ms, once every :data:`COLLECT_EVERY_S`.

``driftline export``, a batch job as well, pauses it the same way: 300,000 features records to
Parquet, three alternating pairs, 8.5-10.2 s against 10.8-13.6 s, the same file and peak RSS (the
collector had taken 2.8-3.1 s of each run, 16 full passes of up to 213 ms).

``driftline gateway``, a long-running service whose records in flight are the same kafka-python
objects, takes :func:`tune_for_streaming`. Under four clients posting 500 records at a time for 15 s
(three alternating pairs), the collector took 0.12-0.15 s of each run instead of 3.4-3.6 s, the
gateway accepted 23,816-34,731 records/s against 17,398-26,924, and the p99 of a request was
145-186 ms against 194-306.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["tune_for_streaming", "collector_paused", "pin_mmap_threshold", "YOUNG", "COLLECT_EVERY_S",
           "MMAP_THRESHOLD", "STREAM_MMAP_THRESHOLD", "STREAM_TRIM_THRESHOLD"]

YOUNG = 20_000
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value (serving: snapshots of megabytes)
STREAM_MMAP_THRESHOLD = 4 << 20  # the worker and the learner (see above)
STREAM_TRIM_THRESHOLD = 16 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
#: How often :func:`collector_paused` runs a full pass: whatever cycles a long ``--loop`` run makes
#: (a reconnect's exceptions and their tracebacks, say) are freed within this many seconds.
COLLECT_EVERY_S = 30.0


def pin_mmap_threshold(size: int = MMAP_THRESHOLD, trim: int | None = None) -> bool:
    """Serve blocks of ``size`` bytes and more by ``mmap`` for good (glibc), and with ``trim``, give
    the heap's free top back only above ``trim`` bytes. False where not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    pinned = mallopt(_M_MMAP_THRESHOLD, size) == 1
    if trim is not None:
        pinned = mallopt(_M_TRIM_THRESHOLD, trim) == 1 and pinned
    return pinned


def tune_for_streaming() -> None:
    """Freeze what exists now, widen the young generation, pin the mmap threshold (call once,
    after start-up)."""
    pin_mmap_threshold(STREAM_MMAP_THRESHOLD, trim=STREAM_TRIM_THRESHOLD)
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(YOUNG, g1, g2)


@contextmanager
def collector_paused(every_s: float = COLLECT_EVERY_S) -> Iterator[None]:
    """Within the block: what exists now frozen, the automatic cyclic collector off, and a full pass
    every ``every_s`` seconds from a thread of its own instead. After it the collector is on or off as
    it was, and the permanent generation is emptied again if it was empty before; an earlier freeze
    (``tune_for_streaming``) is kept, with what the block froze beside it: CPython cannot unfreeze
    part of it."""
    was_enabled = gc.isenabled()
    was_frozen = gc.get_freeze_count() > 0
    gc.collect()
    gc.freeze()
    gc.disable()
    stop = threading.Event()

    def collect() -> None:
        while not stop.wait(every_s):
            gc.collect()

    thread = threading.Thread(target=collect, name="driftline-gc", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if not was_frozen:
            gc.unfreeze()
        if was_enabled:
            gc.enable()
