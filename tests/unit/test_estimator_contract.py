"""The contract every estimator the spec can name must meet: a snapshot round-trip predicts the
same, and predicting never changes the model's state (river#1011)."""

import inspect
import itertools
import pickle

import pytest
from river import base, datasets

from contracts.spec import ModelSpec
from models import LearnerCore, build_estimator, dump_snapshot, load_snapshot

KEY = b"contract-key-0123456789"
# Factorization machines diverge on this unscaled stream; identically, which is what is checked.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
MODULES = ["linear_model", "tree", "forest", "naive_bayes", "neighbors", "ensemble", "anomaly", "dummy",
           "neural_net", "multiclass", "rules", "facto", "misc"]


def estimators():
    import importlib

    seen = set()
    for mod_name in MODULES:
        try:
            mod = importlib.import_module(f"river.{mod_name}")
        except ImportError:
            continue
        for name in getattr(mod, "__all__", []):
            cls = getattr(mod, name)
            if not inspect.isclass(cls) or inspect.isabstract(cls) or cls in seen:
                continue
            if not issubclass(cls, (base.Classifier, base.Regressor, base.AnomalyDetector)):
                continue
            if issubclass(cls, (base.Wrapper, base.Ensemble)) and not hasattr(cls, "_unit_test_params"):
                continue
            seen.add(cls)
            yield f"{mod_name}.{name}", cls


def instances():
    for dotted, cls in estimators():
        try:
            params = next(iter(cls._unit_test_params()))
            yield pytest.param(dotted, params, id=dotted)
        except Exception:  # noqa: BLE001 - no way to build it without arguments
            continue


def stream_for(model, n):
    if isinstance(model, base.Regressor):
        return list(itertools.islice(datasets.TrumpApproval(), n))
    return [(x, y) for x, y in itertools.islice(datasets.Phishing(), n)]


def predict_all(model, xs):
    if isinstance(model, base.AnomalyDetector):
        return [model.score_one(x) for x in xs]
    if isinstance(model, base.Classifier):
        try:
            return [model.predict_proba_one(x) for x in xs]
        except NotImplementedError:  # label-only classifiers (voting, one-vs-one, output codes)
            pass
    return [model.predict_one(x) for x in xs]


def same(a, b) -> bool:
    """Exact equality that also holds for NaN (a diverged model must diverge identically)."""
    return repr(a) == repr(b)


def learn(model, data):
    for x, y in data:
        if isinstance(model, base.AnomalyDetector):
            model.learn_one(x)
        else:
            model.learn_one(x, y)


@pytest.mark.parametrize("dotted,params", list(instances()))
def test_estimator_contract(dotted, params):
    cls = dict(estimators())[dotted]
    try:
        model = cls(**params)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"cannot build from its unit-test params: {exc}")
    data = stream_for(model, 160)
    train, probe, more = data[:100], [x for x, _ in data[100:130]], data[130:]
    try:
        learn(model, train)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"does not learn from this generic stream: {exc}")

    # Snapshot round-trip: the restored model predicts exactly the same.
    restored = load_snapshot(dump_snapshot({"version": 1}, {"model": model}, KEY), KEY).state["model"]
    assert same(predict_all(restored, probe), predict_all(model, probe))

    # Pure prediction: a model that predicted and one that did not learn on identically.
    twin = pickle.loads(pickle.dumps(model))
    predict_all(model, probe)
    predict_all(model, probe)
    learn(model, more)
    learn(twin, more)
    assert same(predict_all(model, probe), predict_all(twin, probe))


def test_pipelines_and_factories_meet_the_contract_too():
    spec = ModelSpec(estimator="preprocessing.StandardScaler | linear_model.LogisticRegression")
    model = build_estimator(spec)
    data = stream_for(model, 160)
    learn(model, data[:100])
    probe = [x for x, _ in data[100:130]]
    twin = pickle.loads(pickle.dumps(model))
    predict_all(model, probe)
    learn(model, data[130:])
    learn(twin, data[130:])
    assert predict_all(model, probe) == predict_all(twin, probe)


def test_the_whole_learner_core_round_trips_through_a_snapshot():
    from contracts.spec import load_spec
    from pathlib import Path

    core = LearnerCore(load_spec(Path(__file__).resolve().parents[2] / "examples" / "phishing.yaml"))
    stream = list(datasets.Phishing())
    for i, (x, y) in enumerate(stream[:600]):
        core.on_event({"id": str(i), "ts": float(i), "x": x, "y": y})
    copy = load_snapshot(dump_snapshot({"version": 1}, {"core": core}, KEY), KEY).state["core"]
    for i, (x, y) in enumerate(stream[600:], 600):
        core.on_event({"id": str(i), "ts": float(i), "x": x, "y": y})
        copy.on_event({"id": str(i), "ts": float(i), "x": x, "y": y})
    assert core.summary() == copy.summary()
