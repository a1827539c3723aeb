"""The processors against a real broker: every raw record ends up exactly once, clean or
dead-lettered; a second worker changes nothing; labels join with the features of prediction time."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import serde
from contracts.spec import load_spec_text
from contracts.topics import Headers, Role, pipeline_topics
from driftline import kafkautil
from processors.testing import Worker, end_total, mixed_stream, produce, read_topic, spec_text, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(tmp_path, settings, namespace, kafka):
    """``make(**spec_kw)`` → (spec, spec path, topics); workers it starts are stopped at the end."""
    workers: list[Worker] = []

    def make(**kw):
        text = spec_text(**kw)
        path = tmp_path / "spec.yaml"
        path.write_text(text)
        spec = load_spec_text(text)
        topics = pipeline_topics(spec, namespace)
        kafkautil.create_topics(settings, list(topics.values()))
        return spec, path, topics

    def start(path, store="rocksdb", name="w", **kw):
        w = Worker(path, kafka, namespace, tmp_path / "home", store=store, stats=tmp_path / f"{name}.json",
                   log=tmp_path / f"{name}.log", **kw)
        workers.append(w)
        return w

    make.start = start
    try:
        yield make
    finally:
        for w in workers:
            w.stop()


def wait_processed(settings, topics, total, workers, timeout=120):
    def done():
        assert any(w.alive() for w in workers), "the worker died"
        return end_total(settings, topics[Role.CLEAN].name) + end_total(settings, topics[Role.DLQ].name) >= total

    wait_until(done, timeout, what=f"{total} records processed")


def origin(r) -> tuple[int, int]:
    h = dict(r.headers)
    return int(h[Headers.ORIGIN_PARTITION]), int(h[Headers.ORIGIN_OFFSET])


def assert_exact_accounting(settings, topics, raw_records):
    """clean ∪ dlq covers every raw record exactly once (by origin), and by id: clean ids are unique."""
    raw = {(r.partition, r.offset) for r in raw_records}
    clean = read_topic(settings, topics[Role.CLEAN].name)
    dlq = read_topic(settings, topics[Role.DLQ].name)
    clean_origins = [origin(r) for r in clean]
    dlq_origins = [origin(r) for r in dlq]
    assert len(set(clean_origins)) == len(clean_origins), "a raw record was cleaned twice"
    assert len(set(dlq_origins)) == len(dlq_origins), "a raw record was dead-lettered twice"
    assert set(clean_origins).isdisjoint(dlq_origins)
    assert set(clean_origins) | set(dlq_origins) == raw
    clean_ids = [serde.loads(r.value)["id"] for r in clean]
    assert len(set(clean_ids)) == len(clean_ids), "an event id appears twice in clean"
    return clean, dlq


def test_every_raw_record_is_clean_or_dead_lettered_exactly_once(pipeline, settings):
    spec, path, topics = pipeline()
    records = list(mixed_stream(4000, keys=40, poison_every=25, dup_every=97, seed=3))
    produce(settings, topics[Role.RAW].name, records, partitions=2)
    w = pipeline.start(path)
    total = len(records)
    wait_processed(settings, topics, total, [w])
    assert w.alive()
    raw = read_topic(settings, topics[Role.RAW].name)
    clean, dlq = assert_exact_accounting(settings, topics, raw)
    # by id: every valid first occurrence is clean; the rest are dead-lettered with a reason
    expected_clean = {r.id for r in records if r.expect == "clean"}
    assert {serde.loads(r.value)["id"] for r in clean} == expected_clean
    reasons = [dict(r.headers)[Headers.REASON].decode() for r in dlq]
    assert reasons.count("duplicate") == sum(1 for r in records if r.expect == "dead" and r.key and r.ts)
    features = read_topic(settings, topics[Role.FEATURES].name)
    assert len(features) == len(clean)
    assert {serde.loads(r.value)["id"] for r in features} == expected_clean
    # inline labels ride in the features records, and are not written a second time as examples
    labels = {r.id: serde.loads(r.value)["data"]["y"] for r in records if r.expect == "clean"}
    assert {(f["id"], f["y"]) for f in map(serde.loads, (r.value for r in features))} == set(labels.items())
    assert end_total(settings, topics[Role.EXAMPLES].name) == 0


def test_a_backlog_several_times_the_stream_buffer_is_processed_exactly_once_in_order(pipeline, settings):
    """A backlog four times the stream's buffer (8,192 events) fills the agent's queue: records then
    go through faust's own handler, which waits for room, and the partition leaves and rejoins the
    fetch as the queue passes its pressure marks (processors.app._direct_deliveries)."""
    spec, path, topics = pipeline()
    records = list(mixed_stream(32_000, keys=200, poison_every=101, seed=11))
    produce(settings, topics[Role.RAW].name, records, partitions=2)
    w = pipeline.start(path)
    wait_processed(settings, topics, len(records), [w], timeout=240)
    assert w.alive()
    clean, _ = assert_exact_accounting(settings, topics, read_topic(settings, topics[Role.RAW].name))
    assert {serde.loads(r.value)["id"] for r in clean} == {r.id for r in records if r.expect == "clean"}
    for role in (Role.CLEAN, Role.FEATURES):
        by_partition: dict[int, list[int]] = {}
        for r in read_topic(settings, topics[role].name):
            p, o = origin(r)
            assert p == r.partition
            by_partition.setdefault(p, []).append(o)
        assert all(offsets == sorted(offsets) for offsets in by_partition.values()), f"{role} out of raw order"


def test_delayed_labels_join_with_the_features_of_prediction_time(pipeline, settings, tmp_path):
    spec, path, topics = pipeline(labels="delayed", ttl=3000.0)
    n, delay = 6000, 1000
    records = list(mixed_stream(n, keys=30, seed=5, disorder=0))
    produce(settings, topics[Role.RAW].name, records, partitions=2)
    labels, unlabeled, late, truth = [], [], [], {}
    for i, r in enumerate(records):
        if i % 50 == 7:
            unlabeled.append(r)
            continue
        lag = 5000 if i % 500 == 3 else delay  # a few labels come after the TTL
        (late if lag > 3000 else labels).append(r)
        truth[r.id] = (i % 3, r.ts + lag)
    ghosts = [f"ghost{i}" for i in range(20)]
    from processors.testing import Record

    label_recs = [Record(eid, eid.encode(), serde.dumps({"v": 1, "id": eid, "y": truth[eid][0], "ts": truth[eid][1]}),
                         "label") for eid in sorted(truth, key=lambda e: truth[e][1])]
    label_recs += [Record(g, g.encode(), serde.dumps({"v": 1, "id": g, "y": 1, "ts": 10.0 + i}), "label")
                   for i, g in enumerate(ghosts)]
    produce(settings, topics[Role.LABELS].name, label_recs)
    w = pipeline.start(path, name="w")
    wait_until(lambda: end_total(settings, topics[Role.EXAMPLES].name) >= len(labels) and w.alive(), 150,
               what="every timely label joined")
    wait_until(lambda: sum(1 for r in read_topic(settings, topics[Role.DLQ].name)
                           if dict(r.headers)[Headers.REASON] in (b"unknown_label", b"expired_label"))
               >= len(ghosts) + len(late), 60, what="unknown and late labels dead-lettered")
    features = {serde.loads(r.value)["id"]: serde.loads(r.value) for r in read_topic(settings, topics[Role.FEATURES].name)}
    examples = [serde.loads(r.value) for r in read_topic(settings, topics[Role.EXAMPLES].name)]
    assert sorted(e["id"] for e in examples) == sorted(r.id for r in labels)
    for e in examples:
        f = features[e["id"]]
        assert e["x"] == f["x"] and e["event_ts"] == f["ts"] and e["key"] == f["key"]
        assert (e["y"], e["ts"]) == truth[e["id"]]
    dlq = read_topic(settings, topics[Role.DLQ].name)
    by_reason = {}
    for r in dlq:
        h = dict(r.headers)
        assert h[Headers.ORIGIN_TOPIC].decode() == topics[Role.LABELS].name
        by_reason.setdefault(h[Headers.REASON].decode(), set()).add(serde.loads(r.value)["id"])
    assert by_reason == {"unknown_label": set(ghosts), "expired_label": {r.id for r in late}}
    import json

    newest = max(r.ts for r in records)
    surely = [r for r in unlabeled if r.ts < newest - 1.2 * 3000]

    def stats():
        path = tmp_path / "w.json"  # written by the worker every 10 s
        return json.loads(path.read_text()) if path.exists() else {"expired_events": 0}

    wait_until(lambda: stats()["expired_events"] >= len(surely) + len(late), 40, what="expiries counted")
    stats = stats()
    assert len(surely) + len(late) <= stats["expired_events"] <= len(unlabeled) + len(late)
    assert stats["unknown_labels"] == len(ghosts) and stats["expired_labels"] == len(late)


def test_export_writes_the_topics_records_as_rows_in_bounded_memory(settings, namespace, kafka, tmp_path):
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from processors.testing import Record

    text = spec_text(labels="delayed")  # the examples topic holds the label join's output
    (tmp_path / "spec.yaml").write_text(text)
    topics = pipeline_topics(load_spec_text(text), namespace)
    kafkautil.create_topics(settings, list(topics.values()))
    n = 200_000

    def example(i):
        return {"v": 1, "id": f"e{i}", "key": f"k{i % 97}", "ts": float(i), "event_ts": float(i) - 5,
                "x": {"a": i * 0.5, "b": -float(i)}, "y": i % 2}

    produce(settings, topics[Role.EXAMPLES].name,
            (Record(None, f"k{i % 97}".encode(), serde.dumps(example(i)), "x") for i in range(n)))

    def export(to, *extra):
        code = ("import resource, sys; from driftline.cli import main; rc = main(sys.argv[1:]); "
                "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", code, "export", str(tmp_path / "spec.yaml"), "--stage",
                              "examples", "--to", str(to), "--namespace", namespace, *extra],
                             env={**__import__("os").environ, "DRIFTLINE_BOOTSTRAP_SERVERS": kafka},
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout.split("RSS")[-1])

    rss_all = export(tmp_path / "all.parquet")
    rss_small = export(tmp_path / "small.parquet", "--until", "20000")
    table = pq.read_table(tmp_path / "all.parquet").to_pandas()
    assert len(table) == n
    rows = table.sort_values("ts").reset_index(drop=True)
    for i in (0, 1, 12345, n - 1):
        want = example(i)
        got = rows.iloc[i]
        assert (got["id"], got["key"], got["ts"], got["event_ts"], got["x.a"], got["x.b"], got["y"]) == (
            want["id"], want["key"], want["ts"], want["event_ts"], want["x"]["a"], want["x"]["b"], want["y"])
    assert list(rows["id"]) == [f"e{i}" for i in range(n)]
    assert len(pq.read_table(tmp_path / "small.parquet")) == 20000
    # bounded: ten times the rows costs well under twice the memory (kB)
    assert rss_all < 1.5 * rss_small, (rss_all, rss_small)


def test_with_inline_labels_export_of_examples_reads_the_labeled_features_records(settings, namespace, kafka,
                                                                                  tmp_path):
    import pandas as pd

    from driftline.cli import main
    from processors.testing import Record

    text = spec_text()
    (tmp_path / "spec.yaml").write_text(text)
    topics = pipeline_topics(load_spec_text(text), namespace)
    kafkautil.create_topics(settings, list(topics.values()))
    feats = [{"v": 1, "id": f"e{i}", "key": f"k{i % 7}", "ts": float(i), "x": {"a": i * 0.5}, **({"y": i % 2} if i % 3 else {})}
             for i in range(300)]
    produce(settings, topics[Role.FEATURES].name,
            [Record(f["id"], f["key"].encode(), serde.dumps(f), "x") for f in feats], partitions=2)
    to = tmp_path / "ex.csv"
    assert main(["export", str(tmp_path / "spec.yaml"), "--stage", "examples", "--to", str(to),
                 "--namespace", namespace, "--until", "240"]) == 0
    rows = pd.read_csv(to).sort_values("ts").reset_index(drop=True)
    want = [f for f in feats if "y" in f and f["ts"] < 240]
    assert list(rows["id"]) == [f["id"] for f in want]
    assert list(rows["event_ts"]) == list(rows["ts"]) == [f["ts"] for f in want]
    assert list(rows["y"]) == [f["y"] for f in want] and list(rows["x.a"]) == [f["x"]["a"] for f in want]


def test_a_second_worker_joining_and_leaving_changes_no_feature(pipeline, settings, namespace, kafka, tmp_path):
    records = list(mixed_stream(16000, keys=60, poison_every=40, seed=9))

    def run(ns, second: bool):
        text = spec_text()
        path = tmp_path / f"{ns}.yaml"
        path.write_text(text)
        topics = pipeline_topics(load_spec_text(text), ns)
        kafkautil.create_topics(settings, list(topics.values()))
        produce(settings, topics[Role.RAW].name, records, partitions=2)
        workers = []
        try:
            workers.append(Worker(path, kafka, ns, tmp_path / "home", log=tmp_path / f"{ns}-1.log"))
            progress = lambda: end_total(settings, topics[Role.CLEAN].name) + end_total(settings, topics[Role.DLQ].name)  # noqa: E731
            if second:
                wait_until(lambda: progress() >= 3000, 120, every=0.1, what="a quarter of the stream")
                workers.append(Worker(path, kafka, ns, tmp_path / "home", log=tmp_path / f"{ns}-2.log"))
                wait_until(lambda: progress() >= 9000, 120, every=0.1, what="half of the stream")
                workers[1].stop()  # leaves mid-stream
            wait_processed(settings, topics, len(records), workers[:1], timeout=150)
        finally:
            for w in workers:
                w.stop()
        raw = read_topic(settings, topics[Role.RAW].name)
        assert_exact_accounting(settings, topics, raw)
        return {serde.loads(r.value)["id"]: serde.loads(r.value)["x"]
                for r in read_topic(settings, topics[Role.FEATURES].name)}

    single = run(namespace, second=False)
    ns2 = f"{namespace}-b"
    try:
        double = run(ns2, second=True)
    finally:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(**settings.kafka_python())
        try:
            admin.delete_topics([t for t in admin.list_topics() if t.startswith(ns2 + ".")])
        finally:
            admin.close()
    assert len(single) == sum(1 for r in records if r.expect == "clean")
    assert double == single


def _poison():
    """Malformed raw records: bad JSON, wrong types, missing fields, NaN/inf, unknown schema version,
    oversized, binary garbage, unknown keys."""
    from hypothesis import strategies as st

    good = {"id": "p", "k": "kx", "t": 1.0, "v": 1.0, "c": "a"}
    wrong = st.one_of(st.lists(st.integers(0, 9), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(0, 9),
                                                                          max_size=2), st.just(True))
    def env(data, v=1):
        return {"v": v, "id": "p", "ts": 1.0, "data": data}

    return st.one_of(
        st.binary(min_size=1, max_size=200).filter(lambda b: not b.strip().startswith(b"{")),
        st.text(max_size=50).map(lambda t: ("{" + t).encode()),
        st.builds(lambda f, w: serde.dumps(env({**good, f: w})), st.sampled_from(["v", "t"]), wrong),
        st.builds(lambda f: serde.dumps(env({k: v for k, v in good.items() if k != f})),
                  st.sampled_from(["v", "c", "k", "t"])),
        st.sampled_from(["NaN", "inf", "-inf", "Infinity"]).map(lambda x: serde.dumps(env({**good, "v": x}))),
        st.integers(2, 99).map(lambda v: serde.dumps(env(good, v))),
        st.integers(1_000_100, 1_040_000).map(lambda n: serde.dumps(env({**good, "c": "a" * n}))),
        st.text(min_size=1, max_size=8).filter(lambda k: k not in good).map(
            lambda k: serde.dumps(env({**good, k: 1}))),
        st.one_of(st.integers(-2**63, 2**63 - 1), st.lists(st.integers(0, 9), max_size=2), st.none()).map(serde.dumps),
    )


def test_poison_records_are_all_dead_lettered_with_reason_and_origin_and_the_worker_goes_on(pipeline, settings):
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st
    from kafka import KafkaAdminClient

    from processors.clean import REASONS
    from processors.testing import Record

    spec, path, topics = pipeline()
    w = pipeline.start(path)
    raw_name, seen = topics[Role.RAW].name, {"n": 0, "dlq": 0}

    @hsettings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_poison(), min_size=20, max_size=60))
    def check(values):
        recs = [Record(None, b"kx", v, "dead") for v in values]
        good = list(mixed_stream(10, keys=3, seed=seen["n"], start=10_000 + seen["n"]))
        produce(settings, raw_name, recs + good)
        seen["n"] += len(recs) + len(good)
        seen["dlq"] += len(recs)
        wait_processed(settings, topics, seen["n"], [w], timeout=120)
        assert w.alive()
        dlq = read_topic(settings, topics[Role.DLQ].name)
        assert len(dlq) == seen["dlq"]
        for r in dlq[-len(recs):] if len(dlq) >= len(recs) else dlq:
            h = dict(r.headers)
            assert h[Headers.REASON].decode() in REASONS
            assert h[Headers.ORIGIN_TOPIC].decode() == raw_name
            int(h[Headers.ORIGIN_PARTITION]), int(h[Headers.ORIGIN_OFFSET])
        assert sorted(r.value for r in dlq[-len(recs):]) == sorted(values)

    check()
    # the source offsets advance past every poison record
    admin = KafkaAdminClient(**settings.kafka_python())
    try:
        group = raw_name.removesuffix(".raw") + ".processors"
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(**settings.kafka_python())
        ends = {tp.partition: e for tp, e in consumer.end_offsets([TopicPartition(raw_name, p) for p in (0, 1)]).items()}
        consumer.close()

        def committed():
            offs = admin.list_group_offsets({group: None}).get(group, {})
            return {tp.partition: m.offset for tp, m in offs.items() if tp.topic == raw_name}

        wait_until(lambda: committed() == {p: e for p, e in ends.items() if e}, 30, what="offsets committed")
    finally:
        admin.close()


def test_state_past_its_ttl_is_swept_from_the_tables_and_their_changelogs(pipeline, settings, namespace):
    """Keys that fall idle lose their feature state, and event ids their dedup entry, once the
    partition's event-time clock is past the TTL: the sweep deletes them from the store and writes
    a tombstone to the changelog (what a restarted worker recovers). Recent state stays."""
    import json

    from contracts.topics import table_changelog
    from processors.testing import Record

    ttl = 200.0
    spec, path, topics = pipeline()
    text = path.read_text().replace("dedup_seconds: 100000", f"dedup_seconds: {ttl:g}").replace(
        "  allowed_lateness_seconds: 15", f"  allowed_lateness_seconds: 15\n  ttl_seconds: {ttl:g}")
    path.write_text(text)
    spec = load_spec_text(text)

    def events(first: int, n: int, prefix: str):  # one event per second of event time
        for i in range(first, first + n):
            eid, k = f"e{i}", f"{prefix}{i % 40}"
            data = {"id": eid, "k": k, "t": float(i), "v": 1.0, "c": "a", "y": 0.5}
            yield Record(eid, k.encode(), serde.dumps({"v": 1, "id": eid, "ts": float(i), "key": k, "data": data}),
                         "clean", float(i))

    old, new = list(events(0, 2000, "old")), list(events(2000, 2000, "new"))
    produce(settings, topics[Role.RAW].name, old + new)
    worker = pipeline.start(path)
    wait_processed(settings, topics, len(old) + len(new), [worker])

    def live(table: str) -> dict:
        state = {}
        for r in read_topic(settings, table_changelog(spec, namespace, table)):
            state[json.loads(r.key)] = None if r.value is None else json.loads(r.value)
        return {k: v for k, v in state.items() if v is not None}

    # Each partition's clock ends near 4,000 s; a sweep starts every ttl/4 of it: everything older than
    # 4,000 - ttl - ttl/4 - a batch's worth of disorder is gone, everything of the last ttl/2 is there.
    horizon = 4000 - ttl - ttl / 4 - 100

    def swept() -> bool:
        keys, seen = live("keys"), live("seen")
        return (not any(k.startswith("old") for k in keys)
                and all(v["ts"] >= horizon for v in seen.values()))

    wait_until(swept, 60, what="idle keys and old event ids swept")
    keys, seen = live("keys"), live("seen")
    assert {f"new{i}" for i in range(40)} <= set(keys)
    assert {f"e{i}" for i in range(4000 - int(ttl / 2), 4000)} <= set(seen)
    assert worker.alive()


def test_a_stalled_raw_partition_is_found_and_fetched_again_and_nothing_is_lost(pipeline, settings, tmp_path):
    """The watchdog (processors/_watchdog.py) against a real stall: once the worker has taken in 300
    records, its raw partitions are paused in faust's and aiokafka's consumers and nothing else
    resumes them; the records sent after that still all come through, exactly once."""
    spec, path, topics = pipeline(partitions=2)
    first = list(mixed_stream(1000, keys=40, poison_every=50, seed=11))
    second = list(mixed_stream(1000, keys=40, poison_every=50, seed=12, start=1000))
    script = Path(__file__).with_name("stalling_worker.py")
    worker = pipeline.start(path, store="memory", name="stalling", program=[str(script)],
                            extra_env={"STALL_TOPIC": topics[Role.RAW].name})
    log = tmp_path / "stalling.log"  # the pipeline fixture's log of a worker named "stalling"

    produce(settings, topics[Role.RAW].name, first, partitions=2)
    wait_processed(settings, topics, 1000, [worker])
    wait_until(lambda: "injected stall" in log.read_text(), 30, what="the stall injected")
    produce(settings, topics[Role.RAW].name, second, partitions=2)
    wait_processed(settings, topics, 2000, [worker])
    worker.stop()
    text = log.read_text()
    assert "stalled:" in text and "fetching it again" in text, text[-3000:]
    assert_exact_accounting(settings, topics, read_topic(settings, topics[Role.RAW].name))
