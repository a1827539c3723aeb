"""The ``driftline`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contracts.settings import KafkaSettings
from contracts.spec import SPEC_HELP, Spec, SpecError, load_spec
from driftline._parent import exit_with_parent

EPILOG = """\
Every command reads the cluster from DRIFTLINE_BOOTSTRAP_SERVERS (default 127.0.0.1:9092);
security settings come from DRIFTLINE_SECURITY_PROTOCOL, DRIFTLINE_SASL_* and DRIFTLINE_SSL_*.
"""


def _spec(path: str) -> Spec:
    try:
        return load_spec(path)
    except SpecError as exc:
        raise SystemExit(f"driftline: {exc}") from None


# ---------------------------------------------------------------- kafka


def cmd_kafka(args) -> int:
    from driftline import localkafka as lk

    data_dir = Path(args.data_dir) if args.data_dir else lk.default_data_dir()
    if args.action == "start":
        layout = lk.KafkaLayout(data_dir, nodes=args.nodes, port=args.port, heap=args.heap)
        try:
            bootstrap = lk.start(layout, timeout=args.timeout)
        except lk.LocalKafkaError as exc:
            print(f"driftline: {exc}", file=sys.stderr)
            return 2
        print(f"Kafka {lk.KAFKA_VERSION} ({args.nodes} node{'s' if args.nodes > 1 else ''}) is up at {bootstrap}")
        print(f"  data: {data_dir}   logs: {data_dir}/node-*/kafka.log")
        if bootstrap != "127.0.0.1:9092":
            print(f"  export DRIFTLINE_BOOTSTRAP_SERVERS={bootstrap}")
        return 0
    if args.action == "stop":
        pids = lk.stop(data_dir, timeout=args.timeout, node=args.node)
        print(f"stopped {len(pids)} Kafka node(s)" if pids else f"no Kafka running under {data_dir}")
        return 0
    st = lk.status(data_dir)
    if args.json:
        print(json.dumps(st, indent=2))
    elif not st["nodes"]:
        print(f"no local Kafka under {data_dir}")
    else:
        print(f"Kafka {st['version']} under {st['data_dir']}  bootstrap {st['bootstrap']}")
        for n in st["nodes"]:
            state = f"running (pid {n['pid']})" if n["pid"] else "down"
            print(f"  node {n['node']}: {state:24} broker {n['broker']}  controller {n['controller']}")
    return 0 if st["running"] else 1


# ---------------------------------------------------------------- topics


def cmd_topics(args) -> int:
    from contracts.topics import owned_topic_names, pipeline_topics, processors_internal_topics

    spec = _spec(args.spec)
    topics = pipeline_topics(spec, args.namespace)
    if args.action == "list":
        rows = [c.as_dict() for c in topics.values()]
        if args.all:  # the processors' changelogs and pending topic (faust also makes its assignor topic)
            rows += [{**c.as_dict(), "role": "processors"} for c in processors_internal_topics(spec, args.namespace)]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                extra = " (compacted)" if r["compacted"] else ""
                print(f"{r['role']:12} {r['name']:40} partitions={r['partitions']} key: {r['key']}{extra}")
        return 0
    from driftline import kafkautil

    settings = KafkaSettings.from_env()
    if args.action == "delete":
        names = owned_topic_names(spec, args.namespace)
        if not args.yes:
            if not sys.stdin.isatty():
                raise SystemExit(f"driftline: this deletes {len(names)} topics and every record in them; "
                                 "add --yes to confirm")
            for name in names:
                print(f"  {name}")
            if input(f"Delete these {len(names)} topics and every record in them? [y/N] ").strip().lower() != "y":
                print("nothing deleted")
                return 1
        deleted = set(kafkautil.delete_topics(settings, names))
        for name in names:
            print(f"{'deleted' if name in deleted else 'absent':8} {name}")
        return 0
    result = kafkautil.create_topics(settings, list(topics.values()))
    for name, what in result.items():
        print(f"{what:8} {name}")
    return 0


# ---------------------------------------------------------------- pipeline


def cmd_run(args) -> int:
    from driftline.run import run_pipeline

    spec = _spec(args.spec)
    summary = run_pipeline(spec, args.spec, until_drained=args.until_drained, summary_json=args.summary_json,
                           keep_topics=args.keep_topics, rate=args.rate, timeout_s=args.timeout,
                           serve_port=args.serve)
    if args.until_drained and not args.summary_json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_export(args) -> int:
    from driftline._gc import collector_paused
    from processors.export import export_stage, parse_time

    spec = _spec(args.spec)
    with collector_paused():  # a batch job: the rows held are not walked again and again (driftline/_gc.py)
        n = export_stage(spec, args.stage, args.to, KafkaSettings.from_env(), args.namespace,
                         since=parse_time(args.since), until=parse_time(args.until), batch_rows=args.batch_rows)
    print(f"exported {n} {args.stage} records to {args.to}")
    return 0


def cmd_process(args) -> int:
    from processors.app import run_worker

    run_worker(_spec(args.spec), KafkaSettings.from_env(), loglevel=args.loglevel, store=args.store,
               datadir=args.datadir)
    return 0


def _log_to_stderr() -> None:
    """driftline's own lines at INFO, the Kafka clients' at WARNING, with times."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("driftline").setLevel(logging.INFO)


