"""The learner through a real broker: delayed labels exactly as river, and crash-exact recovery."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from confluent_kafka import KafkaError
from kafka import KafkaProducer

from contracts import serde
from contracts.spec import load_spec
from contracts.topics import Role, pipeline_topics
from driftline import kafkautil
from driftline.checkpoint import Checkpointer
from models import LearnerCore, build_estimator
from processors.testing import wait_until

REPO = Path(__file__).resolve().parents[2]
KEY = b"test-key-0123456789abcdef"

pytestmark = pytest.mark.integration


def write_spec(tmp_path, **overrides) -> Path:
    data = yaml.safe_load((REPO / "examples" / "phishing.yaml").read_text())
    data.update(overrides)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def produce(settings, topic, records, partitions: int | None = None):
    """Send ``records`` to ``topic``; with ``partitions``, record i goes to partition i % partitions."""
    p = KafkaProducer(**settings.kafka_python(), acks="all", linger_ms=5)
    for i, r in enumerate(records):
        p.send(topic, value=serde.dumps(r), partition=None if partitions is None else i % partitions)
    p.flush()
    p.close()


def learn(spec_path, ns, home, *extra, wait=True):
    env = dict(os.environ, DRIFTLINE_NAMESPACE=ns, DRIFTLINE_HOME=str(home),
               DRIFTLINE_SNAPSHOT_KEY=KEY.decode())
    cmd = [sys.executable, "-m", "driftline", "learn", str(spec_path), *extra]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_delayed_labels_reproduce_progressive_val_score_with_delay(settings, namespace, tmp_path):
    from river import datasets, evaluate, metrics

    spec_path = write_spec(tmp_path, labels={"mode": "delayed", "delay_events": 100})
    spec = load_spec(spec_path)
    topics = pipeline_topics(spec, namespace)
    kafkautil.create_topics(settings, list(topics.values()))
    data = list(datasets.Phishing())
    n, delay = len(data), 100
    # The event at position i happens at t=i; the label of event j is revealed at t=j+delay
    # (before the event at that time is predicted), the rest after the stream ends.
    events = [{"v": 1, "id": str(i), "key": None, "ts": float(i), "x": x} for i, (x, _) in enumerate(data)]
    labels = [{"v": 1, "id": str(j), "key": None, "ts": float(min(j + delay, n + j)), "event_ts": float(j),
               "x": data[j][0], "y": data[j][1]} for j in range(n)]
    produce(settings, topics[Role.EXAMPLES].name, labels)  # the order of the topics must not matter
    produce(settings, topics[Role.FEATURES].name, events)

    out = tmp_path / "summary.json"
    proc = learn(spec_path, namespace, tmp_path / "home", "--until-drained", "--summary-json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["events"]["labeled"] == n and got["events"]["unmatched_labels"] == 0
    for name in spec.metrics:
        metric = getattr(metrics, name)()
        evaluate.progressive_val_score(datasets.Phishing(), build_estimator(spec.models["lr"]), metric, delay=delay)
        assert got["models"]["lr"][name] == metric.get()


def synthetic(n, seed=7):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = {f"f{k}": rng.gauss(0, 1) for k in range(6)}
        y = (x["f0"] + 0.5 * x["f1"] - x["f2"] * x["f3"] + rng.gauss(0, 0.3)) > 0
        out.append({"v": 1, "id": f"e{i}", "key": None, "ts": float(i), "x": x, "y": y})
    return out


FIELDS = {f"f{k}": "float" for k in range(6)} | {"y": "bool"}


def numeric_pipeline(settings, namespace, tmp_path, name, **overrides):
    """A spec over :func:`synthetic`'s records, with its topics made: (spec path, spec, topics)."""
    spec_path = write_spec(tmp_path, name=name, source=None, schema={"fields": FIELDS, "label": "y"}, **overrides)
    spec = load_spec(spec_path)
    topics = pipeline_topics(spec, namespace)
    kafkautil.create_topics(settings, list(topics.values()))
    return spec_path, spec, topics


def newest_version(directory: Path) -> int:
    """The newest checkpoint version written under ``directory`` (-1: none yet)."""
    return max((int(f.stem) for f in directory.glob("[0-9]*.snap")), default=-1)  # not the writer's .tmp-*


