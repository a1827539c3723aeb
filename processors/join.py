"""The delayed-label join, as plain Python over a dict-like store keyed by event id.

Two streams meet here: *pending* records (an event's features as they were at
prediction time, sent by the featurize stage) and *labels* (``{"id","y","ts"}``
from ingest). Whichever comes first waits in the store; when the other comes,
one example is emitted. Entries expire in event time (the partition's newest
``ts``) after ``ttl`` seconds: an event without its label is counted as
expired; a label without its event is dead-lettered as ``unknown_label``. The clock is the
newest event time of the pending side only, so labels that run ahead of the events wait for them.

>>> j, store = LabelJoin(ttl=100.0), {}
>>> j.on_pending({"id": "e1", "key": "k", "ts": 1.0, "x": {"a": 1.0}}, 0, store)
[]
>>> [a.kind for a in j.on_label({"id": "e1", "y": True, "ts": 5.0}, b"...", 0, store)]
['example']
>>> j.on_label({"id": "e1", "y": True, "ts": 6.0}, b"...", 1, store)[0].reason
'duplicate_label'
>>> j.on_label({"id": "e1", "y": True, "ts": 5.0}, b"...", 0, store)   # a replayed offset: nothing
[]

Every state change remembers the offset that made it, so a replay after a
crash changes nothing (the outputs of a replayed record are suppressed by the
app, which knows what was already written).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LabelJoin", "Action", "example_value"]


@dataclass(slots=True)
class Action:
    """``kind`` is ``example`` (``value``), ``dead`` (``reason``, ``raw``, ``origin``) or ``expired``."""

    kind: str
    value: dict | None = None
    reason: str | None = None
    message: str = ""
    raw: bytes | None = None
    origin: int | None = None
    key: str | None = None


def example_value(pending: dict, label: dict) -> dict:
    """The examples-topic value: the features at prediction time, with the label and its time."""
    return {"v": 1, "id": pending["id"], "key": pending.get("key"), "ts": label["ts"],
            "event_ts": pending["ts"], "x": pending["x"], "y": label["y"]}


class LabelJoin:
    """Joins labels with pending features by event id. ``ttl`` is in event-time seconds."""

    def __init__(self, ttl: float):
        self.ttl = ttl

    def on_pending(self, rec: dict, offset: int, store) -> list[Action]:
        eid = rec["id"]
        entry = store.get(eid)
        if entry is None:
            store[eid] = {"st": "wait_label", "rec": rec, "pen": offset, "ts": rec["ts"]}
            return []
        if entry["st"] == "wait_event" and entry["label"]["ts"] - rec["ts"] > self.ttl:
            store[eid] = {"st": "expired", "ts": rec["ts"], "pen": offset, "lab": entry["lab"]}
            return [Action("expired"), Action("dead", reason="expired_label", raw=entry["raw"].encode(),
                                              origin=entry["lab"], message=f"the label came over the "
                                              f"{self.ttl:g}s TTL after its event")]
        if entry["st"] == "wait_event":
            label = entry["label"]
            store[eid] = {"st": "done", "ts": rec["ts"], "pen": offset, "lab": entry["lab"]}
            return [Action("example", value=example_value(rec, label), key=rec.get("key"))]
        return []  # a re-sent pending record (the featurize stage is at-least-once): already known

    def on_label(self, label: dict, raw: bytes, offset: int, store) -> list[Action]:
        eid = str(label["id"])
        entry = store.get(eid)
        if entry is not None and entry.get("lab") == offset:
            return []  # replayed: its effect is already in the store
        if entry is None:
            store[eid] = {"st": "wait_event", "label": label, "lab": offset, "ts": label["ts"],
                          "raw": raw.decode("utf-8", "replace")}
            return []
        st = entry["st"]
        if st == "wait_label" and label["ts"] - entry["ts"] > self.ttl:
            store[eid] = {"st": "expired", "ts": entry["ts"], "pen": entry["pen"], "lab": offset}
            return [Action("expired"), Action("dead", reason="expired_label", raw=raw, origin=offset,
                                              message=f"the label came {label['ts'] - entry['ts']:g}s after the "
                                                      f"event, over the {self.ttl:g}s TTL")]
        if st == "wait_label":
            store[eid] = {"st": "done", "ts": entry["ts"], "pen": entry["pen"], "lab": offset}
            rec = entry["rec"]
            return [Action("example", value=example_value(rec, label), key=rec.get("key"))]
        if st == "expired":
            return [Action("dead", reason="expired_label", raw=raw, origin=offset,
                           message=f"the event's features expired after {self.ttl:g}s without a label")]
        return [Action("dead", reason="duplicate_label", raw=raw, origin=offset,
                       message="a label for this event id was already joined or is waiting")]

    def expire(self, items, now: float) -> list[tuple[str, Action | None, dict | None]]:
        """Entries past the TTL at event time ``now``: ``(event id, action or None, new entry or None)``.

        An unlabeled event becomes an ``expired`` marker (kept one more TTL so a late label is
        recognised); a label that never met its event is dead-lettered; old markers are dropped.
        """
        out = []
        for eid, entry in items:
            age = now - entry["ts"]
            if age <= self.ttl:
                continue
            st = entry["st"]
            if st == "wait_label":
                out.append((eid, Action("expired"), {"st": "expired", "ts": entry["ts"], "pen": entry["pen"]}))
            elif st == "wait_event":
                out.append((eid, Action("dead", reason="unknown_label", raw=entry["raw"].encode(),
                                        origin=entry["lab"],
                                        message=f"no event with this id within {self.ttl:g}s"), None))
            elif age > 2 * self.ttl:
                out.append((eid, None, None))
        return out
