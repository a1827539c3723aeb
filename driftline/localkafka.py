"""A real Apache Kafka on this machine, without Docker.

``driftline kafka start`` runs Kafka in KRaft mode (no ZooKeeper), one or
three combined broker+controller nodes on loopback. The steps, in order:

1. **Check the tools.** Java 17+ runs the broker and Maven fetches it. When
   either is missing we stop at once and say what the alternatives are.
2. **Fetch the jars once.** ``mvn dependency:copy-dependencies`` over
   ``deploy/kafka/pom.xml`` copies Kafka and its runtime classpath into a
   cache (``$DRIFTLINE_HOME/jars/kafka-<version>``). Later starts are offline.
3. **Format storage once** per node with ``kafka.tools.StorageTool``, under
   one cluster id kept in the data dir, so restarts keep their data.
4. **Start each node** as ``java … kafka.Kafka server.properties`` in its own
   session, with its pid in ``<data dir>/node-<id>/pid``.
5. **Wait until the cluster answers** a metadata request naming every node.

``start`` is idempotent: nodes that already run are left alone. ``stop``
sends SIGTERM, then SIGKILL after a timeout.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["KafkaLayout", "LocalKafkaError", "start", "stop", "status", "ensure_jars", "KAFKA_VERSION"]

KAFKA_VERSION = "4.3.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J2 = REPO_ROOT / "deploy" / "kafka" / "log4j2.xml"

ALTERNATIVES = (
    "Alternatives: point DRIFTLINE_BOOTSTRAP_SERVERS at an existing Kafka cluster "
    "(for example DRIFTLINE_BOOTSTRAP_SERVERS=broker1:9092), or run `docker compose up` "
    "with the repository's docker-compose.yml."
)


class LocalKafkaError(RuntimeError):
    """The local broker cannot be set up or started; the message says why and what to do."""


def driftline_home() -> Path:
    return Path(os.environ.get("DRIFTLINE_HOME", Path.home() / ".driftline"))


def default_data_dir() -> Path:
    return Path(os.environ.get("DRIFTLINE_KAFKA_DATA_DIR", driftline_home() / "kafka"))


@dataclass(frozen=True)
class KafkaLayout:
    """Where the nodes of one local cluster live and listen."""

    data_dir: Path
    nodes: int = 1
    port: int = 9092
    heap: str = "512m"

    def broker_port(self, node: int) -> int:
        return self.port + node - 1

    def controller_port(self, node: int) -> int:
        return self.port + 100 + node - 1

    def node_dir(self, node: int) -> Path:
        return self.data_dir / f"node-{node}"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.broker_port(n)}" for n in range(1, self.nodes + 1))

    def server_properties(self, node: int) -> str:
        rf = min(3, self.nodes)
        voters = ",".join(f"{n}@127.0.0.1:{self.controller_port(n)}" for n in range(1, self.nodes + 1))
        props = {
            "process.roles": "broker,controller",
            "node.id": node,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.broker_port(node)},"
            f"CONTROLLER://127.0.0.1:{self.controller_port(node)}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.broker_port(node)}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.node_dir(node) / "data"),
            "num.partitions": 1,
            "default.replication.factor": rf,
            "min.insync.replicas": 2 if rf >= 3 else 1,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": 2 if rf >= 3 else 1,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": 2 if rf >= 3 else 1,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "true",
            "log.retention.hours": 168,
            "log.segment.bytes": 256 * 1024 * 1024,
            "unclean.leader.election.enable": "false",
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())


# ---------------------------------------------------------------- tools


def find_java() -> str:
    """Path of a Java 17+ ``java``; raises LocalKafkaError naming what is missing."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(shutil.which("java"))
    for java in candidates:
        version = _java_major(java)
        if version and version >= 17:
            return java
    found = ", ".join(f"{c} (Java {_java_major(c)})" for c in candidates) or "no java on PATH or JAVA_HOME"
    raise LocalKafkaError(
        f"Kafka {KAFKA_VERSION} needs Java 17 or newer; found: {found}. "
        f"Install one (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME. {ALTERNATIVES}"
    )


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def jar_dir() -> Path:
    return driftline_home() / "jars" / f"kafka-{KAFKA_VERSION}"


