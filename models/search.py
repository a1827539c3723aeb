"""Online hyperparameter search: expand a ``search:`` block into candidates, prune by successive halving.

>>> from contracts.spec import ModelSpec, SearchSpec
>>> base = ModelSpec(estimator="preprocessing.StandardScaler | linear_model.LogisticRegression")
>>> cands = expand(base, SearchSpec(model="lr", grid={"l2": [0.0, 0.01], "intercept_lr": [0.01, 0.1]}), "lr")
>>> list(cands)
['lr[intercept_lr=0.01,l2=0.0]', 'lr[intercept_lr=0.01,l2=0.01]', 'lr[intercept_lr=0.1,l2=0.0]', 'lr[intercept_lr=0.1,l2=0.01]']

Successive halving keeps the best ``1/eta`` at each rung; rung ``r`` closes after
``min_events * eta**r`` labeled events:

>>> h = SuccessiveHalving(["a", "b", "c", "d"], min_events=10, eta=2, higher_is_better=True)
>>> h.prune(10, {"a": 0.9, "b": 0.5, "c": 0.7, "d": 0.6})
['d', 'b']
>>> h.alive, h.prune(20, {"a": 0.8, "c": 0.9})
(['a', 'c'], ['a'])
>>> h.alive, h.done
(['c'], True)
"""

from __future__ import annotations

import itertools
import random

from contracts.spec import ModelSpec, SearchSpec

__all__ = ["expand", "SuccessiveHalving"]


def _label(params: dict) -> str:
    return ",".join(f"{k}={params[k]}" for k in sorted(params))


def expand(base: ModelSpec, search: SearchSpec, base_name: str) -> dict[str, ModelSpec]:
    """The candidates, by name ``base[param=value,…]``; params apply to the last step."""
    if search.grid is not None:
        keys = sorted(search.grid)
        combos = [dict(zip(keys, vals)) for vals in itertools.product(*(search.grid[k] for k in keys))]
    else:
        rng = random.Random(search.seed)
        keys = sorted(search.random)
        seen, combos = set(), []
        space = 1
        for k in keys:
            space *= len(search.random[k])
        while len(combos) < min(search.n, space):
            c = {k: rng.choice(search.random[k]) for k in keys}
            if _label(c) not in seen:
                seen.add(_label(c))
                combos.append(c)
    return {f"{base_name}[{_label(c)}]": base.model_copy(update={"params": {**base.params, **c}}) for c in combos}


class SuccessiveHalving:
    """Prunes candidates as labeled evidence accrues. Pure state, pickles with the snapshot."""

    def __init__(self, names: list[str], min_events: int, eta: int, higher_is_better: bool):
        self.alive = list(names)
        self.min_events = min_events
        self.eta = eta
        self.rung = 0
        self.higher_is_better = higher_is_better
        self.history: list[dict] = []

    @property
    def next_budget(self) -> int:
        return self.min_events * self.eta ** self.rung

    @property
    def done(self) -> bool:
        return len(self.alive) <= 1

    def prune(self, n_labeled: int, scores: dict[str, float | None]) -> list[str]:
        """At a rung's budget, drop all but the best ``ceil(len/eta)``; return the dropped names."""
        if self.done or n_labeled < self.next_budget:
            return []
        worst = float("-inf") if self.higher_is_better else float("inf")
        ranked = sorted(self.alive, key=lambda n: scores.get(n) if scores.get(n) is not None else worst,
                        reverse=self.higher_is_better)
        keep = max(1, -(-len(ranked) // self.eta))
        dropped = ranked[keep:]
        self.alive = ranked[:keep]
        self.history.append({"rung": self.rung, "at": n_labeled, "kept": list(self.alive), "dropped": dropped,
                             "scores": {n: scores.get(n) for n in ranked}})
        self.rung += 1
        return dropped
