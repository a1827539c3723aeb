"""bench/pipeline: the whole pipeline against the peers users would pick instead, side by side.

The reference pipeline is ``examples/bench.yaml``: a synthetic 10-feature stream over 20,000
keys (``bench._stream``), per-key window features, ``StandardScaler | LogisticRegression`` and a
Hoeffding tree, inline labels. Variants, each from the same pre-filled raw topic to its own
predictions topic:

* **ceiling**: the same clean, featurize, predict and learn code in-process over pre-decoded
  records (``Cleaner.clean_envelope``, ``Featurizer.features``, ``LearnerCore.on_event``);
* **naive**: one kafka-python loop (``bench._naive``): json.loads, features in dicts, predict,
  learn, produce each event's predictions;
* **quix**: the same in Quix Streams 3.28.1 (``bench._quix``), feature state in its state store;
* **driftline**: ``driftline process`` worker(s) and ``driftline learn`` as they ship.

Throughput is events over the span between the first and the last prediction's broker append
time (the predictions topics use ``LogAppendTime``), so start-up and group joins are excluded.
Each variant gets ``--throughput-runs`` runs (3), the variants in turn; the median is reported,
the ratios are those of the medians, and ``ratios_per_round`` gives each round's own.
Latency is measured at a steady feed of half driftline's throughput: each event's time is the
wall clock when it is made, and its latency runs to the broker's append of its prediction. The
feed makes the events due every 5 ms, as a producer with Kafka's default ``linger.ms=5`` would
batch them, and hands them to librdkafka, which sends them at once (:func:`feed`). Each variant
gets ``--latency-runs`` runs (3), the variants in turn, and the median of their figures is
reported.
While the feed runs, :class:`bench._common.CpuMeter` measures the cores each process uses (the
variant's services, the broker, this process's feed and watcher) and how busy the machine is;
``cpu_us_per_event`` is the variant's own processes' CPU per event fed; ``broker JIT``, the part of
the broker's that its JVM spent compiling (near 0 on a warm broker). A p99 at half load is
queueing as much as work, and these say how close to full the two cores were. driftline's
latency is also split at its features record (:func:`hops`): worker, then learner.

Scaling: a 6-partition raw topic, one worker and one learner against two workers and two learner
shards (``--shard 0/2``, ``1/2``).

Run: ``python -m bench.pipeline [--events N] [--throughput-runs T] [--latency-seconds S] [--latency-runs R]`` → ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
import yaml
from kafka import KafkaConsumer, KafkaProducer

from bench._common import CpuMeter, broker, in_turn, percentile, write_result
from bench._proc import Proc
from bench._stream import envelopes, stamped, weights
from contracts.settings import KafkaSettings
from contracts.spec import load_spec_text
from contracts.topics import Role, owned_topic_names, pipeline_topics
from driftline import kafkautil
from driftline._gc import tune_for_streaming
from models import LearnerCore
from processors.clean import Cleaner
from processors.features import Featurizer

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "examples" / "bench.yaml"
QUIX_PYTHON = REPO / ".driftline" / "quix-venv" / "bin" / "python"
KEY = "bench-pipeline-key-0123456789abcdef"
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
PEERS = ("naive", "quix")
VARIANTS = (*PEERS, "driftline")
GOALS = {"vs_naive": 2.0, "vs_quix": 1.0, "p99_ms_at_half_load": 50.0}


def spec_text(partitions: int) -> str:
    data = yaml.safe_load(SPEC.read_text())
    data["topics"] = {"partitions": partitions}
    return yaml.safe_dump(data, sort_keys=False)


# ---------------------------------------------------------------- ceiling


def ceiling(spec, n: int, keys: int) -> float:
    """Clean, featurize, predict and learn in-process over pre-decoded envelopes: no Kafka."""
    envs = [orjson.loads(v) for _, v in envelopes(n, keys)]
    cleaner, featurizer, core, states = Cleaner(spec), Featurizer(spec), LearnerCore(spec), {}
    t0 = time.perf_counter()
    for env in envs:
        c = cleaner.clean_envelope(env)
        x, states[c.key] = featurizer.features(c.x, c.ts, states.get(c.key))
        core.on_event({"id": c.id, "ts": c.ts, "x": x, "y": c.y})
    return n / (time.perf_counter() - t0)


# ---------------------------------------------------------------- topics and watching


class Run:
    """One variant's topics: a fresh namespace, the raw topic and a LogAppendTime predictions topic."""

    def __init__(self, settings: KafkaSettings, partitions: int):
        self.settings = settings
        self.namespace = f"bench-{uuid.uuid4().hex[:8]}"
        self.text = spec_text(partitions)
        self.spec = load_spec_text(self.text)
        self.topics = pipeline_topics(self.spec, self.namespace)
        pred = dataclasses.replace(self.topics[Role.PREDICTIONS], configs=APPEND_TIME)
        peers = [dataclasses.replace(pred, name=f"{pred.name}-{peer}") for peer in PEERS]
        kafkautil.create_topics(settings, [pred, *peers])
        kafkautil.create_topics(settings, list(self.topics.values()))
        self.raw = self.topics[Role.RAW].name

    def predictions(self, variant: str) -> str:
        name = self.topics[Role.PREDICTIONS].name
        return name if variant == "driftline" else f"{name}-{variant}"

    def delete(self) -> None:
        try:
            admin_names = owned_topic_names(self.spec, self.namespace)
            admin_names += [self.predictions(v) for v in PEERS]
            kafkautil.delete_topics(self.settings, admin_names)
        except Exception:  # noqa: BLE001 - clean-up is best effort
            pass


