"""`driftline ingest` against a real broker: a million rows complete, replays, the DLQ,
delayed labels, compression, and a flush on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from contracts import serde
from contracts.spec import load_spec
from contracts.topics import Headers, Role, pipeline_topics
from driftline import kafkautil

pytestmark = pytest.mark.integration

SPEC = """
name: ingt
schema:
  fields: {{id: str, user: str, x: float, n: int, y: bool}}
  {id_line}
  key: user
  label: y
{labels}
topics: {{partitions: 3}}
models: {{m: {{estimator: linear_model.LogisticRegression}}}}
"""


def write_spec(tmp_path, with_id=True, labels=""):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(id_line="id: id" if with_id else "", labels=labels))
    return path


def write_csv(path: Path, n: int) -> None:
    with open(path, "w") as f:
        f.write("id,user,x,n,y\n")
        f.writelines(f"e{i},u{i % 997},{i * 0.25},{i % 50},{'true' if i % 3 else 'false'}\n" for i in range(n))


def ingest(kafka, spec_path, namespace, *args, timeout=300):
    env = dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=kafka)
    summary = Path(str(spec_path) + f".{time.monotonic_ns()}.json")
    proc = subprocess.run([sys.executable, "-m", "driftline", "ingest", str(spec_path), "--namespace", namespace,
                           "--summary-json", str(summary), "--quiet", *args],
                          env=env, capture_output=True, text=True, timeout=timeout)
    return proc, (json.loads(summary.read_text()) if summary.exists() else None)


def consume(settings, topic):
    """Every record of ``topic`` as (partition, key, value, headers)."""
    consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False,
                             max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    try:
        tps = kafkautil.wait_for_partitions(consumer, topic)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for recs in consumer.poll(timeout_ms=1000, max_records=100_000).values():
                out.extend((r.partition, r.key, r.value, r.headers) for r in recs)
        return out
    finally:
        consumer.close()


def test_a_million_row_csv_arrives_complete_with_keys_from_the_key_field(kafka, settings, namespace, tmp_path):
    n = 1_000_000
    csv = tmp_path / "million.csv"
    write_csv(csv, n)
    spec_path = write_spec(tmp_path)
    t0 = time.monotonic()
    proc, summary = ingest(kafka, spec_path, namespace, "--source", f"file:{csv}")
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (summary["sent"], summary["acknowledged"], summary["rejected"], summary["failed"]) == (n, n, 0, 0)
    assert f"sent={n} acknowledged={n} rejected=0 failed=0" in proc.stdout
    topic = pipeline_topics(load_spec(spec_path), namespace)[Role.RAW].name
    ids, partition_of = set(), {}
    count = 0
    for partition, key, value, _ in consume(settings, topic):
        env = serde.loads(value)
        count += 1
        ids.add(env["id"])
        assert key == env["data"]["user"].encode() == env["key"].encode()
        assert partition_of.setdefault(key, partition) == partition  # a key stays on its partition
    assert count == n and ids == {f"e{i}" for i in range(n)}
    print(f"1M rows ingested in {took:.1f}s ({n / took:,.0f} events/s)")


def test_replaying_a_file_twice_gives_the_same_ids(kafka, settings, namespace, tmp_path):
    csv = tmp_path / "small.csv"
    write_csv(csv, 500)
    spec_path = write_spec(tmp_path, with_id=False)  # ids derived from the source and position
    for _ in range(2):
        proc, summary = ingest(kafka, spec_path, namespace, "--source", f"file:{csv}")
        assert proc.returncode == 0 and summary["acknowledged"] == 500, proc.stderr[-2000:]
    topic = pipeline_topics(load_spec(spec_path), namespace)[Role.RAW].name
    ids = [serde.loads(v)["id"] for _, _, v, _ in consume(settings, topic)]
    assert len(ids) == 1000 and len(set(ids)) == 500
    assert set(ids) == {f"file:small.csv:{line}" for line in range(2, 502)}


def test_bad_lines_reach_the_dead_letter_topic_with_their_origin(kafka, settings, namespace, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"id": "a", "user": "u", "x": 1, "n": 1, "y": true}\n{"id": "b", \n\xff\xfe\n'
                     b'{"id": "c", "user": "u", "x": "many", "n": 1, "y": true}\n')
    spec_path = write_spec(tmp_path)
    proc, summary = ingest(kafka, spec_path, namespace, "--source", f"file:{path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (summary["sent"], summary["rejected"], summary["dead_lettered"]) == (1, 3, 3)
    topic = pipeline_topics(load_spec(spec_path), namespace)[Role.DLQ].name
    dlq = consume(settings, topic)
    got = sorted((dict(h)[Headers.ORIGIN_OFFSET], dict(h)[Headers.REASON], v) for _, _, v, h in dlq)
    assert [(o, r) for o, r, _ in got] == [(b"2", b"bad_json"), (b"3", b"not_utf8"), (b"4", b"wrong_type")]
    assert got[1][2] == b"\xff\xfe\n" and all(dict(h)[Headers.ORIGIN_TOPIC] == b"file:mixed.jsonl" for *_, h in dlq)
    proc, summary = ingest(kafka, spec_path, namespace, "--source", f"file:{path}", "--on-error", "fail")
    assert proc.returncode == 1 and summary["rejected"] == 1 and "--on-error fail" in proc.stderr


def test_delayed_labels_go_to_the_labels_topic_after_n_events(kafka, settings, namespace, tmp_path):
    csv = tmp_path / "l.csv"
    write_csv(csv, 300)
    spec_path = write_spec(tmp_path, labels="labels: {mode: delayed, delay_events: 50}")
    proc, summary = ingest(kafka, spec_path, namespace, "--source", f"file:{csv}", "--compression", "zstd")
    assert proc.returncode == 0 and summary["labels_acknowledged"] == 300, proc.stderr[-2000:]
    topics = pipeline_topics(load_spec(spec_path), namespace)
    raw = [serde.loads(v) for *_, v, _ in consume(settings, topics[Role.RAW].name)]
    labels = consume(settings, topics[Role.LABELS].name)
    assert all("y" not in e["data"] for e in raw) and len(raw) == 300
    by_id = {k.decode(): serde.loads(v) for _, k, v, _ in labels}
    assert set(by_id) == {f"e{i}" for i in range(300)}
    assert by_id["e4"]["y"] is True and by_id["e3"]["y"] is False
    label_file = tmp_path / "truth.csv"
    label_file.write_text("id,y\nz1,true\nz2,false\n")
    proc, summary = ingest(kafka, spec_path, namespace, "--source", f"file:{label_file}", "--labels",
                           "--compression", "gzip")
    assert proc.returncode == 0 and summary["acknowledged"] == 2, proc.stderr[-2000:]
    ids = {k for _, k, _, _ in consume(settings, topics[Role.LABELS].name)}
    assert {b"z1", b"z2"} <= ids


def test_sigterm_flushes_and_every_sent_record_is_on_the_topic(kafka, settings, namespace, tmp_path):
    spec_path = write_spec(tmp_path, with_id=False)
    csv = tmp_path / "long.csv"
    write_csv(csv, 100_000)
    summary_path = tmp_path / "sigterm.json"
    env = dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=kafka)
    proc = subprocess.Popen([sys.executable, "-m", "driftline", "ingest", str(spec_path), "--namespace", namespace,
                             "--source", f"file:{csv}", "--rate", "2000", "--quiet",
                             "--summary-json", str(summary_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(6)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(summary_path.read_text())
    assert summary["interrupted"] and 0 < summary["sent"] < 100_000
    assert summary["sent"] == summary["acknowledged"]
    topic = pipeline_topics(load_spec(spec_path), namespace)[Role.RAW].name
    assert len(consume(settings, topic)) == summary["sent"]
