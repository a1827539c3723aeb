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
    forked checkpoint writers). ``listening`` names the process that listens on a port (the broker);
    for it, ``"<name> JIT"`` is also given: the part of its cores that the JVM's just-in-time
    compiler threads used (:func:`jit_seconds`), which says whether the broker was measured warm.

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
        self.jvms: dict[str, int] = {}
        for name, port in (listening or {}).items():
            pid = _listener(port)
            if pid is not None:
                self.pids[name] = self.jvms[f"{name} JIT"] = pid

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

        used = {n: self._used(pid) for n, pid in self.pids.items()}
        used |= {n: jit_seconds(pid) for n, pid in self.jvms.items()}
        return time.monotonic(), used, psutil.cpu_times()

    def start(self) -> CpuMeter:
        self._t0 = self._sample()
        return self

    def stop(self) -> dict:
        """``{name: cores, ..., "machine_busy": fraction of all cores, "seconds": wall}``."""
        (w0, p0, m0), (w1, p1, m1) = self._t0, self._sample()
        wall = max(w1 - w0, 1e-9)
        out = {n: round((p1[n] - p0[n]) / wall, 3) for n in p0 if p0[n] is not None and p1[n] is not None}
        idle = lambda t: t.idle + getattr(t, "iowait", 0.0)  # noqa: E731
        total = sum(m1) - sum(m0)
        out["machine_busy"] = round(1 - (idle(m1) - idle(m0)) / total, 3) if total > 0 else 0.0
        out["seconds"] = round(wall, 2)
        return out


def jit_seconds(pid: int) -> float | None:
    """CPU seconds the JVM ``pid``'s just-in-time compiler threads (``C1/C2 CompilerThread``) have
    used, from ``/proc`` (None where it cannot be read)."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        except OSError:
            continue  # the thread ended
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if "Compiler" in name:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


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


#: A new private broker gets produce, fetch and commit traffic for at least this long before
#: anything is measured, and then until its just-in-time compilers are quiet (:func:`warm_up`).
WARM_UP_S = 20.0
WARM_UP_MAX_S = 240.0
#: Quiet: the JVM's compiler threads used less than this many cores over the last round of traffic.
JIT_QUIET_CORES = 0.1


def warm_up(bootstrap: str, seconds: float = WARM_UP_S, max_seconds: float = WARM_UP_MAX_S,
            quiet_cores: float = JIT_QUIET_CORES) -> dict:
    """Put a new broker through the JVM's compilers before anything is measured.

    A broker is measured warm, as a user's runs: a fresh JVM interprets its request handling
    until its just-in-time compilers catch up, and on this two-core machine the compiling takes a
    core from what is measured. On a broker started for the purpose, ``bench/learner``'s first LR
    rounds ran at 0.44, 0.59 and 0.63 of the in-process ceiling, rising to 0.67 by the seventh; on
    a broker that had served for hours, 0.68-0.70 from the first. The 20 s of traffic given before
    (2026-12-07) ended with the compiler threads still at 0.6 of a core, quiet only after 30 s;
    and a ``bench/pipeline`` latency run at 2,000 events/s on a broker 85 s old gave p50 44 ms and
    p99 228, the broker's C2 compiler at 0.42 of a core, against p50 12-16 and p99 78-81 on a broker
    whose compilers were quiet.

    So this sends traffic in rounds of 5 s (:func:`_traffic`; shorter if ``seconds`` is) for at
    least ``seconds``, then until the broker's compiler threads (:func:`jit_seconds`) used less
    than ``quiet_cores`` in a round, for at most ``max_seconds``. Returns what it sent and read,
    how long it took and the compilers' cores in the last round.
    """
    pid = _listener(int(bootstrap.split(",")[0].rsplit(":", 1)[1]))
    started = time.monotonic()
    counts = {"sent": 0, "read": 0}
    jit = None
    while True:
        before, t0 = jit_seconds(pid) if pid else None, time.monotonic()
        for k, v in _traffic(bootstrap, min(5.0, seconds)).items():
            counts[k] += v
        after = jit_seconds(pid) if pid else None
        jit = round((after - before) / (time.monotonic() - t0), 3) if before is not None and after is not None else None
        took = time.monotonic() - started
        if took >= seconds and (jit is None or jit < quiet_cores or took >= max_seconds):
            break
    out = {**counts, "seconds": round(took, 1), "jit_cores_last_round": jit}
    print(f"broker warm-up: {out['seconds']} s of traffic, the JIT compilers at {jit} cores in the last round",
          flush=True)
    return out


def _traffic(bootstrap: str, seconds: float) -> dict:
    """Produce, fetch and commit for ``seconds`` on a topic of its own, through librdkafka: small
    record batches (``linger.ms`` 0, so many requests) from an idempotent producer, read back by a
    consumer in a group that commits as it goes; waits (up to 30 s) until every record is read,
    then deletes the topic. Returns what it sent and read."""
    import threading

    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"driftline-bench-warm-up-{os.getpid()}-{time.monotonic_ns()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "enable.idempotence": True})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    consumer.subscribe([topic])
    done, counts = threading.Event(), {"sent": 0, "read": 0}

    def read() -> None:
        while not done.is_set():
            got = [m for m in consumer.consume(1000, 0.1) if m.error() is None]
            if got:
                counts["read"] += len(got)
                consumer.commit(asynchronous=True)

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