def prefill(settings: KafkaSettings, topic: str, n: int, keys: int) -> None:
    p = KafkaProducer(**settings.kafka_python(), acks="all", linger_ms=20, batch_size=1 << 20)
    for key, value in envelopes(n, keys):
        p.send(topic, key=key, value=value)
    p.flush()
    p.close()


class Watch(threading.Thread):
    """Reads a predictions topic as it fills: events predicted (by the first model), the broker
    append times of the first and last, and each event's latency (append time - event time).

    Every figure comes from the broker's append times, so the watcher may read late: it asks for
    1 MiB or 250 ms of records a fetch, where a fetch per new record took 0.09 of a core of the
    two at 4,500 events/s."""

    def __init__(self, settings: KafkaSettings, topic: str, since_ts: float = 0.0, keep_ids: bool = False):
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False, group_id=None,
                                      fetch_max_bytes=32 << 20, fetch_min_bytes=1 << 20, fetch_max_wait_ms=250)
        tps = kafkautil.wait_for_partitions(self.consumer, topic)
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.since_ts = since_ts
        self.n = self.n_first = 0
        self.first = self.last = None
        self.latencies_ms: list[float] = []
        self.appended: dict[str, int] | None = {} if keep_ids else None  # event id → append time (ms)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for records in self.consumer.poll(timeout_ms=200, max_records=20_000).values():
                for r in records:
                    v = orjson.loads(r.value)
                    items = v["batch"] if "batch" in v else [v]
                    seen = 0
                    for p in items:
                        if p.get("model", "lr") != "lr":
                            continue
                        seen += 1
                        if p["ts"] >= self.since_ts > 0:
                            self.latencies_ms.append(r.timestamp - p["ts"] * 1000.0)
                            if self.appended is not None:
                                self.appended[p["id"]] = r.timestamp
                    if seen:
                        if self.first is None:
                            self.first, self.n_first = r.timestamp, seen
                        self.first = min(self.first, r.timestamp)
                        self.last = r.timestamp if self.last is None else max(self.last, r.timestamp)
                        self.n += seen
        self.consumer.close()

    def wait(self, n: int, procs, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while self.n < n:
            dead = [p for p in procs if not p.alive()]
            if dead:
                raise RuntimeError(f"{what}: {dead[0]} exited early:\n{dead[0].tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {self.n} of {n} events predicted within {timeout:.0f}s")
            time.sleep(0.1)

    def rate(self) -> float:
        return (self.n - self.n_first) / max(1e-9, (self.last - self.first) / 1000.0)

    def close(self) -> None:
        self.stopping.set()
        self.join(10)


# ---------------------------------------------------------------- services


def _driftline(args: list[str], name: str, profile_dir: Path | None) -> list[str]:
    """The command of a driftline service; under pyinstrument when profiling."""
    if profile_dir is None:
        return [sys.executable, "-m", "driftline", *args]
    out = profile_dir / f"{name}-{uuid.uuid4().hex[:4]}.txt"
    return [sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(out), "-m", "driftline", *args]


def start_driftline(run: Run, bootstrap: str, home: Path, workers: int = 1, shards: int = 1,
                    profile_dir: Path | None = None) -> list:
    spec_path = home / f"{run.namespace}.yaml"
    spec_path.write_text(run.text)
    env = dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=bootstrap, DRIFTLINE_NAMESPACE=run.namespace,
               DRIFTLINE_HOME=str(home), DRIFTLINE_SNAPSHOT_KEY=KEY, DRIFTLINE_METRICS_PORT="0")
    procs = [Proc("driftline process", _driftline(["process", str(spec_path)], "process", profile_dir), env,
                  home / f"worker-{i}.log") for i in range(workers)]
    for i in range(shards):
        args = ["learn", str(spec_path)] + (["--shard", f"{i}/{shards}"] if shards > 1 else [])
        procs.append(Proc("driftline learn", _driftline(args, "learn", profile_dir), env, home / f"learner-{i}.log"))
    return procs


