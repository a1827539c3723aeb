"""The processors as a faust app: raw → clean (and dlq) → features → examples.

Agent ``clean_and_featurize`` reads the raw topic in batches (:func:`take_batches`: every
event waiting in its stream's queue, at once), so that faust's per-event overhead is paid once
per batch. For each batch it:

1. reads, from each output partition it has not written since the last
   rebalance, the highest origin offset already there (:mod:`processors._ledger`),
   so that records replayed after a crash are not written twice;
2. runs :class:`processors.stage.Stage` (clean → dedup → featurize, pure code)
   over the batch, with the tables behind an overlay that holds the writes;
3. sends each rejection to the dead-letter topic (original bytes, original key,
   ``driftline.reason`` / ``driftline.message`` / ``driftline.origin.*``
   headers), each valid record to the clean and features topics (and, with
   inline labels, to the examples topic; with delayed labels, its features to
   the join's pending topic), all to the source record's partition;
4. waits until the broker has acknowledged every send of the batch;
5. only then writes the state changes to the tables (their changelogs), because
   a state change that is durable must mean its outputs are too;
6. returns to :func:`take_batches`, which acks the batch; faust flushes the producer
   (changelogs included) before it commits those offsets.

Agent ``join_labels`` (delayed labels only) reads the labels topic and the
pending topic, both keyed by event id, and joins them with
:class:`processors.join.LabelJoin` under the same steps.

Nothing raises out of an agent: faust acks a message whose agent raised, so a
failure is caught and dead-lettered on purpose.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import weakref
from pathlib import Path

import faust
from faust.streams import _current_event
from faust.types import TP
from kafka.partitioner.default import murmur2

from contracts import serde
from contracts.settings import FETCH_MAX_WAIT_MS, KafkaSettings
from contracts.spec import Spec
from contracts.topics import (PROCESSOR_TABLES, Headers, Role, pipeline_topics, processors_app_id,
                             processors_internal_topics, processors_pending_topic)
from driftline._gc import tune_for_streaming
from processors import _metrics
from processors._continuity import Continuity
from processors._ledger import SWEPT, Ledger
from processors._outbox import Outbox
from processors._tables import DirectTable
from processors._watchdog import Watchdog
from processors.join import LabelJoin
from processors.stage import Outcome, Overlay, Stage, State

__all__ = ["create_app", "run_worker", "dead_letter_headers", "STORES"]

log = logging.getLogger("driftline.processors")

BATCH = 1000
# How long one ``getmany`` of the worker's fetch loop waits for records (faust's loop asks for 1 s).
# The wait is not woken when a partition becomes active again: a full stream queue takes its
# partitions out of the active set (faust's buffer pressure), ``getmany`` then waits only for the
# others, and records that arrive meanwhile, or a partition let back in, are seen at the next call.
# Over a backlog every other ``getmany`` waited the whole second for nothing while 12,000 records
# (a fetch of 1 MiB per partition) were ready behind it: the worker drained 8,026-8,348 events/s,
# its main thread busy 0.67-0.72 of the time. At the broker's own fetch wait (50 ms) it drained
# 12,126-12,861, busy 0.93 (two alternating pairs; README, *Processors*).
GETMANY_TIMEOUT_S = FETCH_MAX_WAIT_MS / 1000
# How long the broker may hold a fetch of the worker's for records, and how many bytes of them let
# it answer sooner (:func:`_prompt_fetches`).
WORKER_FETCH_MAX_WAIT_MS = 10
WORKER_FETCH_MIN_BYTES = 64 * 1024
STORES = {"rocksdb": "rocksdb://", "memory": "memory://"}
DLQ_MAX_BYTES = 16 * 1024 * 1024
SWEEP_CHUNK = 2000  # store entries a TTL sweep reads per batch and partition
WATCH_EVERY_S = 5.0  # how often the watchdog looks for a stalled input partition (processors/_watchdog.py)
# RocksDB memory per table partition (one database each). faust's defaults are sized for a server of
# its own: three 64 MiB memtables and a 2 GiB block cache per database, and a worker holds eight
# (four tables, two partitions each) and more as it takes partitions. Its resident memory then grew
# with every memtable that filled, through a 2M-event soak. These bound each database to at most
# 2 × 8 MiB of memtables and a 16 MiB cache; the entity state of one key is a few hundred bytes.
# DRIFTLINE_ROCKSDB_MEMTABLE_MIB and DRIFTLINE_ROCKSDB_CACHE_MIB change the two sizes.
ROCKSDB_OPTIONS = {"write_buffer_size": 8 << 20, "max_write_buffer_number": 2, "block_cache_size": 16 << 20}


def rocksdb_options(env=os.environ) -> dict:
    """:data:`ROCKSDB_OPTIONS`, with the sizes the environment sets (MiB).

    >>> rocksdb_options({"DRIFTLINE_ROCKSDB_CACHE_MIB": "64"})["block_cache_size"] == 64 << 20
    True
    """
    options = dict(ROCKSDB_OPTIONS)
    for var, key in (("DRIFTLINE_ROCKSDB_MEMTABLE_MIB", "write_buffer_size"),
                     ("DRIFTLINE_ROCKSDB_CACHE_MIB", "block_cache_size")):
        raw = env.get(var)
        if raw is None:
            continue
        mib = int(raw) if raw.strip().isdecimal() else 0
        if mib < 1:
            raise SystemExit(f"driftline: {var}={raw!r}: give a whole number of MiB, at least 1 "
                             f"(default {ROCKSDB_OPTIONS[key] >> 20})")
        options[key] = mib << 20
    return options


def dead_letter_headers(reason: str, message: str, topic: str, partition: int, offset: int) -> list:
    return [
        (Headers.REASON, reason.encode()),
        (Headers.MESSAGE, message.encode()[:2000]),
        *origin_headers(topic, partition, offset),
    ]


def origin_headers(topic: str, partition: int, offset: int) -> list:
    return [
        (Headers.ORIGIN_TOPIC, topic.encode()),
        (Headers.ORIGIN_PARTITION, str(partition).encode()),
        (Headers.ORIGIN_OFFSET, str(offset).encode()),
    ]


def id_partition(event_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``event_id`` (labels, pending)."""
    return (murmur2(event_id.encode()) & 0x7FFFFFFF) % partitions


