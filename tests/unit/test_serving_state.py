"""Serving's stateful features without a broker: the key's state as the stream left it gives the
features the stream would compute next, and reading it never changes it."""

import copy

import orjson
import pytest

from contracts.spec import load_spec_text
from deploy.serving.inference import RecordReader
from deploy.serving.state import KeyStates
from processors.clean import Clean, Cleaner
from processors.features import Featurizer
from processors.testing import mixed_stream, spec_text

SPEC = load_spec_text(spec_text("unit-serving-state", ttl=100.0))


def stream_states(n: int = 400, keys: int = 4):
    """Each key's changelog entry after ``n`` events, as the processors' Stage writes it."""
    cleaner, featurizer = Cleaner(SPEC), Featurizer(SPEC)
    states: dict[str, dict] = {}
    for offset, rec in enumerate(mixed_stream(n, keys=keys, seed=7)):
        clean = cleaner.clean_bytes(rec.value)
        prior = states.get(clean.key, {}).get("s")
        _, new = featurizer.features(clean.x, clean.ts, prior)
        states[clean.key] = {"p": 0, "at": offset, "s": new}
    return states


def record(key: str | None, t: float, v: float = 3.5) -> dict:
    return {"id": f"q-{key}-{t}", "k": key, "t": t, "v": v, "c": "b"}


def test_serving_never_changes_the_state_it_reads():
    states = stream_states()
    before = copy.deepcopy(states)
    reader = RecordReader(SPEC, states)
    newest = max(e["s"]["w"] for e in states.values())
    # on time, late (behind the allowed lateness), and far ahead: each path of the featurizer
    for t in (newest + 1.0, newest - 60.0, newest + 30.0, newest):
        for k in states:
            for _ in range(2):
                reader.features(reader.read(record(k, t), 0))
    assert states == before


def test_features_are_the_streams_next_features_from_the_keys_state():
    states = stream_states()
    reader, featurizer = RecordReader(SPEC, states), Featurizer(SPEC)
    for k, entry in states.items():
        clean = reader.read(record(k, entry["s"]["w"] + 2.0), 0)
        assert reader.features(clean) == featurizer.features(clean.x, clean.ts, entry["s"])[0]
        assert reader.features(clean)["count_s20s"] > 1.0  # the key's past is in the window


def test_an_unseen_key_a_keyless_record_or_a_state_past_its_ttl_is_no_state():
    states = stream_states()
    states["\x000"] = next(iter(states.values()))  # the stream's state of keyless records: never served
    reader, featurizer = RecordReader(SPEC, states), Featurizer(SPEC)
    k, entry = next(iter(states.items()))
    unseen = reader.read(record("never-seen", 5.0), 0)
    expired = reader.read(record(k, entry["s"]["w"] + SPEC.features.ttl_seconds + 1.0), 0)
    keyless = Clean("q-none", None, entry["s"]["w"] + 1.0, dict(unseen.x), None)
    for clean in (unseen, expired, keyless):
        assert reader.prior(clean) is None
        x = reader.features(clean)
        assert x == featurizer.features(clean.x, clean.ts, None)[0]
        assert x["count_s20s"] == 1.0 and x["since_last"] == 0.0


def test_a_stateful_spec_needs_the_key_states():
    with pytest.raises(ValueError, match="stateful"):
        RecordReader(SPEC)


def test_key_states_follow_the_changelog_encoding_with_tombstones():
    states = KeyStates()
    entry = {"p": 1, "at": 9, "s": {"w": 2.5, "n": 3}}
    states.apply(orjson.dumps("k1"), orjson.dumps(entry))
    states.apply(orjson.dumps("\x001"), orjson.dumps(entry))  # a keyless partition's state key
    assert states.get("k1") == entry and states.get("\x001") == entry and len(states) == 2
    states.apply(orjson.dumps("k1"), None)
    assert states.get("k1") is None and len(states) == 1