def start_peer(variant: str, run: Run, bootstrap: str, home: Path) -> list:
    args = ["--bootstrap", bootstrap, "--topic", run.raw, "--out", run.predictions(variant),
            "--group", f"{run.namespace}-{variant}"]
    if variant == "naive":
        return [Proc("naive", [sys.executable, "-m", "bench._naive", *args], dict(os.environ), home / "naive.log")]
    if not QUIX_PYTHON.exists():
        raise RuntimeError(f"no Quix Streams virtualenv at {QUIX_PYTHON}: run `make bench` (it makes one)")
    state = home / "quix-state"
    return [Proc("quix", [str(QUIX_PYTHON), str(REPO / "bench" / "_quix.py"), *args, "--state-dir", str(state)],
                 dict(os.environ), home / "quix.log")]


def start(variant: str, run: Run, bootstrap: str, home: Path, **kw) -> list:
    if variant == "driftline":
        return start_driftline(run, bootstrap, home, **kw)
    return start_peer(variant, run, bootstrap, home)


def stop_all(procs) -> None:
    for p in procs:
        try:
            p.stop()
        except Exception:  # noqa: BLE001 - stop the others regardless
            pass


# ---------------------------------------------------------------- measurements


def throughput(variant: str, settings, bootstrap: str, n: int, keys: int, partitions: int = 2,
               timeout: float = 900.0, **kw) -> dict:
    """Events/s from a pre-filled raw topic to the predictions topic."""
    run = Run(settings, partitions)
    prefill(settings, run.raw, n, keys)
    watch = Watch(settings, run.predictions(variant))
    watch.start()
    with tempfile.TemporaryDirectory(prefix="dl-proof-bench-") as d:
        procs = start(variant, run, bootstrap, Path(d), **kw)
        try:
            watch.wait(n, procs, timeout, variant)
        finally:
            stop_all(procs)
            watch.close()
            run.delete()
    return {"events": n, "events_per_s": round(watch.rate()),
            "seconds": round((watch.last - watch.first) / 1000.0, 2)}


def feed(settings: KafkaSettings, topic: str, items, rate: float | None = None, tick_s: float = 0.005,
         producer=None) -> float:
    """Send ``items`` ((key, make_value) pairs; ``make_value()`` stamps the event when it is made),
    ``rate`` per second (or at once); the seconds it took. ``producer``: one that a warm-up has
    already sent through (kept open), else a new one.

    Like a producer with Kafka's default ``linger.ms=5``: every ``tick_s`` the events due are made,
    stamped and handed to librdkafka, through the learner's producer
    (:class:`driftline._produce.OutputProducer`), which sends them at once (``linger.ms=0``), each
    to the partition Kafka's default partitioner gives its key (murmur2). Their latency runs from
    that stamp, so the wait for the tick is not counted, nor hidden: the stamp is when the event
    exists. The feed is not the pipeline under test, so it should take as little of the two
    cores as it can: at 2,050 events/s this takes 0.11-0.12 of a core (its loop 0.05, librdkafka's
    thread 0.07), where record batches built and sent with aiokafka took 0.26, one kafka-python
    ``send`` per event half a core, and one aiokafka ``send`` per event 0.36.
    """
    own = producer is None
    if own:
        producer = feed_producer(settings)
    it, sent, done = iter(items), 0, False
    t0 = time.time()
    while not done:
        due = sent + 10_000 if not rate else int((time.time() - t0) * rate) + 1
        while sent < due:
            item = next(it, None)
            if item is None:
                done = True
                break
            key, make_value = item
            producer.send(topic, key, make_value())
            sent += 1
        producer.poll()
        if rate and not done:
            time.sleep(max(tick_s, t0 + sent / rate - time.time()))
    elapsed = time.time() - t0
    left = producer.flush(120.0)
    if producer.failures or left:
        raise RuntimeError(f"the feed lost {len(producer.failures) + left} of {sent} events "
                           f"({producer.failures[0].str() if producer.failures else 'unacknowledged after 120 s'})")
    if own:
        producer.close()
    return elapsed


