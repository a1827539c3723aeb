"""A Parquet file that does not fit the run's memory cap streams through `driftline ingest`
with peak RSS under the cap (300 MB), and every row arrives."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts.spec import load_spec
from contracts.topics import Role, pipeline_topics
from driftline import kafkautil

pytestmark = pytest.mark.integration

CAP_MB = 300
ROW_BYTES = 4096
ROWS = 90_000  # 90k rows of 4 KiB: about 370 MB decoded, more than the cap
SPEC = """
name: pqmem
schema:
  fields: {id: str, user: str, x: float, note: str}
  id: id
  key: user
task: anomaly
models: {m: {estimator: anomaly.HalfSpaceTrees}}
"""
# Runs the real command, then reports the process's own peak resident set (kB, Linux).
MEASURE = """
import sys, threading, time
import psutil
def watch():  # an RSS trace, to say where the memory went if the cap is broken
    me = psutil.Process()
    while True:
        print("rss", me.memory_info().rss >> 20, "MB at", round(time.monotonic() - t0, 1), "s", file=sys.stderr)
        time.sleep(0.5)
t0 = time.monotonic()
threading.Thread(target=watch, daemon=True).start()
from driftline.cli import main
code = main(sys.argv[1:])
# VmHWM is this process image's own peak; ru_maxrss would carry the forking parent's (pytest's) peak.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("PEAK_RSS_KB", hwm.split()[1], flush=True)
sys.exit(code)
"""


def write_parquet(path) -> int:
    """Written in row groups of 4,096 rows (16 MiB decoded), never holding the table."""
    filler = (("0123456789abcdef" * (ROW_BYTES // 16))[: ROW_BYTES - 8])
    schema = pa.schema([("id", pa.string()), ("user", pa.string()), ("x", pa.float64()), ("note", pa.string())])
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=False) as w:
        for start in range(0, ROWS, 4096):
            idx = range(start, min(start + 4096, ROWS))
            w.write_table(pa.table({"id": [f"r{i}" for i in idx], "user": [f"u{i % 101}" for i in idx],
                                    "x": [i * 0.5 for i in idx], "note": [f"{i:08d}{filler}" for i in idx]},
                                   schema=schema))
    meta = pq.ParquetFile(path).metadata
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


def test_parquet_larger_than_the_memory_cap_streams_under_it(kafka, settings, namespace, tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    data = tmp_path / "big.parquet"
    decoded = write_parquet(data)
    assert decoded > CAP_MB * 1024 * 1024 and data.stat().st_size > CAP_MB * 1024 * 1024  # it does not fit
    summary_path = tmp_path / "summary.json"
    env = dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=kafka)
    proc = subprocess.run([sys.executable, "-c", MEASURE, "ingest", str(spec_path), "--namespace", namespace,
                           "--source", f"file:{data}", "--quiet", "--summary-json", str(summary_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak_mb = int(proc.stdout.split("PEAK_RSS_KB")[1].split()[0]) / 1024
    summary = json.loads(summary_path.read_text())
    assert summary["acknowledged"] == ROWS and summary["rejected"] == summary["failed"] == 0
    trace = " | ".join(line for line in proc.stderr.splitlines() if line.startswith("rss"))
    assert peak_mb < CAP_MB, f"peak RSS {peak_mb:.0f} MB for a file of {decoded / 2**20:.0f} MB decoded: {trace}"
    topic = pipeline_topics(load_spec(spec_path), namespace)[Role.RAW].name
    assert sum(kafkautil.end_offsets(settings, [topic]).values()) == ROWS
    print(f"peak RSS {peak_mb:.0f} MB streaming {decoded / 2**20:.0f} MB of Parquet")
    data.unlink()
