"""Topic contracts: every topic's name, partitions, key, value schema and version.

This module is the only place topic names are made. A pipeline's topics are
``<prefix>.<role>``, where the prefix is the spec's ``topics.prefix`` (its
``name`` when absent), optionally under a namespace (``DRIFTLINE_NAMESPACE``,
or ``driftline run``'s per-run namespace).

>>> from contracts.spec import load_spec
>>> t = pipeline_topics(load_spec("examples/phishing.yaml"))
>>> t[Role.RAW].name, t[Role.MODELS].compacted
('phishing.raw', True)

The processors' faust app and its tables' changelogs are named here too:

>>> processors_app_id(load_spec("examples/phishing.yaml"), "ns")
'ns.phishing.processors'
>>> table_changelog(load_spec("examples/phishing.yaml"), "ns", "keys")
'ns.phishing.processors-keys-changelog'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum

from contracts.spec import Spec

__all__ = ["Role", "TopicContract", "pipeline_topics", "processors_app_id", "processors_pending_topic",
           "table_changelog", "processors_topic_names", "owned_topic_names", "Headers", "SCHEMA_VERSIONS"]


class Role(str, Enum):
    RAW = "raw"                  # envelopes from ingest: {"v","id","ts","data"}
    CLEAN = "clean"              # validated, coerced records
    FEATURES = "features"        # feature vectors (with the inline label, if any)
    LABELS = "labels"            # delayed ground truth, keyed by event id
    EXAMPLES = "examples"        # features joined with their delayed label
    PREDICTIONS = "predictions"  # one per (event, model)
    MODELS = "models"            # signed snapshots, compacted, keyed by model name
    EVENTS = "events"            # promotions, drift, pruning: what the learner decided and why
    DLQ = "dlq"                  # rejected records: original bytes, reason and origin headers

    def __str__(self) -> str:
        return self.value


# Value schema versions, per role. Bump on an incompatible change.
SCHEMA_VERSIONS: dict[Role, int] = {
    Role.RAW: 1, Role.CLEAN: 1, Role.FEATURES: 1, Role.LABELS: 1, Role.EXAMPLES: 1,
    Role.PREDICTIONS: 1, Role.MODELS: 1, Role.EVENTS: 1, Role.DLQ: 1,
}

# Partitions: a record keeps its event's partition number from raw to examples and to its predictions
# (the learner names it; a batched predictions record, keyed by model, goes by its key).
KEYS: dict[Role, str] = {
    Role.RAW: "entity key (schema.key), or none",
    Role.CLEAN: "entity key, or none",
    Role.FEATURES: "entity key, or none",
    Role.LABELS: "event id",
    Role.EXAMPLES: "entity key, or none",
    Role.PREDICTIONS: "event id",
    Role.MODELS: "model name",
    Role.EVENTS: "model name",
    Role.DLQ: "the original key",
}


class Headers:
    """Header names carried on dead-lettered records (see the processors issue)."""

    REASON = "driftline.reason"
    MESSAGE = "driftline.message"
    ORIGIN_TOPIC = "driftline.origin.topic"
    ORIGIN_PARTITION = "driftline.origin.partition"
    ORIGIN_OFFSET = "driftline.origin.offset"
    SCHEMA_VERSION = "driftline.v"


@dataclass(frozen=True)
class TopicContract:
    role: Role
    name: str
    partitions: int
    replication: int | None
    key: str
    schema_version: int
    compacted: bool = False
    configs: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "role": self.role.value, "name": self.name, "partitions": self.partitions,
            "replication": self.replication, "key": self.key, "schema_version": self.schema_version,
            "compacted": self.compacted, "configs": dict(self.configs),
        }


def namespace_from_env() -> str | None:
    return os.environ.get("DRIFTLINE_NAMESPACE") or None


def pipeline_topics(spec: Spec, namespace: str | None = None) -> dict[Role, TopicContract]:
    """The topics of ``spec``'s pipeline, by role."""
    ns = namespace if namespace is not None else namespace_from_env()
    prefix = f"{ns}.{spec.topic_prefix}" if ns else spec.topic_prefix
    parts = spec.topics.partitions
    rf = spec.topics.replication
    out = {}
    for role in Role:
        compacted = role is Role.MODELS
        configs = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"} if compacted else {}
        if role is Role.MODELS:
            configs["max.message.bytes"] = str(200 * 1024 * 1024)
        if role in (Role.RAW, Role.DLQ):  # an oversized record must reach the DLQ whole, not vanish
            configs["max.message.bytes"] = str(16 * 1024 * 1024)
        n = 1 if role in (Role.MODELS, Role.EVENTS) else parts
        out[role] = TopicContract(role, f"{prefix}.{role.value}", n, rf, KEYS[role], SCHEMA_VERSIONS[role],
                                  compacted, configs)
    return out


