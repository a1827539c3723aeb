"""Sources: each yields records (``dict`` of field → value) in order, by URI.

=====================================  ================================================
``file:PATH``                          CSV, JSONL or Parquet by suffix, in bounded memory
``dataset:NAME``                       a dataset bundled inside river (``phishing``, ``image-segments``)
``synth:NAME?param=value&seed=N``      a seeded river generator, with ``drift_at=N`` and
                                       ``drift_to.param=value`` for a concept drift
``-``                                  JSON lines on stdin
=====================================  ================================================

``river:NAME`` and ``generator:NAME`` are aliases of ``dataset:`` and ``synth:``.

>>> src = parse_uri("synth:agrawal?classification_function=0&drift_at=100&drift_to.classification_function=2&seed=7")
>>> src.kind, src.name, src.seed, src.params
('generator', 'Agrawal', 7, {'classification_function': 0, 'drift_at': 100, 'drift_to': {'classification_function': 2}})
>>> recs = list(open_source(parse_uri("dataset:phishing"), label="is_phishing"))
>>> recs[0]["is_phishing"], len(recs)
(True, 1250)
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

from contracts.spec import SourceSpec
from ingest._files import Bad, read_file, read_jsonl

__all__ = ["open_source", "read_source", "source_id", "parse_uri", "bundled_datasets", "Bad"]


def _norm(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


def bundled_datasets() -> list[str]:
    """The river datasets that ship inside the package (no download)."""
    from river import datasets
    from river.datasets import base

    return [n for n in datasets.__all__ if isinstance(getattr(datasets, n), type)
            and issubclass(getattr(datasets, n), base.FileDataset)
            and not issubclass(getattr(datasets, n), base.RemoteDataset)]


def _value(text: str):
    """A query-string value as int, float, bool, None or str."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_uri(uri: str) -> SourceSpec:
    """A ``--source`` URI as a :class:`SourceSpec`, or ValueError saying what is accepted."""
    if uri in ("-", "stdin", "stdin:"):
        return SourceSpec(kind="stdin")
    scheme, sep, rest = uri.partition(":")
    if not sep or not rest:
        raise ValueError(f"source {uri!r}: use file:PATH, dataset:NAME, synth:NAME?param=value&seed=N or -")
    if scheme == "file":
        return SourceSpec(kind="file", path=rest)
    if scheme in ("dataset", "river"):
        names = {_norm(n): n for n in bundled_datasets()}
        if _norm(rest) not in names:
            raise ValueError(f"no bundled river dataset {rest!r}; bundled: {', '.join(sorted(names.values()))}")
        return SourceSpec(kind="river", name=names[_norm(rest)])
    if scheme in ("synth", "generator"):
        from river.datasets import synth

        name, _, query = rest.partition("?")
        names = {_norm(n): n for n in synth.__all__}
        if _norm(name) not in names:
            raise ValueError(f"no river generator {name!r}; available: {', '.join(synth.__all__)}")
        params: dict = {}
        seed = None
        for k, v in parse_qsl(query, keep_blank_values=True):
            if k == "seed":
                seed = int(v)
            elif k.startswith("drift_to."):
                params.setdefault("drift_to", {})[k.removeprefix("drift_to.")] = _value(v)
            else:
                params[k] = _value(v)
        return SourceSpec(kind="generator", name=names[_norm(name)], params=params, seed=seed)
    raise ValueError(f"source {uri!r}: unknown scheme {scheme!r}; use file:, dataset:, synth: or -")


def source_id(src: SourceSpec) -> str:
    """A stable name for the source, the stem of derived event ids."""
    if src.kind in ("river", "generator"):
        return f"{src.kind}:{src.name}:{src.seed if src.seed is not None else ''}"
    if src.kind == "file":
        return f"file:{Path(src.path).name}"
    return "stdin"


def read_source(src: SourceSpec, label: str | None = None,
                types: dict[str, str] | None = None) -> Iterator[tuple[int, dict] | Bad]:
    """``(position, record)`` pairs and :class:`Bad` inputs, in source order.

    ``types`` (field → spec type) types CSV cells; river's ``(x, y)`` pairs become one
    record with ``label`` set to y.
    """
    if src.kind == "file":
        it = read_file(Path(src.path), types)
    elif src.kind == "stdin":
        it = read_jsonl(sys.stdin.buffer)
    else:
        pairs = _river_dataset(src) if src.kind == "river" else _generator(src)
        it = enumerate(_records(pairs, label))
    return itertools.islice(it, src.limit) if src.limit else it


def open_source(src: SourceSpec, label: str | None = None) -> Iterator[dict]:
    """Only the records of ``src`` (bad inputs are dropped); see :func:`read_source`."""
    return (item[1] for item in read_source(src, label) if type(item) is not Bad)


def _records(pairs, label):
    for x, y in pairs:
        rec = dict(x)
        if label is not None:
            rec[label] = y
        yield rec


def _river_dataset(src: SourceSpec):
    from river import datasets

    cls = getattr(datasets, src.name, None)
    if cls is None:
        raise ValueError(f"river has no dataset '{src.name}'; bundled ones: {', '.join(bundled_datasets())}")
    return cls(**src.params)


def _generator(src: SourceSpec):
    """A river synthetic stream; ``drift_at: N`` switches to ``drift_to`` params at event N,
    abruptly, or over ``drift_width`` events (river's ``ConceptDriftStream``) when it is over 1."""
    from river.datasets import synth

    params = dict(src.params)
    drift_at = params.pop("drift_at", None)
    drift_to = params.pop("drift_to", None)
    width = params.pop("drift_width", 1)
    cls = getattr(synth, src.name, None)
    if cls is None:
        raise ValueError(f"river has no generator '{src.name}'; available: {', '.join(synth.__all__)}")
    seed_kw = {"seed": src.seed} if src.seed is not None else {}
    before = cls(**params, **seed_kw)
    if drift_at is None:
        return before
    after_seed = {"seed": src.seed + 1} if src.seed is not None else {}
    after = cls(**{**params, **(drift_to or {})}, **after_seed)
    if int(width) <= 1:  # abrupt: river's sigmoid overflows for a width of 1 far from the drift
        return itertools.chain(itertools.islice(before, int(drift_at)), after)
    return synth.ConceptDriftStream(stream=before, drift_stream=after, position=int(drift_at),
                                    width=int(width), seed=src.seed)
