"""``driftline process`` with a stall injected: once the worker has taken in ``STALL_AFTER`` records,
its raw partitions are paused in faust's consumer and in aiokafka's, as the stalled worker of the
chaos suite was left, and never resumed by anything but the watchdog (which looks every second and
acts after 3 s here). Run as ``python stalling_worker.py <spec> --store memory`` with the raw topic's
name in ``STALL_TOPIC``; it prints ``injected stall`` to stderr when it pauses."""

from __future__ import annotations

import os
import sys

from aiokafka import TopicPartition

import processors._watchdog
import processors.app
from driftline.cli import main

STALL_AFTER = 300

processors._watchdog.STALL_S = 3.0
processors.app.WATCH_EVERY_S = 1.0
create_app = processors.app.create_app


def stalling_app(*args, **kwargs):
    app = create_app(*args, **kwargs)
    injected = []

    @app.timer(0.2)
    async def inject_stall() -> None:
        if injected or app.driftline_stats["in"] < STALL_AFTER:
            return
        raw = {tp for tp in app.consumer.assignment() if tp.topic == os.environ["STALL_TOPIC"]}
        app.consumer.pause_partitions(raw)
        app.consumer._thread._consumer.pause(*(TopicPartition(tp.topic, tp.partition) for tp in raw))
        injected.append(raw)
        print(f"injected stall: paused {sorted(raw)} after {app.driftline_stats['in']} records",
              file=sys.stderr, flush=True)

    return app


processors.app.create_app = stalling_app

if __name__ == "__main__":
    sys.exit(main(["process", *sys.argv[1:]]))
