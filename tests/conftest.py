"""Shared fixtures. Integration tests talk to a real Kafka broker:

* ``make test`` starts one (``driftline kafka start``) and exports
  ``DRIFTLINE_BOOTSTRAP_SERVERS``; the tests use it and leave it running;
* otherwise the ``kafka`` fixture starts a private broker on a free port in a
  temporary directory, and stops it at the end of the session, pass or fail.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port_block(n: int = 1, start: int = 40000) -> int:
    """First port of ``n`` consecutive free ports (and their controller ports at +100)."""
    for base in range(start, 60000, 7):
        ports = [base + i for i in range(n)] + [base + 100 + i for i in range(n)]
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no free port block")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """The bootstrap string of a live broker."""
    from driftline import localkafka

    existing = os.environ.get("DRIFTLINE_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    data_dir = tmp_path_factory.mktemp("kafka")
    layout = localkafka.KafkaLayout(data_dir, nodes=1, port=free_port_block(1))
    try:
        bootstrap = localkafka.start(layout, timeout=180)
        os.environ["DRIFTLINE_BOOTSTRAP_SERVERS"] = bootstrap
        yield bootstrap
    finally:
        localkafka.stop(data_dir)
        os.environ.pop("DRIFTLINE_BOOTSTRAP_SERVERS", None)


@pytest.fixture
def settings(kafka):
    from contracts.settings import KafkaSettings

    return KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": kafka})


@pytest.fixture
def namespace(settings):
    """A fresh topic namespace, whose topics are deleted after the test."""
    ns = f"t-{uuid.uuid4().hex[:8]}"
    yield ns
    if os.environ.get("DRIFTLINE_KEEP_TOPICS") == "1":  # to look at a failure afterwards
        return
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**settings.kafka_python())
    try:
        mine = [t for t in admin.list_topics() if t.startswith(ns + ".")]
        if mine:
            admin.delete_topics(mine)
    except Exception:  # noqa: BLE001 - clean-up is best effort
        pass
    finally:
        admin.close()
