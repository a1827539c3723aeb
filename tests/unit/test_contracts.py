import math

from contracts import serde
from contracts.settings import KafkaSettings
from contracts.spec import load_spec
from contracts.topics import Role, pipeline_topics
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_floats_survive_serialization_bit_for_bit():
    values = [0.1 + 0.2, 1e-308, 5e-324, 1.7976931348623157e308, -0.0, 2 / 3, math.pi]
    out = serde.loads(serde.dumps({"x": values}))["x"]
    assert [v.hex() for v in out] == [v.hex() for v in values]


def test_ints_and_bools_keep_their_types():
    out = serde.loads(serde.dumps({"i": 1, "f": 1.0, "b": True}))
    assert type(out["i"]) is int and type(out["f"]) is float and out["b"] is True


def test_every_role_has_a_topic_and_models_is_compacted():
    topics = pipeline_topics(load_spec(REPO / "examples/phishing.yaml"), namespace="ns")
    assert set(topics) == set(Role)
    assert topics[Role.RAW].name == "ns.phishing.raw"
    assert topics[Role.MODELS].configs["cleanup.policy"] == "compact"
    assert len({t.name for t in topics.values()}) == len(Role)


def test_settings_default_and_security_are_handed_to_clients():
    assert KafkaSettings.from_env({}).bootstrap_servers == "127.0.0.1:9092"
    s = KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": "h:1", "DRIFTLINE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                "DRIFTLINE_SASL_MECHANISM": "PLAIN", "DRIFTLINE_SASL_USERNAME": "u",
                                "DRIFTLINE_SASL_PASSWORD": "secret"})
    kw = s.kafka_python()
    assert kw["sasl_plain_password"] == "secret" and kw["security_protocol"] == "SASL_PLAINTEXT"
    assert "secret" not in repr(s)
    creds = s.faust_credentials()
    assert creds.username == "u" and creds.mechanism.value == "PLAIN"
