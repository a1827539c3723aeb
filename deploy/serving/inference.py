"""From a raw record to a prediction, through the stream's own code.

1. **Clean**: the record is wrapped in the envelope ingest makes and goes
   through :class:`processors.clean.Cleaner` (the processors' code). The label
   may be absent: serving cleans as if labels were delayed, so a record
   without its label is valid, and one with it is checked but the label is
   never a feature.
2. **Featurize**: the processors' pure :class:`processors.features.Featurizer`
   (stateless features), or the clean record's ``x`` in a tree without it.
3. **Predict**: :meth:`models.prequential.ModelRunner.predict`, the learner's
   own call, so that the answer is the one the stream wrote for that version.
   River's predict calls do not learn (pure inference).

Stateful per-key features (windows over an entity's history) need the key's
state, which the processors keep in a faust table. The documented route is to
follow that table's changelog topic (keyed by ``schema.key``, latest value per
key) into a local dict and pass the key's state to ``Featurizer.features``.
That reader is not built yet, so a spec with stateful features is refused at
``/predict`` with 501 rather than answered with features the stream would not
have computed (:attr:`RecordReader.stateful`).

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
"""

from __future__ import annotations

import re
import time

from contracts.spec import Spec
from models.prequential import ModelRunner
from processors.clean import Clean, Cleaner, Rejection

try:
    from processors.features import Featurizer
except ImportError:  # a tree where the processors' featurizer has not landed: the features are Clean.x
    Featurizer = None

__all__ = ["RecordReader", "predict_one", "rejection_detail"]

_FIELD = re.compile(r"^field '([^']+)'")


class RecordReader:
    """Cleans raw-schema records exactly as the processors do."""

    def __init__(self, spec: Spec):
        self.spec = spec
        serving = spec.model_copy(update={"labels": spec.labels.model_copy(update={"mode": "delayed"})})
        self.cleaner = Cleaner(serving)
        self.featurizer = Featurizer(spec) if Featurizer is not None else None
        self.stateful = bool(self.featurizer and self.featurizer.stateful_enabled)

    def read(self, record: dict, position: int) -> Clean | Rejection:
        sch = self.spec.schema
        event_id = record.get(sch.id) if sch.id else None
        key = record.get(sch.key) if sch.key else None
        env = {"v": sch.version, "id": f"request:{position}" if event_id is None else str(event_id),
               "ts": time.time(), "key": None if key is None else str(key), "data": record}
        return self.cleaner.clean_envelope(env)


    def features(self, clean: Clean) -> dict:
        """The feature vector of a clean record: what the processors put on the features topic."""
        if self.featurizer is None:
            return clean.x
        return self.featurizer.features(clean.x, clean.ts, None)[0]


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
