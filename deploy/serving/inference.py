"""From a raw record to a prediction, through the stream's own code.

1. **Clean**: the record is wrapped in the envelope ingest makes and goes
   through :class:`processors.clean.Cleaner` (the processors' code). The label
   may be absent: serving cleans as if labels were delayed, so a record
   without its label is valid, and one with it is checked but the label is
   never a feature. The event time is the record's time field when the spec
   has one, else now.
2. **Featurize**: the processors' pure :class:`processors.features.Featurizer`,
   or the clean record's ``x`` in a tree without it. Stateful per-key features
   (windows over an entity's history) read the key's state as the processors
   keep it: the latest entry of their ``keys`` table, followed from its
   changelog (:mod:`deploy.serving.state`). A record without a key, a key the
   stream has not seen, or a state past its TTL at the record's time gets the
   features of a key's first event. The features are those the stream would
   compute for this record next; the served state is never changed (the
   featurizer works on a copy, and its next state is dropped).
3. **Predict**: :meth:`models.prequential.ModelRunner.predict`, the learner's
   own call, so that the answer is the one the stream wrote for that version.
   River's predict calls do not learn (pure inference).

>>> from contracts.spec import load_spec
>>> from river import linear_model
>>> from models.prequential import ModelRunner
>>> reader = RecordReader(load_spec("examples/phishing.yaml"))
>>> clean = reader.read({"empty_server_form_handler": 0.0, "popup_window": 0.0, "https": 1.0,
...     "request_from_other_domain": 0.0, "anchor_from_other_domain": 0.0, "is_popular": 0.5,
...     "long_url": 1.0, "age_of_domain": 1, "ip_in_url": 0}, 0)
>>> runner = ModelRunner("lr", linear_model.LogisticRegression(), ["Accuracy"])
>>> predict_one(runner, reader.features(clean))["proba"]
[[False, 0.5], [True, 0.5]]
>>> reader.read({"https": "yes please"}, 0).message
"field 'empty_server_form_handler' is required but absent or null"

With stateful features, the key's state as the processors left it (one event at t=10):

>>> from contracts.spec import load_spec_text
>>> from processors.testing import spec_text
>>> spec = load_spec_text(spec_text("demo"))
>>> _, s1 = Featurizer(spec).features({"v": 2.0, "c": "a"}, 10.0, None)
>>> states = {"k1": {"p": 0, "at": 0, "s": s1}}
>>> reader = RecordReader(spec, states)
>>> x = reader.features(reader.read({"id": "e2", "k": "k1", "t": 12.0, "v": 4.0, "c": "b"}, 0))
>>> x["count_s20s"], x["v_mean_s50s"], x["since_last"]
(2.0, 3.0, 2.0)
>>> states["k1"]["s"] == s1 and s1["n"] == 1
True
>>> x = reader.features(reader.read({"id": "e3", "k": "k9", "t": 12.0, "v": 4.0, "c": "b"}, 0))
>>> x["count_s20s"], x["since_last"]
(1.0, 0.0)
"""

from __future__ import annotations

import re
import time
from typing import Protocol

from contracts.spec import Spec
from models.prequential import ModelRunner
from processors.clean import Clean, Cleaner, Rejection
from processors.features import Featurizer
from processors.stage import state_key

__all__ = ["KeyStateLookup", "RecordReader", "predict_one", "rejection_detail", "stateful"]

_FIELD = re.compile(r"^field '([^']+)'")


def stateful(spec: Spec) -> bool:
    """Does ``spec`` declare stateful per-key features (so that serving needs the keys' state)?"""
    return Featurizer(spec).stateful_enabled


class KeyStateLookup(Protocol):
    """The processors' per-key state entries (``{"p", "at", "s"}``) by state key; a ``dict`` will do."""

    def get(self, key: str) -> dict | None: ...


class RecordReader:
    """Cleans and featurizes raw-schema records exactly as the processors do.

    ``states`` is required when the spec has stateful features: serving does
    not answer with features the stream would not have computed.
    """

    def __init__(self, spec: Spec, states: KeyStateLookup | None = None):
        self.spec = spec
        self.states = states
        serving = spec.model_copy(update={"labels": spec.labels.model_copy(update={"mode": "delayed"})})
        self.cleaner = Cleaner(serving)
        self.featurizer = Featurizer(spec)
        self.stateful = self.featurizer.stateful_enabled
        if self.stateful and states is None:
            raise ValueError(f"spec {spec.name!r} has stateful per-key features: give the key states to read")

    def read(self, record: dict, position: int) -> Clean | Rejection:
        sch = self.spec.schema
        event_id = record.get(sch.id) if sch.id else None
        key = record.get(sch.key) if sch.key else None
        env = {"v": sch.version, "id": f"request:{position}" if event_id is None else str(event_id),
               "ts": time.time(), "key": None if key is None else str(key), "data": record}
        return self.cleaner.clean_envelope(env)

    def features(self, clean: Clean) -> dict:
        """The feature vector of a clean record: what the processors put on the features topic."""
        return self.featurizer.features(clean.x, clean.ts, self.prior(clean))[0]

    def prior(self, clean: Clean) -> dict | None:
        """The key's state before this record, as the stream keeps it (``None``: no state)."""
        if not self.stateful or clean.key is None:
            return None
        entry = self.states.get(state_key(clean.key, 0))  # a keyed record's state key is its key
        if entry is None or self.featurizer.expired(entry["s"], clean.ts):
            return None
        return entry["s"]


def predict_one(runner: ModelRunner, x: dict) -> dict:
    """The learner's prediction call, as the JSON the learner writes (without ids)."""
    p = runner.predict(x)
    proba = None if p.proba is None else [[k, v] for k, v in p.proba.items()]
    return {"y_pred": p.y_pred, "proba": proba, "score": p.score}


def rejection_detail(rejection: Rejection, loc: list) -> dict:
    """A FastAPI-style field-level error for a record the cleaner refused."""
    match = _FIELD.match(rejection.message)
    where = [*loc, match.group(1)] if match else loc
    return {"loc": where, "msg": rejection.message, "type": rejection.reason}
