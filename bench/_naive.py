"""The naive peer: the loop a user writes by hand with kafka-python.

One consumer polls the raw topic, decodes each record with ``json.loads``, computes the same
features in a dict of per-key state, predicts with both models, learns, and produces each
event's predictions as one JSON record. No validation, no dead letters, no recovery.

Run: ``python -m bench._naive --bootstrap HOST:PORT --topic RAW --out PREDICTIONS`` until SIGTERM.
"""

from __future__ import annotations

import json
import signal

from kafka import KafkaConsumer, KafkaProducer

from bench._peer import arguments, features, make_models, step


def main(argv=None) -> None:
    args = arguments(argv)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    consumer = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id=args.group,
                             auto_offset_reset="earliest", max_poll_records=1000)
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5)
    models, states = make_models(), {}
    while not stop:
        for records in consumer.poll(timeout_ms=200).values():
            for r in records:
                rec = json.loads(r.value)["data"]
                x, states[rec["k"]] = features(rec, states.get(rec["k"]))
                out = step(models, rec, x)
                producer.send(args.out, key=rec["id"].encode(), value=json.dumps(out).encode())
    producer.flush()
    producer.close()
    consumer.close()


if __name__ == "__main__":
    main()
