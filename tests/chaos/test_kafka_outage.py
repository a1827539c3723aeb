"""Stop the whole (private) broker mid-stream and start it again: ingest, the processor worker and
the learner back off and carry on without a restart, and every event arrives exactly once.

Bounded: a 10 s outage in a 3,000-event feed at 150 events/s; full (``DRIFTLINE_CHAOS_FULL=1``):
the issue's 30 s outage in 30,000 events at 500 events/s."""

from __future__ import annotations

import json
import re
import time

import orjson
import psutil
import pytest

from bench._stream import records
from contracts.topics import Role
from driftline import localkafka
from processors.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

OUTAGE_WORDS = re.compile(r"(?i)connect|unavailable|disconnect|broker|timed? ?out|retry|retrying|node")


def test_a_kafka_outage_is_ridden_out_without_restarts_and_nothing_is_lost(own_kafka, make_pipeline, spec_for,
                                                                           full, tmp_path):
    n, rate, outage = (30_000, 500, 30.0) if full else (3_000, 150, 10.0)
    layout = own_kafka(1)
    p = make_pipeline(spec_for(), layout.bootstrap)
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records(n, keys=500, seed=9)))
    worker, learner = p.worker(), p.learner()
    ingest = p.ingest(source, "--rate", str(rate))
    wait_until(lambda: p.count(Role.PREDICTIONS) >= 2 * (n // 5), 300, what="the pipeline under way")

    sizes = {s.name: s.log.stat().st_size for s in (worker, learner, ingest)}
    localkafka.stop(layout.data_dir, timeout=30)
    services = (worker, learner, ingest)
    cpu = {s.name: sum(psutil.Process(s.proc.pid).cpu_times()[:2]) for s in services}
    time.sleep(outage)
    busy = {s.name: (sum(psutil.Process(s.proc.pid).cpu_times()[:2]) - cpu[s.name]) / outage
            for s in services}
    localkafka.start(layout, timeout=240, quiet=True)

    wait_until(lambda: not ingest.alive(), 120 + n / rate, what="ingest to finish")
    summary = json.loads((p.home / "ingest.json").read_text())
    assert ingest.proc.returncode == 0, ingest.tail()
    assert summary["acknowledged"] == summary["sent"] == n, summary

    def caught_up() -> bool:
        for s in (worker, learner):
            assert s.alive(), f"{s.name} died in the outage (no restart allowed):\n{s.tail()}"
        return p.count(Role.FEATURES) >= n and p.count(Role.PREDICTIONS) >= 2 * n

    wait_until(caught_up, 300, what="every event featurized and predicted after the outage")

    features = [f["id"] for f in p.values(Role.FEATURES)]
    assert len(features) == len(set(features)) == n
    predictions = [(r["id"], r["model"]) for r in p.values(Role.PREDICTIONS)]
    assert len(set(predictions)) == 2 * n
    print(f"CPU during the {outage:.0f} s outage (cores): {busy}")
    for name, share in busy.items():
        assert share < 0.5, f"{name} spun at {share:.2f} cores while the broker was down: no back-off"
    said = {s.name: s.log.read_text(errors="replace")[sizes[s.name]:] for s in (worker, learner, ingest)}
    silent = [name for name, text in said.items() if not OUTAGE_WORDS.search(text)]
    assert not silent, f"recovered with nothing lost, but {silent} logged nothing about the outage"