def processors_app_id(spec: Spec, namespace: str | None = None) -> str:
    """The processors' faust app id: ``<prefix>.processors``, the prefix of their internal topics."""
    return pipeline_topics(spec, namespace)[Role.RAW].name.removesuffix(".raw") + ".processors"


def table_changelog(spec: Spec, namespace: str | None, table: str) -> str:
    """The changelog topic of the processors' faust table ``table`` (faust names it ``<app_id>-<table>-changelog``)."""
    return f"{processors_app_id(spec, namespace)}-{table}-changelog"


def processors_pending_topic(spec: Spec, namespace: str | None = None) -> str:
    """The label join's pending topic: features waiting for their label, keyed by event id."""
    return f"{processors_app_id(spec, namespace)}-pending"


PROCESSOR_TABLES = ("seen", "keys", "clocks", "joins")


def processors_internal_topics(spec: Spec, namespace: str | None = None) -> list[TopicContract]:
    """The processors' own topics: each table's compacted changelog (keyed by the table key) and the
    label join's pending topic (features waiting for their label, keyed by event id), each with the
    pipeline's partition count, so that faust finds them made before it starts.

    >>> from contracts.spec import load_spec
    >>> [(t.name, t.partitions, t.compacted) for t in processors_internal_topics(load_spec("examples/phishing.yaml"))][:2]
    [('phishing.processors-seen-changelog', 1, True), ('phishing.processors-keys-changelog', 1, True)]
    """
    n, rf = spec.topics.partitions, spec.topics.replication
    compact = {"cleanup.policy": "compact"}
    # (The role is only descriptive here: the changelogs hold per-key stage state, the pending topic labels-to-be.)
    out = [TopicContract(Role.EXAMPLES, table_changelog(spec, namespace, t), n, rf, f"{t} table key", 1, True,
                         dict(compact)) for t in PROCESSOR_TABLES]
    out.append(TopicContract(Role.LABELS, processors_pending_topic(spec, namespace), n, rf, "event id", 1))
    return out


def processors_topic_names(spec: Spec, namespace: str | None = None) -> list[str]:
    """Every topic the processors' faust app owns: :func:`processors_internal_topics` and faust's own
    assignor topic, for clean-up with the pipeline's topics.

    >>> from contracts.spec import load_spec
    >>> processors_topic_names(load_spec("examples/phishing.yaml"), "ns")[-1]
    'ns.phishing.processors-__assignor-__leader'
    """
    names = [t.name for t in processors_internal_topics(spec, namespace)]
    return names + [f"{processors_app_id(spec, namespace)}-__assignor-__leader"]


def owned_topic_names(spec: Spec, namespace: str | None = None) -> list[str]:
    """Every topic a pipeline owns: :func:`pipeline_topics` and :func:`processors_topic_names`.
    Tearing a pipeline down deletes these, and only these.

    >>> from contracts.spec import load_spec
    >>> names = owned_topic_names(load_spec("examples/phishing.yaml"), "ns")
    >>> len(names), names[0], names[-1]
    (15, 'ns.phishing.raw', 'ns.phishing.processors-__assignor-__leader')
    """
    return [t.name for t in pipeline_topics(spec, namespace).values()] + processors_topic_names(spec, namespace)
