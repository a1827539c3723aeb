"""The prequential step: predict, then score, then learn, from the same features.

This mirrors river's ``evaluate.progressive_val_score``: a classifier scored
by a metric that needs probabilities (ROCAUC, LogLoss) is asked for
``predict_proba_one``, one that needs labels (Accuracy, F1) for
``predict_one``. The prediction made at event time is kept with the features
it was made from, so that a label arriving later scores that prediction and
trains on exactly those features (the beaver rule).

>>> from river import linear_model
>>> runner = ModelRunner("lr", linear_model.LogisticRegression(), ["Accuracy", "LogLoss"], window=10)
>>> p = runner.predict({"x": 1.0})
>>> p.y_pred, p.proba
(False, {False: 0.5, True: 0.5})
>>> runner.learn({"x": 1.0}, True, p)
>>> runner.n_learned, runner.metrics()["Accuracy"]
(1, 0.0)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from river import base, metrics as river_metrics, utils

__all__ = ["ModelRunner", "Prediction", "make_metric"]


@dataclass(slots=True)
class Prediction:
    """What a model said about one event, at event time."""

    y_pred: object
    proba: dict | None
    score: float | None
    latency_s: float


def make_metric(name: str):
    return getattr(river_metrics, name)()


def _final_step(model):
    from river import compose

    return list(model.steps.values())[-1] if isinstance(model, compose.Pipeline) else model


class ModelRunner:
    """One model learning prequentially, with cumulative and rolling metrics."""

    def __init__(self, name: str, model, metric_names: list[str], window: int = 1000):
        self.name = name
        self.model = model
        self.metric_names = list(metric_names)
        self.window = window
        self.cumulative = {m: make_metric(m) for m in self.metric_names}
        self.rolling = {m: utils.Rolling(getattr(river_metrics, m), window_size=window) for m in self.metric_names}
        self.n_predicted = 0
        self.n_learned = 0
        self._configure()

    def _configure(self) -> None:
        final = _final_step(self.model)
        self.is_anomaly = isinstance(final, (base.AnomalyDetector,))
        self.is_classifier = isinstance(final, base.Classifier)
        self._supervised = getattr(self.model, "_supervised", True)
        wants_labels = any(m.requires_labels for m in self.cumulative.values())
        # A classifier whose predict_one is river's default is the argmax of its probabilities:
        # one call gives both. Anything else is asked separately, so that results stay exact.
        self._label_from_proba = self.is_classifier and type(final).predict_one is base.Classifier.predict_one
        self._wants_labels = wants_labels
        # Label-only classifiers (voting, one-vs-one, output codes) keep river's abstract
        # predict_proba_one, which raises NotImplementedError: ask them for labels only.
        self._has_proba = not (self.is_classifier
                               and type(final).predict_proba_one is base.Classifier.predict_proba_one)

    # ---------------------------------------------------------------- predict

    def predict(self, x: dict) -> Prediction:
        """Pure inference: never changes the model's state."""
        t0 = time.perf_counter()
        proba = score = None
        if self.is_anomaly:
            score = self.model.score_one(x)
            y_pred = score
        elif self.is_classifier and self._has_proba:
            proba = self.model.predict_proba_one(x)
            if self._label_from_proba:
                y_pred = max(proba, key=proba.get) if proba else None
            else:
                y_pred = self.model.predict_one(x)
        else:
            y_pred = self.model.predict_one(x)
        self.n_predicted += 1
        return Prediction(y_pred, proba, score, time.perf_counter() - t0)

    # ---------------------------------------------------------------- learn

    def learn(self, x: dict, y, prediction: Prediction) -> None:
        """Score ``prediction`` against ``y``, then learn ``(x, y)``."""
        if y is not None:
            for name, metric in self.cumulative.items():
                y_pred = self._metric_input(metric, prediction)
                if y_pred is None and not metric.requires_labels:
                    continue
                metric.update(y, y_pred)
                self.rolling[name].update(y, y_pred)
        if self._supervised:
            if y is not None:
                self.model.learn_one(x, y)
        else:
            self.model.learn_one(x)
        self.n_learned += 1

    def _metric_input(self, metric, p: Prediction):
        if self.is_anomaly:
            return p.score
        if self.is_classifier and not metric.requires_labels:
            return p.proba
        return p.y_pred

    # ---------------------------------------------------------------- report

    def rolling_value(self, name: str):
        """The rolling metric ``name``'s current value, as ``self.rolling[name].get()`` gives it.

        Asked for the wrapped metric directly: ``utils.Rolling`` defines no ``get`` of its own and
        forwards it through ``__getattr__``, which runs only after the ordinary lookup has failed
        (an ``AttributeError`` raised and caught each time). The leaderboard asks for every model's
        value after every labeled event, and that lookup was 2 of its 3 µs an event
        (``examples/bench.yaml``'s two models).

        >>> from river import linear_model
        >>> runner = ModelRunner("lr", linear_model.LogisticRegression(), ["Accuracy"], window=10)
        >>> runner.learn({"x": 1.0}, True, runner.predict({"x": 1.0}))
        >>> runner.rolling_value("Accuracy") == runner.rolling["Accuracy"].get() == 0.0
        True
        """
        return self.rolling[name].obj.get()

    def metrics(self, rolling: bool = False) -> dict[str, float]:
        source = self.rolling if rolling else self.cumulative
        out = {}
        for name, metric in source.items():
            value = metric.get()
            value = None if value is None else float(value)
            out[name] = None if value is None or math.isnan(value) else value
        return out

    def reset(self, model) -> None:
        """Replace the model (drift policy 'reset'); metrics keep their history."""
        self.model = model
        self._configure()
