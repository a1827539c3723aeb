"""Serving: answers for the current model, hot-swapped from signed snapshots on the models topic.

``driftline serve SPEC --port N`` runs it. The pieces: :class:`ModelStore`
(verified snapshots, history, pins; no I/O), the models-topic follower, and
the FastAPI app from :func:`create_app`.
"""

from deploy.serving.api import create_app
from deploy.serving.config import ServingConfig
from deploy.serving.service import build, serve
from deploy.serving.store import ModelStore, ServedModel

__all__ = ["ModelStore", "ServedModel", "ServingConfig", "build", "create_app", "serve"]
