"""The contracts every driftline stage agrees on: the pipeline spec, the topics,
serialization and connection settings."""

from contracts.serde import dumps, loads
from contracts.settings import KafkaSettings
from contracts.spec import Spec, SpecError, load_spec
from contracts.topics import Headers, Role, TopicContract, pipeline_topics

__all__ = ["Spec", "SpecError", "load_spec", "Role", "TopicContract", "pipeline_topics", "Headers",
           "KafkaSettings", "dumps", "loads"]
