"""Pure learning logic: estimators, the prequential step, selection, drift and snapshots.

Nothing here imports Kafka or faust.
"""

from models.estimators import build_estimator
from models.prequential import ModelRunner, Prediction

__all__ = ["build_estimator", "ModelRunner", "Prediction"]