def _as_current(event) -> None:
    """Make ``event`` faust's current event: table writes go to its partition's changelog and store."""
    _current_event.set(weakref.ref(event))


def _idempotent_producer() -> None:
    """Make faust's aiokafka producer idempotent: a retried send (a timeout on a busy box) is then
    written once. faust only does this inside transactions; a restart is covered by the ledger."""
    from faust.transport.drivers import aiokafka as driver

    if getattr(driver.Producer, "_driftline_idempotent", False):
        return
    base = driver.Producer._settings_extra

    def extra(self):
        return {**base(self), "acks": "all", "enable_idempotence": True}

    driver.Producer._settings_extra = extra
    driver.Producer._driftline_idempotent = True


def _metadata_backoff(seconds: float = 0.5) -> None:
    """Back off after a failed metadata refresh instead of retrying at once.

    While no broker answers, aiokafka's producer sender and consumer fetcher each ask for a refresh
    as soon as the previous one failed, and a refused connection fails in microseconds: the worker
    spun at 0.6-0.7 cores through a Kafka outage (``tests/chaos/test_kafka_outage.py``). A failed
    refresh now waits ``seconds`` before it reports, which paces every loop that waits on it.
    """
    from aiokafka.client import AIOKafkaClient

    if getattr(AIOKafkaClient, "_driftline_backoff", False):
        return
    base = AIOKafkaClient._metadata_update

    async def update(self, cluster_metadata, topics):
        ok = await base(self, cluster_metadata, topics)
        if not ok:
            await asyncio.sleep(max(seconds, self._retry_backoff))
        return ok

    AIOKafkaClient._metadata_update = update
    AIOKafkaClient._driftline_backoff = True


async def take_batches(stream, max_: int):
    """Batches of the events waiting in ``stream``'s queue: all of them (up to ``max_``) as soon as
    there is one, acked as faust's ``Stream.take_events`` acks them, after the batch is handled.

    ``take_events`` fills its buffer only while it waits for the batch to fill or its ``within``
    timer to run out, one event per turn of the event loop (faust's stream iterator yields with
    ``sleep(0)`` before each event), and not at all while the agent handles the last batch. At
    2,000 events/s with a 2 ms timer it took 5-12 events per batch while the fetched records
    backed up in the queue for over a second; with a 10 ms timer every batch waited the 10 ms.
    This takes what is there, without a timer: small batches at low rates, and large ones when
    the agent falls behind. As the stream iterator does, it drops events fetched before the
    latest rebalance and marks each event's message as tracked, so that faust's consumer waits
    for it to be acked before it gives up a partition.
    """
    from faust.types import EventT

    app = stream.app
    started = await stream.maybe_start()
    queue = stream.channel.queue
    consumer = app.consumer
    acking = app.topics.acking_topics
    flow = app.flow_control
    try:
        while not stream.should_stop:
            try:
                first = await queue.get()
            except StopAsyncIteration:  # faust ends the stream so at shutdown
                return
            waiting = [first]
            while len(waiting) < max_ and not queue.empty():
                waiting.append(queue.get_nowait())
            events = []
            for event in waiting:
                if not isinstance(event, EventT):
                    continue
                message = event.message
                if not flow.is_active() or message.generation_id != app.consumer_generation_id:
                    continue  # fetched before the latest rebalance: the new assignment reads it again
                if message.topic in acking and not message.tracked:
                    message.tracked = True
                    consumer.track_message(message)
                events.append(event)
            if not events:
                continue
            try:
                yield events
            finally:
                for event in events:
                    await stream.ack(event)
    finally:
        if started:
            await stream.stop()


