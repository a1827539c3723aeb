"""Sources: each yields plain records (``dict`` of field → value), in order.

* ``river``: a dataset bundled inside the river package, by name (``Phishing``).
* ``generator``: a river synthetic generator (``Agrawal``, ``SEA``, …), seeded,
  with an optional concept drift (``drift_at``, ``drift_to``).
* ``file``: CSV, JSONL or Parquet, read in chunks so memory stays bounded.
* ``stdin``: JSON lines.

>>> from contracts.spec import SourceSpec
>>> recs = list(open_source(SourceSpec(kind="river", name="Phishing", limit=2), label="is_phishing"))
>>> recs[0]["is_phishing"], len(recs)
(True, 2)
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

from contracts import serde
from contracts.spec import SourceSpec

__all__ = ["open_source", "source_id", "BUNDLED_DATASETS"]

# Datasets that ship inside the river wheel (no download needed).
BUNDLED_DATASETS = ("Phishing", "Bananas", "Elec2", "ImageSegments", "TrumpApproval", "ChickWeights",
                    "Restaurants", "SMTP", "CreditCard", "WebTraffic", "Higgs", "Insects", "Keystroke",
                    "MaliciousURL", "MovieLens100K", "Music", "SMSSpam", "SolarFlare", "Taxis", "Bikes",
                    "HTTP", "AirlinePassengers", "WaterFlow")

CHUNK_ROWS = 50_000


def source_id(src: SourceSpec) -> str:
    """A stable name for the source, the stem of derived event ids."""
    if src.kind in ("river", "generator"):
        return f"{src.kind}:{src.name}:{src.seed if src.seed is not None else ''}"
    if src.kind == "file":
        return f"file:{Path(src.path).name}"
    return "stdin"


def open_source(src: SourceSpec, label: str | None = None) -> Iterator[dict]:
    """Records from ``src``; river's ``(x, y)`` pairs become one dict with ``label`` set to y."""
    if src.kind == "river":
        it = _river_dataset(src, label)
    elif src.kind == "generator":
        it = _generator(src, label)
    elif src.kind == "file":
        it = _file(Path(src.path))
    else:
        it = _jsonl(sys.stdin.buffer)
    return itertools.islice(it, src.limit) if src.limit else it


def _pairs(it, label):
    for x, y in it:
        rec = dict(x)
        if label is not None:
            rec[label] = y
        yield rec


def _river_dataset(src: SourceSpec, label):
    from river import datasets

    cls = getattr(datasets, src.name, None)
    if cls is None:
        raise ValueError(f"river has no dataset '{src.name}'; bundled ones: {', '.join(BUNDLED_DATASETS)}")
    return _pairs(cls(**src.params), label)


def _generator(src: SourceSpec, label):
    """A river synthetic stream; ``drift_at: N`` switches to ``drift_to`` params at event N."""
    from river.datasets import synth

    params = dict(src.params)
    drift_at = params.pop("drift_at", None)
    drift_to = params.pop("drift_to", None)
    width = params.pop("drift_width", 1)
    cls = getattr(synth, src.name, None)
    if cls is None:
        names = [n for n in dir(synth) if n[0].isupper()]
        raise ValueError(f"river has no generator '{src.name}'; available: {', '.join(names)}")
    seed_kw = {"seed": src.seed} if src.seed is not None else {}
    before = cls(**params, **seed_kw)
    if drift_at is None:
        return _pairs(before, label)
    after = cls(**{**params, **(drift_to or {})}, **seed_kw)
    drifting = synth.ConceptDriftStream(stream=before, drift_stream=after, position=int(drift_at),
                                        width=int(width), seed=src.seed)
    return _pairs(drifting, label)


def _file(path: Path):
    import pandas as pd

    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
            yield from batch.to_pylist()
    elif ".jsonl" in suffix or ".ndjson" in suffix or suffix.endswith(".json"):
        with open(path, "rb") as f:
            yield from _jsonl(f)
    else:
        for chunk in pd.read_csv(path, chunksize=CHUNK_ROWS):
            for rec in chunk.to_dict(orient="records"):
                yield {k: (None if isinstance(v, float) and v != v else _py(v)) for k, v in rec.items()}


def _py(v):
    return v.item() if hasattr(v, "item") else v


def _jsonl(f):
    for line in f:
        line = line.strip()
        if line:
            yield serde.loads(line)
