"""The learner's pure core: many models side by side on one stream.

For every event it asks each live model for a prediction; when the label is
known (inline, or later through :meth:`LearnerCore.on_label`) it scores the
prediction made at event time and learns from the features used for it. It
also runs the leaderboard (champion and challengers), successive halving for
the ``search:`` candidates and a drift detector per model. It touches no I/O:
the learner service feeds it records and ships what it returns.

>>> from contracts.spec import load_spec
>>> from river import datasets
>>> core = LearnerCore(load_spec("examples/phishing.yaml"))
>>> for i, (x, y) in enumerate(datasets.Phishing()):
...     _ = core.on_event({"id": str(i), "ts": float(i), "x": x, "y": y})
>>> round(core.runners["lr"].metrics()["Accuracy"], 4), core.board.champion
(0.8928, 'lr')
"""

from __future__ import annotations

import itertools

from contracts.spec import Spec
from models import _nb_reuse, _scaler
from models.drift import ErrorDrift, error_of
from models.estimators import build_estimator
from models.prequential import ModelRunner, Prediction
from models.search import SuccessiveHalving, expand
from models.selection import Leaderboard

__all__ = ["LearnerCore"]

LOWER_IS_BETTER = {"MAE", "MSE", "RMSE", "RMSLE", "LogLoss", "CrossEntropy", "SMAPE", "MAPE"}


def _proba_pairs(proba):
    return None if proba is None else [[k, v] for k, v in proba.items()]


