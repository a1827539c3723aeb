"""The processors' per-key feature state, followed from their ``keys`` table's changelog.

The processors keep each entity's state (its windows) in the faust table
``keys``; faust writes every change to the changelog topic
``<app id>-keys-changelog`` (:func:`contracts.topics.table_changelog`), on the
partition of the event that made it. On that topic:

* the key is the table key as JSON: ``processors.stage.state_key(key, partition)``,
  i.e. ``"k1"`` for a record keyed ``k1``;
* the value is JSON ``{"p": partition, "at": offset, "s": <featurizer state>}``;
* a tombstone (null value) deletes the key (its state expired in the stream).

:class:`KeyStates` is the latest entry per key (no I/O);
:class:`KeyStateFollower` fills it from the topic, from the beginning, and
follows (like the models-topic follower). Entries are replaced, never mutated,
so a reader may hold one while the follower moves on.

>>> states = KeyStates()
>>> states.apply(b'"k1"', b'{"p": 0, "at": 7, "s": {"w": 3.0, "n": 2}}')
>>> states.get("k1")["s"]
{'w': 3.0, 'n': 2}
>>> states.apply(b'"k1"', None)
>>> states.get("k1") is None, len(states)
(True, 0)
"""

from __future__ import annotations

import logging

import orjson

from contracts.settings import KafkaSettings

from deploy.serving.follower import TopicFollower

__all__ = ["KeyStateFollower", "KeyStates"]

log = logging.getLogger("driftline.serving.state")


class KeyStates:
    """The newest changelog entry per state key: ``{"p", "at", "s"}``, or ``None`` when absent."""

    def __init__(self):
        self._entries: dict[str, dict] = {}

    def get(self, key: str) -> dict | None:
        return self._entries.get(key)

    def __len__(self) -> int:
        return len(self._entries)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One changelog record: set the key's entry, or delete it on a tombstone."""
        if key is None:
            return
        skey = orjson.loads(key)
        if value is None:
            self._entries.pop(skey, None)
        else:
            self._entries[skey] = orjson.loads(value)


class KeyStateFollower(TopicFollower):
    """Follows the ``keys`` changelog into :attr:`states`; ``/readyz`` waits for :attr:`caught_up`."""

    def __init__(self, settings: KafkaSettings, topic: str, poll_ms: int = 100):
        super().__init__(settings, topic, "key-state-follower", poll_ms)
        self.states = KeyStates()

    def offer(self, record) -> None:
        try:
            self.states.apply(record.key, record.value)
        except (orjson.JSONDecodeError, TypeError) as exc:  # not the processors' encoding: skip, never stop
            self.error = f"undecodable changelog record at {record.partition}:{record.offset}: {exc}"
            log.warning("undecodable key-state record", extra={"topic": self.topic, "offset": record.offset})