def test_kill_minus_nine_five_times_gives_the_fault_free_result_exactly(settings, namespace, tmp_path):
    spec_path, spec, topics = numeric_pipeline(
        settings, namespace, tmp_path, "crash",
        models={"lr": {"estimator": "preprocessing.StandardScaler | linear_model.LogisticRegression"},
                "tree": {"estimator": "tree.HoeffdingTreeClassifier", "params": {"grace_period": 50}}},
        metrics=["Accuracy", "LogLoss"], snapshots={"every_events": 1500, "every_seconds": 0.5})
    # Long enough that at least three of the five runs are killed before they drain it: 40,000
    # events were, until the learner's outputs moved to librdkafka made it faster.
    records = synthetic(100_000)
    produce(settings, topics[Role.FEATURES].name, records)

    home = tmp_path / "home"
    checkpoints = home / "snapshots" / namespace / "crash" / "checkpoint"
    rng = random.Random(1)
    kills = 0
    for _ in range(5):
        before = newest_version(checkpoints)
        proc = learn(spec_path, namespace, home, "--until-drained", wait=False)
        # Each kill lands at a random point of learning, after the run's own first checkpoint, not
        # in its start-up: on a machine half as fast, importing and connecting took the whole of
        # a fixed 2-4 s, and no run ever checkpointed.
        wait_until(lambda: proc.poll() is not None or newest_version(checkpoints) > before, 120, every=0.02,
                   what="the learner run's first checkpoint")
        time.sleep(rng.uniform(0.2, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    out = tmp_path / "summary.json"
    final = learn(spec_path, namespace, home, "--until-drained", "--summary-json", str(out))
    assert final.returncode == 0, final.stderr[-3000:]
    got = json.loads(out.read_text())
    assert kills >= 3, "the run finished before it could be killed: make it longer"
    assert got["restored_from"] is not None

    ref = LearnerCore(spec)
    for r in records:
        ref.on_event(r)
    assert got["events"]["learned"] == len(records)
    assert got["models"] == ref.summary()["models"]  # exact

    snap, _ = Checkpointer(home / "snapshots" / namespace / "crash", KEY).latest()
    restored = snap.state["core"]
    probe = [r["x"] for r in synthetic(200, seed=99)]
    for name in ("lr", "tree"):
        assert [restored.runners[name].model.predict_proba_one(x) for x in probe] == \
               [ref.runners[name].model.predict_proba_one(x) for x in probe]


def test_two_learner_shards_split_the_partitions_and_each_is_exact(settings, namespace, tmp_path):
    spec_path, spec, topics = numeric_pipeline(settings, namespace, tmp_path, "shards", topics={"partitions": 2},
                                               metrics=["Accuracy"])
    records = synthetic(6000, seed=11)
    produce(settings, topics[Role.FEATURES].name, records, partitions=2)

    home = tmp_path / "home"
    outs = [tmp_path / f"s{i}.json" for i in range(2)]
    procs = [learn(spec_path, namespace, home, "--until-drained", "--shard", f"{i}/2", "--summary-json", str(outs[i]),
                   wait=False) for i in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    for i in range(2):
        got = json.loads(outs[i].read_text())
        ref = LearnerCore(spec)
        for r in records[i::2]:
            ref.on_event(r)
        assert got["events"]["learned"] == 3000
        assert got["models"] == ref.summary()["models"]


def test_a_checkpoint_with_records_in_the_merge_resumes_at_the_first_one_not_taken(settings, namespace, tmp_path):
    """In a backlog the merge always holds records (it waits for every partition to have a head), so a
    checkpoint must not wait for empty buffers: its cut is each partition's first record not taken."""
    from driftline.learner import LearnerService

    spec_path, spec, topics = numeric_pipeline(settings, namespace, tmp_path, "cut", topics={"partitions": 2},
                                               metrics=["Accuracy"])
    records = synthetic(4000, seed=13)
    produce(settings, topics[Role.FEATURES].name, records, partitions=2)

    home = tmp_path / "home" / "snapshots" / namespace / "cut"  # where `driftline learn` keeps them
    first = LearnerService(spec, settings, namespace, snapshot_dir=home, key=KEY)
    try:
        deadline = time.monotonic() + 60
        while sum(map(len, first.buffers.values())) < len(records) and time.monotonic() < deadline:
            first._fill(first.consumer.poll(timeout_ms=500))
        parts = {tp.partition: buf for tp, buf in first.buffers.items()}
        for i in range(1001):  # the merge's order here: ts = i, on partition i % 2
            first._take(parts[i % 2].popleft())
        first.checkpoint(block=True)
    finally:
        first.close()  # and no final checkpoint: as if killed here
    snap, _ = Checkpointer(home, KEY).latest()
    name = topics[Role.FEATURES].name
    assert snap.meta["offsets"] == {f"{name}:0": 501, f"{name}:1": 500}
    assert snap.meta["counts"]["learned"] == 1001

    out = tmp_path / "summary.json"
    proc = learn(spec_path, namespace, tmp_path / "home", "--until-drained", "--summary-json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["restored_from"] == snap.meta["version"]
    ref = LearnerCore(spec)
    for r in records:
        ref.on_event(r)
    assert got["events"]["learned"] == len(records)
    assert got["models"] == ref.summary()["models"]  # exact: no event lost or learned twice


def test_ctrl_c_finishes_the_batch_and_checkpoints_everything_learned(settings, namespace, tmp_path):
    spec_path, spec, topics = numeric_pipeline(settings, namespace, tmp_path, "ctrlc", metrics=["Accuracy"],
                                               snapshots={"every_events": 10**9, "every_seconds": 3600})
    records = synthetic(3000, seed=17)
    produce(settings, topics[Role.FEATURES].name, records)

    home = tmp_path / "home"
    proc = learn(spec_path, namespace, home, wait=False)  # live: it never drains by itself
    try:
        deadline = time.monotonic() + 120
        while sum(kafkautil.end_offsets(settings, [topics[Role.PREDICTIONS].name]).values()) < len(records):
            assert time.monotonic() < deadline and proc.poll() is None, "the learner did not predict every event"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "taking a checkpoint" in proc.stderr.read()
    snap, _ = Checkpointer(home / "snapshots" / namespace / "ctrlc", KEY).latest()
    assert snap is not None, "no checkpoint on Ctrl-C"  # the spec's own triggers never fire in this run
    assert snap.meta["counts"]["learned"] == len(records)
    assert snap.meta["offsets"] == {f"{topics[Role.FEATURES].name}:0": len(records)}


def test_from_beginning_rebuilds_the_models_from_the_retained_log(settings, namespace, tmp_path):
    spec_path, spec, topics = numeric_pipeline(settings, namespace, tmp_path, "replay", metrics=["Accuracy"])
    records = synthetic(3000, seed=5)
    produce(settings, topics[Role.FEATURES].name, records)
    home = tmp_path / "home"
    first, again, rebuilt = (tmp_path / f"{n}.json" for n in ("first", "again", "rebuilt"))
    assert learn(spec_path, namespace, home, "--until-drained", "--summary-json", str(first)).returncode == 0
    # A second plain run resumes after the checkpoint: nothing new to learn, same model.
    assert learn(spec_path, namespace, home, "--until-drained", "--summary-json", str(again)).returncode == 0
    proc = learn(spec_path, namespace, home, "--until-drained", "--from-beginning", "--summary-json", str(rebuilt))
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b, c = (json.loads(p.read_text()) for p in (first, again, rebuilt))
    assert a["events"]["learned"] == b["events"]["learned"] == c["events"]["learned"] == 3000
    assert b["restored_from"] is not None and c["restored_from"] is None
    assert a["models"] == b["models"] == c["models"]


class _Canary:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_tampered_and_forged_checkpoints_are_refused_and_the_previous_one_restores(settings, namespace, tmp_path):
    from models.snapshot import dump_snapshot

    spec_path, spec, topics = numeric_pipeline(settings, namespace, tmp_path, "tamper", metrics=["Accuracy"],
                                               snapshots={"every_events": 500, "every_seconds": 3600})
    records = synthetic(3000, seed=8)
    produce(settings, topics[Role.FEATURES].name, records)
    home = tmp_path / "home"
    assert learn(spec_path, namespace, home, "--until-drained").returncode == 0

    ckpt_dir = home / "snapshots" / namespace / "tamper" / "checkpoint"
    newest = sorted(ckpt_dir.glob("*.snap"))[-1]
    blob = bytearray(newest.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # a flipped byte in the newest checkpoint
    newest.write_bytes(bytes(blob))
    canary = tmp_path / "canary"
    forged = dump_snapshot({"version": 10**6, "spec": spec.fingerprint()}, {"core": _Canary(str(canary))},
                           b"attacker-key-0000000000000000")
    (ckpt_dir / f"{10**6:012d}.snap").write_bytes(forged)

    out = tmp_path / "s.json"
    proc = learn(spec_path, namespace, home, "--until-drained", "--summary-json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(out.read_text())
    assert not canary.exists()
    assert got["refused_checkpoints"] == 2
    assert got["restored_from"] is not None and got["restored_from"] < int(newest.stem)
    ref = LearnerCore(spec)
    for r in records:
        ref.on_event(r)
    assert got["events"]["learned"] == 3000 and got["models"] == ref.summary()["models"]


def test_each_prediction_goes_to_its_events_partition_in_the_events_order(settings, namespace, tmp_path):
    """Predictions keep their event's partition, as every record does from raw on: a consumer of one
    partition sees that partition's events predicted in the order they came."""
    from processors.testing import read_topic

    spec_path, spec, topics = numeric_pipeline(settings, namespace, tmp_path, "parts", topics={"partitions": 3},
                                               metrics=["Accuracy"])
    records = synthetic(900, seed=3)
    produce(settings, topics[Role.FEATURES].name, records, partitions=3)  # event e{i} on partition i % 3
    proc = learn(spec_path, namespace, tmp_path / "home", "--until-drained")
    assert proc.returncode == 0, proc.stderr[-3000:]

    got = read_topic(settings, topics[Role.PREDICTIONS].name)
    assert len(got) == len(records)
    per_partition: dict[int, list[int]] = {}
    for r in got:
        i = int(r.key.decode().removeprefix("e"))
        assert serde.loads(r.value)["id"] == f"e{i}"
        per_partition.setdefault(r.partition, []).append(i)
    assert per_partition == {p: list(range(p, len(records), 3)) for p in range(3)}


def test_from_timestamp_starts_each_partition_at_its_first_record_appended_since(settings, namespace, tmp_path):
    """``--from-timestamp T`` learns the records the broker appended at or after T (their Kafka
    timestamps), on every partition, and a T after the last record learns nothing."""
    from driftline.learner import LearnerService

    spec_path, spec, topics = numeric_pipeline(settings, namespace, tmp_path, "since", topics={"partitions": 2},
                                               metrics=["Accuracy"])
    records = synthetic(900, seed=3)
    produce(settings, topics[Role.FEATURES].name, records[:600], partitions=2)
    time.sleep(1.0)
    since = time.time()
    time.sleep(0.2)
    produce(settings, topics[Role.FEATURES].name, records[600:], partitions=2)
    time.sleep(1.0)
    after_all = time.time()

    def learned_from(t, sub):
        svc = LearnerService(spec, settings, namespace, from_timestamp=t, snapshot_dir=tmp_path / sub, key=KEY)
        try:
            svc.run(until_drained=True)
            return svc.stats.learned, svc.core.n_events
        finally:
            svc.close()

    assert learned_from(since, "a") == (300, 300)
    assert learned_from(after_all, "b") == (0, 0)


def test_the_learner_benchmark_times_every_event_it_feeds(settings):
    """``bench/learner``'s latency run reads each record's broker timestamp through the learner's
    consumer: every fed event gets a latency (a consumer change once broke it unseen until `make bench`)."""
    from bench.learner import latency, make_spec

    out = latency(make_spec("lr", every=500), settings, rate=500, seconds=1.0)
    assert out["events"] == 500 and 0 < out["p50_ms"] <= out["p99_ms"] <= out["max_ms"] < 60_000


def test_an_output_the_broker_refuses_stops_the_learner_before_its_checkpoint(settings, namespace, tmp_path):
    """The checkpoint's step 1: a cut never passes an output the broker did not take. Here the
    predictions topic refuses every record (``max.message.bytes`` below a prediction's size)."""
    import dataclasses

    from driftline.learner import LearnerService

    spec_path = write_spec(tmp_path, name="refused", source=None, schema={"fields": FIELDS, "label": "y"},
                           metrics=["Accuracy"])
    spec = load_spec(spec_path)
    topics = pipeline_topics(spec, namespace)
    small = dataclasses.replace(topics[Role.PREDICTIONS], configs={"max.message.bytes": "16"})
    kafkautil.create_topics(settings, [small, *(c for r, c in topics.items() if r is not Role.PREDICTIONS)])
    records = synthetic(500, seed=19)
    produce(settings, topics[Role.FEATURES].name, records)

    home = tmp_path / "snapshots"
    svc = LearnerService(spec, settings, namespace, snapshot_dir=home, key=KEY)
    try:
        deadline = time.monotonic() + 60
        while svc.stats.predicted < len(records) and time.monotonic() < deadline:
            svc._fill(svc.consumer.poll(timeout_ms=500))
            svc._drain_buffers(None)
        assert svc.stats.predicted == len(records)
        with pytest.raises(RuntimeError, match=r"output record\(s\) were not acknowledged"):
            svc.checkpoint(block=True)
        assert len(svc.producer.failures) == len(records)
        assert svc.producer.failures[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    finally:
        svc.close()
    assert Checkpointer(home, KEY).latest()[0] is None  # nothing cut past the refused outputs
