"""Every Grafana panel and the drift alert, proven against a live Prometheus.

Runs the four services as their own processes on the demo drift stream
(``deploy/demo/agrawal-drift.yaml``: the concept changes at event 3,000):
``driftline ingest --loop`` (with its metrics port), ``driftline process``,
``driftline learn`` and ``driftline serve``, plus a few undecodable records on
the raw topic (the dead-letter panel) and a few requests to serving (good ones
and one bad one). Prometheus (Debian's package; ``make system-deps`` installs
it) runs on loopback with a temporary storage dir and the real alert rules.

Then it asserts: every scrape target is up; every panel query of the three
dashboards, macros substituted and collapsed rows walked, returns a non-empty
result; the drift annotation marks a point; DriftDetected is pending or firing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port_block

pytestmark = pytest.mark.integration

SPEC = REPO / "deploy/demo/agrawal-drift.yaml"
DASHBOARDS = REPO / "deploy/grafana/dashboards"
RULES = REPO / "deploy/prometheus/alerts.yml"
DEADLINE_S = 150
MACROS = {"$__rate_interval": "30s", "$__interval": "15s", "$__range": "5m"}


def panels(items):
    """Every panel, rows' nested panels included."""
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for p in panels(json.loads(path.read_text())["panels"]):
            for t in p.get("targets", []):
                out.append((path.stem, p["title"], substitute(t["expr"])))
    return out


def substitute(expr: str) -> str:
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    assert "$" not in expr, f"unsubstituted macro in {expr}"
    return expr


def _get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _post(url: str, body: dict) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _query(prom: str, expr: str) -> list:
    res = _get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert res["status"] == "success", res
    return res["data"]["result"]


def _start(args, env, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "driftline", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def prometheus_bin():
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus is not installed: run `make system-deps` (apt-get install prometheus)")
    return path


def test_every_panel_and_the_drift_alert_against_a_live_prometheus(prometheus_bin, settings, namespace,
                                                                      tmp_path):
    from kafka import KafkaProducer

    base = free_port_block(6, start=43000)
    ports = {"ingest": base, "processors": base + 1, "learner": base + 2, "serving": base + 3, "prom": base + 4}
    env = dict(os.environ, DRIFTLINE_BOOTSTRAP_SERVERS=settings.bootstrap_servers, DRIFTLINE_NAMESPACE=namespace,
               DRIFTLINE_HOME=str(tmp_path / "home"), DRIFTLINE_METRICS_ADDR="127.0.0.1",
               DRIFTLINE_PROCESSOR_METRICS_PORT=str(ports["processors"]),
               DRIFTLINE_LEARNER_METRICS_PORT=str(ports["learner"]))
    subprocess.run([sys.executable, "-m", "driftline", "topics", "create", str(SPEC)], env=env, check=True,
                   capture_output=True, timeout=60)
    config = tmp_path / "prometheus.yml"
    jobs = {"ingest": ports["ingest"], "processors": ports["processors"], "learner": ports["learner"],
            "serving": ports["serving"]}
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": f"driftline-{job}", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                           for job, port in jobs.items()],
    }))
    prom = f"http://127.0.0.1:{ports['prom']}"
    procs = []
    try:
        procs.append(_start(["process", str(SPEC)], env, tmp_path / "process.log"))
        procs.append(_start(["learn", str(SPEC)], env, tmp_path / "learn.log"))
        procs.append(_start(["serve", str(SPEC), "--host", "127.0.0.1", "--port", str(ports["serving"]),
                             "--namespace", namespace], env, tmp_path / "serve.log"))
        procs.append(_start(["ingest", str(SPEC), "--loop", "--rate", "400", "--quiet", "--namespace", namespace,
                             "--metrics-port", str(ports["ingest"])], env, tmp_path / "ingest.log"))
        procs.append(subprocess.Popen(
            [prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{ports['prom']}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=(tmp_path / "prometheus.log").open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True))
        producer = KafkaProducer(**settings.kafka_python())
        for i in range(20):  # undecodable: the processors dead-letter them
            producer.send(f"{namespace}.agrawal.raw", value=b"\xffnot json %d" % i)
        producer.flush()
        producer.close()

        deadline = time.monotonic() + DEADLINE_S
        queries = panel_queries()
        assert len(queries) >= 20, queries
        empty, targets, alerts, requests_sent = queries, [], [], 0
        while time.monotonic() < deadline:
            for p in procs:
                assert p.poll() is None, f"{p.args} exited with {p.returncode}; logs in {tmp_path}"
            time.sleep(3)
            try:
                targets = _get(f"{prom}/api/v1/targets")["data"]["activeTargets"]
            except (urllib.error.URLError, ConnectionError):
                continue
            record = {"salary": 50000.0, "commission": 0.0, "age": 40, "elevel": 1, "car": 3, "zipcode": 2,
                      "hvalue": 100000.0, "hyears": 10, "loan": 20000.0}
            serving = f"http://127.0.0.1:{ports['serving']}"
            try:
                codes = [_post(f"{serving}/predict", {"record": record}) for _ in range(3)]
                codes.append(_post(f"{serving}/predict", {"nothing": 1}))  # a 422: the error panel
                requests_sent += 200 in codes
            except (urllib.error.URLError, ConnectionError):
                pass
            empty = [(d, t, e) for d, t, e in queries if not _query(prom, e)]
            alerts = [a for a in _get(f"{prom}/api/v1/alerts")["data"]["alerts"] if a["labels"]["alertname"] == "DriftDetected"]
            if (all(t["health"] == "up" for t in targets) and len(targets) == len(jobs) and not empty
                    and any(a["state"] in ("pending", "firing") for a in alerts)):
                break

        down = [(t["labels"]["job"], t.get("lastError")) for t in targets if t["health"] != "up"]
        assert len(targets) == len(jobs) and not down, f"targets down: {down}"
        assert requests_sent > 0, "serving never answered 200"
        assert not empty, "panels whose query returned nothing:\n" + "\n".join(f"  {d} / {t}: {e}" for d, t, e in empty)
        assert any(a["state"] in ("pending", "firing") for a in alerts), f"DriftDetected: {alerts}"
        drifted = {a["labels"]["model"] for a in alerts}
        assert drifted, alerts
        # The drift annotation marks points over the run (a range query, as Grafana runs it).
        models = json.loads((DASHBOARDS / "models.json").read_text())
        ann = [a for a in models["annotations"]["list"] if a.get("name") == "Drift"][0]
        now = time.time()
        res = _get(f"{prom}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": substitute(ann["expr"]), "start": now - 300, "end": now, "step": ann["step"]}))
        assert res["data"]["result"], "the drift annotation marks nothing"
        # The same run, for people without Grafana: the report reads the real topics.
        png = tmp_path / "report.png"
        out = subprocess.run([sys.executable, "-m", "driftline", "report", str(SPEC), "-o", str(png)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        found = re.search(r"(\d+) model\(s\) \(([^)]*)\), (\d+) drift", out.stdout)
        assert found and {"lr", "tree"} <= set(found.group(2).split(", ")) and int(found.group(3)) >= 1, out.stdout
        assert png.stat().st_size > 20_000
    finally:
        for p in reversed(procs):
            _stop(p)
