"""`driftline kafka` runs a real broker: idempotent start, a 3-node cluster that survives a node loss."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from tests.conftest import free_port_block

pytestmark = pytest.mark.integration


def driftline(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "driftline", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or os.environ.copy())


def test_missing_java_fails_at_once_with_the_alternatives(tmp_path):
    env = {"PATH": "/nonexistent", "DRIFTLINE_HOME": str(tmp_path)}
    proc = driftline("kafka", "start", "--data-dir", str(tmp_path / "k"), env=env, timeout=60)
    assert proc.returncode == 2
    assert "needs Java 17 or newer" in proc.stderr
    assert "DRIFTLINE_BOOTSTRAP_SERVERS" in proc.stderr and "docker compose up" in proc.stderr


def test_status_when_nothing_runs(tmp_path):
    proc = driftline("kafka", "status", "--data-dir", str(tmp_path / "none"))
    assert proc.returncode == 1 and "no local Kafka" in proc.stdout


def test_three_node_cluster_keeps_producing_and_consuming_after_losing_a_node(tmp_path):
    port = free_port_block(3)
    data = str(tmp_path / "cluster")
    try:
        start = driftline("kafka", "start", "--nodes", "3", "--port", str(port), "--data-dir", data,
                          "--heap", "384m")
        assert start.returncode == 0, start.stderr
        again = driftline("kafka", "start", "--nodes", "3", "--port", str(port), "--data-dir", data)
        assert again.returncode == 0, again.stderr  # idempotent
        status = json.loads(driftline("kafka", "status", "--data-dir", data, "--json").stdout)
        pids = [n["pid"] for n in status["nodes"]]
        assert all(pids) and len(set(pids)) == 3

        bootstrap = status["bootstrap"].split(",")
        topic = f"rf3-{uuid.uuid4().hex[:6]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 3,
                                     "configs": {"min.insync.replicas": "2"}}}, wait_for_metadata=True)
        described = admin.describe_topics([topic])[0]
        assert all(len(p["replica_nodes"] if "replica_nodes" in p else p["replicas"]) == 3
                   for p in described["partitions"])
        admin.close()

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for i in range(100):
            producer.send(topic, str(i).encode())
        producer.flush()

        os.kill(pids[1], signal.SIGKILL)  # lose node 2
        time.sleep(1)
        for i in range(100, 200):
            producer.send(topic, str(i).encode())
        producer.flush(timeout=120)
        producer.close()

        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen = []
        deadline = time.monotonic() + 120
        while len(seen) < 200 and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=1000).values():
                seen.extend(int(r.value) for r in recs)
        consumer.close()
        assert sorted(seen) == list(range(200))
    finally:
        driftline("kafka", "stop", "--data-dir", data)
