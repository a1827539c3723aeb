"""Champion and challengers: the champion changes only on evidence.

A challenger replaces the champion when, on the primary rolling metric, it has
seen at least ``min_events`` labeled events and beats the champion by more than
``margin``. Every change is returned as a promotion record with its evidence.

>>> board = Leaderboard(metric="Accuracy", higher_is_better=True, min_events=100, margin=0.02)
>>> board.update({"a": (0.80, 200), "b": (0.81, 200)})   # the best eligible model becomes champion
{'type': 'promotion', 'from': None, 'to': 'b', 'metric': 'Accuracy', 'evidence': {'a': {'value': 0.8, 'labeled': 200}, 'b': {'value': 0.81, 'labeled': 200}}, 'margin': 0.02}
>>> board.update({"a": (0.82, 300), "b": (0.81, 300)}) is None   # better, but within the margin
True
>>> board.update({"a": (0.85, 400), "b": (0.81, 400)})["to"]
'a'
"""

from __future__ import annotations

__all__ = ["Leaderboard"]


class Leaderboard:
    def __init__(self, metric: str, higher_is_better: bool, min_events: int, margin: float):
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.min_events = min_events
        self.margin = margin
        self.champion: str | None = None

    def _better(self, a: float, b: float) -> bool:
        return a > b + self.margin if self.higher_is_better else a < b - self.margin

    def ranking(self, scores: dict[str, tuple[float | None, int]]) -> list[str]:
        eligible = [n for n, (v, k) in scores.items() if v is not None]
        return sorted(eligible, key=lambda n: scores[n][0], reverse=self.higher_is_better)

    def update(self, scores: dict[str, tuple[float | None, int]]) -> dict | None:
        """``scores``: model → (primary rolling metric, labeled events). Returns a promotion or None."""
        eligible = {n: v for n, (v, k) in scores.items() if v is not None and k >= self.min_events}
        if not eligible:
            return None
        best = max(eligible, key=eligible.get) if self.higher_is_better else min(eligible, key=eligible.get)
        current = self.champion
        if current is not None and current in scores and best != current:
            champ_value = scores[current][0]
            if champ_value is not None and not self._better(eligible[best], champ_value):
                return None
        if best == current:
            return None
        self.champion = best
        return {
            "type": "promotion", "from": current, "to": best, "metric": self.metric,
            "evidence": {n: {"value": v, "labeled": k} for n, (v, k) in scores.items()},
            "margin": self.margin,
        }

    def forget(self, name: str) -> None:
        if self.champion == name:
            self.champion = None
