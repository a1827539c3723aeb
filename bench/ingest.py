"""bench/ingest: events/s of `driftline ingest` against Debian's kcat (librdkafka) on one file.

Both produce the same 1,000,000-line JSONL file, in the same run, to the same broker,
with the same producer settings (acks=all, idempotent, lz4, linger 20 ms), into
topics of the same partition count:

* **driftline**: ``driftline ingest SPEC --source file:F``, the whole command as a user
  runs it (start-up, reading, schema checks, envelopes, waiting for every ack);
* **kcat**: ``kcat -P -l F``, each line sent as it is (no envelope, no checks, no key).

The ratio driftline/kcat says how close kafka-python comes to librdkafka. When
``bench/results/pipeline.json`` exists, the ingest rate is also compared with the
pipeline's end-to-end throughput (goal: at least 3×, so ingest is never the bottleneck).

Run: ``python -m bench.ingest [--events N]`` (``make bench`` installs kcat and runs every benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench._common import RESULTS, broker, write_result
from contracts.settings import KafkaSettings
from contracts.spec import load_spec
from contracts.topics import Role, TopicContract, pipeline_topics
from driftline import kafkautil

PARTITIONS = 3
SPEC = f"""
name: bench-ingest
schema:
  fields: {{id: str, user: str, x: float, n: int, y: bool}}
  id: id
  key: user
  label: y
topics: {{partitions: {PARTITIONS}}}
models: {{m: {{estimator: linear_model.LogisticRegression}}}}
"""
KCAT_SETTINGS = ["-X", "acks=all", "-X", "enable.idempotence=true", "-X", "compression.codec=lz4",
                 "-X", "linger.ms=20"]


def write_jsonl(path: Path, n: int) -> None:
    with open(path, "w") as f:
        f.writelines(f'{{"id":"e{i}","user":"u{i % 997}","x":{i * 0.25},"n":{i % 50},"y":{"true" if i % 3 else "false"}}}\n'
                     for i in range(n))


def through_driftline(spec_path: Path, data: Path, namespace: str, bootstrap: str) -> dict:
    summary = data.with_suffix(".summary.json")
    env = dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=bootstrap)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "driftline", "ingest", str(spec_path), "--source", f"file:{data}",
                           "--namespace", namespace, "--quiet", "--summary-json", str(summary)],
                          env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"driftline ingest failed: {proc.stderr[-2000:]}")
    s = json.loads(summary.read_text())
    return {"events": s["acknowledged"], "seconds": round(seconds, 2), "events_per_s": round(s["acknowledged"] / seconds)}


def through_kcat(kcat: str, data: Path, topic: str, bootstrap: str, settings: KafkaSettings) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run([kcat, "-P", "-b", bootstrap, "-t", topic, "-l", *KCAT_SETTINGS, str(data)],
                          capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"kcat failed: {proc.stderr[-2000:]}")
    events = sum(kafkautil.end_offsets(settings, [topic]).values())
    return {"events": events, "seconds": round(seconds, 2), "events_per_s": round(events / seconds)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        raise SystemExit("bench.ingest needs kcat: apt-get install -y kcat (make bench installs it)")
    load_start = os.getloadavg()[0]
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="driftline-bench-ingest-") as d:
        settings = KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": bootstrap})
        spec_path = Path(d) / "spec.yaml"
        spec_path.write_text(SPEC)
        data = Path(d) / "events.jsonl"
        write_jsonl(data, args.events)
        run = uuid.uuid4().hex[:8]
        namespace = f"bench-{run}"
        topics = pipeline_topics(load_spec(spec_path), namespace)
        kcat_topic = TopicContract(Role.RAW, f"bench-{run}.kcat", PARTITIONS, None, "none", 1)
        kafkautil.create_topics(settings, [topics[Role.RAW], topics[Role.LABELS], topics[Role.DLQ], kcat_topic])
        try:
            k = through_kcat(kcat, data, kcat_topic.name, bootstrap, settings)
            print(f"kcat       {k['events']:>9} events in {k['seconds']:6.1f}s  {k['events_per_s']:>9,} events/s",
                  flush=True)
            dl = through_driftline(spec_path, data, namespace, bootstrap)
            print(f"driftline  {dl['events']:>9} events in {dl['seconds']:6.1f}s  {dl['events_per_s']:>9,} events/s",
                  flush=True)
        finally:
            kafkautil.delete_topics(settings, [t.name for t in topics.values()] + [kcat_topic.name])
    ratio = dl["events_per_s"] / k["events_per_s"]
    print(f"ratio driftline/kcat: {ratio:.3f}")
    out = {"file": f"{args.events} JSONL lines", "partitions": PARTITIONS, "kcat": k, "driftline": dl,
           "ratio_driftline_vs_kcat": round(ratio, 3), "load_avg_1m_start": round(load_start, 2),
           "load_avg_1m_end": round(os.getloadavg()[0], 2)}
    pipeline = RESULTS / "pipeline.json"
    if pipeline.exists():
        e2e = json.loads(pipeline.read_text()).get("throughput", {}).get("driftline", {}).get("events_per_s")
        if e2e:
            out["pipeline_end_to_end_events_per_s"] = e2e
            out["ingest_vs_pipeline"] = round(dl["events_per_s"] / e2e, 1)
            out["goal_ingest_3x_pipeline_met"] = dl["events_per_s"] >= 3 * e2e
            print(f"ingest / pipeline end-to-end: {out['ingest_vs_pipeline']}x (goal >= 3x)")
    path = write_result("ingest", out)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
