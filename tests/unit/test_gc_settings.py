"""The services' garbage-collector settings (driftline/_gc.py), applied and then undone."""

from __future__ import annotations

import gc

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
