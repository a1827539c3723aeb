"""File readers that never crash on bad input: CSV, JSONL and Parquet, in bounded memory.

Each reader yields, in file order, either ``(position, record)`` or a :class:`Bad`
that says which line was wrong, why, and carries the original bytes. For text files
the position is the 1-based line number (a CSV header is line 1); for Parquet it is
the 0-based row number.

>>> import io
>>> items = list(read_jsonl(io.BytesIO(b'{"x": 1}\\n{"x": \\n[1]\\n\\xff\\n')))
>>> items[0]
(1, {'x': 1})
>>> [(b.line, b.reason) for b in items[1:]]
[(2, 'bad_json'), (3, 'not_an_object'), (4, 'not_utf8')]
>>> items = list(read_csv(io.BytesIO(b"id,x\\n1,2.5\\n2\\n"), {"id": "str", "x": "float"}))
>>> items[0], (items[1].line, items[1].reason)
((2, {'id': '1', 'x': 2.5}), (3, 'wrong_column_count'))
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["Bad", "read_csv", "read_jsonl", "read_parquet", "read_file", "file_format", "BAD_INPUT"]

BAD_INPUT = {
    "unreadable": "the file cannot be opened or decoded as its format",
    "not_utf8": "the line is not valid UTF-8",
    "bad_json": "the line is not JSON",
    "not_an_object": "the line is JSON but not an object",
    "wrong_column_count": "a CSV row has more or fewer columns than the header",
    "bad_csv": "a CSV row cannot be parsed",
}
TARGET_BATCH_BYTES = 4 * 1024 * 1024  # decoded Parquet bytes held at once, roughly
MAX_BATCH_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class Bad:
    """One input that cannot become a record: where it was, why, and its original bytes."""

    line: int
    reason: str
    message: str
    raw: bytes = b""


def file_format(path: Path) -> str:
    """``'csv'``, ``'jsonl'`` or ``'parquet'``, from the suffix.

    >>> file_format(Path("a/b.ndjson")), file_format(Path("x.PARQUET")), file_format(Path("x.tsv"))
    ('jsonl', 'parquet', 'csv')
    """
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def read_file(path: Path, types: dict[str, str] | None = None) -> Iterator[tuple[int, dict] | Bad]:
    """Records of a CSV, JSONL or Parquet file; a file that cannot be opened is one :class:`Bad`."""
    fmt = file_format(path)
    if fmt == "parquet":
        yield from read_parquet(path)
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after the generator is done
    except OSError as exc:
        yield Bad(0, "unreadable", f"cannot open {path}: {exc.strerror}")
        return
    with f:
        yield from (read_jsonl(f) if fmt == "jsonl" else read_csv(f, types or {}, delimiter="\t"
                                                                   if path.suffix.lower() == ".tsv" else ","))


def read_jsonl(f) -> Iterator[tuple[int, dict] | Bad]:
    """JSON objects, one a line; blank lines are skipped."""
    loads = orjson.loads
    for n, raw in enumerate(f, 1):
        line = raw.strip()
        if not line:
            continue
        try:
            rec = loads(line)
        except orjson.JSONDecodeError as exc:
            yield _bad_json(n, raw, exc)
            continue
        if type(rec) is dict:
            yield n, rec
        else:
            yield Bad(n, "not_an_object", f"line {n}: expected a JSON object, got {type(rec).__name__}", raw)


def _bad_json(n: int, raw: bytes, exc) -> Bad:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as ude:
        return Bad(n, "not_utf8", f"line {n}: byte {ude.start} is not UTF-8", raw)
    return Bad(n, "bad_json", f"line {n}: not JSON: {exc}", raw)


# ---------------------------------------------------------------- CSV


_TRUE = {"true": True, "1": True, "yes": True, "t": True, "false": False, "0": False, "no": False, "f": False}


def _to_float(s: str):
    try:
        return float(s)
    except ValueError:
        return s  # the validator names the field and the value


def _to_int(s: str):
    try:
        return int(s)
    except ValueError:
        return _to_float(s)


def _to_bool(s: str):
    return _TRUE.get(s.strip().lower(), s)


_CONVERT = {"float": _to_float, "int": _to_int, "bool": _to_bool}


def read_csv(f, types: dict[str, str], delimiter: str = ",") -> Iterator[tuple[int, dict] | Bad]:
    """Rows as records, typed by the schema's field types (``types``); an empty cell is None.

    A quoted field may span lines: the row's position is the line it starts on.
    """
    raws: list[bytes] = []
    bad_utf8 = []

    def lines():
        for raw in f:
            raws.append(raw)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                bad_utf8.append(len(raws))
                yield raw.decode("utf-8", "replace")

    reader = csv.reader(lines(), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield Bad(1, "unreadable", f"line 1: the CSV header cannot be parsed: {exc}", b"".join(raws))
        return
    if bad_utf8:
        yield Bad(1, "unreadable", "line 1: the CSV header is not UTF-8", b"".join(raws))
        return
    width = len(header)
    convert = [_CONVERT.get(types.get(name, "str")) for name in header]
    plain = all(c is None for c in convert)
    line = reader.line_num
    while True:
        raws.clear()
        bad_utf8.clear()
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = reader.line_num
            yield Bad(start, "bad_csv", f"line {start}: {exc}", b"".join(raws))
            continue
        line = reader.line_num
        if not row:
            continue
        if bad_utf8:
            yield Bad(start, "not_utf8", f"line {start}: not valid UTF-8", b"".join(raws))
        elif len(row) != width:
            yield Bad(start, "wrong_column_count", f"line {start}: {len(row)} columns, the header has {width}",
                      b"".join(raws))
        elif plain:
            yield start, {k: (v if v != "" else None) for k, v in zip(header, row)}
        else:
            yield start, {k: (None if v == "" else (c(v) if c else v)) for k, v, c in zip(header, row, convert)}


# ---------------------------------------------------------------- Parquet


def read_parquet(path: Path) -> Iterator[tuple[int, dict] | Bad]:
    """Rows in batches sized by bytes, so memory stays bounded whatever the file's size.

    Memory is bounded by the file's row groups (a reader decodes a whole column chunk),
    so files written with sensible row groups (pyarrow's ``row_group_size``) stream.
    ``pre_buffer=False``: pyarrow's default pre-buffering reads the whole file ahead.
    """
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path, memory_map=False, buffer_size=1 << 20, pre_buffer=False)
        meta = pf.metadata
        rows = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a corrupt file
        yield Bad(0, "unreadable", f"cannot read {path} as Parquet: {exc}")
        return
    per_row = max(1, size // max(rows, 1))
    if rows:  # dictionary-encoded columns decode far larger than their stored size: measure
        try:
            probe = next(pf.iter_batches(batch_size=64, row_groups=[0], use_threads=False))
            per_row = max(per_row, probe.nbytes // max(probe.num_rows, 1))
        except Exception:  # noqa: BLE001 - an unreadable first group is reported below
            pass
    batch = max(1, min(MAX_BATCH_ROWS, TARGET_BATCH_BYTES // per_row))
    n = 0
    try:
        for group in range(meta.num_row_groups):  # one row group at a time, unbuffered
            for rb in pf.iter_batches(batch_size=batch, row_groups=[group], use_threads=False):
                for rec in rb.to_pylist():
                    yield n, rec
                    n += 1
                del rb
    except Exception as exc:  # noqa: BLE001
        yield Bad(n, "unreadable", f"{path}: Parquet data after row {n} cannot be read: {exc}")