class LearnerCore:
    def __init__(self, spec: Spec, only: list[str] | None = None):
        _nb_reuse.install()  # exact; a learner's trees compute each naive Bayes vote once (models/_nb_reuse.py)
        _scaler.install()  # exact; river's StandardScaler, compiled (models/_scaler.py)
        self.spec = spec
        self.model_specs = dict(spec.models)
        self.halving = None
        if spec.search is not None:
            base = spec.models[spec.search.model]
            cands = expand(base, spec.search, spec.search.model)
            self.model_specs.update(cands)
        if only:
            self.model_specs = {k: v for k, v in self.model_specs.items() if k in only}
        primary = spec.selection.metric or spec.metrics[0]
        hib = primary not in LOWER_IS_BETTER
        if spec.search is not None:
            self.halving = SuccessiveHalving([n for n in self.model_specs if n.startswith(spec.search.model + "[")],
                                             spec.search.min_events, spec.search.eta, hib)
        self.primary = primary
        self.board = Leaderboard(primary, hib, spec.selection.min_events, spec.selection.margin)
        self.runners: dict[str, ModelRunner] = {}
        self.drift: dict[str, ErrorDrift] = {}
        self.roots: dict[str, str] = {}
        for name, m in self.model_specs.items():
            self._add(name, m, root=name)
        self.pending: dict[str, tuple[dict, dict[str, Prediction]]] = {}
        self.counter = itertools.count(1)
        self.n_events = 0
        self.n_labeled = 0
        self.n_unmatched_labels = 0

    def __setstate__(self, state: dict) -> None:  # restored from a checkpoint
        _nb_reuse.install()
        _scaler.install()
        self.__dict__.update(state)

    # ---------------------------------------------------------------- models

    def _add(self, name: str, m, root: str) -> None:
        self.runners[name] = ModelRunner(name, build_estimator(m), self.spec.metrics, self.spec.metrics_window)
        self.drift[name] = ErrorDrift(self.spec.drift.detector, self.spec.drift.params)
        self.roots[name] = root

    def _remove(self, name: str) -> None:
        self.runners.pop(name, None)
        self.drift.pop(name, None)
        self.roots.pop(name, None)
        self.board.forget(name)

    # ---------------------------------------------------------------- events

    def on_event(self, rec: dict) -> tuple[list[dict], list[dict]]:
        """Predict ``rec`` with every model. Returns ``(predictions, decisions)``.

        With an inline label (``"y"`` in rec) the event is scored and learned at once;
        otherwise its features and predictions wait in ``pending`` for :meth:`on_label`.
        """
        x = rec["x"]
        event_id = rec["id"]
        preds = {}
        out = []
        for name, runner in self.runners.items():
            p = runner.predict(x)
            preds[name] = p
            out.append({"v": 1, "id": event_id, "model": name, "version": runner.n_learned, "y_pred": p.y_pred,
                        "proba": _proba_pairs(p.proba), "score": p.score, "latency_s": p.latency_s,
                        "ts": rec.get("ts"), "champion": name == self.board.champion})
        self.n_events += 1
        if "y" in rec and rec["y"] is not None:
            return out, self._learn(x, rec["y"], preds, rec.get("ts"))
        if self.spec.labels.mode == "delayed":
            self.pending[event_id] = (x, preds)
            return out, []
        # No label at all (anomaly detection without labels): learn unsupervised.
        return out, self._learn(x, None, preds, rec.get("ts"))

    def on_label(self, event_id: str, y, ts: float | None = None) -> list[dict]:
        """A delayed label: score the predictions made at event time, learn from those features."""
        held = self.pending.pop(event_id, None)
        if held is None:
            self.n_unmatched_labels += 1
            return [{"type": "unmatched_label", "id": event_id}]
        x, preds = held
        return self._learn(x, y, preds, ts)

    def _learn(self, x: dict, y, preds: dict[str, Prediction], ts) -> list[dict]:
        decisions = []
        self.n_labeled += 1 if y is not None else 0
        for name, p in preds.items():
            runner = self.runners.get(name)
            if runner is None:  # pruned or dropped while the label was on its way
                continue
            runner.learn(x, y, p)
            err = error_of(y, p.y_pred, runner.is_classifier)
            if err is not None and self.drift[name].update(err):
                decisions.extend(self._on_drift(name, ts))
        decisions.extend(self._select())
        return decisions

    # ---------------------------------------------------------------- decisions

    def _scores(self) -> dict[str, tuple[float | None, int]]:
        primary = self.primary
        return {n: (r.rolling_value(primary) if r.n_learned else None, r.n_learned)
                for n, r in self.runners.items()}

    def _select(self) -> list[dict]:
        out = []
        if self.halving is not None and not self.halving.done:
            cum = {n: self.runners[n].rolling_value(self.primary) for n in self.halving.alive if n in self.runners}
            dropped = self.halving.prune(self.n_labeled, cum)
            for name in dropped:
                self._remove(name)
            if dropped:
                out.append({"type": "pruned", "models": dropped, "kept": list(self.halving.alive),
                            "rung": self.halving.rung - 1, "at": self.n_labeled, "metric": self.primary,
                            "evidence": self.halving.history[-1]["scores"]})
        promo = self.board.update(self._scores())
        if promo is not None:
            promo["at"] = self.n_labeled
            out.append(promo)
        return out

    def _on_drift(self, name: str, ts) -> list[dict]:
        runner = self.runners[name]
        event = {"type": "drift", "model": name, "at": self.n_labeled, "model_learned": runner.n_learned,
                 "detector": self.spec.drift.detector, "policy": self.spec.drift.policy, "ts": ts}
        out = [event]
        policy = self.spec.drift.policy
        root = self.roots[name]
        if policy == "reset":
            runner.reset(build_estimator(self.model_specs.get(root) or self.spec.models[root]))
        elif policy == "challenger" and self.spec.drift.max_challengers > 0 and "~" not in name:
            challengers = [n for n in self.runners if self.roots.get(n) == root and n != root]
            new = f"{root}~{next(self.counter)}"
            self._add(new, self.model_specs[root], root=root)
            event["challenger"] = new
            while len(challengers) >= self.spec.drift.max_challengers:
                oldest = challengers.pop(0)
                if oldest != self.board.champion:
                    self._remove(oldest)
                    event.setdefault("dropped", []).append(oldest)
        return out

    # ---------------------------------------------------------------- report

    def summary(self) -> dict:
        return {
            "models": {n: r.metrics() for n, r in self.runners.items()},
            "rolling": {n: r.metrics(rolling=True) for n, r in self.runners.items()},
            "champion": self.board.champion,
            "labeled": self.n_labeled,
            "pending_labels": len(self.pending),
            "unmatched_labels": self.n_unmatched_labels,
        }
