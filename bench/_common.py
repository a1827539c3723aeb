"""Shared helpers for the benchmarks: the machine, a private broker, percentiles, results."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **data}, indent=2, default=str))
    return path


def _free_port(start: int = 47000) -> int:
    for port in range(start, start + 2000, 3):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                with socket.socket() as c:
                    c.bind(("127.0.0.1", port + 100))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


@contextlib.contextmanager
def broker():
    """A bootstrap string: DRIFTLINE_BOOTSTRAP_SERVERS if set, else a private broker stopped afterwards."""
    existing = os.environ.get("DRIFTLINE_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    from driftline import localkafka

    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as d:
        layout = localkafka.KafkaLayout(Path(d), port=_free_port(), heap="768m")
        try:
            bootstrap = localkafka.start(layout, timeout=180)
            os.environ["DRIFTLINE_BOOTSTRAP_SERVERS"] = bootstrap
            yield bootstrap
        finally:
            os.environ.pop("DRIFTLINE_BOOTSTRAP_SERVERS", None)
            localkafka.stop(Path(d))