def feed_producer(settings: KafkaSettings):
    """The feed's producer: the learner's (:class:`driftline._produce.OutputProducer`): acks=all,
    murmur2 to Kafka's partitions, waits for room when full, ``linger.ms`` 0.

    A latency run sends its warm-up through the producer that then sends the measured events. An
    idempotent librdkafka producer sends nothing before it has its producer id, and it asks for one
    from a timer that retries every 500 ms when no broker is up yet (librdkafka's ``eos`` debug:
    "No brokers available for Idempotent producer", then "Acquiring ProducerId" half a second
    later): six new producers each had their first record acknowledged 504-509 ms after they were
    made. A run with a new producer for its measured events counted that half second in them: the
    first second of events waited 150-550 ms, the p99 of a whole run (420-550 ms for the LR learner
    at 6,000 events/s against 9-50 with the warm producer, six runs each; the pipeline at 2,700
    events/s: max 937-964 ms against 199-377, three alternating pairs; 2026-12-07)."""
    from driftline._produce import OutputProducer

    return OutputProducer(settings, max_message_bytes=1 << 20, linger_ms=0)


def hops(settings: KafkaSettings, features_topic: str, appended: dict[str, int]) -> dict:
    """driftline's latency in two parts, per event: from its time to its features record being made
    in the worker (the record's ``CreateTime``: the raw topic, the worker's fetch, clean and
    featurize), and from there to its prediction's append (the rest of the worker's batch and its
    send, the features topic, the learner's fetch, predict and learn, the predictions' send).

    ``appended`` maps event ids to their prediction's append time (ms), as :class:`Watch` keeps them.
    """
    consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False, group_id=None,
                             fetch_max_bytes=32 << 20)
    made, rest = [], []
    try:
        tps = kafkautil.wait_for_partitions(consumer, features_topic)
        starts, ends = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        for tp in tps:
            for r in kafkautil.read_range(consumer, tp, starts[tp], ends[tp], max_records=20_000):
                v = orjson.loads(r.value)
                done = appended.get(v["id"])
                if done is not None:
                    made.append(r.timestamp - v["ts"] * 1000.0)
                    rest.append(done - r.timestamp)
    finally:
        consumer.close()
    return {"to_features_p50_ms": percentile(made, 50), "to_features_p99_ms": percentile(made, 99),
            "features_to_prediction_p50_ms": percentile(rest, 50),
            "features_to_prediction_p99_ms": percentile(rest, 99), "events": len(made)}


