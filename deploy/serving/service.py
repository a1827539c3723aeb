"""``driftline serve SPEC``: the store, the topic followers (models; per-key state) and the API, on uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from contracts.settings import KafkaSettings
from contracts.spec import Spec
from contracts.topics import Role, pipeline_topics, table_changelog
from driftline._gc import pin_mmap_threshold
from models.snapshot import snapshot_key

from deploy.serving._logging import configure_logging
from deploy.serving.api import create_app
from deploy.serving.config import ServingConfig
from deploy.serving.follower import SnapshotFollower
from deploy.serving.inference import stateful
from deploy.serving.state import KeyStateFollower
from deploy.serving.store import ModelStore

__all__ = ["build", "serve"]

log = logging.getLogger("driftline.serving")


def build(spec: Spec, config: ServingConfig, settings: KafkaSettings, key: bytes | None = None):
    """The app, with its store and followers (started by the app's lifespan).

    With stateful features, a second follower reads the processors' ``keys`` table changelog.
    """
    store = ModelStore(spec, key if key is not None else snapshot_key(), history=config.history)
    topic = pipeline_topics(spec, config.namespace)[Role.MODELS].name
    follower = SnapshotFollower(store, settings, topic)
    key_states = (KeyStateFollower(settings, table_changelog(spec, config.namespace, "keys"))
                  if stateful(spec) else None)
    return create_app(spec, store, config, follower, key_states), store, follower


def serve(spec: Spec, config: ServingConfig, settings: KafkaSettings) -> None:
    """Run until SIGTERM or Ctrl-C."""
    configure_logging(config.log_level)
    pin_mmap_threshold()  # driftline/_gc.py: snapshots of megabytes, loaded again and again, stay out of the heap
    app, _store, follower = build(spec, config, settings)
    log.info("serving", extra={"spec": spec.name, "host": config.host, "port": config.port,
                               "topic": follower.topic, "admin": config.admin_token is not None})
    uvicorn.run(app, host=config.host, port=config.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=5, backlog=4096)