def ensure_jars(quiet: bool = False) -> Path:
    """Return the directory of Kafka's jars, fetching them with Maven the first time."""
    libs = jar_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise LocalKafkaError(
            f"Maven (mvn) is needed once, to fetch Kafka {KAFKA_VERSION} from Maven Central into {libs}. "
            f"Install it (Debian: apt-get install maven). {ALTERNATIVES}"
        )
    libs.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"fetching Kafka {KAFKA_VERSION} jars from Maven Central into {libs} …", file=sys.stderr)
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={libs}", f"-Dkafka.version={KAFKA_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalKafkaError(f"mvn failed to fetch the Kafka jars:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    marker.write_text(KAFKA_VERSION)
    return libs


# ---------------------------------------------------------------- lifecycle


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _read_pid(node_dir: Path) -> int | None:
    try:
        pid = int((node_dir / "pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _save_layout(layout: KafkaLayout) -> None:
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    d = asdict(layout)
    d["data_dir"] = str(layout.data_dir)
    (layout.data_dir / "layout.json").write_text(json.dumps(d))


def load_layout(data_dir: Path) -> KafkaLayout | None:
    try:
        d = json.loads((Path(data_dir) / "layout.json").read_text())
    except (OSError, ValueError):
        return None
    d["data_dir"] = Path(d["data_dir"])
    return KafkaLayout(**d)


def _cluster_id(layout: KafkaLayout) -> str:
    """The cluster's id, made once per data directory.

    Like Kafka's ``Uuid.randomUuid()``, it never starts with ``-``: ``kafka-storage format -t -x…``
    reads such an id as an option and fails ("expected one argument"), one fresh directory in 64.
    An id saved by an older driftline that starts with ``-`` never formatted a node, so it is replaced.
    """
    f = layout.data_dir / "cluster.id"
    if f.exists():
        cid = f.read_text().strip()
        if cid and not cid.startswith("-"):
            return cid
    cid = "-"
    while cid.startswith("-"):
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    f.write_text(cid)
    return cid


def _java_cmd(java: str, libs: Path, layout: KafkaLayout, node: int, main: str) -> list[str]:
    nd = layout.node_dir(node)
    return [
        java, f"-Xms{layout.heap}", f"-Xmx{layout.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true", f"-Dkafka.logs.dir={nd}", f"-Dlog4j2.configurationFile={LOG4J2}",
        "-cp", f"{libs}/*", main,
    ]


def start(layout: KafkaLayout, timeout: float = 120.0, quiet: bool = False) -> str:
    """Start (or find running) every node of ``layout``; return the bootstrap string."""
    existing = load_layout(layout.data_dir)
    if existing and (existing.nodes, existing.port) != (layout.nodes, layout.port):
        running = [n for n in range(1, existing.nodes + 1) if _read_pid(existing.node_dir(n))]
        if running:
            raise LocalKafkaError(
                f"{layout.data_dir} already holds a running {existing.nodes}-node cluster on port "
                f"{existing.port}; stop it first (driftline kafka stop --data-dir {layout.data_dir})."
            )
        if existing.nodes != layout.nodes:
            raise LocalKafkaError(
                f"{layout.data_dir} was formatted for {existing.nodes} node(s); use another --data-dir "
                f"for a {layout.nodes}-node cluster, or remove {layout.data_dir}."
            )
    java = find_java()
    libs = ensure_jars(quiet=quiet)
    _save_layout(layout)
    cid = _cluster_id(layout)
    for node in range(1, layout.nodes + 1):
        nd = layout.node_dir(node)
        nd.mkdir(parents=True, exist_ok=True)
        if _read_pid(nd):
            continue
        props = nd / "server.properties"
        props.write_text(layout.server_properties(node))
        if not (nd / "data" / "meta.properties").exists():
            cmd = _java_cmd(java, libs, layout, node, "kafka.tools.StorageTool")
            cmd += ["format", "-t", cid, "-c", str(props), "--ignore-formatted"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise LocalKafkaError(f"formatting node {node} failed:\n{proc.stdout}{proc.stderr}")
        with open(nd / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                _java_cmd(java, libs, layout, node, "kafka.Kafka") + [str(props)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        (nd / "pid").write_text(str(proc.pid))
    _wait_ready(layout, timeout)
    return layout.bootstrap


def _wait_ready(layout: KafkaLayout, timeout: float) -> None:
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for node in range(1, layout.nodes + 1):
            if not _read_pid(layout.node_dir(node)):
                tail = _tail(layout.node_dir(node) / "stdout.log") + _tail(layout.node_dir(node) / "kafka.log")
                raise LocalKafkaError(f"Kafka node {node} exited during start-up. Last log lines:\n{tail}")
        try:
            admin = KafkaAdminClient(bootstrap_servers=layout.bootstrap.split(","), request_timeout_ms=5000)
            try:
                brokers = admin.describe_cluster()["brokers"]
            finally:
                admin.close()
            if len(brokers) >= layout.nodes:
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        time.sleep(0.5)
    raise LocalKafkaError(f"Kafka did not answer a metadata request within {timeout:.0f}s ({last_error})")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def stop(data_dir: Path, timeout: float = 30.0, node: int | None = None) -> list[int]:
    """Stop the nodes under ``data_dir`` (or one ``node``): SIGTERM, then SIGKILL after ``timeout``."""
    layout = load_layout(data_dir)
    if layout is None:
        return []
    nodes = [node] if node else list(range(1, layout.nodes + 1))
    pids = [p for p in (_read_pid(layout.node_dir(n)) for n in nodes) if p]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for n in nodes:
        (layout.node_dir(n) / "pid").unlink(missing_ok=True)
    return pids


def status(data_dir: Path) -> dict:
    """What runs where: one entry per node, with its pid (None when down) and address."""
    layout = load_layout(data_dir)
    if layout is None:
        return {"data_dir": str(data_dir), "nodes": [], "bootstrap": None, "running": False}
    nodes = []
    for n in range(1, layout.nodes + 1):
        nodes.append({
            "node": n,
            "pid": _read_pid(layout.node_dir(n)),
            "broker": f"127.0.0.1:{layout.broker_port(n)}",
            "controller": f"127.0.0.1:{layout.controller_port(n)}",
            "dir": str(layout.node_dir(n)),
        })
    return {
        "data_dir": str(layout.data_dir),
        "version": KAFKA_VERSION,
        "bootstrap": layout.bootstrap,
        "nodes": nodes,
        "running": any(n["pid"] for n in nodes),
    }
