"""kill -9 the processor worker and the learner at random points, 5 rounds, during an end-to-end
run (raw → process → features → learn): every feature vector and the final models are exactly
those of a fault-free in-process run of the same code over the same raw records.

Bounded: 3,000 events (each worker restart waits out the dead member's 10 s session); full
(``DRIFTLINE_CHAOS_FULL=1``): 20,000."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
from kafka import KafkaProducer

from bench._stream import envelopes
from contracts.topics import Role
from models import LearnerCore
from processors.stage import Stage, State
from processors.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def reference(spec, raw: list[bytes]):
    """The fault-free run, in-process: the stage over partition 0 in offset order, then the learner core."""
    stage, state, core, vectors = Stage(spec), State.empty(), LearnerCore(spec), {}
    for offset, value in enumerate(raw):
        out = stage.process(value, 0, offset, state)
        c = out.clean
        rec = {"v": 1, "id": c.id, "key": c.key, "ts": c.ts, "x": out.features, "y": c.y}
        vectors[c.id] = out.features
        core.on_event(rec)
    return core, vectors


def test_kill_9_of_processor_and_learner_five_times_gives_the_fault_free_result(kafka, make_pipeline, spec_for,
                                                                                full):
    n = 20_000 if full else 3_000
    p = make_pipeline(spec_for(topics={"partitions": 1}), kafka)
    raw = [v for _, v in envelopes(n, keys=500, seed=3)]
    producer = KafkaProducer(**p.settings.kafka_python(), acks="all", linger_ms=5)
    for (key, value) in envelopes(n, keys=500, seed=3):
        producer.send(p.topics[Role.RAW].name, key=key, value=value)
    producer.flush()
    producer.close()

    seed = int(os.environ.get("DRIFTLINE_CHAOS_SEED", random.randrange(1000)))
    rng = random.Random(seed)
    procs = {"process": p.worker(), "learn": p.learner()}
    progress = {"process": lambda: p.count(Role.FEATURES), "learn": lambda: p.count(Role.PREDICTIONS)}
    total = {"process": n, "learn": 2 * n}
    victims = ["process", "learn", "process", "learn", rng.choice(["process", "learn"])]
    for victim in victims:
        start = progress[victim]()
        target = min(start + rng.randint(n // 40, n // 8), total[victim])
        try:
            wait_until(lambda: progress[victim]() >= target or not procs[victim].alive(), 300, every=0.05,
                       what=f"{victim} progress before the kill (seed {seed})")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {progress[victim]()} of {target}\n{p.diagnose()}") from None
        assert procs[victim].alive(), procs[victim].tail()
        procs[victim].kill()
        procs[victim] = p.worker() if victim == "process" else p.learner()
    try:
        wait_until(lambda: p.count(Role.FEATURES) >= n or not procs["process"].alive(), 300,
                   what=f"every event featurized (seed {seed})")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; {p.count(Role.FEATURES)} of {n}\n{p.diagnose()}") from None
    assert procs["process"].alive(), procs["process"].tail(6000)
    procs["learn"].stop()
    procs["process"].stop()

    out = p.home / "summary.json"
    final = subprocess.run([sys.executable, "-m", "driftline", "learn", str(p.spec_path), "--until-drained",
                            "--summary-json", str(out)], env=p.env(), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    got = json.loads(out.read_text())

    ref, vectors = reference(p.spec, raw)
    features = p.values(Role.FEATURES)
    ids = [f["id"] for f in features]
    assert len(ids) == len(set(ids)) == n, f"duplicated or lost feature vectors (seed {seed})"
    assert all(f["x"] == vectors[f["id"]] for f in features), f"a feature vector differs (seed {seed})"
    predicted = {(r["id"], r["model"]) for r in p.values(Role.PREDICTIONS)}
    assert len(predicted) == 2 * n
    assert got["events"]["learned"] == n and got["restored_from"] is not None
    assert got["models"] == ref.summary()["models"], f"models differ from the fault-free run (seed {seed})"
