"""``python -m bench`` (``make bench``): run every benchmark, print one table, write ``latest.json``.

Each benchmark module present (``bench.learner``, ``bench.serve``, ``bench.processors``,
``bench.pipeline``, ``bench.ingest``) runs in its own process, one after the other (ingest last:
it compares itself with this run's pipeline throughput), against one broker that this starts and
warms first (or ``DRIFTLINE_BOOTSTRAP_SERVERS``), and writes ``bench/results/<name>.json``. Then this gathers them into
``bench/results/latest.json``: every benchmark's figures, driftline's ratios to the peers and
to the ceiling, the date and the machine. A benchmark that fails is recorded with its error and
the others still run.

    python -m bench [--only pipeline,learner] [-- extra args for a single --only benchmark]

The table keeps the figures a reader compares (rates, latencies, ratios):

>>> rows = figures("x", {"a": {"events_per_s": 10, "note": "n"}, "p99_ms": 1.5, "machine": {"cores": 2}})
>>> rows
[('x', 'a.events_per_s', 10), ('x', 'p99_ms', 1.5)]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time

from bench._common import RESULTS, broker, machine

__all__ = ["BENCHMARKS", "figures", "main"]

BENCHMARKS = ("learner", "serve", "processors", "pipeline", "ingest")
_FIGURE_WORDS = ("per_s", "eps", "_ms", "ratio", "speedup", "_vs_", "rate", "cpu_us", "busy", ".cores.")


def available() -> list[str]:
    return [b for b in BENCHMARKS if importlib.util.find_spec(f"bench.{b}") is not None]


def figures(name: str, data, prefix: str = "") -> list[tuple[str, str, object]]:
    """The (benchmark, figure, value) rows worth a table: numbers named like rates, latencies, ratios."""
    rows = []
    if isinstance(data, dict):
        for k, v in data.items():
            if k in ("machine", "goals"):
                continue
            path = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                rows.extend(figures(name, v, path))
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and any(w in path for w in _FIGURE_WORDS):
                rows.append((name, path, v))
    return rows


def run_one(name: str, extra: list[str]) -> dict:
    """Run ``bench.<name>`` in its own process; return its results file, or the error."""
    path = RESULTS / f"{name}.json"
    path.unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", *extra])
    took = round(time.monotonic() - t0, 1)
    if proc.returncode != 0 or not path.exists():
        return {"error": f"exit code {proc.returncode}", "seconds": took}
    data = json.loads(path.read_text())
    data["seconds"] = took
    return data


def ratios(results: dict) -> dict:
    p = results.get("pipeline", {})
    out = dict(p.get("ratios", {}))
    if "scaling" in p:
        out["scaling_2_workers_2_shards_speedup"] = p["scaling"]["speedup"]
    for name in ("learner",):
        for model, r in results.get(name, {}).get("throughput", {}).items():
            out[f"learner_{model}_vs_ceiling"] = r.get("ratio")
    if "worker_vs_ceiling" in results.get("processors", {}):
        out["processors_worker_vs_ceiling"] = results["processors"]["worker_vs_ceiling"]
    return out


def markdown(latest: dict, rows: list) -> str:
    """The table for the README, headed by the date and the machine.

    >>> print(markdown({"date": "D", "machine": {"cores": 2, "cpu": "C", "python": "3.11", "load_avg_1m": 1.0},
    ...                 "benchmarks": {}}, [("x", "a_per_s", 1234), ("x", "p99_ms", 1.5)]))
    Measured D on 2 cores (C), Python 3.11, 1-minute load average 1.0 at the start.
    <BLANKLINE>
    | benchmark | figure | value |
    |---|---|---:|
    | x | a_per_s | 1,234 |
    | x | p99_ms | 1.5 |
    <BLANKLINE>
    """
    m = latest["machine"]
    lines = [f"Measured {latest['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
             f"1-minute load average {m.get('load_avg_1m')} at the start.", "",
             "| benchmark | figure | value |", "|---|---|---:|"]
    for name, fig, value in rows:
        v = f"{value:,}" if isinstance(value, int) else (f"{value:,.4g}" if isinstance(value, float) else value)
        lines.append(f"| {name} | {fig} | {v} |")
    for name, data in latest["benchmarks"].items():
        if "error" in data:
            lines.append(f"| {name} | FAILED | {data['error']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated benchmarks (default: every one present)")
    args, extra = ap.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    names = args.only.split(",") if args.only else available()
    if extra and len(names) != 1:
        raise SystemExit("extra arguments go to one benchmark: use --only NAME")
    results = {}
    # One broker for every benchmark, warmed once (bench._common.broker): each benchmark starting
    # its own measured a JVM still compiling the broker's request handling, on the same two cores.
    with broker():
        for name in names:
            print(f"== bench.{name}", flush=True)
            results[name] = run_one(name, extra)
    latest = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
              "benchmarks": results, "ratios": ratios(results)}
    rows = [r for name, data in results.items() for r in figures(name, data)]
    rows += [("ratios", k, v) for k, v in latest["ratios"].items()]
    w0, w1 = max([len(r[0]) for r in rows] + [9]), max([len(r[1]) for r in rows] + [6])
    m = latest["machine"]
    print(f"\n{latest['date']}  {m['cores']} cores  {m['cpu']}  Python {m['python']}")
    print(f"{'benchmark':{w0}}  {'figure':{w1}}  value")
    for name, fig, value in rows:
        print(f"{name:{w0}}  {fig:{w1}}  {value:,}" if isinstance(value, int) else f"{name:{w0}}  {fig:{w1}}  {value}")
    for name, data in results.items():
        if "error" in data:
            print(f"{name:{w0}}  FAILED: {data['error']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(latest, indent=2, default=str))
    (RESULTS / "latest.md").write_text(markdown(latest, rows))
    print(f"wrote {RESULTS / 'latest.json'} and latest.md (the README's table)")
    return latest


if __name__ == "__main__":
    main()
