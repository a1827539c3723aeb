"""A drift detector per model, fed the model's error stream.

>>> d = ErrorDrift("drift.ADWIN", {})
>>> alarms = [i for i in range(2000) if d.update(0.0 if i < 1000 else 1.0)]
>>> 1000 <= alarms[0] < 1100
True
"""

from __future__ import annotations

from contracts.spec import resolve_river_class

__all__ = ["ErrorDrift", "error_of"]


def error_of(y, y_pred, is_classifier: bool) -> float | None:
    """0/1 loss for classifiers, absolute error for regressors, None when there is nothing to score."""
    if y is None or y_pred is None:
        return None
    if is_classifier:
        return 0.0 if y_pred == y else 1.0
    try:
        return abs(float(y) - float(y_pred))
    except (TypeError, ValueError):
        return None


class ErrorDrift:
    def __init__(self, detector: str, params: dict):
        self.detector_name = detector
        self.params = dict(params)
        self.detector = resolve_river_class(detector)(**self.params)
        self.n = 0
        self.alarms: list[int] = []

    def update(self, error: float) -> bool:
        """Feed one error; True when the detector signals a drift."""
        self.n += 1
        self.detector.update(error)
        if self.detector.drift_detected:
            self.alarms.append(self.n)
            return True
        return False
