"""Estimators from the spec: river classes by dotted name, ``|`` pipelines, or factories.

>>> from contracts.spec import ModelSpec
>>> from river import datasets
>>> model = build_estimator(ModelSpec(
...     estimator="preprocessing.StandardScaler | linear_model.LogisticRegression"))
>>> [type(step).__name__ for step in model.steps.values()]
['StandardScaler', 'LogisticRegression']
>>> from models.prequential import ModelRunner
>>> runner = ModelRunner("lr", model, ["Accuracy"], window=100)
>>> for x, y in datasets.Phishing():
...     runner.learn(x, y, runner.predict(x))
>>> round(runner.metrics()["Accuracy"], 4)   # river's published figure
0.8928
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from contracts.spec import ModelSpec, _param_hints, resolve_callable, resolve_river_class

__all__ = ["build_estimator"]


def _coerce(cls, params: dict[str, Any]) -> dict[str, Any]:
    """Bring YAML values to the constructor's types ('1e-5' → 1e-05) where a hint says so."""
    hints = _param_hints(cls)
    out = {}
    for name, value in params.items():
        hint = hints.get(name)
        if hint is not None and isinstance(value, str) and hint in (float, int):
            value = TypeAdapter(hint).validate_python(value)
        out[name] = value
    return out


def build_estimator(spec: ModelSpec):
    """A fresh, unfitted estimator for ``spec``."""
    if spec.factory:
        return resolve_callable(spec.factory)(**spec.params)
    from river import compose

    steps = []
    for dotted, params in spec.steps():
        cls = resolve_river_class(dotted)
        steps.append(cls(**_coerce(cls, params)))
    return steps[0] if len(steps) == 1 else compose.Pipeline(*steps)
