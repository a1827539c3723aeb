"""Test and bench helpers: a real ``driftline serve`` process, and a snapshot publisher.

>>> port = free_port()
>>> 1024 < port < 65536
True
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from kafka import KafkaProducer

from contracts.settings import KafkaSettings
from contracts.spec import Spec
from contracts.topics import Role, pipeline_topics
from models.snapshot import dump_snapshot

__all__ = ["ServerProcess", "SnapshotPublisher", "free_port", "snapshot_meta"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot_meta(spec: Spec, runner, champion: bool = True, **extra) -> dict:
    """The meta the learner writes for one model (see driftline.learner)."""
    return {"model": runner.name, "version": runner.n_learned, "spec": spec.fingerprint(),
            "created_at": time.time(), "offsets": {}, "counts": {"learned": runner.n_learned},
            "metrics": {"cumulative": runner.metrics(), "rolling": runner.metrics(rolling=True)},
            "champion": champion, "params": repr(runner.model), **extra}


class SnapshotPublisher:
    """Signs and sends snapshots to the spec's models topic, keyed by model name."""

    def __init__(self, spec: Spec, settings: KafkaSettings, key: bytes, namespace: str | None = None):
        self.spec = spec
        self.key = key
        self.topic = pipeline_topics(spec, namespace)[Role.MODELS].name
        self.producer = KafkaProducer(**settings.kafka_python(), acks="all", linger_ms=0,
                                      max_request_size=200 * 1024 * 1024)

    def publish(self, runner, wait: bool = False, **meta) -> float:
        """Publish ``runner``'s model at its version; return the send time (epoch s)."""
        blob = dump_snapshot(snapshot_meta(self.spec, runner, **meta), {"model": runner.model}, self.key)
        return self.send(runner.name, blob, wait)

    def send(self, name: str, blob: bytes, wait: bool = False) -> float:
        t = time.time()
        fut = self.producer.send(self.topic, key=name.encode(), value=blob)
        if wait:
            fut.get(timeout=30)
        return t

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()


class ServerProcess:
    """``driftline serve SPEC`` in a subprocess on a free port; stopped by :meth:`stop`, pass or fail."""

    def __init__(self, spec_path: str | Path, env: dict, *args: str, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.devnull, "w") if not os.environ.get("DRIFTLINE_SERVING_TEST_LOG") else sys.stderr
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "driftline", "serve", str(spec_path), "--port", str(self.port), *args],
            env={**os.environ, **env}, stdout=self.log, stderr=self.log)

    def wait_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"driftline serve exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("driftline serve did not come up")

    def wait_for(self, predicate, timeout: float = 60.0, every: float = 0.05):
        """Poll ``GET /models`` until ``predicate(models)`` holds; return the models."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            models = httpx.get(self.url + "/models", timeout=5).json()
            if predicate({m["name"]: m for m in models}):
                return models
            time.sleep(every)
        raise TimeoutError("the served models never matched")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not sys.stderr:
            self.log.close()
