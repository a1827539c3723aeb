"""An input partition with records waiting that reaches no agent for long is described and fetched again.

Twice in CI, on a slow machine, a processor worker restarted after ``kill -9`` read the hole the
stream had left (:mod:`processors._continuity`) and then got nothing more from the raw partition:
faust's fetcher loop saw empty batches for five minutes while 1,000 records waited, the worker
alive and its timers running. The cause inside faust's and aiokafka's fetch state (paused,
buffered or positioned past the log end) was not caught in the act.

:class:`Watchdog` makes such a stall visible and ends it. Every few seconds it compares, for each
assigned input partition, the log end with the next offset due (the continuity's, or the group's
committed offset before the first record). A partition that has had records waiting and
delivered none for ``stall_s`` while the consumer's flow was on (no rebalance or recovery in
progress) is stalled: the watchdog logs a warning with the fetch state of faust's consumer, its
aiokafka consumer and the stream's queue, counts it in ``driftline_stalls_repaired_total``, and
fetches the partition again from the offset due: it takes it out of faust's paused and buffered
sets and out of aiokafka's pause, and seeks there. Records delivered twice by that are skipped by
the continuity; none can be skipped over, as the continuity reads any gap directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Iterable

__all__ = ["Watchdog", "STALL_S"]

log = logging.getLogger("driftline.processors")

STALL_S = 30.0  # no record for this long while some wait: stalled (faust's own rebalance takes seconds)


class Watchdog:
    """Finds input partitions that stopped reaching the agents (see the module docs), and restarts them.

    ``continuities`` are the agents' :class:`processors._continuity.Continuity` objects; ``inputs``
    the names of the topics the agents read; ``stall_s`` defaults to :data:`STALL_S`; ``clock`` is
    for tests.
    """

    def __init__(self, app, continuities: Iterable, inputs: Iterable[str], stall_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, on_stall: Callable[[], None] | None = None):
        self.app, self.continuities, self.inputs = app, list(continuities), set(inputs)
        self.stall_s = STALL_S if stall_s is None else stall_s
        self.clock, self.on_stall = clock, on_stall
        self._since: dict[tuple[str, int], float] = {}  # a waiting partition: quiet since then
        self._start: dict[tuple[str, int], int] = {}  # the committed offset at the assignment

    def forget(self) -> None:
        """After a rebalance: every partition starts its quiet time again."""
        self._since = {}
        self._start = {}

    def _due(self, tp: tuple[str, int]) -> int | None:
        for c in self.continuities:
            due = c.due(tp)
            if due is not None:
                return due
        return None

    def _moved_at(self, tp: tuple[str, int]) -> float:
        return max((c.moved_at(tp) for c in self.continuities), default=0.0)

    def stalled(self, waiting: dict[tuple[str, int], bool]) -> list[tuple[str, int]]:
        """The partitions of ``waiting`` (partition → has records waiting past its due offset) that
        have waited ``stall_s`` without a record reaching an agent."""
        now = self.clock()
        out = []
        for tp, has_waiting in waiting.items():
            moved = self._moved_at(tp)
            since = self._since.get(tp)
            if not has_waiting:
                self._since.pop(tp, None)
            elif since is None or moved > since:
                self._since[tp] = now if since is None else moved  # quiet since it was seen waiting, or moved
            elif now - since >= self.stall_s:
                out.append(tp)
                self._since[tp] = now  # a second repair only after another quiet stretch
        return out

    async def check(self) -> list[tuple[str, int]]:
        """Look once (on the worker's timer); returns the partitions found stalled and restarted."""
        app = self.app
        consumer = getattr(app, "_consumer", None)
        if consumer is None or getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False) \
                or not consumer.flow_active:
            self.forget()
            return []
        mine = [(tp.topic, tp.partition) for tp in consumer.assignment() if tp.topic in self.inputs]
        if not mine:
            return []
        loop = asyncio.get_running_loop()
        reader = self.continuities[0]
        ends = await loop.run_in_executor(None, reader.end_offsets, mine)
        dues = {}
        for tp in mine:
            due = self._due(tp)
            if due is None and ends.get(tp, 0) > 0:
                # No record yet in this assignment: the group's committed offset, which only the
                # agents' commits move, so it is asked once per assignment.
                due = self._start.get(tp)
                if due is None:
                    due = self._start[tp] = await loop.run_in_executor(None, reader.start_offset, *tp)
            dues[tp] = due or 0
        stalled = self.stalled({tp: ends.get(tp, 0) > dues[tp] for tp in mine})
        for tp in stalled:
            due = dues[tp]
            log.warning("input %s[%s] stalled: %d record(s) waiting from offset %d and none reached the "
                        "agent in %.0f s; fetching it again from there. Fetch state: %s",
                        tp[0], tp[1], ends.get(tp, 0) - due, due, self.stall_s, fetch_state(app, tp))
            await self._restart(tp, due)
            if self.on_stall is not None:
                self.on_stall()
        return stalled

    async def _restart(self, tp: tuple[str, int], offset: int) -> None:
        from faust.types import TP

        consumer = self.app.consumer
        own = TP(*tp)
        consumer._buffered_partitions.discard(own)
        consumer.resume_partitions([own])
        aio = _aiokafka(consumer)
        if aio is not None and own in aio.paused():
            from aiokafka import TopicPartition

            aio.resume(TopicPartition(*tp))  # aiokafka takes only its own type
        for chan in self.app.topics._tp_index.get(own, ()):  # pressure callbacks a cleared queue never ran
            queue = chan.queue
            pending = getattr(queue, "_pending_pressure_drop_callbacks", None)
            if pending and queue.empty():
                queue.maybe_endorse_pressure_drop()
        await consumer.seek(own, offset)


def _aiokafka(consumer) -> Any:
    thread = getattr(consumer, "_thread", None)
    return getattr(thread, "_consumer", None) if thread is not None else None


def fetch_state(app, tp: tuple[str, int]) -> dict:
    """What faust's consumer, its aiokafka consumer and the stream's queue know of partition ``tp``:
    for the log line of a stall. Best effort: a field that cannot be read says why."""
    from faust.types import TP

    own = TP(*tp)
    consumer = app.consumer
    state: dict[str, Any] = {}

    def put(name: str, read: Callable[[], Any]) -> None:
        try:
            state[name] = read()
        except Exception as exc:  # noqa: BLE001 - a diagnostic, never a failure
            state[name] = f"unreadable: {type(exc).__name__}: {exc}"

    put("faust_active", lambda: own in (consumer._active_partitions or ()))
    put("faust_paused", lambda: own in consumer._paused_partitions)
    put("faust_buffered", lambda: own in consumer._buffered_partitions)
    put("faust_read_offset", lambda: consumer._read_offset.get(own))
    put("faust_committed", lambda: consumer._committed_offset.get(own))
    put("flow_active", lambda: consumer.flow_active)
    aio = _aiokafka(consumer)
    if aio is not None:
        put("aiokafka_paused", lambda: own in aio.paused())
        put("aiokafka_buffered", lambda: own in aio._fetcher._records)
        put("aiokafka_state", lambda: _tp_state(aio, own))
    put("queues", lambda: [(chan.queue.qsize(), len(getattr(chan.queue, "_pending_pressure_drop_callbacks", ())))
                           for chan in app.topics._tp_index.get(own, ())])
    return state


def _tp_state(aio, tp) -> dict:
    s = aio._subscription.subscription.assignment.state_value(tp)
    return {"position": s._position, "status": str(s._status), "paused": s.paused}
