"""Sources: URIs, river datasets and generators, and the file readers (no broker)."""

from __future__ import annotations

import io
import itertools

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest._files import Bad, read_csv, read_file, read_parquet
from ingest.sources import bundled_datasets, open_source, parse_uri, read_source, source_id


def test_uri_schemes_map_to_source_specs():
    assert parse_uri("file:/data/x.csv").path == "/data/x.csv"
    assert parse_uri("-").kind == "stdin"
    assert parse_uri("dataset:image-segments").name == "ImageSegments"
    assert parse_uri("river:TrumpApproval").name == "TrumpApproval"  # alias
    s = parse_uri("synth:hyperplane?mag_change=0.5&n_features=4&seed=3")
    assert (s.kind, s.name, s.seed, s.params) == ("generator", "Hyperplane", 3, {"mag_change": 0.5, "n_features": 4})
    assert parse_uri("generator:SEA?variant=1").params == {"variant": 1}


@pytest.mark.parametrize("uri", ["nope", "ftp:x", "dataset:no-such", "synth:nothing"])
def test_bad_uri_says_what_is_accepted(uri):
    with pytest.raises(ValueError):
        parse_uri(uri)


def test_every_bundled_dataset_streams_without_download():
    names = bundled_datasets()
    assert {"Phishing", "Bananas", "ImageSegments", "TrumpApproval", "ChickWeights"} <= set(names)
    for name in names:
        recs = list(itertools.islice(open_source(parse_uri(f"dataset:{name}"), label="y"), 3))
        assert len(recs) == 3 and all("y" in r for r in recs), name


@pytest.mark.parametrize("uri", ["synth:agrawal?drift_at=50&drift_to.classification_function=3&seed=11",
                                 "synth:sea?variant=0&drift_at=50&drift_to.variant=2&seed=11",
                                 "synth:hyperplane?mag_change=0.2&seed=11"])
def test_generators_are_reproducible_from_the_seed(uri):
    src = parse_uri(uri).model_copy(update={"limit": 200})
    a, b = list(open_source(src, "y")), list(open_source(src, "y"))
    assert a == b and len(a) == 200
    other = parse_uri(uri.replace("seed=11", "seed=12")).model_copy(update={"limit": 200})
    assert list(open_source(other, "y")) != a


def test_abrupt_drift_far_into_the_stream():
    src = parse_uri("synth:sea?variant=0&drift_at=5000&drift_to.variant=3&seed=1").model_copy(update={"limit": 6000})
    assert len(list(open_source(src, "y"))) == 6000
    gradual = parse_uri("synth:sea?drift_at=3000&drift_width=500&drift_to.variant=2&seed=1")
    assert len(list(open_source(gradual.model_copy(update={"limit": 4000}), "y"))) == 4000


def test_drift_changes_the_concept_at_the_given_event():
    # SEA variant 0 vs 3 use different thresholds: after the drift labels follow the new concept.
    src = parse_uri("synth:sea?variant=0&drift_at=100&drift_to.variant=3&seed=1").model_copy(update={"limit": 400})
    plain = parse_uri("synth:sea?variant=0&seed=1").model_copy(update={"limit": 400})
    drifted, same = list(open_source(src, "y")), list(open_source(plain, "y"))
    assert [r["y"] for r in drifted[:90]] == [r["y"] for r in same[:90]]
    assert [r["y"] for r in drifted[150:]] != [r["y"] for r in same[150:]]


def test_csv_types_cells_by_schema_and_keeps_quoted_newlines():
    data = b'id,x,n,b,s\n1,2.5,3,true,"a\nb"\n2,,x,0,c\n'
    items = list(read_csv(io.BytesIO(data), {"id": "str", "x": "float", "n": "int", "b": "bool"}))
    assert items[0] == (2, {"id": "1", "x": 2.5, "n": 3, "b": True, "s": "a\nb"})
    # the next row starts on line 4: the quoted newline took line 3
    assert items[1] == (4, {"id": "2", "x": None, "n": "x", "b": False, "s": "c"})


def test_csv_bad_rows_carry_line_and_original_bytes():
    data = b"a,b\n1,2\n1,2,3\n\xff,1\n3,4\n"
    items = list(read_csv(io.BytesIO(data), {}))
    bad = [i for i in items if isinstance(i, Bad)]
    assert [(b.line, b.reason, b.raw) for b in bad] == [(3, "wrong_column_count", b"1,2,3\n"),
                                                         (4, "not_utf8", b"\xff,1\n")]
    assert [i[0] for i in items if not isinstance(i, Bad)] == [2, 5]


def test_unreadable_file_is_one_bad_input(tmp_path):
    (item,) = list(read_file(tmp_path / "missing.csv"))
    assert item.reason == "unreadable"
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    (item,) = list(read_file(junk))
    assert item.reason == "unreadable"


def test_parquet_reads_in_batches_bounded_by_bytes(tmp_path, monkeypatch):
    import ingest._files as files

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"i": list(range(1000)), "s": ["x" * 1000] * 1000}), path, row_group_size=100)
    monkeypatch.setattr(files, "TARGET_BATCH_BYTES", 10_000)
    seen = []
    real = pq.ParquetFile.iter_batches

    def spy(self, batch_size, **kw):
        seen.append(batch_size)
        return real(self, batch_size=batch_size, **kw)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    rows = list(read_parquet(path))
    assert [r[1]["i"] for r in rows] == list(range(1000)) and [r[0] for r in rows] == list(range(1000))
    assert seen[-1] <= 10  # 1000-byte rows in batches of 10 kB


def test_stdin_is_jsonl(monkeypatch):
    class FakeStdin:
        buffer = io.BytesIO(b'{"x": 1}\n\n{"x": 2}\noops\n')

    monkeypatch.setattr("sys.stdin", FakeStdin())
    items = list(read_source(parse_uri("-")))
    assert items[:2] == [(1, {"x": 1}), (3, {"x": 2})] and items[2].reason == "bad_json"
    assert source_id(parse_uri("-")) == "stdin"
