"""Schema checks at the edge, with the processors' own rules (one code path).

The rules live in :mod:`processors.clean`; this adapter is the one place ingest
reaches for them, so a record ingest accepts is one the clean stage accepts.

>>> from contracts.spec import load_spec_text
>>> spec = load_spec_text("name: d\\nschema: {fields: {x: {type: float, min: 0}, y: bool}, label: y}\\n"
...                       "models: {m: {estimator: linear_model.LogisticRegression}}")
>>> check = Validator(spec)
>>> check({"x": "1.5", "y": 1}) is None
True
>>> check({"x": "abc", "y": 1})
('wrong_type', "field 'x': 'abc' is not a number")
"""

from __future__ import annotations

from contracts.spec import Spec

__all__ = ["Validator"]


class Validator:
    """``validator(record)`` → None when valid, else ``(reason, message)``."""

    def __init__(self, spec: Spec):
        from processors.clean import Cleaner, _Invalid  # the rules are the clean stage's

        self._clean = Cleaner(spec).clean_data
        self._invalid = _Invalid

    def __call__(self, record: dict) -> tuple[str, str] | None:
        try:
            self._clean(record)
        except self._invalid as inv:
            return inv.reason, inv.message
        return None
