"""The learner's input consumer: librdkafka (confluent-kafka) behind the few calls the learner makes.

The learner reads its inputs with manual assignment and keeps its own positions (its checkpoints
hold them), so it needs only: the partitions of a topic, a start offset per partition, batches of
records, the high watermarks of the last fetch, and the end offsets and offsets by time at start.
kafka-python parses every record in Python: polling and decoding the reference pipeline's features
records took it 8.5-8.8 µs of CPU a record, its IO thread included, where librdkafka, which parses
in C on its own threads, took 2.6-2.9 in the same wall time (200,000 records, two alternating pairs;
``bench/NOTES.md``). The learner's outputs go through librdkafka too (``driftline._produce``).

Kafka outages are librdkafka's to ride out: it reconnects with back-off (up to
``reconnect.backoff.max.ms``) and keeps every assigned partition's position, and what it reports
(a broker down, all brokers down) is logged through ``driftline.kafka`` rather than its stderr.

Records come back grouped as kafka-python's consumer groups them, ``{TopicPartition: [message]}``,
with confluent-kafka's messages (``offset()``, ``value()``).
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as _CTP
from kafka import TopicPartition

from contracts.settings import KafkaSettings

__all__ = ["InputConsumer", "partitions_for"]

log = logging.getLogger("driftline.kafka")

# What a partition without a known leader answers: worth asking again shortly.
_LEADER_UNKNOWN = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                             KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION})


class InputConsumer:
    """Manually assigned partitions, read from offsets the caller gives (:meth:`seek`)."""

    def __init__(self, settings: KafkaSettings, *, max_records: int, fetch_max_wait_ms: int,
                 fetch_max_bytes: int, max_partition_fetch_bytes: int, request_timeout_s: float = 30.0):
        self.max_records = max_records
        self.request_timeout_s = request_timeout_s
        self._consumer = Consumer({
            **settings.librdkafka(),
            # No group is joined (manual assignment) and nothing is committed; librdkafka still
            # wants a group id for its consumer.
            "group.id": "driftline-learner-unjoined",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "latest",  # as kafka-python's default, for an offset out of range
            "fetch.wait.max.ms": fetch_max_wait_ms,
            "fetch.max.bytes": fetch_max_bytes,
            "max.partition.fetch.bytes": max_partition_fetch_bytes,
            "receive.message.max.bytes": fetch_max_bytes + (1 << 20),
            "reconnect.backoff.max.ms": 5000,
            "error_cb": _report,
            "logger": log,
        })
        self._starts: dict[TopicPartition, int] = {}
        self._assigned: list[TopicPartition] = []
        self._dirty = True
        self._by_key: dict[tuple[str, int], TopicPartition] = {}
        self._ctp: dict[TopicPartition, _CTP] = {}

    # ---------------------------------------------------------------- metadata and start offsets

    def partitions_for(self, topic: str, timeout_s: float = 60.0) -> list[TopicPartition]:
        """The topic's partitions, waiting up to ``timeout_s`` for it to exist."""
        return partitions_for(self._consumer, topic, timeout_s, self.request_timeout_s)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._assigned = list(partitions)
        self._by_key = {(tp.topic, tp.partition): tp for tp in partitions}
        self._ctp = {tp: _CTP(tp.topic, tp.partition) for tp in partitions}
        self._dirty = True

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._starts[tp] = offset
        self._dirty = True

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions or self._assigned:
            self.seek(tp, self._watermarks(tp)[0])

    def position(self, tp: TopicPartition) -> int:
        """The offset the next record of ``tp`` will have, as last given to :meth:`seek`."""
        try:
            return self._starts[tp]
        except KeyError:
            raise RuntimeError(f"no start offset for {tp}: seek it first") from None

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._watermarks(tp)[1] for tp in partitions}

    def offsets_for_times(self, stamps: dict[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        """Per partition, the first offset at or after the timestamp (ms); ``None`` when there is none."""
        found = self._consumer.offsets_for_times([_CTP(tp.topic, tp.partition, ms) for tp, ms in stamps.items()],
                                                 timeout=self.request_timeout_s)
        return {self._by_key[(c.topic, c.partition)]: (c.offset if c.offset >= 0 else None) for c in found}

    def _watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        """``tp``'s low and high watermarks, asking again while its leader is not yet known (a topic
        created a moment ago, a broker just lost) until ``request_timeout_s`` has passed."""
        deadline = time.monotonic() + self.request_timeout_s
        while True:
            try:
                return self._consumer.get_watermark_offsets(self._ctp[tp], timeout=self.request_timeout_s)
            except KafkaException as exc:
                err = exc.args[0]
                if time.monotonic() > deadline or not (err.retriable() or err.code() in _LEADER_UNKNOWN):
                    raise
            time.sleep(0.1)

    # ---------------------------------------------------------------- records

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list]:
        """Up to ``max_records`` records, waiting up to ``timeout_ms`` for the first."""
        if self._dirty:
            self._consumer.assign([_CTP(tp.topic, tp.partition, self.position(tp)) for tp in self._assigned])
            self._dirty = False
        # What has arrived, at once; else wait for the first record and take what came with it.
        # (``consume`` with a timeout waits for the whole ``max_records`` or the whole timeout: at
        # half load that held every batch of predictions for the learner's 100 ms poll.)
        consume = self._consumer.consume
        batch = consume(self.max_records, 0)
        if not batch and timeout_ms > 0:
            first = self._consumer.poll(timeout_ms / 1000.0)
            if first is not None:
                batch = [first, *(consume(self.max_records - 1, 0) if self.max_records > 1 else ())]
        out: dict[TopicPartition, list] = {}
        last_key = records = None
        for m in batch:
            err = m.error()
            if err is not None:
                _report(err)
                continue
            key = (m.topic(), m.partition())
            if key != last_key:
                tp = self._by_key[key]
                records = out.get(tp)
                if records is None:
                    records = out[tp] = []
                last_key = key
            records.append(m)
        return out

    def highwater(self, tp: TopicPartition) -> int | None:
        """``tp``'s high watermark as of its last fetch (no request); ``None`` before the first."""
        high = self._consumer.get_watermark_offsets(self._ctp[tp], cached=True)[1]
        return high if high >= 0 else None

    def close(self) -> None:
        self._consumer.close()


def partitions_for(client, topic: str, timeout_s: float, request_timeout_s: float) -> list[TopicPartition]:
    """``topic``'s partitions by a librdkafka client's metadata, waiting up to ``timeout_s`` for it to exist."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            meta = client.list_topics(topic, timeout=request_timeout_s).topics.get(topic)
        except KafkaException as exc:
            meta, why = None, exc
        else:
            why = meta.error if meta is not None else None
        if meta is not None and meta.error is None and meta.partitions:
            return [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic '{topic}' does not exist ({why}); run `driftline topics create SPEC` first")
        time.sleep(0.2)


def _report(err: KafkaError) -> None:
    """librdkafka's errors: it retries the transient ones itself; a fatal one stops the learner."""
    if err.fatal():
        raise KafkaException(err)
    if err.code() == KafkaError._PARTITION_EOF:
        return
    log.warning("Kafka: %s (librdkafka retries with back-off)", err.str())
