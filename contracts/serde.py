"""Serialization: JSON via orjson, every value carrying its schema version ``v``.

orjson writes floats in their shortest round-trip form, so a float comes out of
Kafka bit-for-bit as it went in:

>>> x = 0.1 + 0.2
>>> loads(dumps({"x": x}))["x"] == x
True
"""

from __future__ import annotations

import orjson

__all__ = ["dumps", "loads", "DecodeError"]

DecodeError = orjson.JSONDecodeError
_OPTS = orjson.OPT_NON_STR_KEYS


def dumps(value) -> bytes:
    return orjson.dumps(value, option=_OPTS)


def loads(data: bytes | str):
    return orjson.loads(data)
