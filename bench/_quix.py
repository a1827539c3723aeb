"""The Quix Streams peer: the reference pipeline written idiomatically with Quix Streams.

A streaming dataframe over the raw topic; a stateful ``apply`` keeps each key's feature state
in Quix's state store (RocksDB, changelogged), the river models live in the app, and each
event's predictions go to the output topic with ``to_topic``.

It runs in its own virtualenv (``.driftline/quix-venv``, made by ``make bench``): quixstreams
3.28.1 requires pydantic < 2.14, and driftline pins 2.14.3. It imports only ``bench._peer``.

Run: ``python bench/_quix.py --bootstrap HOST:PORT --topic RAW --out PREDICTIONS --state-dir DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._peer import arguments, features, make_models, step  # noqa: E402


def main(argv=None) -> None:
    from quixstreams import Application

    args = arguments(argv, "--state-dir")
    app = Application(broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      state_dir=args.state_dir, loglevel="WARNING", use_changelog_topics=True)
    raw = app.topic(args.topic, key_deserializer="str", value_deserializer="json")
    out = app.topic(args.out, key_serializer="str", value_serializer="json")
    models = make_models()

    def featurize(env: dict, state) -> dict:
        rec = env["data"]
        x, st = features(rec, state.get("features"))
        state.set("features", st)
        return step(models, rec, x)

    sdf = app.dataframe(raw)
    sdf = sdf.apply(featurize, stateful=True)
    sdf.to_topic(out, key=lambda value: value["id"])
    app.run()


if __name__ == "__main__":
    main()