def latency(variant: str, settings, bootstrap: str, rate: float, seconds: float, keys: int) -> dict:
    """p50/p99 of event time → prediction appended, at a steady ``rate`` of events per second
    (for driftline, also split at the worker's features record: :func:`hops`)."""
    run = Run(settings, 2)
    rng, w = random.Random(5), weights()

    def events(start: int, n: int):
        """The events, made now (the feed only stamps them: its CPU is not the pipeline's)."""
        made = []
        for i in range(start, start + n):
            key = f"k{rng.randrange(keys)}"
            made.append((key.encode(), stamped(i, key, rng, w)))
        return ((key, lambda at=at: at(time.time())) for key, at in made)

    warm = 200
    producer = feed_producer(settings)
    feed(settings, run.raw, events(0, warm), producer=producer)  # until every service answers: start-up and joins are not measured
    watch = Watch(settings, run.predictions(variant), keep_ids=variant == "driftline")
    watch.start()
    split, done = None, False
    with tempfile.TemporaryDirectory(prefix="dl-proof-bench-") as d:
        procs = start(variant, run, bootstrap, Path(d))
        try:
            watch.wait(warm, procs, 300, f"{variant} warm-up")
            total = int(rate * seconds)
            watch.since_ts = time.time()
            port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
            names = [p.name if [q.name for q in procs].count(p.name) == 1 else f"{p.name} {i}"
                     for i, p in enumerate(procs)]
            # Made before the feed starts and the meter runs (about 18 µs an event), and kept out of the
            # collector (and everything older): its passes over them stopped the feed for up to 30 ms
            # at a time, and it then sent a burst.
            fed = events(warm, total)
            gc.collect()
            gc.freeze()
            meter = CpuMeter({**{n: p.proc.pid for n, p in zip(names, procs)}, "bench (feed, watch)": os.getpid()},
                             listening={"broker": port}).start()
            sent_s = feed(settings, run.raw, fed, rate, producer=producer)
            cores = meter.stop()  # while the feed ran: the steady state, not the drain after it
            watch.wait(warm + total, procs, 120 + seconds, f"{variant} latency run")
            done = True
        finally:
            stop_all(procs)
            watch.close()
            producer.close()
            try:
                if done and watch.appended:
                    split = hops(settings, run.topics[Role.FEATURES].name, watch.appended)
            finally:
                run.delete()
    lat = watch.latencies_ms
    busy, metered_s = cores.pop("machine_busy"), cores.pop("seconds")
    # The variant's own processes: not the broker, nor this process's feed and watcher.
    mine = sum(v for k, v in cores.items() if not k.startswith("broker") and k != "bench (feed, watch)")
    return {"rate": round(rate), "events": len(lat), "feed_seconds": round(sent_s, 2),
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else None,
            "cores": cores, "cpu_us_per_event": round(mine * metered_s / total * 1e6, 1), "machine_busy": busy,
            **({"hops": split} if split else {})}


def median_throughput(rates: list[float], events: int) -> dict:
    """The median of a variant's throughput runs, with the runs.

    >>> median_throughput([5000, 7000, 6000], 30000)
    {'events': 30000, 'events_per_s': 6000, 'runs': [5000, 7000, 6000]}
    """
    import statistics

    return {"events": events, "events_per_s": round(statistics.median(rates)), "runs": list(rates)}