def _prompt_fetches(max_wait_ms: int = WORKER_FETCH_MAX_WAIT_MS, min_bytes: int = WORKER_FETCH_MIN_BYTES) -> None:
    """Cap how long the broker may hold the worker's fetch request (faust sets 1,500 ms), and let
    it hold one until ``min_bytes`` of records are there.

    At a steady 1,500 events/s, the worker's consumer had a fetch in flight for up to 1.5 s while
    new raw records were already in the log, so the agent got nothing and then a backlog that it
    drained slowly: p50 1.5 s from raw to features (per-batch timings and the aiokafka fetcher's
    state, logged during the stall). With the wait capped the same run gives p50 25-66 ms.

    With a minimum of 1 byte, though, every fetch came back with the few records of one producer
    batch (the bench's feed sends every 5 ms), and each fetch's records cost the worker a whole
    round of its machinery (the consumer thread's hand-over, a turn of the agent, its sends, acks
    and table writes) whatever their number: at half load it used 0.68-0.72 of a core, where the
    same events in a backlog take about a third of one.

    Held until 64 KiB or 20 ms, a fetch carries a few times more: at 2,100 events/s
    (``bench/pipeline``'s half load, runs alternating, 2026-12-07) the worker took 0.45-0.59 of a
    core and the broker 0.17-0.22 against 0.68-0.72 and 0.26-0.29, and the p99 end to end was
    76-171 ms against 157-309: the wait for a fetch cost less than the queueing it saved on two
    shared cores. Held 10 ms instead of 20, a record waits half as long for its fetch, for a little
    more CPU: at 2,300 events/s, six alternating pairs, p50 18-28 ms against 28-52 and p99 50-107
    against 57-127 (lower in five pairs), the worker 0.50-0.62 of a core against 0.38-0.59. Held
    5 ms, the worker took 0.68-0.69 and the p99 was no better (70-128 against 59-101 at 10 ms,
    three pairs). Over a backlog a fetch has its 64 KiB at once. (The learner's fetches held the
    same way saved none of its CPU, which is in its models, so they are left prompt.) An idle
    worker sends a fetch every ``max_wait_ms``, which costs nothing measurable.
    """
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    if getattr(cls, "_driftline_prompt", False):
        return
    base = cls._create_worker_consumer

    def create(self, transport):
        consumer = base(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms  # both read when the consumer starts its fetcher
        consumer._fetch_min_bytes = min_bytes
        return consumer

    cls._create_worker_consumer = create
    cls._driftline_prompt = True


def _batched_delivery(yield_every: int = 500) -> None:
    """Hand each fetched batch of records to the streams in one step, not one step per record.

    faust's fetcher loop (``Consumer._drain_messages``) delivers every record through
    ``Service.wait_first(callback(message), suspend_flow.wait())``: four tasks and an
    ``asyncio.wait`` per record, and at least two turns of the event loop, each of which may run a
    whole agent batch first. At 1,800 events/s the worker called ``getmany`` only every 100-200 ms,
    and while records of a partition waited in aiokafka's buffer the fetcher sent no new fetch for
    it: raw records reached the agent 300-600 ms after they were written (per-record timings of
    fetch, ``getmany`` and the agent, ``bench/pipeline`` latency run). Here the records of one
    ``getmany`` are delivered in order by one coroutine, raced once against ``suspend_flow`` as
    faust does per record: a rebalance still stops delivery at once, and a record is marked read
    only after it was delivered. Everything else (read offsets, gaps, commit-every) is faust's.

    A record of a partition that one stream reads as raw bytes (the raw, labels and pending topics)
    goes straight into that stream's queue (:func:`_direct_deliveries`): faust's per-record handler
    awaited the flow control and the producer buffer, decoded the key and value through its codec
    registry (both the identity here) and looked up ``conf.Event``, 12% of the worker's time.
    """
    from faust.transport import consumer as fc

    if getattr(fc.Consumer, "_driftline_batched", False):
        return

    async def _drain_messages(self, fetcher) -> None:  # the fetcher service's background loop
        app = self.app
        callback = self.callback
        acquire_flow, wait_until_ebb = app.flow_control.acquire, app.producer.buffer.wait_until_ebb
        direct_cache: dict = {}
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        sleep = asyncio.sleep

        async def deliver(batch) -> None:
            direct = _direct_deliveries(app, {tp for tp, _ in batch}, direct_cache)
            if direct:  # what faust's handler awaits before each record
                await acquire_flow()
                await wait_until_ebb()
            event = app.conf.Event
            for i, (tp, message) in enumerate(batch, 1):
                offset = message.offset
                r_offset = get_read_offset(tp)
                if r_offset is None or offset >= r_offset:
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    to = direct.get(tp)
                    if to is None or to[0].full():  # faust's handler (it waits while a queue is full)
                        await callback(message)
                    else:
                        queue, high, drop = to
                        message.incref(1)
                        queue.put_nowait_enhanced(event(app, message.key, message.value, message.headers, message),
                                                  on_pressure_high=high, on_pressure_drop=drop)
                    set_read_offset(tp, offset)
                if i % yield_every == 0:
                    await sleep(0)
                    if direct:
                        await acquire_flow()
                        await wait_until_ebb()

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(fc.CONSUMER_FETCHING)
                ait = getmany(timeout=GETMANY_TIMEOUT_S)
                await self.sleep(0)
                if not self.should_stop:
                    batch = [item async for item in ait]
                    if batch:
                        await self.wait_first(deliver(batch), self.suspend_flow.wait())
                unset_flag(fc.CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(fc.CONSUMER_FETCHING)

    fc.Consumer._drain_messages = _drain_messages
    fc.Consumer._driftline_batched = True


def _direct_deliveries(app, tps, cache: dict) -> dict:
    """For each of ``tps`` that exactly one channel reads, with raw bytes keys and values (so that
    faust's decoding gives back the record's own bytes), that channel's queue and the pressure
    callbacks faust's handler would pass it (the partition leaves and rejoins the fetch as the
    queue fills and drains). Other partitions are left to faust's handler."""
    out = {}
    index = app.topics._tp_index
    for tp in tps:
        channels = index.get(tp)
        if not channels or len(channels) != 1:
            continue
        (chan,) = channels
        schema = chan.schema
        if not (type(schema) is faust.Schema and schema.key_type is bytes and schema.value_type is bytes
                and schema.key_serializer == "raw" and schema.value_serializer == "raw"):
            continue
        calls = cache.get(tp)
        if calls is None:
            own = TP(tp.topic, tp.partition)  # faust's (the fetch gives aiokafka's): its consumer asserts it

            def high(own=own) -> None:
                app.sensors.on_topic_buffer_full(own)
                app.consumer.on_buffer_full(own)

            def drop(own=own) -> None:
                app.consumer.on_buffer_drop(own)

            calls = cache[tp] = (high, drop)
        out[tp] = (chan.queue, *calls)
    return out


def _fast_running_loop() -> None:
    """aiokafka makes a future per message sent, and finds the loop for it with
    ``asyncio.get_event_loop()`` and an ``is_running()`` check in Python: 6.6% of the worker's time
    (py-spy, ``bench/processors``). ``asyncio.get_running_loop`` is the same answer, in C, and
    raises the same RuntimeError outside a running loop."""
    import aiokafka.util

    aiokafka.util.get_running_loop = asyncio.get_running_loop


def _roomy_changelog_buffer() -> None:
    """Let a batch's table writes queue for the changelog without stalling the stream.

    faust blocks every incoming message while more than 100 table writes wait to be produced
    (``ProducerBuffer.wait_until_ebb``). A batch writes its state at once (a dedup and a key
    entry per event), so the stream stopped after every batch until the changelog drained.
    The queue is bounded by the batch size anyway.
    """
    from faust.transport.producer import ProducerBuffer

    ProducerBuffer.max_messages = max(ProducerBuffer.max_messages, 8 * BATCH)


def _datadir(app_id: str, datadir: str | None) -> Path:
    if datadir:
        return Path(datadir)
    # One directory per process: two workers on one machine never share a RocksDB.
    root = Path(os.environ.get("DRIFTLINE_HOME", Path.home() / ".driftline")) / "faust" / app_id
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("pid-*"):  # left by a killed worker
        try:
            os.kill(int(old.name[4:]), 0)
        except (ProcessLookupError, ValueError):
            shutil.rmtree(old, ignore_errors=True)
        except PermissionError:
            pass
    return root / f"pid-{os.getpid()}"


def create_app(spec: Spec, settings: KafkaSettings, namespace: str | None = None,
               datadir: str | None = None, store: str | None = None) -> faust.App:
    topics = pipeline_topics(spec, namespace)
    app_id = processors_app_id(spec, namespace)
    store = STORES.get(store or os.environ.get("DRIFTLINE_STORE", "rocksdb"), store)
    _idempotent_producer()
    _roomy_changelog_buffer()
    _fast_running_loop()
    _batched_delivery()
    _prompt_fetches()
    _metadata_backoff()
    data = _datadir(app_id, datadir)
    data.mkdir(parents=True, exist_ok=True)
    n = spec.topics.partitions
    app = faust.App(
        app_id,
        broker=settings.faust_broker,
        broker_credentials=settings.faust_credentials(),
        store=store,
        datadir=str(data),
        web_enabled=False,
        topic_partitions=n,
        topic_allow_declare=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_batch_size=256 * 1024,
        # A rejected record is dead-lettered whole, however large it was (the DLQ topic takes 16 MiB).
        producer_max_request_size=DLQ_MAX_BYTES + 64 * 1024,
        stream_buffer_maxsize=8192,
        # The agents commit what is done themselves, once a second (processors/_continuity.py);
        # faust's own periodic commit stalled, and raced ours with older offsets.
        broker_commit_every=1_000_000_000,
        broker_commit_interval=3600.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )
    delayed = spec.labels.mode == "delayed"
    raw = app.topic(topics[Role.RAW].name, key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    names = {role: topics[role].name for role in (Role.CLEAN, Role.FEATURES, Role.DLQ, Role.EXAMPLES)}
    pending_name = processors_pending_topic(spec, namespace)  # made below with the other internal topics
    from driftline.kafkautil import create_topics

    # Every topic the worker reads or writes, made as the contracts say before faust starts: the
    # outputs are sent to by name, and a table changelog faust made itself at start-up could be
    # missing from its consumer's metadata at the first table write (PartitionsMismatch, 0 partitions).
    create_topics(settings, list(topics.values()) + processors_internal_topics(spec, namespace))
    # Every table write goes through DirectTable (processors/_tables.py).
    rocks = rocksdb_options() if store.startswith("rocksdb:") else None
    table = {name: DirectTable(app, app.Table(name, partitions=n, options=dict(rocks) if rocks else None,
                                              schema=faust.Schema(key_serializer="json", value_serializer="json")))
             for name in PROCESSOR_TABLES}
    stage = Stage(spec)
    joiner = LabelJoin(spec.labels.ttl_seconds)
    ledger = Ledger(settings)
    continuity, join_continuity = Continuity(settings, app_id), Continuity(settings, app_id)  # one per agent
    inputs = [topics[Role.RAW].name]
    if spec.labels.mode == "delayed":
        inputs += [topics[Role.LABELS].name, pending_name]
    watchdog = Watchdog(app, (continuity, join_continuity), inputs, on_stall=_metrics.stall_repaired)
    stats = {"in": 0, "clean": 0, "dlq": 0, "late": 0, "examples": 0, "expired_events": 0,
             "unknown_labels": 0, "expired_labels": 0, "duplicate_labels": 0, "suppressed": 0}
    app.driftline_stats = stats  # type: ignore[attr-defined]
    app.driftline_topics = {"pending": pending_name}  # type: ignore[attr-defined]
    swept: dict[tuple[str, int], float] = {}
    sweeps: dict[int, dict] = {}  # partition → the stage sweep in progress (processors/app.py sweep_stage)

    @app.on_partitions_revoked.connect
    async def _revoked(app_, revoked, **kwargs) -> None:
        sweeps.clear()
        ledger.forget()
        continuity.forget()
        join_continuity.forget()
        watchdog.forget()

    @app.on_partitions_assigned.connect
    async def _assigned(app_, assigned, **kwargs) -> None:
        sweeps.clear()
        ledger.forget()
        continuity.forget()
        join_continuity.forget()
        watchdog.forget()

    async def flush(overlay: Overlay, t: DirectTable, by_partition: dict) -> None:
        t.write(overlay.drain(), lambda p: _as_current(by_partition[p]))
        await t.send_changelog()

    def outbox() -> Outbox:
        """Where an agent puts a batch's outputs: straight to faust's producer rather than through
        ``Topic.send`` (faust's per-message channel machinery was a third of the agent's time), and
        as whole record batches (processors/_outbox.py)."""
        return Outbox(app.producer._ensure_producer())

    def dead_letter(out: Outbox, key, value, reason: str, message: str, topic: str, partition: int, offset: int,
                    extra_headers=()) -> None:
        _metrics.dead_lettered(reason)
        stats["dlq"] += 1
        headers = dead_letter_headers(reason, message, topic, partition, offset) + list(extra_headers)
        out.add(names[Role.DLQ], partition, key, value, headers)

    async def deliver(out: Outbox) -> None:
        """Queue the outbox and wait until the broker has every record of it."""
        await asyncio.gather(*await out.send())

    @app.agent(raw)
    async def clean_and_featurize(stream):
        async for events in take_batches(stream, BATCH):
            started = _metrics.clock()
            parts = {e.message.partition for e in events}
            roles = (Role.CLEAN, Role.FEATURES, Role.DLQ)
            hw = await ledger.snapshot([(names[r], p) for r in roles for p in parts])
            state = State(Overlay(table["seen"]), Overlay(table["keys"]), Overlay(table["clocks"]))
            out = outbox()
            by_partition, last = {}, {}
            for msg, event in await continuity.plan(events):
                p, o, src = msg.partition, msg.offset, msg.topic
                last[p] = o
                by_partition[p] = event
                _as_current(event)
                for ov in (state.seen, state.keys, state.clocks):
                    ov.partition = p
                stats["in"] += 1

                def fresh(role, _p=p, _o=o, _src=src):
                    if hw[(names[role], _p)].get(_src, -1) >= _o:
                        stats["suppressed"] += 1
                        return False
                    return True

                try:
                    res = stage.process(msg.value, p, o, state)
                except Exception as exc:  # noqa: BLE001 - nothing raises out of an agent
                    log.exception("processing failed; dead-lettering %s[%s]@%s", src, p, o)
                    res = Outcome(reason="processing_error", message=f"{type(exc).__name__}: {exc}")
                try:
                    if res.reason is not None:
                        if fresh(Role.DLQ):
                            dead_letter(out, msg.key, msg.value, res.reason, res.message, src, p, o)
                        continue
                    stats["clean"] += 1
                    c = res.clean
                    key = c.key.encode() if c.key is not None else None
                    headers = origin_headers(src, p, o)
                    if fresh(Role.CLEAN):
                        out.add(names[Role.CLEAN], p, key, serde.dumps(c.as_value()), headers)
                    if res.replayed:
                        continue  # its features are in the state, so its outputs were written before
                    vec = {"v": 1, "id": c.id, "key": c.key, "ts": c.ts, "x": res.features}
                    if c.y is not None:
                        vec["y"] = c.y
                    if fresh(Role.FEATURES):
                        out.add(names[Role.FEATURES], p, key, serde.dumps(vec), headers)
                    # An inline label rides in its features record, which is then the labeled example:
                    # the examples topic holds the label join's output only (see join_labels).
                    if delayed:  # keyed by event id, partitioned as the labels are
                        out.add(pending_name, id_partition(c.id, n), c.id.encode(), serde.dumps(vec), headers)
                except Exception as exc:  # noqa: BLE001
                    log.exception("sending failed for %s[%s]@%s", src, p, o)
                    dead_letter(out, msg.key, msg.value, "processing_error", f"{type(exc).__name__}: {exc}", src, p, o)
            # Steps 4-5: the outputs first, then the state that says they exist.
            await deliver(out)
            await flush(state.seen, table["seen"], by_partition)
            await flush(state.keys, table["keys"], by_partition)
            await flush(state.clocks, table["clocks"], by_partition)
            continuity.acknowledge(app.consumer)
            for p, event in by_partition.items():
                ledger.advance([names[r] for r in roles], p, event.message.topic, last[p])
            await sweep_stage(by_partition)
            _metrics.observe_batch(app, events, started)

    async def sweep_stage(by_partition: dict) -> None:
        """Drop dedup and key state past its TTL, per partition, once its clock has moved on by a
        quarter of the TTL since the last sweep started. A sweep reads the partition's stores in
        chunks of ``SWEEP_CHUNK`` entries, one chunk per batch, judged against the clock at its start."""
        horizon = min(stage.dedup_ttl, stage.featurizer.ttl)
        deleted = 0
        for p, event in by_partition.items():
            _as_current(event)
            job = sweeps.get(p)
            if job is None:
                clock = table["clocks"].get(str(p))
                if not clock or clock["wm"] is None:
                    continue
                last = swept.setdefault(("stage", p), clock["wm"])
                if clock["wm"] - last < horizon / 4:
                    continue
                swept[("stage", p)] = clock["wm"]
                job = sweeps[p] = {"now": clock["wm"], "stores": ["seen", "keys"], "after": None}
            budget = SWEEP_CHUNK
            while job["stores"] and budget > 0:
                name = job["stores"][0]
                items, job["after"] = table[name].scan(p, job["after"], budget)
                budget -= len(items) + 1
                # Through write's batch, in the swept partition's database only: faust's delete tries
                # every partition's database for a key whose partition it does not know.
                gone = [(k, None, p, True) for k in stage.expired(name, items, p, job["now"])]
                table[name].write(gone, lambda _p, e=event: _as_current(e))
                deleted += len(gone)
                if job["after"] is None:
                    job["stores"].pop(0)
            if not job["stores"]:
                del sweeps[p]
        if deleted:
            for name in ("seen", "keys"):
                await table[name].send_changelog()

    join_source = app.topic(topics[Role.LABELS].name, pending_name, key_type=bytes,
                            value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=n)

    async def join_labels(stream):
        labels_name = topics[Role.LABELS].name
        async for events in take_batches(stream, BATCH):
            parts = {e.message.partition for e in events}
            hw = await ledger.snapshot([(names[r], q) for r in (Role.EXAMPLES, Role.DLQ) for q in parts])
            joins = Overlay(table["joins"])
            out = outbox()
            by_partition, handled = {}, []
            for msg, event in await join_continuity.plan(events):
                q, o, src = msg.partition, msg.offset, msg.topic
                handled.append(msg)
                by_partition[q] = event
                _as_current(event)
                joins.partition = q
                try:
                    rec = serde.loads(msg.value)
                    ok = isinstance(rec, dict) and "id" in rec and isinstance(rec.get("ts"), (int, float))
                    if src == labels_name and not (ok and "y" in rec):
                        raise ValueError("a label is {'v', 'id', 'y', 'ts'}")
                    if not ok:
                        raise ValueError("a pending record lacks 'id' or 'ts'")
                    if src != labels_name:  # event time comes from the events: labels may run ahead
                        clock = joins.get(f"\x00clock:{q}") or {"wm": rec["ts"]}
                        joins[f"\x00clock:{q}"] = {"wm": max(clock["wm"], rec["ts"])}
                    if src == labels_name:
                        actions = joiner.on_label(rec, msg.value, o, joins)
                    else:
                        actions = joiner.on_pending(rec, o, joins)
                except Exception as exc:  # noqa: BLE001 - a bad label is dead-lettered, never fatal
                    actions = []
                    if hw[(names[Role.DLQ], q)].get(src, -1) < o:
                        dead_letter(out, msg.key, msg.value, "bad_label", f"{type(exc).__name__}: {exc}", src, q, o)
                for a in actions:
                    if a.kind == "example":
                        stats["examples"] += 1
                        if hw[(names[Role.EXAMPLES], q)].get(src, -1) < o:
                            k = a.key.encode() if a.key is not None else None
                            out.add(names[Role.EXAMPLES], q, k, serde.dumps(a.value), origin_headers(src, q, o))
                    elif a.kind == "expired":
                        stats["expired_events"] += 1
                    elif a.kind == "dead":
                        stats[a.reason + "s"] = stats.get(a.reason + "s", 0) + 1
                        if src != labels_name:  # a waiting label, dead-lettered when its event came
                            dead_letter(out, rec["id"].encode(), a.raw, a.reason, a.message,
                                        labels_name, q, a.origin, [(SWEPT, b"1")])
                        elif hw[(names[Role.DLQ], q)].get(src, -1) < o:
                            dead_letter(out, msg.key, msg.value, a.reason, a.message, src, q, o)
            await deliver(out)
            await flush(joins, table["joins"], by_partition)
            join_continuity.acknowledge(app.consumer)
            for m in handled:
                ledger.advance([names[Role.EXAMPLES], names[Role.DLQ]], m.partition, m.topic, m.offset)
            await sweep_joins(by_partition, labels_name)

    async def sweep_joins(by_partition: dict, labels_name: str) -> None:
        """Expire joins past the label TTL: count unlabeled events, dead-letter labels without an event."""
        for q, event in by_partition.items():
            _as_current(event)
            clock = table["joins"].get(f"\x00clock:{q}")
            last = swept.setdefault(("join", q), clock["wm"] if clock else 0.0)
            if not clock or clock["wm"] - last < joiner.ttl / 10:
                continue
            swept[("join", q)] = clock["wm"]
            mine = [(k, v) for k, v in table["joins"].items()
                    if not k.startswith("\x00") and id_partition(k, n) == q]
            out, changes = outbox(), []
            for eid, action, entry in joiner.expire(mine, clock["wm"]):
                if action is not None and action.kind == "expired":
                    stats["expired_events"] += 1
                elif action is not None:
                    stats["unknown_labels"] += 1
                    dead_letter(out, eid.encode(), action.raw, action.reason, action.message,
                                labels_name, q, action.origin, [(SWEPT, b"1")])
                changes.append((eid, entry))
            await deliver(out)
            for eid, entry in changes:
                if entry is None:
                    table["joins"].delete(eid, q)
                else:
                    table["joins"].set(eid, entry, q)
            await table["joins"].send_changelog()

    if delayed:
        app.agent(join_source, name="join_labels")(join_labels)

    @app.timer(1.0)
    async def commit_positions() -> None:
        """Commit what is done (see :mod:`processors._continuity`); a failed commit is retried next time.

        Never past a changelog write the broker refused: the worker stops instead, and a restart
        redoes the work from the last commit."""
        await app.producer.flush()
        failures = [f for t in table.values() for f in t.failures]
        if failures:
            log.critical("stopping: %d changelog batch(es) were not written (%r); the inputs since the last "
                         "commit are processed again on restart", len(failures), failures[0])
            await app.crash(failures[0])
            return
        for c in (continuity, join_continuity):
            try:
                await c.commit(app.consumer)
            except Exception as exc:  # noqa: BLE001 - e.g. a rebalance in progress
                log.info("commit postponed: %s: %s", type(exc).__name__, exc)

    @app.timer(WATCH_EVERY_S)
    async def watch_inputs() -> None:
        """Restart an input partition that stopped reaching the agents (processors/_watchdog.py)."""
        try:
            await watchdog.check()
        except Exception as exc:  # noqa: BLE001 - e.g. a rebalance in progress; looked at again next time
            log.info("inputs not checked: %s: %s", type(exc).__name__, exc)

    @app.timer(_metrics.STORE_SIZE_EVERY_S)
    async def store_sizes() -> None:
        try:
            _metrics.observe_stores(app)
        except Exception as exc:  # noqa: BLE001 - metrics never stop the work (e.g. mid-rebalance)
            log.info("table sizes not read: %s: %s", type(exc).__name__, exc)

    @app.timer(10.0)
    async def report() -> None:
        stats["refilled"] = continuity.refilled + join_continuity.refilled
        stats["redelivered"] = continuity.skipped + join_continuity.skipped
        log.info("processors: %s", stats)
        path = os.environ.get("DRIFTLINE_PROCESSOR_STATS")
        if path:
            Path(path).write_text(json.dumps(stats))

    return app


def run_worker(spec: Spec, settings: KafkaSettings, namespace: str | None = None, loglevel: str = "warn",
               store: str | None = None, datadir: str | None = None) -> None:
    """Run one processor worker until SIGTERM or Ctrl-C. Several may run at once."""
    from faust.worker import Worker

    app = create_app(spec, settings, namespace, datadir=datadir, store=store)
    _metrics.serve("processor", _metrics.REGISTRY, _metrics.DEFAULT_PORT)
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # No terminal spinner: it sets the root logger to DEBUG so that it spins on every record, which
    # made aiokafka build a debug log record per message sent (a tenth of the worker's time) and
    # wrote cursor escapes into log files.
    worker.spinner = None
    tune_for_streaming()  # driftline/_gc.py: GC and allocator settings for a long-running service
    try:
        worker.execute_from_commandline()
    finally:
        path = os.environ.get("DRIFTLINE_PROCESSOR_STATS")
        if path:
            Path(path).write_text(json.dumps(app.driftline_stats))
        if datadir is None:
            shutil.rmtree(app.conf.datadir, ignore_errors=True)
