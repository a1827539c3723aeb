"""The deployment files, checked without a Docker engine.

* ``docker-compose.yml`` validates against the Compose specification's JSON
  schema. The schema is the one the ``docker-compose`` package ships
  (``compose/config/compose_spec.json`` in docker-compose 1.29.2 on PyPI,
  Apache-2.0): the test fetches that wheel once with pip, without installing it,
  into ``.driftline/cache`` and checks the file's SHA-256 before using it.
* Every image is pinned; every Prometheus scrape target is a compose service on
  the port that service's settings give it; every ``DRIFTLINE_*`` variable is
  one the app reads; the Kafka address is the broker's advertised listener.
* ``promtool check config``, ``check rules`` and ``test rules`` pass.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile

import jsonschema
import pytest
import yaml

from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
PROM = REPO / "deploy/prometheus"
CACHE = REPO / ".driftline/cache/compose-schema"
SCHEMA_PACKAGE = "docker-compose==1.29.2"
SCHEMA_MEMBER = "compose/config/compose_spec.json"
SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"


def compose_schema() -> dict:
    """The Compose spec schema from the docker-compose wheel (downloaded once, verified)."""
    target = CACHE / "compose_spec.json"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "-d", str(CACHE), SCHEMA_PACKAGE], check=True, timeout=180)
        wheel = next(CACHE.glob("docker_compose-1.29.2-*.whl"))
        target.write_bytes(zipfile.ZipFile(wheel).read(SCHEMA_MEMBER))
    data = target.read_bytes()
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256, f"{target} is not the pinned schema"
    return json.loads(data)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def scrape() -> dict:
    return yaml.safe_load((PROM / "prometheus.yml").read_text())


def test_compose_file_is_valid_against_the_compose_spec_schema(compose):
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_rejects_a_broken_compose_file(compose):
    schema = compose_schema()
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["healthcheck"]["retries"] = "many"
    broken["services"]["learner"]["restart_policy"] = "always"
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))
    assert len(errors) >= 2


def test_every_image_tag_is_pinned(compose):
    images = {name: svc.get("image") for name, svc in compose["services"].items()}
    assert all(images.values()), f"services without an image: {[n for n, i in images.items() if not i]}"
    for name, image in images.items():
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"
    assert images["kafka"] == "apache/kafka:4.3.1"


def test_the_app_image_is_the_project_version_and_the_dockerfile_base_is_pinned(compose):
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    built = {n: s for n, s in compose["services"].items() if "build" in s}
    assert {"topics", "ingest", "processors", "learner", "serving"} <= set(built)
    assert {s["image"] for s in built.values()} == {f"driftline:{version}"}
    base = re.search(r"^FROM\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M).group(1)
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", base), f"Dockerfile base {base} is not pinned"


def _service_ports(svc: dict) -> set[int]:
    ports = {int(str(p).split(":")[-1]) for p in svc.get("ports", [])}
    return ports | {int(p) for p in svc.get("expose", [])}


def test_every_scrape_target_is_a_compose_service_on_its_metrics_port(compose, scrape):
    from driftline import _learner_metrics
    from processors import _metrics

    services = compose["services"]
    targets = {job["job_name"]: t for job in scrape["scrape_configs"]
               for sc in job["static_configs"] for t in sc["targets"]}
    assert set(targets) == {"driftline-ingest", "driftline-processors", "driftline-learner", "driftline-serving"}
    for job, target in targets.items():
        host, port = target.rsplit(":", 1)
        assert host in services, f"{job} scrapes {host}, which is not a compose service"
        assert int(port) in _service_ports(services[host]), f"{job}: {host} does not expose {port}"
    env = {n: services[n].get("environment", {}) for n in services}
    # The port each service listens on comes from the app's own settings.
    assert _metrics.metrics_port("processor", _metrics.DEFAULT_PORT, env["processors"]) == \
        int(targets["driftline-processors"].rsplit(":", 1)[1])
    assert _metrics.metrics_port("learner", _learner_metrics.DEFAULT_PORT, env["learner"]) == \
        int(targets["driftline-learner"].rsplit(":", 1)[1])
    serve = services["serving"]["command"]
    assert serve[serve.index("--port") + 1] == targets["driftline-serving"].rsplit(":", 1)[1]
    ingest = services["ingest"]["command"]
    assert ingest[ingest.index("--metrics-port") + 1] == targets["driftline-ingest"].rsplit(":", 1)[1]


def test_environment_agrees_with_the_app_settings(compose):
    from contracts.settings import ENV_PREFIX, KafkaSettings

    known = {ENV_PREFIX + f.upper() for f in KafkaSettings.model_fields} | {
        "DRIFTLINE_HOME", "DRIFTLINE_NAMESPACE", "DRIFTLINE_SNAPSHOT_KEY", "DRIFTLINE_SNAPSHOT_KEY_FILE",
        "DRIFTLINE_METRICS_PORT", "DRIFTLINE_PROCESSOR_METRICS_PORT", "DRIFTLINE_LEARNER_METRICS_PORT",
        "DRIFTLINE_METRICS_ADDR", "DRIFTLINE_SERVING_ADMIN_TOKEN"}
    kafka = compose["services"]["kafka"]["environment"]
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split("//", 1)[1]
    for name, svc in compose["services"].items():
        env = svc.get("environment", {})
        unknown = {k for k in env if k.startswith("DRIFTLINE_")} - known
        assert not unknown, f"{name} sets variables the app never reads: {unknown}"
        if svc.get("image", "").startswith("driftline:"):
            settings = KafkaSettings.from_env({k: str(v) for k, v in env.items()})
            assert settings.bootstrap_list == [advertised], f"{name} does not reach the broker"
            assert any(str(p).endswith(".yaml") and (REPO / str(p).removeprefix("/app/")).exists()
                       for p in svc["command"]), f"{name} names no spec shipped in the image"


def test_named_volumes_and_healthchecks(compose):
    declared = set(compose["volumes"])
    for name, svc in compose["services"].items():
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0]
            if not src.startswith("."):
                assert src in declared, f"{name} mounts undeclared volume {src}"
            else:
                assert (REPO / src).exists(), f"{name} mounts {src}, which is not in the repo"
        if name != "topics":  # a one-shot job
            assert "healthcheck" in svc, f"{name} has no healthcheck"


# ---------------------------------------------------------------- promtool


def _promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `make system-deps` (apt-get install prometheus)")
    return path


def test_promtool_check_config(tmp_path):
    # The compose config names the rules by their path inside the container.
    text = (PROM / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(PROM / "alerts.yml"))
    (tmp_path / "prometheus.yml").write_text(text)
    out = subprocess.run([_promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "8 rules found" in out.stdout + out.stderr


def test_promtool_check_rules():
    out = subprocess.run([_promtool(), "check", "rules", str(PROM / "alerts.yml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_test_rules_each_alert_fires_and_stays_quiet():
    out = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"], cwd=PROM, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    tested = set(re.findall(r"alertname: (\w+)", (PROM / "alerts_test.yml").read_text()))
    rules = set(re.findall(r"- alert: (\w+)", (PROM / "alerts.yml").read_text()))
    assert rules == tested == {"DriftDetected", "ModelMetricDegraded", "ConsumerLagGrowing", "HighDeadLetterRate",
                               "StaleSnapshot", "LargeModelSnapshot", "InputPartitionStalled", "ServiceDown"}


def test_dashboards_name_only_metrics_some_service_defines():
    """Each metric a panel queries is defined by a driftline metrics module (or is Prometheus' own)."""
    sources = "".join(p.read_text() for p in [REPO / "processors/_metrics.py", REPO / "driftline/_learner_metrics.py",
                                              REPO / "ingest/_metrics.py", REPO / "deploy/serving/_metrics.py"])
    for path in (REPO / "deploy/grafana/dashboards").glob("*.json"):
        for name in set(re.findall(r"\b(driftline_[a-z_]+)", path.read_text())):
            base = re.sub(r"_(bucket|count|sum|total)$", "", name)
            assert f'"{base}' in sources, f"{path.name}: {name} is defined by no service"
