"""The processors as a faust app: raw → clean (and dlq) → features.

One agent reads the raw topic in batches (``take_events``), so that faust's
per-event overhead is paid once per batch. For each event it:

1. cleans the raw bytes with :class:`processors.clean.Cleaner` (pure code);
2. sends a rejection to the dead-letter topic with the original bytes and the
   ``driftline.reason`` / ``driftline.origin.*`` headers;
3. sends a valid record to the clean topic and its feature vector to the
   features topic.

Nothing raises out of the agent: faust acks a message whose agent raised, so a
failure is caught and dead-lettered on purpose. The batch's offsets are acked
only after every send of the batch has been acknowledged by the broker.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import faust

from contracts import serde
from contracts.settings import KafkaSettings
from contracts.spec import Spec
from contracts.topics import Headers, Role, pipeline_topics
from processors import _metrics
from processors.clean import Clean, Cleaner, Rejection

__all__ = ["create_app", "run_worker"]

log = logging.getLogger("driftline.processors")

BATCH = 1000
BATCH_WITHIN_S = 0.01


def dead_letter_headers(reason: str, message: str, topic: str, partition: int, offset: int) -> list:
    return [
        (Headers.REASON, reason.encode()),
        (Headers.MESSAGE, message.encode()[:2000]),
        (Headers.ORIGIN_TOPIC, topic.encode()),
        (Headers.ORIGIN_PARTITION, str(partition).encode()),
        (Headers.ORIGIN_OFFSET, str(offset).encode()),
    ]


def create_app(spec: Spec, settings: KafkaSettings, namespace: str | None = None,
               datadir: str | None = None) -> faust.App:
    topics = pipeline_topics(spec, namespace)
    app_id = topics[Role.RAW].name.removesuffix(".raw") + ".processors"
    datadir = Path(datadir or Path(os.environ.get("DRIFTLINE_HOME", Path.home() / ".driftline")) / "faust")
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=settings.faust_broker,
        broker_credentials=settings.faust_credentials(),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=spec.topics.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_batch_size=256 * 1024,
        stream_buffer_maxsize=8192,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
    )
    raw = app.topic(topics[Role.RAW].name, key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    clean_t = app.topic(topics[Role.CLEAN].name, key_serializer="raw", value_serializer="raw")
    features_t = app.topic(topics[Role.FEATURES].name, key_serializer="raw", value_serializer="raw")
    dlq_t = app.topic(topics[Role.DLQ].name, key_serializer="raw", value_serializer="raw")
    cleaner = Cleaner(spec)
    stats = {"in": 0, "clean": 0, "dlq": 0}
    app.driftline_stats = stats  # type: ignore[attr-defined]

    async def dead_letter(event, reason: str, message: str):
        _metrics.dead_lettered(reason)
        msg = event.message
        return await dlq_t.send(key=msg.key, value=msg.value, force=True,
                                headers=dead_letter_headers(reason, message, msg.topic, msg.partition, msg.offset))

    @app.agent(raw)
    async def clean_and_featurize(stream):
        async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            started = _metrics.clock()
            pending = []
            for event in events:
                stats["in"] += 1
                try:
                    result = cleaner.clean_bytes(event.message.value)
                    if isinstance(result, Rejection):
                        stats["dlq"] += 1
                        pending.append(await dead_letter(event, result.reason, result.message))
                        continue
                    key = result.key.encode() if result.key is not None else None
                    value = serde.dumps(result.as_value())
                    pending.append(await clean_t.send(key=key, value=value, force=True))
                    pending.append(await features_t.send(key=key, value=value, force=True))
                    stats["clean"] += 1
                except Exception as exc:  # noqa: BLE001 - nothing raises out of an agent
                    log.exception("processing failed; dead-lettering offset %s", event.message.offset)
                    stats["dlq"] += 1
                    pending.append(await dead_letter(event, "processing_error", f"{type(exc).__name__}: {exc}"))
            # Ack the batch (when take_events resumes) only after the broker has every record of it.
            await asyncio.gather(*pending)
            _metrics.observe_batch(app, events, started)

    return app


def run_worker(spec: Spec, settings: KafkaSettings, namespace: str | None = None, loglevel: str = "warn") -> None:
    """Run one processor worker until SIGTERM or Ctrl-C. Several may run at once."""
    from faust.worker import Worker

    app = create_app(spec, settings, namespace)
    _metrics.serve("processor", _metrics.REGISTRY, _metrics.DEFAULT_PORT)
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