def cmd_learn(args) -> int:
    import signal

    _log_to_stderr()

    from driftline._gc import tune_for_streaming
    from driftline.learner import LearnerService

    spec = _spec(args.spec)
    only = [m.strip() for m in args.models.split(",")] if args.models else None
    if only:
        unknown = [m for m in only if m not in spec.models]
        if unknown:
            raise SystemExit(f"driftline: --models names {unknown}, not in the spec's models {list(spec.models)}")
    try:
        shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else (0, 1)
        assert len(shard) == 2 and 0 <= shard[0] < shard[1]
    except (ValueError, AssertionError):
        raise SystemExit(f"driftline: --shard {args.shard!r}: use I/N with 0 <= I < N, e.g. 0/2") from None
    svc = LearnerService(spec, KafkaSettings.from_env(), from_beginning=args.from_beginning,
                         from_timestamp=args.from_timestamp, only_models=only, shard=shard)
    if svc.stats.restored_from is not None:
        print(f"driftline: resumed from checkpoint {svc.stats.restored_from} "
              f"({svc.stats.learned} events learned)", file=sys.stderr)

    def graceful(signum, _frame):
        # First Ctrl-C (or SIGTERM): finish the current poll's records, checkpoint, exit. A second
        # Ctrl-C interrupts at once, without a checkpoint: a restart resumes from the last one.
        if signum == signal.SIGINT:
            print("driftline: stopping: finishing the batch, taking a checkpoint (Ctrl-C again to force)",
                  file=sys.stderr, flush=True)
        svc.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, graceful)
    signal.signal(signal.SIGTERM, graceful)
    tune_for_streaming()  # driftline/_gc.py: GC and allocator settings for a long-running service
    try:
        svc.run(until_drained=args.until_drained)
    except KeyboardInterrupt:
        pass
    finally:
        svc.close()
    s = svc.summary()
    summary = {"spec": spec.name, "events": {"learned": s["learned"], "predicted": s["predicted"],
                                             "skipped": s["skipped"], "labeled": s["labeled"],
                                             "unmatched_labels": s["unmatched_labels"]},
               "models": s["models"], "rolling": s["rolling"], "champion": s["champion"],
               "checkpoints": s["checkpoints"], "restored_from": s["restored_from"],
               "refused_checkpoints": s["refused_checkpoints"]}
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2))
    elif args.until_drained:
        print(json.dumps(summary, indent=2))
    return 0


# ---------------------------------------------------------------- ingest + gateway (ingest/command.py)


def cmd_ingest(args) -> int:
    from ingest.command import run_ingest

    _log_to_stderr()  # a broker outage shows up as the Kafka client's connection warnings
    return run_ingest(_spec(args.spec), args)


def cmd_gateway(args) -> int:
    from ingest.command import run_gateway

    return run_gateway(_spec(args.spec), args)


# ---------------------------------------------------------------- ingest + gateway end


# ---------------------------------------------------------------- serve (deploy/serving)


def cmd_serve(args) -> int:
    from deploy.serving import ServingConfig, serve

    spec = _spec(args.spec)
    try:
        config = ServingConfig.from_env(token_file=args.admin_token_file, host=args.host, port=args.port,
                                        history=args.history, max_batch=args.max_batch,
                                        max_body_bytes=args.max_body_bytes, namespace=args.namespace,
                                        log_level=args.log_level)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"driftline: serve: {exc}") from None
    serve(spec, config, KafkaSettings.from_env())
    return 0


# ---------------------------------------------------------------- serve end


