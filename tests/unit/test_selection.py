"""Selection, search and drift in the pure learner core."""

import random

import yaml

from contracts.spec import load_spec_text
from models.core import LearnerCore
from models.estimators import build_estimator
from models.prequential import ModelRunner
from models.search import expand

DRIFT_AT = 3000
DETECTION_BOUND = 200  # events between the true drift point and ADWIN's alarm on the champion's errors


def spec_of(**extra):
    base = {"name": "t", "schema": {"fields": {**{f"f{k}": "float" for k in range(10)}, "y": "bool"}, "label": "y"},
            "metrics": ["Accuracy"], "drift": {"policy": "alert"},
            "models": {"lr": {"estimator": "preprocessing.StandardScaler | linear_model.LogisticRegression"}}}
    base.update(extra)
    return load_spec_text(yaml.safe_dump(base))


def drifting_stream(n, seed=3):
    """A linear concept, then at DRIFT_AT a band that no linear model can learn."""
    rng = random.Random(seed)
    for i in range(n):
        x = {f"f{k}": rng.uniform(-1, 1) for k in range(4)}
        y = x["f0"] + 0.3 * x["f1"] > 0 if i < DRIFT_AT else abs(x["f2"]) > 0.5
        yield {"id": str(i), "ts": float(i), "x": x, "y": y}


def run(core, stream):
    decisions = []
    for r in stream:
        _, ds = core.on_event(r)
        decisions.extend({**d, "event": int(r["id"])} for d in ds)
    return decisions


def test_champion_changes_after_drift_to_the_model_that_does_better_after_it():
    spec = spec_of(models={
        "lr": {"estimator": "preprocessing.StandardScaler | linear_model.LogisticRegression"},
        "tree": {"estimator": "tree.HoeffdingAdaptiveTreeClassifier", "params": {"grace_period": 50, "seed": 1}}},
        metrics_window=300, selection={"min_events": 300, "margin": 0.02})
    core = LearnerCore(spec)
    decisions = run(core, drifting_stream(8000))
    promotions = [d for d in decisions if d["type"] == "promotion"]
    before = [p for p in promotions if p["event"] < DRIFT_AT]
    after = [p for p in promotions if p["event"] >= DRIFT_AT]
    assert before[-1]["to"] == "lr"
    assert after and after[-1]["to"] == "tree" and core.board.champion == "tree"
    assert after[0]["evidence"]["tree"]["value"] > after[0]["evidence"]["lr"]["value"] + spec.selection.margin
    first_alarm = min(d["event"] for d in decisions if d["type"] == "drift" and d["model"] == "lr"
                      and d["event"] >= DRIFT_AT)
    delay = first_alarm - DRIFT_AT
    print(f"ADWIN flagged the drift {delay} events after it happened (bound {DETECTION_BOUND})")
    assert 0 <= delay <= DETECTION_BOUND
    assert not [d for d in decisions if d["type"] == "drift" and d["model"] == "lr" and d["event"] < DRIFT_AT]


def test_drift_policy_challenger_starts_a_fresh_model_and_reset_replaces_it():
    core = LearnerCore(spec_of(drift={"policy": "challenger", "max_challengers": 1}))
    decisions = run(core, drifting_stream(6000))
    drift = [d for d in decisions if d["type"] == "drift" and d["model"] == "lr"]
    assert drift and drift[0]["challenger"] == "lr~1" and "lr~1" in core.runners
    assert sum(1 for n in core.runners if n.startswith("lr~")) <= 1

    core = LearnerCore(spec_of(drift={"policy": "reset"}))
    run(core, drifting_stream(DRIFT_AT + 400))
    assert list(core.runners) == ["lr"]
    assert core.runners["lr"].n_learned == DRIFT_AT + 400  # the count goes on; the model is new


def test_successive_halving_keeps_a_top_two_candidate_of_eight():
    spec = spec_of(metrics_window=500, search={
        "model": "lr", "grid": {"l2": [0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}, "min_events": 500, "eta": 2})
    rng = random.Random(5)
    w = [rng.uniform(-1, 1) for _ in range(10)]
    data = []
    for i in range(6000):
        x = {f"f{k}": rng.gauss(0, 1) for k in range(10)}
        data.append((x, sum(w[k] * x[f"f{k}"] for k in range(10)) + rng.gauss(0, 0.5) > 0))
    core = LearnerCore(spec)
    decisions = run(core, ({"id": str(i), "ts": float(i), "x": x, "y": y} for i, (x, y) in enumerate(data)))
    pruned = [d for d in decisions if d["type"] == "pruned"]
    assert [len(d["models"]) for d in pruned] == [4, 2, 1]
    (survivor,) = core.halving.alive

    final = {}
    for name, m in expand(spec.models["lr"], spec.search, "lr").items():
        r = ModelRunner(name, build_estimator(m), ["Accuracy"])
        for x, y in data:
            r.learn(x, y, r.predict(x))
        final[name] = r.metrics()["Accuracy"]
    top2 = sorted(final.values(), reverse=True)[1]
    assert final[survivor] >= top2, (survivor, final)
