"""bench/processors: clean + dedup + featurize + join through Kafka and faust, against the ceiling.

* **ceiling**: the same code (:class:`processors.stage.Stage`, serde of every output record),
  over the same raw bytes, in-process with dict state: no Kafka, no faust;
* **worker**: one ``driftline process`` worker (rocksdb tables) over a pre-filled raw topic,
  timed from its first output record to its last (startup and group join excluded);
* the same at **1% poison** (malformed records, dead-lettered), against the clean stream.

Inline labels, so the join is the pass-through (an example per event). Goals: worker ≥ 0.5 of
the ceiling; 1%-poison throughput ≥ 0.95 of clean.

Run: ``python -m bench.processors [--events N]`` → ``bench/results/processors.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from bench._common import broker, write_result
from contracts import serde
from contracts.settings import KafkaSettings
from contracts.spec import load_spec_text
from contracts.topics import Role, owned_topic_names, pipeline_topics
from driftline import kafkautil
from driftline._gc import tune_for_streaming
from processors.stage import Stage, State
from processors.testing import Worker, end_total, mixed_stream, produce, spec_text


def ceiling(spec, records) -> float:
    stage, state = Stage(spec), State.empty()
    t0 = time.perf_counter()
    for o, r in enumerate(records):
        out = stage.process(r.value, 0, o, state)
        if out.reason is None:
            c = out.clean
            serde.dumps(c.as_value())
            vec = {"v": 1, "id": c.id, "key": c.key, "ts": c.ts, "x": out.features, "y": c.y}
            serde.dumps(vec)
            serde.dumps({**vec, "event_ts": c.ts})
    return len(records) / (time.perf_counter() - t0)


def through_kafka(bootstrap: str, text: str, records, home: Path) -> float:
    settings = KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": bootstrap})
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    spec = load_spec_text(text)
    topics = pipeline_topics(spec, namespace)
    kafkautil.create_topics(settings, list(topics.values()))
    spec_path = home / f"{namespace}.yaml"
    spec_path.write_text(text)
    produce(settings, topics[Role.RAW].name, records, partitions=2)
    outs = [topics[Role.CLEAN].name, topics[Role.DLQ].name]
    worker = Worker(spec_path, bootstrap, namespace, home, log=home / f"{namespace}.log")
    try:
        while sum(end_total(settings, t) for t in outs) == 0:
            assert worker.alive(), (home / f"{namespace}.log").read_text()[-2000:]
            time.sleep(0.05)
        t0, first = time.perf_counter(), sum(end_total(settings, t) for t in outs)
        while (done := sum(end_total(settings, t) for t in outs)) < len(records):
            assert worker.alive()
            time.sleep(0.05)
        return (done - first) / (time.perf_counter() - t0)
    finally:
        worker.stop()
        try:
            kafkautil.delete_topics(settings, owned_topic_names(spec, namespace))
        except Exception:  # noqa: BLE001 - best effort
            pass


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    args = ap.parse_args(argv)
    tune_for_streaming()  # the services' GC settings (driftline/_gc.py), for the in-process side too
    text = spec_text(name="bench", partitions=2)
    spec = load_spec_text(text)
    clean = list(mixed_stream(args.events, keys=500, seed=1))
    poison = list(mixed_stream(args.events, keys=500, seed=1, poison_every=100))
    result = {"events": args.events, "spec": "processors.testing.SPEC (9 stateful, 2 stateless features)"}
    result["ceiling_events_per_s"] = round(ceiling(spec, clean))
    result["ceiling_poison_1pct_events_per_s"] = round(ceiling(spec, poison))
    with broker() as bootstrap, tempfile.TemporaryDirectory() as home:
        result["worker_events_per_s"] = round(through_kafka(bootstrap, text, clean, Path(home)))
        result["worker_poison_1pct_events_per_s"] = round(through_kafka(bootstrap, text, poison, Path(home)))
    result["worker_vs_ceiling"] = round(result["worker_events_per_s"] / result["ceiling_events_per_s"], 3)
    result["poison_vs_clean"] = round(result["worker_poison_1pct_events_per_s"] / result["worker_events_per_s"], 3)
    result["goals"] = {"worker_vs_ceiling": 0.5, "poison_vs_clean": 0.95}
    path = write_result("processors", result)
    print(path.read_text())
    return result


if __name__ == "__main__":
    main()