# ---------------------------------------------------------------- report (monitoring)


def cmd_report(args) -> int:
    from driftline.report import make_report

    spec = _spec(args.spec)
    report = make_report(spec, KafkaSettings.from_env(), args.output, namespace=args.namespace, limit=args.limit)
    print(f"wrote {args.output}: {report.events} events, {len(report.curves)} model(s) "
          f"({', '.join(sorted(report.curves))}), {len(report.drifts)} drift(s), "
          f"{len(report.promotions)} champion change(s)")
    return 0


# ---------------------------------------------------------------- report end


def cmd_spec(args) -> int:
    spec = _spec(args.spec)
    print(f"{args.spec}: valid. {len(spec.models)} model(s): {', '.join(spec.models)}; "
          f"features: {', '.join(spec.schema.feature_names)}")
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftline", description="Streaming online learning on Kafka with river.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    k = sub.add_parser("kafka", help="run a local Apache Kafka (KRaft, no Docker)")
    ksub = k.add_subparsers(dest="action", required=True)
    ks = ksub.add_parser("start", help="start the broker(s) and wait until they answer; idempotent")
    ks.add_argument("--nodes", type=int, default=1, choices=[1, 3], help="1, or 3 for RF 3 / min.insync 2")
    ks.add_argument("--port", type=int, default=9092, help="first broker port (node i listens on port+i-1)")
    ks.add_argument("--data-dir", help="where node data and logs live (default ~/.driftline/kafka)")
    ks.add_argument("--heap", default="512m", help="JVM heap per node (default 512m)")
    ks.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the cluster")
    kst = ksub.add_parser("stop", help="SIGTERM the nodes, SIGKILL after --timeout")
    kst.add_argument("--data-dir", help="the data dir the cluster was started with (default ~/.driftline/kafka)")
    kst.add_argument("--node", type=int, help="stop only this node (1-based)")
    kst.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    kss = ksub.add_parser("status", help="what runs where (exit 1 when nothing runs)")
    kss.add_argument("--data-dir", help="the data dir the cluster was started with (default ~/.driftline/kafka)")
    kss.add_argument("--json", action="store_true", help="machine-readable output")
    k.set_defaults(func=cmd_kafka)

    t = sub.add_parser("topics", help="the pipeline's topics")
    tsub = t.add_subparsers(dest="action", required=True)
    for name, hlp in (("create", "create the spec's topics (idempotent)"), ("list", "each topic's role and name"),
                      ("delete", "delete every topic the pipeline owns, the processors' changelogs too")):
        tp = tsub.add_parser(name, help=hlp)
        tp.add_argument("spec", help=SPEC_HELP)
        tp.add_argument("--namespace", help="topic namespace (default: DRIFTLINE_NAMESPACE or none)")
        if name == "list":
            tp.add_argument("--json", action="store_true", help="machine-readable output")
            tp.add_argument("--all", action="store_true", help="the processors' own topics (changelogs) too")
        if name == "delete":
            tp.add_argument("--yes", action="store_true", help="do not ask (required without a terminal)")
    t.set_defaults(func=cmd_topics)

    r = sub.add_parser("run", help="run the whole pipeline: ingest, process, learn")
    r.add_argument("spec", help=SPEC_HELP)
    r.add_argument("--until-drained", action="store_true", help="feed the source once, learn all of it, exit")
    r.add_argument("--summary-json", metavar="PATH", help="write counts per stage and final metrics here")
    r.add_argument("--keep-topics", action="store_true", help="keep the run's namespaced topics")
    r.add_argument("--rate", type=float, help="live mode: events/s to feed (default 500)")
    r.add_argument("--serve", type=int, metavar="PORT", help="also run the serving API on PORT")
    r.add_argument("--timeout", type=float, default=600.0, help="finite mode: seconds to wait per stage")
    r.set_defaults(func=cmd_run)

    pr = sub.add_parser("process", help="run a processor worker (faust) until SIGTERM")
    pr.add_argument("spec", help=SPEC_HELP)
    pr.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"],
                    help="faust's log level (default warn)")
    pr.add_argument("--store", choices=["rocksdb", "memory"], help="table store (default: DRIFTLINE_STORE or rocksdb)")
    pr.add_argument("--datadir", help="table data directory (default: one per process under DRIFTLINE_HOME)")
    pr.set_defaults(func=cmd_process)

    # ---- export (processors) ----
    ex = sub.add_parser("export", help="write a stage's records over a time range to Parquet or CSV")
    ex.add_argument("spec", help=SPEC_HELP)
    ex.add_argument("--stage", required=True, choices=["clean", "features", "examples"], help="the topic to export")
    ex.add_argument("--to", required=True, metavar="FILE", help="FILE.parquet or FILE.csv")
    ex.add_argument("--from", dest="since", metavar="T", help="from this time (seconds or ISO-8601), inclusive")
    ex.add_argument("--until", metavar="T", help="until this time, exclusive")
    ex.add_argument("--namespace", help="topic namespace (default: DRIFTLINE_NAMESPACE or none)")
    ex.add_argument("--batch-rows", type=int, default=10_000, help="rows held in memory at once")
    ex.set_defaults(func=cmd_export)
    # ---- end export ----

    le = sub.add_parser("learn", help="run the learner: predict, score and learn every event")
    le.add_argument("spec", help=SPEC_HELP)
    le.add_argument("--until-drained", action="store_true", help="exit once the input as of start is learned")
    le.add_argument("--summary-json", metavar="PATH", help="on exit, write counts and each model's metrics here")
    replay = le.add_mutually_exclusive_group()
    replay.add_argument("--from-beginning", action="store_true",
                        help="ignore checkpoints and rebuild the models from the start of the retained log")
    replay.add_argument("--from-timestamp", type=float, metavar="T",
                        help="rebuild fresh models from event time T (epoch seconds) onwards")
    le.add_argument("--models", help="comma-separated subset of the spec's models to (re)build")
    le.add_argument("--shard", metavar="I/N", help="run shard I of N: partitions p with p %% N == I")
    le.set_defaults(func=cmd_learn)

    # ---- ingest + gateway (ingest/command.py)
    from ingest.command import add_gateway_arguments, add_ingest_arguments

    ing = sub.add_parser("ingest", help="feed a source into the raw topic")
    add_ingest_arguments(ing)
    ing.set_defaults(func=cmd_ingest)
    gw = sub.add_parser("gateway", help="HTTP gateway: POST /events into the raw topic")
    add_gateway_arguments(gw)
    gw.set_defaults(func=cmd_gateway)
    # ---- ingest + gateway end

    # --- serve (deploy/serving) ---
    sv = sub.add_parser("serve", help="serve the current models over HTTP, hot-swapped from the models topic")
    sv.add_argument("spec", help=SPEC_HELP)
    sv.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    sv.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    sv.add_argument("--history", type=int, default=32, help="versions kept per model for pinning and replay")
    sv.add_argument("--max-batch", type=int, default=256, help="records per POST /predict")
    sv.add_argument("--max-body-bytes", type=int, default=1_048_576, help="larger request bodies get 413")
    sv.add_argument("--admin-token-file", help="bearer token of the admin routes "
                                               "(default: DRIFTLINE_SERVING_ADMIN_TOKEN; none disables them)")
    sv.add_argument("--namespace", help="topic namespace (default: DRIFTLINE_NAMESPACE or none)")
    sv.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                    help="JSON log level on stderr (default info)")
    sv.set_defaults(func=cmd_serve)
    # --- serve end ---

    # --- report (monitoring) ---
    rp = sub.add_parser("report", help="PNG of each model's metric over time, drifts and champion changes")
    rp.add_argument("spec", help=SPEC_HELP)
    rp.add_argument("-o", "--output", default="driftline-report.png", help="PNG path (default: %(default)s)")
    rp.add_argument("--namespace", help="topic namespace (default: DRIFTLINE_NAMESPACE or none)")
    rp.add_argument("--limit", type=int, help="read at most this many predictions")
    rp.set_defaults(func=cmd_report)
    # --- report end ---

    sp = sub.add_parser("spec", help="validate a pipeline spec and say what it declares")
    sp.add_argument("spec", help=SPEC_HELP)
    sp.set_defaults(func=cmd_spec)
    return p


def _stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` prints every thread's stack to stderr: what a service that seems stuck is
    doing. (``driftline process`` replaces it with faust's own, which adds the asyncio tasks.)"""
    import faulthandler
    import io
    import signal

    if hasattr(signal, "SIGUSR1"):
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        except (io.UnsupportedOperation, ValueError, AttributeError):  # stderr is no file (captured)
            pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _stacks_on_sigusr1()
    exit_with_parent()  # a service started by `driftline run` ends with it (driftline/_parent.py)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
