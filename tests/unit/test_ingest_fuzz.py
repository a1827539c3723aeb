"""Fuzz: malformed input in every format never crashes a run, and every bad line is accounted for.

Each example mixes good records with malformed ones; the run must send exactly the
good ones and reject exactly the bad ones, each by its line (or row) with a reason,
under each policy.
"""

from __future__ import annotations

import io
import string

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.spec import load_spec_text
from contracts.topics import Headers, Role
from ingest.feed import Feed
from ingest.sources import parse_uri
from ingest.testing import MemoryProducer

SPEC = load_spec_text("""
name: fz
schema:
  fields: {id: str, x: {type: float, min: 0}, y: bool}
  id: id
  label: y
models: {m: {estimator: linear_model.LogisticRegression}}
""")
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
WORD = st.text(string.ascii_letters + string.digits, min_size=1, max_size=8)
GOOD = st.builds(lambda i, x, y: {"id": i, "x": x, "y": y}, WORD, st.floats(0, 1e6), st.booleans())
POLICY = st.sampled_from(["skip", "dlq"])


def _run(path, policy):
    producer = MemoryProducer(SPEC)
    summary = Feed(SPEC, producer, parse_uri(f"file:{path}"), on_error=policy).run()
    return summary, producer


def _check(summary, producer, good_lines, bad_lines, policy):
    assert summary.sent == summary.acknowledged == len(good_lines)
    assert summary.rejected == len(bad_lines)
    assert sorted(r["line"] for r in summary.rejections) == sorted(bad_lines)
    assert all(r["reason"] and r["message"] for r in summary.rejections)
    assert sum(summary.rejected_by_reason.values()) == len(bad_lines)
    dlq = producer.sent[Role.DLQ]
    if policy == "dlq":
        assert sorted(int(dict(h)[Headers.ORIGIN_OFFSET]) for _, _, h in dlq) == sorted(bad_lines)
    else:
        assert dlq == []
    assert summary.ok


# ---------------------------------------------------------------- JSONL

def _bad_jsonl():
    good = GOOD.map(orjson.dumps)
    return st.one_of(
        st.tuples(good, st.integers(1, 200)).map(lambda t: t[0][: min(t[1], len(t[0]) - 1)]),   # truncated
        st.one_of(st.integers(-2**63, 2**63 - 1), st.lists(st.booleans()), WORD).map(orjson.dumps),              # not an object
        st.tuples(GOOD, WORD.filter(lambda w: not _is_number(w))).map(
            lambda t: orjson.dumps({**t[0], "x": t[1]})),                                         # wrong type
        good.map(lambda b: b[:1] + b"\xff\xfe" + b[1:]),                                          # not UTF-8
        st.binary(min_size=1, max_size=40).map(lambda b: b"\x00" + b.replace(b"\n", b"")),       # junk
    )


def _is_number(w: str) -> bool:
    try:
        float(w)
        return True
    except ValueError:
        return False


@FUZZ
@given(lines=st.lists(st.one_of(GOOD.map(lambda r: ("good", orjson.dumps(r))), _bad_jsonl().map(lambda b: ("bad", b))),
                      max_size=40), policy=POLICY)
def test_jsonl_fuzz(tmp_path, lines, policy):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"".join(b + b"\n" for _, b in lines))
    summary, producer = _run(path, policy)
    good = [n for n, (kind, _) in enumerate(lines, 1) if kind == "good"]
    bad = [n for n, (kind, _) in enumerate(lines, 1) if kind == "bad"]
    _check(summary, producer, good, bad, policy)


# ---------------------------------------------------------------- CSV

def _good_csv(r):
    return f"{r['id']},{r['x']!r},{str(r['y']).lower()}".encode()


BAD_CSV = st.one_of(
    st.lists(WORD, min_size=1, max_size=6).filter(lambda c: len(c) != 3).map(lambda c: ",".join(c).encode()),
    st.tuples(WORD, WORD.filter(lambda w: not _is_number(w))).map(lambda t: f"{t[0]},{t[1]},true".encode()),
    st.tuples(WORD, st.floats(-1e6, -0.001)).map(lambda t: f"{t[0]},{t[1]!r},false".encode()),
    st.tuples(WORD, st.binary(min_size=1, max_size=5)).map(lambda t: t[0].encode() + b",\xff" + t[1].replace(b"\n", b"")
                                                        .replace(b'"', b"").replace(b"\r", b"") + b",true"),
)


@FUZZ
@given(rows=st.lists(st.one_of(GOOD.map(lambda r: ("good", _good_csv(r))), BAD_CSV.map(lambda b: ("bad", b))),
                     max_size=40), policy=POLICY)
def test_csv_fuzz(tmp_path, rows, policy):
    path = tmp_path / "f.csv"
    path.write_bytes(b"id,x,y\n" + b"".join(b + b"\n" for _, b in rows))
    summary, producer = _run(path, policy)
    good = [n for n, (kind, _) in enumerate(rows, 2) if kind == "good"]
    bad = [n for n, (kind, _) in enumerate(rows, 2) if kind == "bad"]
    _check(summary, producer, good, bad, policy)


# ---------------------------------------------------------------- Parquet

@FUZZ
@given(rows=st.lists(st.one_of(GOOD.map(lambda r: ("good", r)),
                               st.tuples(GOOD, WORD.filter(lambda w: not _is_number(w))).map(
                                   lambda t: ("bad", {**t[0], "x": t[1]}))), min_size=1, max_size=30),
       policy=POLICY)
def test_parquet_fuzz_rows_of_the_wrong_type(tmp_path, rows, policy):
    path = tmp_path / "f.parquet"
    table = pa.table({"id": [r["id"] for _, r in rows], "x": [str(r["x"]) for _, r in rows],
                      "y": [r["y"] for _, r in rows]})
    pq.write_table(table, path, row_group_size=7)
    summary, producer = _run(path, policy)
    good = [n for n, (kind, _) in enumerate(rows) if kind == "good"]
    bad = [n for n, (kind, _) in enumerate(rows) if kind == "bad"]
    _check(summary, producer, good, bad, policy)


@FUZZ
@given(cut=st.integers(0, 10_000), junk=st.binary(max_size=200), policy=POLICY)
def test_parquet_fuzz_corrupt_files(tmp_path, cut, junk, policy):
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": ["a", "b"], "x": [1.0, 2.0], "y": [True, False]}), buf)
    data = buf.getvalue()
    data = data[: cut % len(data)] + junk  # truncated, with junk after
    path = tmp_path / "f.parquet"
    path.write_bytes(data)
    summary, producer = _run(path, policy)
    assert summary.sent + summary.rejected >= 1 and summary.rejected >= 1
    assert summary.rejected_by_reason.get("unreadable", 0) >= 1
    assert summary.sent == summary.acknowledged and summary.ok