def median_run(runs: list[dict]) -> dict:
    """The median of each figure over latency runs, with the runs themselves: one run's p99 on
    this shared machine moves by 2× from one minute to the next.

    >>> m = median_run([{"rate": 10, "p50_ms": 1.0, "p99_ms": 9.0, "cores": {"a": 0.5}},
    ...                 {"rate": 10, "p50_ms": 3.0, "p99_ms": 5.0, "cores": {"a": 0.7}},
    ...                 {"rate": 10, "p50_ms": 2.0, "p99_ms": 7.0, "cores": {"a": 0.6}}])
    >>> m["p99_ms"], m["cores"]
    (7.0, {'a': 0.6})
    """
    import statistics

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    out = {k: med(r.get(k) for r in runs) for k in keys}
    for k, v in runs[0].items():
        if isinstance(v, dict):
            out[k] = {sub: med(r.get(k, {}).get(sub) for r in runs) for sub in v}
    return {**out, "runs": runs}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=60_000,
                    help="events per throughput run (60,000: about 8 s of driftline's, so startup edges weigh little)")
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--throughput-runs", type=int, default=3,
                    help="throughput runs per variant, the variants in turn; the median is reported")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--latency-runs", type=int, default=3, help="latency runs per variant; the median is reported")
    ap.add_argument("--variants", default="naive,quix,driftline",
                    help=f"comma-separated, from {','.join(VARIANTS)}; the in-process ceiling always runs")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--profile", metavar="DIR", help="also profile driftline's services with pyinstrument into DIR")
    args = ap.parse_args(argv)
    tune_for_streaming()  # the services' GC settings (driftline/_gc.py), for the in-process side too
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        ap.error(f"--variants: unknown {', '.join(unknown) or '(none given)'}; choose from {','.join(VARIANTS)} "
                 "(the in-process ceiling always runs)")
    if "quix" in variants and not QUIX_PYTHON.exists():
        print(f"skipping quix: no {QUIX_PYTHON} (make bench creates it)", flush=True)
        variants.remove("quix")
    spec = load_spec_text(spec_text(2))
    out: dict = {"spec": "examples/bench.yaml", "events": args.events, "keys": args.keys, "throughput": {},
                 "latency": {}, "goals": GOALS, "load_avg_1m_start": round(os.getloadavg()[0], 2)}
    c = ceiling(spec, min(args.events, 50_000), args.keys)
    out["throughput"]["ceiling"] = {"events": min(args.events, 50_000), "events_per_s": round(c)}
    print(f"{'ceiling':10} {c:9.0f} ev/s", flush=True)
    with broker() as bootstrap:
        settings = KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": bootstrap})
        def full_rate(v: str) -> int:
            r = throughput(v, settings, bootstrap, args.events, args.keys)
            print(f"{v:10} {r['events_per_s']:9.0f} ev/s  ({r['events']} events in {r['seconds']} s)", flush=True)
            return r["events_per_s"]

        rates = in_turn(args.throughput_runs, variants, full_rate)  # the variants in turn, as for latency
        for v in variants:
            out["throughput"][v] = r = median_throughput(rates[v], args.events)
            print(f"{v:10} median of {len(rates[v])}: {r['events_per_s']:.0f} ev/s", flush=True)
        if "driftline" in variants:  # each round's ratios: side by side within a few minutes
            out["ratios_per_round"] = {f"driftline_vs_{v}": [round(d / o, 3) for d, o in zip(rates["driftline"], rates[v])]
                                       for v in variants if v != "driftline"}
        base = out["throughput"].get("driftline", {}).get("events_per_s") or max(
            r["events_per_s"] for k, r in out["throughput"].items() if k != "ceiling")
        def half_load(v: str) -> dict:
            r = latency(v, settings, bootstrap, base / 2, args.latency_seconds, args.keys)
            print(f"{v:10} at {r['rate']} ev/s: p50 {r['p50_ms']:.0f} ms  p99 {r['p99_ms']:.0f} ms  "
                  f"max {r['max_ms']:.0f} ms  {r['cpu_us_per_event']:.0f} µs CPU/event  "
                  f"machine {r['machine_busy']:.0%} busy  {r['cores']}", flush=True)
            return r

        runs = in_turn(args.latency_runs, variants, half_load)  # the variants in turn
        for v in variants:
            out["latency"][v] = r = median_run(runs[v])
            print(f"{v:10} median of {len(runs[v])}: p50 {r['p50_ms']:.0f} ms  p99 {r['p99_ms']:.0f} ms", flush=True)
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            r = throughput("driftline", settings, bootstrap, args.events, args.keys, profile_dir=Path(args.profile))
            out["profiled_driftline"] = {**r, "reports": args.profile}
        if not args.no_scaling:
            try:
                one = throughput("driftline", settings, bootstrap, args.events, args.keys, partitions=6, timeout=300)
                two = throughput("driftline", settings, bootstrap, args.events, args.keys, partitions=6,
                                 workers=2, shards=2, timeout=300)
                out["scaling"] = {"partitions": 6, "one_worker_one_learner": one, "two_workers_two_shards": two,
                                  "speedup": round(two["events_per_s"] / one["events_per_s"], 2),
                                  "cores": os.cpu_count(),
                                  "note": "broker, workers, learners and the watcher share these cores"}
                print(f"scaling   1+1 {one['events_per_s']} ev/s   2+2 {two['events_per_s']} ev/s   "
                      f"speed-up {out['scaling']['speedup']}", flush=True)
            except (RuntimeError, TimeoutError) as exc:
                out["scaling"] = {"partitions": 6, "error": str(exc)[:2000]}
                print(f"scaling failed: {exc}", flush=True)
    d = out["throughput"].get("driftline", {}).get("events_per_s")
    if d:
        out["ratios"] = {f"driftline_vs_{k}": round(d / r["events_per_s"], 3)
                         for k, r in out["throughput"].items() if k != "driftline"}
        p99 = out["latency"].get("driftline", {}).get("p99_ms")
        out["goals_met"] = {"vs_naive": out["ratios"].get("driftline_vs_naive", 0) >= GOALS["vs_naive"],
                            "vs_quix": out["ratios"].get("driftline_vs_quix", 0) >= GOALS["vs_quix"],
                            "p99_ms_at_half_load": p99 is not None and p99 < GOALS["p99_ms_at_half_load"]}
    out["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print("wrote", write_result("pipeline", out), flush=True)
    return out


if __name__ == "__main__":
    main()
