"""The processors' guard against faust skipping input records: holes are read back from the broker,
repeats are dropped, and a new assignment starts from the group's committed offset."""

import asyncio
from types import SimpleNamespace

import pytest
from kafka import KafkaProducer

from contracts.topics import Role, TopicContract
from driftline import kafkautil
from processors._continuity import Continuity

pytestmark = pytest.mark.integration


def events(topic, offsets):
    return [SimpleNamespace(message=SimpleNamespace(topic=topic, partition=0, offset=o, key=None,
                                                    value=f"faust {o}".encode())) for o in offsets]


def test_holes_are_read_back_in_order_and_repeats_are_dropped(settings, namespace):
    topic = f"{namespace}.continuity"
    kafkautil.create_topics(settings, [TopicContract(Role.RAW, topic, 1, 1, "none", 1)])
    producer = KafkaProducer(**settings.kafka_python(), acks="all")
    for i in range(20):
        producer.send(topic, value=f"broker {i}".encode(), partition=0)
    producer.flush()
    producer.close()

    c = Continuity(settings, f"{namespace}.no-such-group")
    try:
        plan = asyncio.run(c.plan(events(topic, [0, 1, 2, 7, 8, 8, 9])))
        assert [m.offset for m, _ in plan] == list(range(10))
        assert [m.value for m, _ in plan][3:7] == [f"broker {i}".encode() for i in range(3, 7)]
        assert c.refilled == 4 and c.skipped == 1
        # A record read back shares the faust event of the record it was found before (its partition).
        assert plan[3][1].message.offset == 7

        plan = asyncio.run(c.plan(events(topic, [10, 11])))
        assert [m.offset for m, _ in plan] == [10, 11] and c.refilled == 4

        # The offsets read directly are acked to faust's consumer once (faust's stream acks the ones it
        # delivered), so its commit moves past the hole; the commit may go up to everything handled.
        acked = []
        c.acknowledge(SimpleNamespace(ack=lambda m: acked.append((m.tp.topic, m.tp.partition, m.offset))))
        c.acknowledge(SimpleNamespace(ack=lambda m: acked.append((m.tp.topic, m.tp.partition, m.offset))))
        assert acked == [(topic, 0, o) for o in range(3, 7)]
        assert c._done == {(topic, 0): 12}

        # After a rebalance, nothing is committed for this group: the partition starts at the log start.
        c.forget()
        plan = asyncio.run(c.plan(events(topic, [2, 3])))
        assert [m.offset for m, _ in plan] == [0, 1, 2, 3] and c.refilled == 6
    finally:
        c.close()
