"""driftline/localkafka: the cluster id a fresh data directory gets."""

from __future__ import annotations

import uuid

from driftline import localkafka
from driftline.localkafka import KafkaLayout, _cluster_id

# base64url of a first byte 0xf8-0xfb begins with "-"
DASHED = uuid.UUID(bytes=b"\xf8" + bytes(range(1, 16)))
PLAIN = uuid.UUID(bytes=bytes(range(16)))


def test_a_new_cluster_id_never_starts_with_a_dash(tmp_path, monkeypatch):
    """kafka-storage reads ``-t -x…`` as an option: the id is drawn again, as Kafka's own are."""
    drawn = iter([DASHED, DASHED, PLAIN])
    monkeypatch.setattr(localkafka.uuid, "uuid4", lambda: next(drawn))
    cid = _cluster_id(KafkaLayout(tmp_path))
    assert cid == "AAECAwQFBgcICQoLDA0ODw"
    assert (tmp_path / "cluster.id").read_text() == cid
    assert _cluster_id(KafkaLayout(tmp_path)) == cid  # kept for the directory's life


def test_a_saved_id_that_starts_with_a_dash_is_replaced(tmp_path, monkeypatch):
    (tmp_path / "cluster.id").write_text("-fgECAwQFBgcICQoLDA0ODw")  # never formatted a node
    monkeypatch.setattr(localkafka.uuid, "uuid4", lambda: PLAIN)
    assert _cluster_id(KafkaLayout(tmp_path)) == "AAECAwQFBgcICQoLDA0ODw"
