"""``driftline report`` reads a pipeline's topics and draws a PNG with a line per model and the drift marks."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

SPEC = REPO / "deploy/demo/agrawal-drift.yaml"


def _pixels(img: np.ndarray, hex_color: str, tol: float = 0.06) -> int:
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img[..., :3] - rgb).max(axis=-1) < tol).sum())


def _feed(settings, spec, namespace, n=1500, drift_at=800):
    from contracts import serde
    from contracts.topics import Role, pipeline_topics
    from driftline import kafkautil
    from kafka import KafkaProducer

    topics = pipeline_topics(spec, namespace)
    kafkautil.create_topics(settings, list(topics.values()))
    rnd = random.Random(3)
    producer = KafkaProducer(**settings.kafka_python())
    for i in range(n):
        eid = f"e{i}"
        y = rnd.random() < 0.5
        producer.send(topics[Role.FEATURES].name, serde.dumps({"v": 1, "id": eid, "ts": float(i), "x": {}, "y": y}))
        # lr is right 90% of the time before the drift and 40% after; tree 70% throughout.
        for model, right in (("lr", 0.9 if i < drift_at else 0.4), ("tree", 0.7)):
            y_pred = y if rnd.random() < right else not y
            producer.send(topics[Role.PREDICTIONS].name, key=eid.encode(), value=serde.dumps(
                {"v": 1, "id": eid, "model": model, "version": i, "y_pred": y_pred, "proba": None, "ts": float(i)}))
    producer.send(topics[Role.EVENTS].name, key=b"lr", value=serde.dumps(
        {"v": 1, "type": "promotion", "from": None, "to": "lr", "at": 300}))
    producer.send(topics[Role.EVENTS].name, key=b"lr", value=serde.dumps(
        {"v": 1, "type": "drift", "model": "lr", "at": drift_at + 40}))
    producer.send(topics[Role.EVENTS].name, key=b"tree", value=serde.dumps(
        {"v": 1, "type": "promotion", "from": "lr", "to": "tree", "at": drift_at + 200}))
    producer.flush()
    producer.close()


def test_report_draws_a_line_per_model_and_the_drift_marks(settings, namespace, tmp_path, capsys):
    import matplotlib.image as mpimg

    from contracts.spec import load_spec
    from driftline.cli import main
    from driftline.report import DRIFT_COLOR, model_colors

    spec = load_spec(SPEC)
    _feed(settings, spec, namespace)
    out = tmp_path / "report.png"
    assert main(["report", str(SPEC), "-o", str(out), "--namespace", namespace]) == 0
    said = capsys.readouterr().out
    assert "1500 events, 2 model(s) (lr, tree), 1 drift(s), 2 champion change(s)" in said

    assert out.stat().st_size > 20_000
    img = mpimg.imread(out)
    assert img.shape[:2] == (600, 1200)
    colors = model_colors(["lr", "tree"])
    for model in ("lr", "tree"):
        assert _pixels(img, colors[model]) > 800, f"no line for {model}"
    assert _pixels(img, DRIFT_COLOR) > 150, "no drift mark"


def test_report_curves_follow_the_models_accuracy(settings, namespace):
    from contracts.spec import load_spec
    from driftline.report import make_report

    spec = load_spec(SPEC)
    _feed(settings, spec, namespace)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        report = make_report(spec, settings, f"{d}/r.png", namespace=namespace)
    lr = dict(report.curves["lr"])
    # window 500: at event 700 lr is ~90% right, at 1500 ~40%; tree ~70% throughout
    assert lr[700] > 0.8 and lr[1500] < 0.5
    assert 0.6 < dict(report.curves["tree"])[1500] < 0.8
    assert report.drifts == [("lr", 840)]
    assert report.promotions == [("lr", 300), ("tree", 1000)]
