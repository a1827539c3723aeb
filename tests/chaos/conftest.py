"""The chaos suite's harness: a pipeline of real services (``driftline process``, ``driftline learn``,
``driftline ingest`` as child processes) on a real broker, which the tests kill, stop and restart.

Sizes are bounded by default (each test a few minutes on a shared 2-core box, ``make test``);
``DRIFTLINE_CHAOS_FULL=1`` (``make chaos``) selects the sizes the issue names. Every process and
broker a test starts is stopped at teardown, pass or fail.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
import psutil
import pytest
import yaml

from bench._proc import Proc
from contracts.settings import KafkaSettings
from contracts.spec import load_spec_text
from contracts.topics import Role, owned_topic_names, pipeline_topics
from driftline import kafkautil, localkafka
from processors.testing import end_total, read_topic

REPO = Path(__file__).resolve().parents[2]
FULL = os.environ.get("DRIFTLINE_CHAOS_FULL") == "1"
KEY = "chaos-snapshot-key-0123456789abcdef"


def chaos_spec(**overrides) -> str:
    """``examples/bench.yaml`` (the benchmark's pipeline) with ``overrides`` merged into its sections."""
    data = yaml.safe_load((REPO / "examples" / "bench.yaml").read_text())
    data["name"] = "chaos"
    data["predictions_batch"] = 1  # one record per (event, model): every prediction is checked by id
    data["snapshots"] = {"every_events": 2000, "every_seconds": 2.0}
    for k, v in overrides.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    return yaml.safe_dump(data, sort_keys=False)


class Pipeline:
    """One namespaced pipeline: its topics, its services (restartable), and readers of its topics."""

    def __init__(self, text: str, bootstrap: str, home: Path):
        self.text, self.bootstrap, self.home = text, bootstrap, home
        self.namespace = f"chaos-{uuid.uuid4().hex[:8]}"
        self.spec = load_spec_text(text)
        self.topics = pipeline_topics(self.spec, self.namespace)
        self.settings = KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": bootstrap})
        home.mkdir(parents=True, exist_ok=True)
        self.spec_path = home / "spec.yaml"
        self.spec_path.write_text(text)
        self.procs: list[Proc] = []
        kafkautil.create_topics(self.settings, list(self.topics.values()))

    def env(self) -> dict:
        return dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=self.bootstrap, DRIFTLINE_NAMESPACE=self.namespace,
                    DRIFTLINE_HOME=str(self.home), DRIFTLINE_SNAPSHOT_KEY=KEY, DRIFTLINE_METRICS_PORT="0",
                    PYTHONUNBUFFERED="1")

    def _start(self, name: str, *args: str) -> Proc:
        p = Proc(name, [sys.executable, "-m", "driftline", *args], self.env(), self.home / f"{name}.log")
        self.procs.append(p)
        return p

    def worker(self, i: int = 0) -> Proc:
        return self._start(f"process-{i}", "process", str(self.spec_path), "--store", "rocksdb")

    def learner(self, *args: str) -> Proc:
        return self._start("learn", "learn", str(self.spec_path), *args)

    def ingest(self, source: Path, *args: str) -> Proc:
        return self._start("ingest", "ingest", str(self.spec_path), "--source", f"file:{source}", "--quiet",
                           "--summary-json", str(self.home / "ingest.json"), *args)

    def count(self, role: Role) -> int:
        return end_total(self.settings, self.topics[role].name)

    def values(self, role: Role, timeout_s: float = 180.0) -> list[dict]:
        """Every record of a topic, decoded; batched predictions are expanded."""
        out = []
        for r in read_topic(self.settings, self.topics[role].name, timeout_s=timeout_s):
            v = orjson.loads(r.value)
            out.extend(v["batch"] if isinstance(v, dict) and "batch" in v else [v])
        return out

    def diagnose(self, chars: int = 4000) -> str:
        """What a stuck run looks like: each topic's record count, and each live service's stacks
        (``kill -USR1`` makes a driftline service print them to its log) with its log's tail."""
        import signal

        lines = []
        for role in self.topics:
            try:
                lines.append(f"{role.value}: {self.count(role)} records")
            except Exception as exc:  # noqa: BLE001 - a report, not a check
                lines.append(f"{role.value}: count failed ({exc!r})")
        live = [p for p in self.procs if p.alive()]
        for p in live:
            try:
                os.kill(p.proc.pid, signal.SIGUSR1)
            except OSError:
                pass
        time.sleep(2.0)
        for p in live:
            lines.append(f"---- {p} log tail ----\n{p.tail(chars)}")
        return "\n".join(lines)

    def stop(self) -> None:
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - stop the rest regardless
                pass


@pytest.fixture
def make_pipeline(tmp_path):
    made: list[Pipeline] = []

    def make(text: str, bootstrap: str, name: str = "p") -> Pipeline:
        p = Pipeline(text, bootstrap, tmp_path / name)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()
        try:
            kafkautil.delete_topics(p.settings, owned_topic_names(p.spec, p.namespace))
        except Exception:  # noqa: BLE001 - the broker may be gone already
            pass


def _free_block(n: int) -> int:
    import socket

    for base in range(45100, 46000, 10):
        ports = [base + i for i in range(n)] + [base + 100 + i for i in range(n)]
        ok = True
        for port in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block in 45100-46000")


@pytest.fixture
def own_kafka():
    """Start a private cluster (``nodes`` 1 or 3) that the test may kill; stopped and removed at teardown."""
    started: list[Path] = []

    def start(nodes: int = 1) -> localkafka.KafkaLayout:
        data_dir = Path(tempfile.mkdtemp(prefix="dl-proof-chaos-", dir="/tmp"))
        layout = localkafka.KafkaLayout(data_dir, nodes=nodes, port=_free_block(nodes), heap="384m")
        started.append(data_dir)
        localkafka.start(layout, timeout=240, quiet=True)
        return layout

    yield start
    for d in started:
        localkafka.stop(d, timeout=20)
        shutil.rmtree(d, ignore_errors=True)


class Rss(threading.Thread):
    """Samples the resident set size of each named service every ``every`` seconds (bytes)."""

    def __init__(self, procs: dict[str, Proc], every: float = 0.5):
        super().__init__(daemon=True)
        self.procs, self.every = procs, every
        self.samples: dict[str, list[tuple[float, int]]] = {n: [] for n in procs}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            now = time.monotonic()
            for name, p in self.procs.items():
                try:
                    self.samples[name].append((now, psutil.Process(p.proc.pid).memory_info().rss))
                except psutil.Error:
                    pass

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


@pytest.fixture
def spec_for():
    """``chaos_spec``: the benchmark's pipeline spec with sections overridden."""
    return chaos_spec


@pytest.fixture
def full() -> bool:
    """``make chaos`` (DRIFTLINE_CHAOS_FULL=1): the issue's sizes; else bounded ones."""
    return FULL


@pytest.fixture
def rss():
    """The :class:`Rss` sampler class."""
    return Rss
