"""Snapshots are verified before anything is unpickled; a torn write is never loaded."""

import hashlib
import hmac
import os
import pickle
import struct
import threading
import time

import pytest

from models.snapshot import (MAGIC, SnapshotRefused, dump_snapshot, load_latest_local, load_snapshot,
                             snapshot_key, write_local)

KEY = b"k" * 32


class Canary:
    """Unpickling this creates a file: proof that a payload ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def forged(meta: dict, payload_obj, key: bytes) -> bytes:
    payload = pickle.dumps(payload_obj)
    meta = {**meta, "payload_sha256": hashlib.sha256(payload).hexdigest()}
    import json

    mb = json.dumps(meta).encode()
    body = struct.pack(">I", len(mb)) + mb + payload
    return MAGIC + hmac.new(key, MAGIC + body, hashlib.sha256).digest() + body


def test_round_trip():
    snap = load_snapshot(dump_snapshot({"model": "lr", "version": 1}, {"a": [1.5]}, KEY), KEY)
    assert snap.meta["version"] == 1 and snap.state == {"a": [1.5]}


@pytest.mark.parametrize("where", [0, 20, 45, -1])
def test_a_flipped_byte_anywhere_is_refused(where):
    blob = bytearray(dump_snapshot({"model": "lr", "version": 1}, {"a": 1}, KEY))
    blob[where] ^= 0x01
    with pytest.raises(SnapshotRefused) as info:
        load_snapshot(bytes(blob), KEY)
    assert info.value.reason in ("bad_signature", "not_a_snapshot")


def test_wrong_key_is_refused():
    with pytest.raises(SnapshotRefused, match="bad_signature"):
        load_snapshot(dump_snapshot({"version": 1}, {}, KEY), b"other-key-of-32-bytes..........")


def test_a_reduce_payload_signed_with_another_key_never_runs(tmp_path):
    canary = tmp_path / "canary"
    blob = forged({"model": "lr", "version": 99}, Canary(str(canary)), key=b"attacker-key-000000000000000000")
    with pytest.raises(SnapshotRefused, match="bad_signature"):
        load_snapshot(blob, KEY)
    assert not canary.exists()


def test_a_plain_pickle_is_refused_unread(tmp_path):
    canary = tmp_path / "canary"
    with pytest.raises(SnapshotRefused, match="not_a_snapshot"):
        load_snapshot(pickle.dumps(Canary(str(canary))), KEY)
    assert not canary.exists()


def test_a_replayed_older_version_is_refused_before_unpickling(tmp_path):
    canary = tmp_path / "canary"
    old = forged({"model": "lr", "version": 3}, Canary(str(canary)), key=KEY)  # validly signed, but old
    with pytest.raises(SnapshotRefused, match="stale_version"):
        load_snapshot(old, KEY, newer_than=5)
    assert not canary.exists()


def test_a_torn_write_falls_back_to_the_previous_snapshot(tmp_path):
    write_local(tmp_path, "lr", 1, dump_snapshot({"version": 1}, {"v": 1}, KEY))
    good2 = dump_snapshot({"version": 2}, {"v": 2}, KEY)
    (tmp_path / "lr" / f"{2:012d}.snap").write_bytes(good2[: len(good2) // 2])  # a crash mid-write
    (tmp_path / "lr" / ".tmp-x.snap").write_bytes(b"partial")  # an abandoned temp file is ignored
    snap, refused = load_latest_local(tmp_path, "lr", KEY)
    assert snap.state == {"v": 1}
    assert len(refused) == 1 and "bad_signature" in refused[0]


def test_write_local_keeps_the_newest(tmp_path):
    for v in range(1, 6):
        write_local(tmp_path, "m", v, dump_snapshot({"version": v}, v, KEY), keep=2)
    assert sorted(p.name for p in (tmp_path / "m").glob("*.snap")) == [f"{4:012d}.snap", f"{5:012d}.snap"]


def test_key_from_env_file_or_generated(tmp_path):
    assert snapshot_key({"DRIFTLINE_SNAPSHOT_KEY": "abc"}) == b"abc"
    f = tmp_path / "key"
    f.write_text("0123456789abcdef0123\n")
    assert snapshot_key({"DRIFTLINE_SNAPSHOT_KEY_FILE": str(f)}) == b"0123456789abcdef0123"
    generated = snapshot_key({"DRIFTLINE_HOME": str(tmp_path / "home")})
    assert len(generated) == 64 and snapshot_key({"DRIFTLINE_HOME": str(tmp_path / "home")}) == generated
    assert oct(os.stat(tmp_path / "home" / "snapshot.key").st_mode & 0o777) == "0o600"


def test_the_checkpoint_writer_child_runs_below_the_learners_priority(tmp_path, monkeypatch):
    """The forked writer pickles at a lower priority, and in the idle class where there is one,
    so it does not take cores from the stream."""
    import os

    from driftline.checkpoint import CHILD_NICE, Checkpointer

    seen = tmp_path / "priority"

    def write(self, version, meta, core, model_metas):
        policy = os.sched_getscheduler(0) if hasattr(os, "SCHED_IDLE") else None
        seen.write_text(f"{os.getpriority(os.PRIO_PROCESS, 0)} {policy}")
        return 0

    monkeypatch.setattr(Checkpointer, "_write", write)
    monkeypatch.setattr(Checkpointer, "_raise_child", staticmethod(lambda p: None))  # as it starts
    c = Checkpointer(tmp_path / "snaps", b"k" * 32, use_fork=True)
    c.start(1, {}, None, {})
    assert c.poll(block=True).version == 1
    assert CHILD_NICE > 0
    nice, policy = seen.read_text().split()
    assert int(nice) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICE)
    if hasattr(os, "SCHED_IDLE"):
        assert int(policy) == os.SCHED_IDLE


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the writer is forked")
def test_the_writer_child_runs_no_finalizer_of_the_parents_garbage(tmp_path, monkeypatch):
    """A collection in the child would finalize the parent's unreachable objects: a librdkafka client
    left in a reference cycle segfaulted a writer child that way (rd_kafka_destroy joins threads a
    fork does not copy). Here the garbage is a cycle whose finalizer notes the pid it ran in."""
    import gc

    from driftline.checkpoint import Checkpointer

    ran = tmp_path / "finalized"

    class Handle:
        def __init__(self):
            self.me = self  # a cycle: only the collector frees it

        def __del__(self):
            with open(ran, "a") as f:
                f.write(f"{os.getpid()}\n")

    def write(self, version, meta, core, model_metas):
        junk = [[i] for i in range(300_000)]  # enough allocations for collections of every generation
        return len(junk)

    monkeypatch.setattr(Checkpointer, "_write", write)
    c = Checkpointer(tmp_path / "snaps", b"k" * 32, use_fork=True)
    gc.collect()
    was = gc.isenabled()
    gc.enable()
    try:
        Handle()
        c.start(1, {}, None, {})
        assert c.poll(block=True).version == 1
        gc.collect()  # the parent's own collection finalizes it, in the parent
    finally:
        if not was:
            gc.disable()
    assert ran.read_text().split() == [str(os.getpid())]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
@pytest.mark.parametrize("block", [True, False])
def test_a_writer_the_learner_waits_for_or_that_runs_long_gets_the_normal_class_back(tmp_path, monkeypatch, block):
    """Idle-class writers must not starve: waited for (``block``), or past the grace period on a
    machine whose cores are never idle, the child is raised to the normal class at its niceness."""
    import driftline.checkpoint as checkpoint
    from driftline.checkpoint import CHILD_NICE, Checkpointer

    started, release, after = tmp_path / "started", tmp_path / "release", tmp_path / "after"

    def write(self, version, meta, core, model_metas):
        started.write_text(str(os.sched_getscheduler(0)))
        deadline = time.monotonic() + 20
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        after.write_text(f"{os.sched_getscheduler(0)} {os.getpriority(os.PRIO_PROCESS, 0)}")
        return 0

    monkeypatch.setattr(Checkpointer, "_write", write)
    monkeypatch.setattr(checkpoint, "CHILD_IDLE_GRACE_S", 0.0 if not block else 3600.0)
    c = Checkpointer(tmp_path / "snaps", b"k" * 32, use_fork=True)
    c.start(1, {}, None, {})
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert int(started.read_text()) == os.SCHED_IDLE
    if block:
        def release_once_raised():  # while the learner is blocked in poll
            while not c.pending.raised:
                time.sleep(0.01)
            release.touch()

        threading.Thread(target=release_once_raised, daemon=True).start()
        done = c.poll(block=True)
    else:
        assert c.poll(block=False) is None  # past the grace: raised, still writing
        release.touch()
        while (done := c.poll(block=False)) is None:
            time.sleep(0.01)
    assert done.version == 1 and done.raised
    policy, nice = after.read_text().split()
    if os.geteuid() == 0:  # raising a priority again needs the privilege
        assert int(policy) == os.SCHED_OTHER
        assert int(nice) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICE)


def test_a_checkpoint_pickles_each_model_once_and_restores_the_same_learner(tmp_path):
    """The checkpoint's core carries each model's own snapshot payload byte for byte (pickled once
    for both), and the restored learner predicts and learns on exactly as the one that was saved."""
    import random

    from contracts.spec import load_spec_text
    from driftline.checkpoint import CHECKPOINT, Checkpointer
    from models import LearnerCore

    spec = load_spec_text(
        "name: ck\nschema: {fields: {a: float, b: float, y: bool}, label: y}\n"
        "models:\n  lr: {estimator: preprocessing.StandardScaler | linear_model.LogisticRegression}\n"
        "  tree: {estimator: tree.HoeffdingTreeClassifier, params: {grace_period: 50}}\n")
    rng = random.Random(7)
    events = [{"id": f"e{i}", "ts": float(i), "x": {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}} for i in range(900)]
    for e in events:
        e["y"] = e["x"]["a"] + 0.5 * e["x"]["b"] > 0
    core = LearnerCore(spec)
    for e in events[:600]:
        core.on_event(e)
    c = Checkpointer(tmp_path, KEY, use_fork=False)
    metas = {name: {"model": name, "version": r.n_learned} for name, r in core.runners.items()}
    c.start(1, {"version": 1}, core, metas)
    assert c.poll(block=True).version == 1

    whole = (tmp_path / CHECKPOINT / f"{1:012d}.snap").read_bytes()
    for name, r in core.runners.items():
        own = (tmp_path / "models" / name / f"{r.n_learned:012d}.snap").read_bytes()
        model_payload = pickle.dumps({"model": r.model, "runner": r}, protocol=pickle.HIGHEST_PROTOCOL)
        assert own.endswith(model_payload)  # the model's own snapshot: its payload comes last
        assert model_payload in whole
        snap = load_snapshot(own, KEY)
        assert snap.state["runner"].model is snap.state["model"]

    restored = c.latest()[0].state["core"]
    assert sorted(restored.runners) == ["lr", "tree"]
    for name, r in restored.runners.items():
        assert r.model is not core.runners[name].model and r.n_learned == 600
    for e in events[600:]:
        got, want = restored.on_event(e), core.on_event(e)
        assert [(p["model"], p["y_pred"], p["proba"]) for p in got[0]] == \
            [(p["model"], p["y_pred"], p["proba"]) for p in want[0]]


def _small_core(n: int = 300):
    import random

    from contracts.spec import load_spec_text
    from models import LearnerCore

    spec = load_spec_text("name: ck\nschema: {fields: {a: float, y: bool}, label: y}\n"
                          "models:\n  lr: {estimator: preprocessing.StandardScaler | linear_model.LogisticRegression}\n")
    core, rng = LearnerCore(spec), random.Random(3)
    for i in range(n):
        a = rng.gauss(0, 1)
        core.on_event({"id": f"e{i}", "ts": float(i), "x": {"a": a}, "y": a > 0})
    return core


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the first checkpoint is forked")
def test_a_small_learner_is_checkpointed_in_place_after_its_first_forked_checkpoint(tmp_path, monkeypatch):
    """The first checkpoint forks (its size is not known yet); once one came to at most
    ``IN_PLACE_MAX_BYTES``, the next is pickled at the cut in the learner's thread and written by a
    thread, to the same files, which restore the same learner. Above the bound it forks again."""
    import driftline.checkpoint as checkpoint
    from driftline.checkpoint import CHECKPOINT, Checkpointer

    core = _small_core()
    c = Checkpointer(tmp_path, KEY, use_fork=True)
    assert c.last_bytes is None
    c.start(1, {"version": 1}, core, {"lr": {"model": "lr", "version": 300}})
    assert c.pending.pid is not None and c.pending.writer is None
    assert c.poll(block=True).version == 1
    assert c.last_bytes == (tmp_path / CHECKPOINT / f"{1:012d}.snap").stat().st_size <= checkpoint.IN_PLACE_MAX_BYTES

    seen = []
    write = checkpoint.write_local
    monkeypatch.setattr(checkpoint, "write_local", lambda *a, **kw: seen.append(threading.current_thread()) or write(*a, **kw))
    for e in range(300, 400):
        core.on_event({"id": f"e{e}", "ts": float(e), "x": {"a": 1.0}, "y": True})
    c.start(2, {"version": 2}, core, {"lr": {"model": "lr", "version": 400}})
    assert c.pending.pid is None and c.pending.writer is not None
    assert c.poll(block=True).version == 2
    assert len(seen) == 2 and threading.main_thread() not in seen  # the model's file and the core's
    assert c.last_bytes == (tmp_path / CHECKPOINT / f"{2:012d}.snap").stat().st_size
    restored = c.latest()[0].state["core"]
    assert restored.runners["lr"].n_learned == 400
    x = {"a": 0.3}
    assert restored.runners["lr"].model.predict_proba_one(x) == core.runners["lr"].model.predict_proba_one(x)
    assert load_snapshot((tmp_path / "models" / "lr" / f"{400:012d}.snap").read_bytes(), KEY).meta["version"] == 400

    monkeypatch.setattr(checkpoint, "IN_PLACE_MAX_BYTES", c.last_bytes - 1)
    c.start(3, {"version": 3}, core, {})
    assert c.pending.pid is not None  # grown past the bound: forked
    assert c.poll(block=True).version == 3


def test_a_writer_thread_that_fails_fails_the_checkpoint_in_the_learners_thread(tmp_path, monkeypatch):
    """A write that fails in the thread (a full disk, say) is raised by ``poll`` in the learner's
    thread, as a failed writer child is, and the checkpoint is not counted as taken."""
    import driftline.checkpoint as checkpoint
    from driftline.checkpoint import Checkpointer

    def full(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_local", full)
    c = Checkpointer(tmp_path, KEY, use_fork=False)
    c.start(1, {"version": 1}, _small_core(50), {})
    with pytest.raises(RuntimeError, match="checkpoint 1 failed in its writer thread .*No space left"):
        c.poll(block=True)
    assert c.pending is None and c.last_bytes is None and c.latest()[0] is None
