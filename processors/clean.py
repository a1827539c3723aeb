"""The clean stage, as plain Python: validate, coerce and impute one raw record.

It is the same code in the stream (``processors.app``) and at serving time.
A record that cannot be made valid comes back as a :class:`Rejection` with a
reason code from :data:`REASONS` and a message a person can act on.

>>> from contracts.spec import load_spec_text
>>> spec = load_spec_text('''
... name: demo
... schema:
...   fields: {id: str, x: {type: float, min: 0}, y: bool}
...   id: id
...   label: y
... models: {lr: {estimator: linear_model.LogisticRegression}}
... ''')
>>> cleaner = Cleaner(spec)
>>> cleaner.clean_envelope({"v": 1, "id": "e1", "ts": 1.0, "data": {"id": "e1", "x": "3.5", "y": 1}})
Clean(id='e1', key=None, ts=1.0, x={'x': 3.5}, y=True)
>>> cleaner.clean_envelope({"v": 1, "id": "e2", "ts": 1.0, "data": {"id": "e2", "x": -1, "y": 0}})
Rejection(reason='out_of_range', message="field 'x': -1.0 is below the minimum 0.0", event_id='e2')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from contracts import serde
from contracts.spec import FieldSpec, Spec

__all__ = ["Cleaner", "Clean", "Rejection", "REASONS"]

REASONS = {
    "bad_json": "the value is not JSON",
    "not_an_object": "the value is JSON but not an object",
    "bad_envelope": "the envelope lacks 'data' or has the wrong shape",
    "unknown_schema_version": "the record's schema version is not the spec's",
    "too_large": "the record is larger than schema.max_record_bytes",
    "missing_field": "a required field is absent or null",
    "wrong_type": "a field cannot be read as its declared type",
    "out_of_range": "a number is outside [min, max]",
    "unknown_category": "a value is not among the field's categories",
    "not_finite": "NaN or infinity where the spec rejects them",
    "unknown_field": "a field the schema does not declare",
    "duplicate": "an event id seen before within the dedup window",
    "processing_error": "the processors failed on this record (a bug: the message says where)",
    "bad_label": "a labels-topic record that is not {'v', 'id', 'y', 'ts'}",
    "unknown_label": "a label whose event never came within labels.ttl_seconds",
    "expired_label": "a label that came after its event's features expired (labels.ttl_seconds)",
    "duplicate_label": "a second label for an event id",
}


@dataclass(slots=True)
class Clean:
    id: str
    key: str | None
    ts: float
    x: dict
    y: object = None

    def as_value(self) -> dict:
        v = {"v": 1, "id": self.id, "key": self.key, "ts": self.ts, "x": self.x}
        if self.y is not None:
            v["y"] = self.y
        return v


@dataclass(slots=True)
class Rejection:
    reason: str
    message: str
    event_id: str | None = None


class _Invalid(Exception):
    def __init__(self, reason: str, message: str):
        self.reason, self.message = reason, message


_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _coerce(name: str, value, f: FieldSpec, allow_nan: bool):
    t = f.type
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if not (f.coerce and isinstance(value, (str, int)) and not isinstance(value, bool)):
                raise _Invalid("wrong_type", f"field '{name}': expected a number, got {type(value).__name__}")
            try:
                value = float(value)
            except ValueError:
                raise _Invalid("wrong_type", f"field '{name}': {value!r} is not a number") from None
        value = float(value)
        if not allow_nan and not math.isfinite(value):
            raise _Invalid("not_finite", f"field '{name}': {value} is not finite")
    elif t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            ok = f.coerce and (isinstance(value, str) or (isinstance(value, float) and value.is_integer()))
            if not ok:
                raise _Invalid("wrong_type", f"field '{name}': expected an integer, got {value!r}")
            try:
                value = int(float(value)) if isinstance(value, str) and "." in value else int(value)
            except (ValueError, OverflowError):
                raise _Invalid("wrong_type", f"field '{name}': {value!r} is not an integer") from None
    elif t == "bool":
        if not isinstance(value, bool):
            s = str(value).strip().lower() if f.coerce and isinstance(value, (str, int)) else None
            if s in _TRUE:
                value = True
            elif s in _FALSE:
                value = False
            else:
                raise _Invalid("wrong_type", f"field '{name}': expected a boolean, got {value!r}")
    elif t == "str":
        if not isinstance(value, str):
            if not (f.coerce and isinstance(value, (int, float, bool))):
                raise _Invalid("wrong_type", f"field '{name}': expected a string, got {type(value).__name__}")
            value = str(value)
    elif t == "datetime":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise _Invalid("wrong_type", f"field '{name}': {value!r} is not an ISO-8601 time") from None
        else:
            raise _Invalid("wrong_type", f"field '{name}': expected a time, got {type(value).__name__}")
    if f.min is not None and isinstance(value, (int, float)) and value < f.min:
        raise _Invalid("out_of_range", f"field '{name}': {value!r} is below the minimum {f.min!r}")
    if f.max is not None and isinstance(value, (int, float)) and value > f.max:
        raise _Invalid("out_of_range", f"field '{name}': {value!r} is above the maximum {f.max!r}")
    if f.categories is not None and value not in f.categories:
        raise _Invalid("unknown_category", f"field '{name}': {value!r} is not one of {f.categories}")
    return value


class Cleaner:
    """Validates records against one spec's schema. Stateless and thread-safe."""

    def __init__(self, spec: Spec, strict_fields: bool = True):
        self.spec = spec
        self.schema = spec.schema
        self.version = spec.schema.version
        self.strict_fields = strict_fields
        self.features = spec.schema.feature_names
        self.allow_nan = spec.schema.nan == "allow"
        # Per field: is it a float without bounds or categories? Such a field's float value passes
        # as it is (what _coerce returns for it), without the checks that do not apply.
        self._plain_float = {name: f.type == "float" and f.min is None and f.max is None and f.categories is None
                             for name, f in spec.schema.fields.items()}

    def clean_bytes(self, raw: bytes) -> Clean | Rejection:
        """Decode one raw-topic value and clean it. Never raises."""
        if raw is None:
            return Rejection("bad_json", "the record has no value (a tombstone)")
        if len(raw) > self.schema.max_record_bytes:
            return Rejection("too_large", f"{len(raw)} bytes is over the limit of {self.schema.max_record_bytes}")
        try:
            env = serde.loads(raw)
        except serde.DecodeError as exc:
            return Rejection("bad_json", f"not JSON: {exc}")
        return self.clean_envelope(env)

    def clean_envelope(self, env) -> Clean | Rejection:
        if not isinstance(env, dict):
            return Rejection("not_an_object", f"expected a JSON object, got {type(env).__name__}")
        event_id = env.get("id")
        event_id = str(event_id) if event_id is not None else None
        try:
            if env.get("v") != self.version:
                raise _Invalid("unknown_schema_version",
                               f"schema version {env.get('v')!r}; this pipeline reads version {self.version}")
            data = env.get("data")
            if not isinstance(data, dict):
                raise _Invalid("bad_envelope", "the envelope has no 'data' object")
            values = self.clean_data(data)
            if event_id is None:
                raise _Invalid("bad_envelope", "the envelope has no event 'id'")
            ts = env.get("ts")
            if self.schema.time:
                ts = values.get(self.schema.time)
            if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
                raise _Invalid("bad_envelope", f"event time {ts!r} is not a number of seconds")
        except _Invalid as inv:
            return Rejection(inv.reason, inv.message, event_id)
        key = values.get(self.schema.key) if self.schema.key else env.get("key")
        x = {f: values[f] for f in self.features if f in values}
        y = values.get(self.schema.label) if self.schema.label else None
        return Clean(event_id, None if key is None else str(key), float(ts), x, y)

    def clean_data(self, data: dict) -> dict:
        """Validate and coerce one record's fields. Raises ``_Invalid``."""
        out = {}
        fields = self.schema.fields
        if self.strict_fields:
            for name in data:
                if name not in fields:
                    raise _Invalid("unknown_field", f"field '{name}' is not in the schema")
        plain_float, allow_nan, isfinite = self._plain_float, self.allow_nan, math.isfinite
        for name, f in fields.items():
            value = data.get(name)
            if type(value) is float and plain_float[name] and (allow_nan or isfinite(value)):
                out[name] = value
                continue
            if value is None:
                if name == self.schema.label and self.spec.labels.mode == "delayed":
                    continue
                if f.nulls == "impute":
                    out[name] = f.impute
                    continue
                if f.nulls == "drop" or not f.required:
                    continue
                raise _Invalid("missing_field", f"field '{name}' is required but absent or null")
            out[name] = _coerce(name, value, f, self.allow_nan)
        return out
