"""``driftline run``: the whole pipeline on one machine, finite or live.

The finite mode (``--until-drained``) goes through these steps, in order:

1. **Find Kafka.** Use ``DRIFTLINE_BOOTSTRAP_SERVERS`` when it answers; else,
   when it is the local default, start the local broker (and stop it at the end).
2. **Make a namespace.** Topics are ``run-<id>.<prefix>.<role>``, so a run never
   reads an earlier run's events; they are deleted at the end (``--keep-topics``).
3. **Start a processor worker** (``driftline process``) as a child process.
4. **Ingest** the spec's source once, counting what the broker acknowledged.
5. **Wait for the processors** until every ingested event is either clean or
   dead-lettered, so the learner's drain target is final.
6. **Learn until drained**, then write the summary and stop what we started.

Without ``--until-drained`` (``make demo``), ingest runs in a thread (looping
the source at ``--rate``), the learner runs until Ctrl-C and prints progress.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from contracts.settings import DEFAULT_BOOTSTRAP, KafkaSettings
from contracts.spec import Spec
from contracts.topics import Role, owned_topic_names, pipeline_topics
from driftline import kafkautil, localkafka
from driftline._gc import collector_paused
from driftline._parent import child_env
from driftline.learner import LearnerService
from ingest import EventProducer

__all__ = ["run_pipeline"]


def _say(msg: str) -> None:
    print(f"driftline: {msg}", file=sys.stderr, flush=True)


def ensure_kafka(settings: KafkaSettings) -> tuple[KafkaSettings, Path | None]:
    """Return usable settings and, if we started a local broker, its data dir."""
    if kafkautil.reachable(settings):
        return settings, None
    if settings.bootstrap_servers != DEFAULT_BOOTSTRAP:
        raise SystemExit(f"driftline: Kafka at {settings.bootstrap_servers} does not answer "
                         "(DRIFTLINE_BOOTSTRAP_SERVERS). Check the address, or unset it to use a local broker.")
    data_dir = localkafka.default_data_dir()
    _say(f"no broker at {settings.bootstrap_servers}; starting a local Kafka {localkafka.KAFKA_VERSION} in {data_dir}")
    try:
        localkafka.start(localkafka.KafkaLayout(data_dir))
    except localkafka.LocalKafkaError as exc:
        raise SystemExit(f"driftline: {exc}") from None
    return settings, data_dir


def start_processor(spec_path: str, settings: KafkaSettings, namespace: str | None) -> subprocess.Popen:
    env = child_env(dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=settings.bootstrap_servers))  # ends with us
    if namespace:
        env["DRIFTLINE_NAMESPACE"] = namespace
    logs = Path(os.environ.get("DRIFTLINE_HOME", Path.home() / ".driftline")) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"processor-{namespace or 'default'}.log"
    port = os.environ.get("DRIFTLINE_PROCESSOR_METRICS_PORT") or os.environ.get("DRIFTLINE_METRICS_PORT") or "9101"
    _say(f"processor worker log: {log_path}; metrics at http://127.0.0.1:{port}/metrics")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "driftline", "process", spec_path], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def _worker_died(worker: subprocess.Popen) -> SystemExit:
    tail = ""
    try:
        tail = "".join(Path(worker.log_path).read_text(errors="replace").splitlines(keepends=True)[-20:])
    except (OSError, AttributeError):
        pass
    return SystemExit(f"driftline: the processor worker exited with code {worker.returncode}; "
                      f"its log ends:\n{tail}")


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _count(settings: KafkaSettings, topics: list[str]) -> int:
    return sum(kafkautil.end_offsets(settings, topics).values())


def start_serving(spec_path: str, settings: KafkaSettings, namespace: str, port: int) -> subprocess.Popen:
    """``driftline serve`` beside the live pipeline, so the demo can be queried."""
    env = child_env(dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
                         DRIFTLINE_NAMESPACE=namespace))  # it ends with us (driftline/_parent.py)
    logs = Path(os.environ.get("DRIFTLINE_HOME", Path.home() / ".driftline")) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"serving-{namespace}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "driftline", "serve", spec_path, "--port", str(port)],
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    _say(f"serving: {base}/models  POST {base}/predict  docs {base}/docs  metrics {base}/metrics")
    return proc


def run_pipeline(spec: Spec, spec_path: str, until_drained: bool, summary_json: str | None = None,
                 keep_topics: bool = False, rate: float | None = None, timeout_s: float = 600.0,
                 serve_port: int | None = None) -> dict:
    settings, started_kafka = ensure_kafka(KafkaSettings.from_env())
    namespace = f"run-{uuid.uuid4().hex[:8]}"
    topics = pipeline_topics(spec, namespace)
    kafkautil.create_topics(settings, list(topics.values()))
    _say(f"namespace {namespace}; topics {topics[Role.RAW].name} … {topics[Role.PREDICTIONS].name}")
    worker = start_processor(spec_path, settings, namespace)
    serving = start_serving(spec_path, settings, namespace, serve_port) if serve_port else None
    learner = None
    try:
        if until_drained:
            summary = _finite(spec, settings, namespace, topics, worker, timeout_s)
            learner = summary.pop("_learner")
        else:
            summary = _live(spec, settings, namespace, topics, worker, rate)
        if summary_json:
            Path(summary_json).write_text(json.dumps(summary, indent=2, default=str))
        return summary
    finally:
        stop_process(worker)
        if serving is not None:
            stop_process(serving)
        if learner is not None:
            learner.close()
        if not keep_topics:
            try:
                kafkautil.delete_topics(settings, owned_topic_names(spec, namespace))
            except Exception as exc:  # noqa: BLE001 - clean-up must not hide the result
                _say(f"could not delete the run's topics: {exc}")
        if started_kafka is not None:
            localkafka.stop(started_kafka)


def _ingest(spec: Spec, settings: KafkaSettings, namespace: str, rate=None, loop=False, stop=None) -> int:
    """Feed the spec's source through ingest's own feed (envelopes, delayed labels, bad input)."""
    from ingest.feed import Feed

    if spec.source is None:
        raise SystemExit("driftline: the spec has no 'source'; feed events with `driftline ingest` instead")
    producer = EventProducer(spec, settings, namespace)
    try:
        summary = Feed(spec, producer, spec.source, rate=rate, loop=loop, stop=stop).run()
    finally:
        producer.close()
    if summary.stopped or summary.failed:
        raise SystemExit(f"driftline: ingest stopped: {summary.line()} {summary.stopped or ''}")
    return summary.acknowledged


def _finite(spec, settings, namespace, topics, worker, timeout_s) -> dict:
    t0 = time.monotonic()
    with collector_paused():  # nothing else runs in this process yet; as `driftline ingest` (driftline/_gc.py)
        ingested = _ingest(spec, settings, namespace)
    _say(f"ingested {ingested} events in {time.monotonic() - t0:.1f}s; waiting for the processors")
    deadline = time.monotonic() + timeout_s
    while True:
        features = _count(settings, [topics[Role.FEATURES].name])
        dlq = _count(settings, [topics[Role.DLQ].name])
        if features + dlq >= ingested:
            break
        if worker.poll() is not None:
            raise _worker_died(worker)
        if time.monotonic() > deadline:
            raise SystemExit(f"driftline: processors handled {features + dlq} of {ingested} events "
                             f"within {timeout_s:.0f}s")
        time.sleep(0.2)
    if spec.labels.mode == "delayed":
        # Every clean event's label is joined (or counted as expired) before the learner drains.
        while _count(settings, [topics[Role.EXAMPLES].name]) < features:
            if worker.poll() is not None:
                raise _worker_died(worker)
            if time.monotonic() > deadline:
                _say("not every label joined in time; learning what has arrived")
                break
            time.sleep(0.2)
    learner = LearnerService(spec, settings, namespace)
    learner.run(until_drained=True)
    s = learner.summary()
    summary = {
        "spec": spec.name,
        "namespace": namespace,
        "events": {"ingested": ingested, "cleaned": _count(settings, [topics[Role.CLEAN].name]),
                   "dead_lettered": dlq, "featurized": features, "predicted": s["predicted"],
                   "learned": s["learned"]},
        "models": s["models"],
        "rolling": s["rolling"],
        "champion": s["champion"],
        "seconds": round(time.monotonic() - t0, 3),
        "_learner": learner,
    }
    _say(f"learned {s['learned']} events; " + ", ".join(
        f"{m}: " + " ".join(f"{k}={v:.4f}" for k, v in vals.items() if v is not None)
        for m, vals in s["models"].items()))
    return summary


def _live(spec, settings, namespace, topics, worker, rate) -> dict:
    stop = threading.Event()
    counts = {"ingested": 0}

    def feed():
        try:
            counts["ingested"] = _ingest(spec, settings, namespace, rate=rate or 500.0, loop=True, stop=stop)
        except Exception as exc:  # noqa: BLE001 - reported, and the demo goes on showing what it has
            _say(f"ingest stopped: {exc}")

    feeder = threading.Thread(target=feed, name="ingest", daemon=True)
    feeder.start()
    learner = LearnerService(spec, settings, namespace)
    last = {"n": 0, "t": time.monotonic()}

    def progress(svc: LearnerService):
        now = time.monotonic()
        rate_now = (svc.stats.learned - last["n"]) / max(1e-9, now - last["t"])
        last.update(n=svc.stats.learned, t=now)
        parts = [f"{svc.stats.learned:>8} learned  {rate_now:8.0f} ev/s"]
        for name, r in svc.runners.items():
            m = r.metrics(rolling=True)
            parts.append(f"{name}: " + " ".join(f"{k}={v:.4f}" for k, v in m.items() if v is not None))
        print("  ".join(parts), flush=True)

    def graceful(signum, _frame):
        # First Ctrl-C (or SIGTERM): finish the current batch, checkpoint, stop what we started.
        # A second Ctrl-C interrupts at once.
        _say("stopping: finishing the batch, taking a checkpoint (Ctrl-C again to force)")
        learner.stop()
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, graceful)
    signal.signal(signal.SIGTERM, graceful)
    try:
        learner.run(on_progress=progress)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        stop.set()
        learner.close()
    s = learner.summary()
    return {"spec": spec.name, "namespace": namespace, "events": {"learned": s["learned"]}, "models": s["models"]}
