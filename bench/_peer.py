"""What a user writes by hand when not using driftline: the reference pipeline's features in
plain dicts and the two river models. Shared by the naive kafka-python loop (``bench._naive``) and
the Quix Streams app (``bench._quix``); it imports only the standard library and river, so the
Quix app can run it in its own virtualenv.

The features are those of ``examples/bench.yaml`` for an in-order stream (per key: events in the
last 600 s, mean of f0 and max of f1 over them, seconds since the key's last event, EWM of f2):

>>> st, x = None, None
>>> for t, f in ((0.0, 1.0), (10.0, 3.0)):
...     x, st = features({"t": t, **{f"f{i}": f for i in range(10)}}, st)
>>> x["count_s600s"], x["f0_mean_s600s"], x["since_last"], round(x["f2_ewm"], 2)
(2.0, 2.0, 10.0, 1.6)
"""

from __future__ import annotations

import argparse
import math

__all__ = ["FIELDS", "WINDOW", "features", "make_models", "step", "arguments"]

FIELDS = [f"f{i}" for i in range(10)]
WINDOW = 600.0
ALPHA = 0.3


def features(rec: dict, state: dict | None) -> tuple[dict, dict]:
    """The feature vector of ``rec`` (its fields ``t``, ``f0``…``f9``) and the key's next state."""
    ts = rec["t"]
    x = {f: float(rec[f]) for f in FIELDS}
    if state is None:
        state = {"w": None, "buf": [], "ewm": None}
    buf = [e for e in state["buf"] if e[0] > ts - WINDOW]
    buf.append([ts, x["f0"], x["f1"]])
    w = state["w"]
    x["count_s600s"] = float(len(buf))
    x["f0_mean_s600s"] = math.fsum(e[1] for e in buf) / len(buf)
    x["f1_max_s600s"] = max(e[2] for e in buf)
    x["since_last"] = 0.0 if w is None else ts - w
    prev = state["ewm"]
    ewm = x["f2"] if prev is None else ALPHA * x["f2"] + (1 - ALPHA) * prev
    x["f2_ewm"] = ewm
    return x, {"w": ts if w is None else max(w, ts), "buf": buf, "ewm": ewm}


def make_models() -> dict:
    from river import linear_model, metrics, preprocessing, tree

    return {"lr": (preprocessing.StandardScaler() | linear_model.LogisticRegression(), metrics.Accuracy()),
            "tree": (tree.HoeffdingTreeClassifier(grace_period=200), metrics.Accuracy())}


def step(models: dict, rec: dict, x: dict) -> dict:
    """Predict with every model, score, learn; return the prediction record for ``rec``."""
    y = rec["y"]
    preds = {}
    for name, (model, metric) in models.items():
        proba = model.predict_proba_one(x)
        y_pred = max(proba, key=proba.get) if proba else None
        metric.update(y, y_pred)
        model.learn_one(x, y)
        preds[name] = {"y_pred": y_pred, "proba": [[k, v] for k, v in proba.items()]}
    return {"id": rec["id"], "ts": rec["t"], "preds": preds}


def arguments(argv, *extra: str) -> argparse.Namespace:
    """The peers' command line: where to read, where to write, the consumer group (and ``extra``)."""
    ap = argparse.ArgumentParser()
    for name in ("--bootstrap", "--topic", "--out", *extra):
        ap.add_argument(name, required=True)
    ap.add_argument("--group", default="peer")
    return ap.parse_args(argv)
