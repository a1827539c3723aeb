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


class CpuMeter:
    """Cores used, per named process and by the whole machine, between :meth:`start` and :meth:`stop`.

    A process's figure counts all of its threads and the children it waited for (the learner's
    forked checkpoint writers). ``listening`` names the process that listens on a port (the broker).

    >>> import os
    >>> m = CpuMeter({"me": os.getpid()}).start()
    >>> sum(range(200_000)) > 0
    True
    >>> r = m.stop()
    >>> sorted(r) == ["machine_busy", "me", "seconds"] and r["me"] >= 0 and 0 <= r["machine_busy"] <= 1
    True
    """

    def __init__(self, pids: dict[str, int], listening: dict[str, int] | None = None):
        self.pids = dict(pids)
        for name, port in (listening or {}).items():
            pid = _listener(port)
            if pid is not None:
                self.pids[name] = pid

    @staticmethod
    def _used(pid: int) -> float | None:
        import psutil

        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return None
        return t.user + t.system + t.children_user + t.children_system

    def _sample(self) -> tuple[float, dict, object]:
        import psutil

        return time.monotonic(), {n: self._used(pid) for n, pid in self.pids.items()}, psutil.cpu_times()

    def start(self) -> CpuMeter:
        self._t0 = self._sample()
        return self

    def stop(self) -> dict:
        """``{name: cores, ..., "machine_busy": fraction of all cores, "seconds": wall}``."""
        (w0, p0, m0), (w1, p1, m1) = self._t0, self._sample()
        wall = max(w1 - w0, 1e-9)
        out = {n: round((p1[n] - p0[n]) / wall, 3) for n in self.pids if p0[n] is not None and p1[n] is not None}
        idle = lambda t: t.idle + getattr(t, "iowait", 0.0)  # noqa: E731
        total = sum(m1) - sum(m0)
        out["machine_busy"] = round(1 - (idle(m1) - idle(m0)) / total, 3) if total > 0 else 0.0
        out["seconds"] = round(wall, 2)
        return out


def _listener(port: int) -> int | None:
    """The pid listening on TCP ``port`` on this machine, if any (and visible to us)."""
    import psutil

    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return c.pid
    except psutil.Error:
        return None
    return None


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def in_turn(rounds: int, kinds, run, swap: bool = False) -> dict:
    """``run(kind)`` for every kind, ``rounds`` times, the kinds in turn, so that a noisy minute on
    this shared machine hits each of them alike; with ``swap``, every other round in reverse order.
    Returns each kind's results, in the order run.

    >>> order = []
    >>> in_turn(2, ("a", "b"), lambda k: order.append(k) or len(order), swap=True)
    {'a': [1, 4], 'b': [2, 3]}
    """
    kinds = tuple(kinds)
    runs: dict = {k: [] for k in kinds}
    for i in range(rounds):
        for k in (kinds[::-1] if swap and i % 2 else kinds):
            runs[k].append(run(k))
    return runs


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


#: Seconds of produce and fetch traffic a new private broker gets before anything is measured.
WARM_UP_S = 20.0


def warm_up(bootstrap: str, seconds: float = WARM_UP_S) -> dict:
    """Put a new broker's produce and fetch paths through the JVM's compilers before measuring.

    A broker is measured warm, as a user's runs: a fresh JVM interprets its request handling
    until its just-in-time compilers catch up. On a broker started for the purpose, ``bench/learner``'s
    first LR rounds ran at 0.44, 0.59 and 0.63 of the in-process ceiling, rising to 0.67 by the
    seventh; on a broker that had served for hours, 0.68-0.70 from the first. This sends
    small record batches (``linger.ms`` 0, so many requests) for ``seconds`` while a consumer reads
    them back, through librdkafka, waits (up to 30 s) until it has read them all, then deletes the
    topic. Returns what it sent and read.
    """
    import threading

    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"driftline-bench-warm-up-{os.getpid()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    consumer.subscribe([topic])
    done, counts = threading.Event(), {"sent": 0, "read": 0}

    def read() -> None:
        while not done.is_set():
            counts["read"] += sum(1 for m in consumer.consume(1000, 0.1) if m.error() is None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    value, deadline = b"x" * 200, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for i in range(50):
                try:
                    producer.produce(topic, value, key=str(i).encode())
                except BufferError:
                    break
                counts["sent"] += 1
            producer.poll(0.001)
        producer.flush(30)
        caught_up = time.monotonic() + 30
        while counts["read"] < counts["sent"] and time.monotonic() < caught_up:
            time.sleep(0.05)
    finally:
        done.set()
        reader.join(10)
        consumer.close()
        admin.delete_topics([topic])[topic].result(30)
    return counts


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
            warm_up(bootstrap)
            yield bootstrap
        finally:
            os.environ.pop("DRIFTLINE_BOOTSTRAP_SERVERS", None)
            localkafka.stop(Path(d))
