"""The processor and learner metrics, read from fake services (no broker)."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from types import SimpleNamespace

from contracts.spec import load_spec
from driftline._learner_metrics import LearnerMetrics
from models import LearnerCore
from processors._metrics import ProcessorMetrics, metrics_port, new_registry

REPO = Path(__file__).resolve().parents[2]


class FakeConsumer:
    def __init__(self, hw, pos):
        self.hw, self.pos = hw, pos

    def highwater(self, tp):
        return self.hw

    def position(self, tp, timeout_ms=None):
        return self.pos


def fake_learner(tmp_path, core):
    from kafka import TopicPartition

    tp = TopicPartition("ns.agrawal.features", 0)
    checkpointer = SimpleNamespace(published={}, directory=tmp_path, pending=None, last_duration_s=None)
    stats = SimpleNamespace(predicted=0, learned=0, skipped=0)
    return SimpleNamespace(stats=stats, core=core, consumer=FakeConsumer(120, 100), partitions=[tp],
                           buffers={tp: [1, 2, 3]}, checkpointer=checkpointer, checkpoint_pauses=deque())


def sample(m, name, **labels):
    return m.registry.get_sample_value(name, labels)


def test_learner_metrics_read_models_lag_snapshots_and_forget_gone_models(tmp_path):
    core = LearnerCore(load_spec(REPO / "deploy/demo/agrawal-drift.yaml"))
    svc = fake_learner(tmp_path, core)
    m = LearnerMetrics(new_registry(), every_s=0)
    m.observe(svc)
    assert sample(m, "driftline_consumer_lag_records", topic="ns.agrawal.features", partition="0") == 23
    assert sample(m, "driftline_drift_events_total", model="tree") == 0
    assert sample(m, "driftline_snapshot_age_seconds", model="lr") >= 0

    for i in range(400):
        core.on_event({"id": str(i), "ts": float(i), "x": {"salary": float(i % 7)}, "y": i % 2})
    svc.stats.predicted = svc.stats.learned = 400
    (tmp_path / "models" / "lr").mkdir(parents=True)
    (tmp_path / "models" / "lr" / f"{400:012d}.snap").write_bytes(b"x" * 1234)
    svc.checkpointer.published["lr"] = 400
    svc.checkpointer.last_duration_s = 0.2
    svc.checkpoint_pauses.extend([0.004, 0.007])  # two checkpoints since the last look: both observed
    core.drift["tree"].alarms.append(1)
    m.observe(svc)
    assert sample(m, "driftline_stage_events_total", stage="learn", outcome="learned") == 400
    assert sample(m, "driftline_predictions_total", model="lr") == 400
    assert sample(m, "driftline_model_version", model="lr") == 400
    # every alarm of the detector since the first look, the real ones and the one added here
    assert sample(m, "driftline_drift_events_total", model="tree") == len(core.drift["tree"].alarms) >= 1
    assert sample(m, "driftline_snapshot_size_bytes", model="lr") == 1234
    assert sample(m, "driftline_snapshot_age_seconds", model="lr") < 5
    assert sample(m, "driftline_snapshots_total") == 1
    assert sample(m, "driftline_checkpoint_pause_seconds_count") == 2
    assert sample(m, "driftline_checkpoint_pause_seconds_bucket", le="0.005") == 1
    assert not svc.checkpoint_pauses
    champion = core.board.champion
    assert champion is not None and sample(m, "driftline_model_champion", model=champion) == 1
    assert sample(m, "driftline_model_metric", model="lr", metric="Accuracy", window="rolling", goal="max") \
        == core.runners["lr"].metrics(rolling=True)["Accuracy"]

    core._remove("tree")  # a pruned or dropped model: its series go away
    m.observe(svc)
    assert sample(m, "driftline_model_version", model="tree") is None
    assert sample(m, "driftline_model_metric", model="tree", metric="Accuracy", window="rolling", goal="max") is None


def test_processor_metrics_count_only_what_changed_and_never_go_back():
    m = ProcessorMetrics(new_registry())
    msg = SimpleNamespace(topic="t", partition=1, offset=9, timestamp=None)
    m.observe_batch({"clean": 5, "dlq": 0}, [msg], 0.0)
    m.observe_batch({"clean": 5, "dlq": 2}, [msg], 0.0)
    assert sample(m, "driftline_stage_events_total", stage="clean", outcome="accepted") == 5
    assert sample(m, "driftline_stage_events_total", stage="clean", outcome="dead_lettered") == 2
    assert sample(m, "driftline_stage_latency_seconds_count", stage="clean") == 0  # no timestamp, no sample


def test_metrics_port_prefers_the_service_variable():
    env = {"DRIFTLINE_METRICS_PORT": "9200", "DRIFTLINE_PROCESSOR_METRICS_PORT": "9300"}
    assert metrics_port("processor", 9101, env) == 9300
    assert metrics_port("learner", 9102, env) == 9200
    assert metrics_port("learner", 9102, {}) == 9102


def test_store_entries_reads_rocksdbs_estimate_of_each_active_partition_without_walking_it(tmp_path):
    """The processors' table sizes: RocksDB's own key estimate, summed over the active partitions'
    databases, as faust's RocksDB store holds them; an in-memory store is counted."""
    import rocksdict

    from processors._metrics import store_entries

    dbs = []
    for p, n in ((0, 1200), (1, 800)):
        db = rocksdict.Rdict(str(tmp_path / f"p{p}"), options=rocksdict.Options(raw_mode=True))
        for i in range(n):
            db.put(b"key-%d" % i, b"v")
        dbs.append(db)

    class Store:  # faust.stores.rocksdb.Store's view of its partitions
        def _dbs_for_actives(self):
            return iter(dbs)

        def __len__(self):
            raise AssertionError("walked the keys")

    class Table:
        data = Store()

    try:
        assert store_entries(Table()) == 2000
    finally:
        for db in dbs:
            db.close()
    assert store_entries({"a": 1, "b": 2, "c": 3}) == 3


def test_table_sizes_are_read_from_the_tables_not_from_batches():
    """The worker's timer sets the gauge from its tables whether or not a batch came (an idle
    stream's gauge was stale before)."""
    from types import SimpleNamespace

    from processors import _metrics

    app = SimpleNamespace(tables={"seen": {"e1": 1, "e2": 1}, "keys": {"k": {}}})
    _metrics.observe_stores(app)
    get = _metrics.REGISTRY.get_sample_value
    assert get("driftline_state_store_entries", {"store": "seen"}) == 2.0
    app.tables["seen"].clear()
    _metrics.observe_stores(app)
    assert get("driftline_state_store_entries", {"store": "seen"}) == 0.0
    assert get("driftline_state_store_entries", {"store": "keys"}) == 1.0
