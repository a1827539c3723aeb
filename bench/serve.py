"""Serving benchmark: /predict throughput and latency under concurrent load, with a new model
snapshot published every second.

Load is open-loop: request i is due at ``t0 + i / rate`` and its latency runs from that due
time, so a stalled server shows up as queueing (no coordinated omission). The client is a
minimal HTTP/1.1 keep-alive client on asyncio streams, so that it costs less CPU than the
server it measures (both share this machine).

Phases: ``single`` (one record per request at ``--rate``), ``batch`` (``--batch`` records per
request at ``--rate / 10``), and ``saturation`` (closed loop, as fast as the server answers).

    python -m bench.serve [--rate 1000] [--seconds 10]   → bench/results/serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import multiprocessing
import os
import time
import uuid

import orjson
from river import datasets

from bench._common import broker, percentile, write_result
from contracts.settings import KafkaSettings
from contracts.spec import load_spec
from contracts.topics import pipeline_topics
from deploy.serving.testing import ServerProcess, SnapshotPublisher
from driftline import kafkautil
from models import ModelRunner, build_estimator

SPEC_PATH = "examples/phishing.yaml"
KEY = b"bench-serve-key-0123456789abcdef"


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs a prepared body."""

    def __init__(self, port: int):
        self.port = port

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self):
        self.writer.close()


def request_bytes(body: dict) -> bytes:
    data = orjson.dumps(body)
    return (b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(data)).encode() + b"\r\n\r\n" + data)


async def run_phase(port: int, request: bytes, rate: float | None, seconds: float, connections: int) -> dict:
    conns = [Connection(port) for _ in range(connections)]
    await asyncio.gather(*(c.open() for c in conns))
    latencies, errors, versions = [], 0, set()
    n = int(rate * seconds) if rate else None
    t0 = time.perf_counter()
    counter = iter(range(10 ** 9))

    async def worker(conn):
        nonlocal errors
        while True:
            i = next(counter)
            if rate:
                if i >= n:
                    return
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                due = time.perf_counter()
                if due - t0 >= seconds:
                    return
            status, body = await conn.post(request)
            latencies.append(time.perf_counter() - due)
            if status != 200:
                errors += 1
            else:
                versions.add(orjson.loads(body)["predictions"][0]["version"])

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    ms = [x * 1000 for x in latencies]
    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "throughput_rps": round(len(latencies) / elapsed, 1), "target_rps": rate, "connections": connections,
            "p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2), "versions_served": len(versions)}


def learn_and_publish(bootstrap: str, ns: str, stop, swaps) -> None:
    """Learn 50 Phishing events and publish a signed snapshot, every second, until ``stop``."""
    spec = load_spec(SPEC_PATH)
    data = list(datasets.Phishing())
    settings = KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": bootstrap})
    runner = ModelRunner("lr", build_estimator(spec.models["lr"]), spec.metrics)
    publisher = SnapshotPublisher(spec, settings, KEY, ns)
    try:
        while not stop.is_set():
            for _ in range(50):
                x, y = data[runner.n_learned % len(data)]
                runner.learn(x, y, runner.predict(x))
            publisher.publish(copy.deepcopy(runner), wait=True)
            with swaps.get_lock():
                swaps.value += 1
            stop.wait(1.0)
    finally:
        publisher.close()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="single-record requests per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="per phase")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args(argv)
    spec = load_spec(SPEC_PATH)
    data = list(datasets.Phishing())
    records = [dict(x) for x, _ in data[:args.batch]]
    with broker() as bootstrap:
        settings = KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": bootstrap})
        ns = f"bench-{uuid.uuid4().hex[:8]}"
        kafkautil.create_topics(settings, list(pipeline_topics(spec, ns).values()))
        # A new version every second, published from a process of its own as a live learner would:
        # in the client's process its learning, pickling and producing would stall the client's
        # event loop and be counted as server latency.
        ctx = multiprocessing.get_context("spawn")
        stop, swaps = ctx.Event(), ctx.Value("i", 0)
        swapper = ctx.Process(target=learn_and_publish, args=(bootstrap, ns, stop, swaps), daemon=True)
        server = ServerProcess(SPEC_PATH, {"DRIFTLINE_NAMESPACE": ns, "DRIFTLINE_SNAPSHOT_KEY": KEY.decode(),
                                           "DRIFTLINE_BOOTSTRAP_SERVERS": bootstrap}, "--log-level", "warning")
        try:
            server.wait_up()
            swapper.start()
            server.wait_for(lambda ms: ms["lr"]["loaded"])
            phases = {}
            for name, body, rate in (("single", {"record": records[0]}, args.rate),
                                     ("batch", {"records": records}, args.rate / 10),
                                     ("saturation", {"record": records[0]}, None)):
                before = swaps.value
                result = asyncio.run(run_phase(server.port, request_bytes(body), rate, args.seconds,
                                               args.connections if rate else 8))
                result["records_per_request"] = len(body.get("records", [1]))
                result["snapshots_published"] = swaps.value - before
                phases[name] = result
                print(f"{name:10} {result}")
        finally:
            stop.set()
            swapper.join(10)
            if swapper.is_alive():
                swapper.kill()
            server.stop()
            kafkautil.delete_topics(settings, [t.name for t in pipeline_topics(spec, ns).values()])
    out = {"spec": SPEC_PATH, "model": "StandardScaler | LogisticRegression", "swap_every_s": 1.0,
           "goal": "p99 < 10 ms at 1,000 req/s (single), zero errors", "load_avg_1m": os.getloadavg()[0],
           "phases": phases}
    print("wrote", write_result("serve", out))
    return out


if __name__ == "__main__":
    main()
