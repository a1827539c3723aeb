"""``driftline ingest`` and ``driftline gateway``: options, signals, exit codes.

Exit codes of ``ingest``: 0 when every record sent was acknowledged; 1 when any
was not (the final line says how many), or ``--on-error fail`` met a bad input,
or the run stopped on an error; 2 for a bad command line.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from contracts.settings import KafkaSettings
from contracts.spec import SPEC_HELP, Spec
from contracts.topics import Role

__all__ = ["add_ingest_arguments", "add_gateway_arguments", "run_ingest", "run_gateway"]


def add_ingest_arguments(ing) -> None:
    ing.add_argument("spec", help=SPEC_HELP)
    ing.add_argument("--source", help="file:PATH (csv, jsonl, parquet), dataset:NAME, "
                     "synth:NAME?param=value&seed=N, or - for stdin (default: the spec's source)")
    ing.add_argument("--rate", type=float, help="events per second (default: as fast as the broker takes)")
    ing.add_argument("--speedup", type=float, help="replay at the event-time pace, this many times faster")
    ing.add_argument("--limit", type=int, help="stop after N input records (sent or rejected)")
    ing.add_argument("--loop", action="store_true", help="start over at the end of the source")
    ing.add_argument("--labels", action="store_true",
                     help="the source is a label file (id and label per record): feed the labels topic")
    ing.add_argument("--on-error", choices=["skip", "dlq", "fail"], default="dlq",
                     help="bad input: count it (skip), also dead-letter it (dlq, default), or stop (fail)")
    ing.add_argument("--compression", choices=["none", "gzip", "lz4", "zstd"], default="lz4",
                     help="record batch compression (default lz4)")
    ing.add_argument("--namespace", help="topic namespace (default: DRIFTLINE_NAMESPACE or none)")
    ing.add_argument("--summary-json", metavar="PATH", help="write sent/acknowledged/rejected/failed here")
    ing.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (default: off)")
    ing.add_argument("--no-create-topics", action="store_true", help="do not create missing topics")
    ing.add_argument("--quiet", action="store_true", help="no progress and no per-rejection log lines")


def add_gateway_arguments(gw) -> None:
    gw.add_argument("spec", help=SPEC_HELP)
    gw.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    gw.add_argument("--port", type=int, default=8088, help="HTTP port (default 8088)")
    gw.add_argument("--namespace", help="topic namespace (default: DRIFTLINE_NAMESPACE or none)")
    gw.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024, help="larger requests get 413")
    gw.add_argument("--compression", choices=["none", "gzip", "lz4", "zstd"], default="lz4",
                    help="record batch compression (default lz4)")


def _say(msg: str) -> None:
    print(f"driftline ingest: {msg}", file=sys.stderr, flush=True)


def _source(spec: Spec, uri: str | None):
    from ingest.sources import parse_uri

    if uri:
        try:
            return parse_uri(uri)
        except ValueError as exc:
            raise SystemExit(f"driftline: --source: {exc}") from None
    if spec.source is None:
        raise SystemExit("driftline: the spec has no source; pass --source")
    return spec.source


def _signals(stop: threading.Event) -> None:
    """The first SIGINT/SIGTERM stops reading and flushes; a second one aborts."""
    def handler(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        _say(f"{signal.Signals(signum).name}: stopping; flushing what was sent")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run_ingest(spec: Spec, args) -> int:
    from driftline import kafkautil
    from driftline._gc import collector_paused
    from ingest import _metrics
    from ingest._progress import Progress
    from ingest.feed import Feed
    from ingest.producer import EventProducer

    src = _source(spec, args.source)
    settings = KafkaSettings.from_env()
    producer_kw = {"compression_type": None if args.compression == "none" else args.compression}
    producer = EventProducer(spec, settings, args.namespace, **producer_kw)
    if not args.no_create_topics:
        topics = producer.topics
        kafkautil.create_topics(settings, [topics[r] for r in (Role.RAW, Role.LABELS, Role.DLQ)])
    if args.metrics_port:
        _metrics.serve(args.metrics_port)
    stop = threading.Event()
    _signals(stop)
    limit = args.limit or src.limit
    total = limit or _known_size(src)
    progress = None if args.quiet else Progress(total)
    try:
        feed = Feed(spec, producer, src, on_error=args.on_error, rate=args.rate, speedup=args.speedup, limit=limit,
                    loop=args.loop, labels_file=args.labels, progress=progress, stop=stop,
                    log=None if args.quiet else _say)
    except ValueError as exc:
        producer.close()
        raise SystemExit(f"driftline: {exc}") from None
    with collector_paused():  # the records in flight are not walked again and again (driftline/_gc.py)
        summary = feed.run()
    producer.close()
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.as_dict(), indent=2, default=str))
    if summary.stopped:
        _say(f"stopped: {summary.stopped}")
    print(f"driftline ingest: {summary.line()}", flush=True)
    return 0 if summary.ok else 1


def _known_size(src) -> int | None:
    """Events in a finite source, when cheap to know (Parquet metadata, river datasets)."""
    try:
        if src.kind == "file" and src.path.lower().endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return pq.ParquetFile(src.path).metadata.num_rows
        if src.kind == "river":
            from river import datasets

            return getattr(datasets, src.name)().n_samples
    except Exception:  # noqa: BLE001 - only for the ETA
        return None
    return None


def run_gateway(spec: Spec, args) -> int:
    import uvicorn

    from driftline._gc import tune_for_streaming
    from ingest.gateway import KafkaSink, create_app

    settings = KafkaSettings.from_env()
    sink = KafkaSink(spec, settings, args.namespace,
                     compression_type=None if args.compression == "none" else args.compression)
    app = create_app(spec, sink, max_body_bytes=args.max_body_bytes)
    # The services' collector settings (driftline/_gc.py): the records in flight, a handful of tracked
    # objects each in kafka-python, had the collector walk them for about a quarter of the time under load.
    tune_for_streaming()
    print(f"driftline gateway: POST http://{args.host}:{args.port}/events -> {sink.topic}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
