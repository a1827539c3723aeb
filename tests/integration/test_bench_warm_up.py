"""``bench._common.warm_up``: the traffic every benchmark's private broker serves before it is measured."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.integration


def test_warm_up_sends_and_reads_back_records_and_leaves_no_topic(kafka):
    from bench._common import warm_up

    counts = warm_up(kafka, seconds=1.0, max_seconds=1.0)
    assert counts["sent"] > 1_000
    assert 1.0 <= counts["seconds"] < 30  # one round: at max_seconds it stops, compiling or not
    assert counts["jit_cores_last_round"] >= 0  # the broker runs here, so its compiler threads are read
    assert counts["read"] == counts["sent"]  # read back, every one
    admin, deadline = AdminClient({"bootstrap.servers": kafka}), time.monotonic() + 30
    while True:  # a deletion reaches the broker's metadata shortly after the controller took it
        left = [t for t in admin.list_topics(timeout=30).topics if t.startswith("driftline-bench-warm-up-")]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == []
