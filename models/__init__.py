"""Pure learning logic: estimators, the prequential step, selection, drift and snapshots.

Nothing here imports Kafka or faust.
"""

from models.core import LearnerCore
from models.estimators import build_estimator
from models.prequential import ModelRunner, Prediction
from models.snapshot import Snapshot, SnapshotRefused, dump_snapshot, load_snapshot, snapshot_key

__all__ = ["build_estimator", "ModelRunner", "Prediction", "LearnerCore", "Snapshot", "SnapshotRefused",
           "dump_snapshot", "load_snapshot", "snapshot_key"]
