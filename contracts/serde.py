"""Serialization: JSON via orjson, every value carrying its schema version ``v``.

orjson writes floats in their shortest round-trip form, so a float comes out of
Kafka bit-for-bit as it went in:

>>> x = 0.1 + 0.2
>>> loads(dumps({"x": x}))["x"] == x
True
"""

from __future__ import annotations

import orjson

__all__ = ["dumps", "loads", "DecodeError", "predictions_of"]

DecodeError = orjson.JSONDecodeError
_OPTS = orjson.OPT_NON_STR_KEYS


def dumps(value) -> bytes:
    return orjson.dumps(value, option=_OPTS)


def loads(data: bytes | str):
    return orjson.loads(data)


def predictions_of(value: dict) -> list[dict]:
    """The predictions in one predictions-topic value, whether written one per record or batched.

    >>> predictions_of({"v": 1, "id": "e1", "model": "lr"})
    [{'v': 1, 'id': 'e1', 'model': 'lr'}]
    >>> [p["id"] for p in predictions_of({"v": 1, "batch": [{"id": "e1"}, {"id": "e2"}]})]
    ['e1', 'e2']
    """
    batch = value.get("batch")
    return list(batch) if isinstance(batch, list) else [value]
