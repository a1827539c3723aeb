"""models/_nb_reuse: a leaf's naive Bayes vote, computed once per event, changes nothing.

Each test runs the same stream through river's own methods and through the reuse, and compares
every prediction and every leaf's state (its class counts and its majority-class and naive Bayes
scores, which is what the vote feeds).
"""

from __future__ import annotations

import inspect
import random

import pytest
import river
from river import forest, tree
from river.tree.nodes.htc_nodes import LeafNaiveBayesAdaptive

from contracts.spec import load_spec_text
from models import LearnerCore, _nb_reuse


@pytest.fixture(autouse=True)
def _restore():
    yield
    _nb_reuse.uninstall()


def stream(n: int, seed: int = 7, classes: int = 2):
    rng = random.Random(seed)
    w = [rng.uniform(-1, 1) for _ in range(6)]
    for _ in range(n):
        x = {f"f{k}": rng.gauss(0, 1) for k in range(6)}
        s = sum(w[k] * x[f"f{k}"] for k in range(6)) + rng.gauss(0, 0.5)
        yield x, (s > 0) if classes == 2 else min(classes - 1, max(0, int(s + classes / 2)))


def leaves(model):
    """(class counts, mc score, nb score) of every leaf, in a fixed walk order."""
    out = []
    trees = [m for m in model] if isinstance(model, forest.ARFClassifier) else [model]
    for t in trees:
        if t._root is None:
            continue
        for node in t._root.iter_dfs():
            if isinstance(node, LeafNaiveBayesAdaptive):
                out.append((tuple(node.stats.items()), node._mc_correct_weight, node._nb_correct_weight))
    return out


def run(make, events, reuse: bool, order="prequential"):
    """Predict then learn each event (or, with ``order="delayed"``, learn each 25 events late)."""
    _nb_reuse.uninstall()
    if reuse:
        assert _nb_reuse.install()
    model, preds, waiting = make(), [], []
    for x, y in events:
        preds.append(model.predict_proba_one(x))
        if order == "prequential":
            model.learn_one(x, y)
        else:
            waiting.append((x, y))
            if len(waiting) > 25:
                model.learn_one(*waiting.pop(0))
    return preds, leaves(model)


MODELS = {
    "hoeffding": lambda: tree.HoeffdingTreeClassifier(grace_period=50),
    "hoeffding_multiclass": lambda: tree.HoeffdingTreeClassifier(grace_period=50, max_size=0.05,
                                                                memory_estimate_period=500),
    "efdt": lambda: tree.ExtremelyFastDecisionTreeClassifier(grace_period=50),
    "hoeffding_adaptive": lambda: tree.HoeffdingAdaptiveTreeClassifier(grace_period=50, seed=3),
    "arf": lambda: forest.ARFClassifier(n_models=3, seed=3),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("order", ["prequential", "delayed"])
def test_same_predictions_and_leaves_as_river(name, order):
    events = list(stream(3000, classes=3 if name == "hoeffding_multiclass" else 2))
    plain = run(MODELS[name], events, reuse=False, order=order)
    reused = run(MODELS[name], events, reuse=True, order=order)
    assert plain[1], "the tree grew no naive Bayes leaves"
    assert reused == plain


def test_the_vote_is_computed_once_per_event(monkeypatch):
    calls = {"n": 0}
    original = _nb_reuse.do_naive_bayes_prediction

    def counted(*args):
        calls["n"] += 1
        return original(*args)

    monkeypatch.setattr(_nb_reuse, "do_naive_bayes_prediction", counted)
    events = list(stream(2000))
    _nb_reuse.install()
    model = tree.HoeffdingTreeClassifier(grace_period=50)
    for x, y in events:
        model.predict_proba_one(x)
        model.learn_one(x, y)
    # river computes it in learn_one for every event, and again in prediction when naive Bayes leads
    assert calls["n"] <= len(events) + 5
    assert calls["n"] > len(events) // 2


def test_a_changed_x_is_voted_again():
    """An x changed between predicting and learning (a custom model may do it) is not reused."""
    events = list(stream(1500))

    def go(reuse: bool):
        _nb_reuse.uninstall()
        if reuse:
            _nb_reuse.install()
        model = tree.HoeffdingTreeClassifier(grace_period=50)
        for x, y in events:
            x = dict(x)
            model.predict_proba_one(x)
            x["f0"] = -x["f0"]
            model.learn_one(x, y)
        return leaves(model)

    assert go(True) == go(False)


def test_the_learner_core_uses_it_and_snapshots_do_not_carry_it():
    import pickle

    spec = load_spec_text("""
name: nb
schema: {fields: {a: float, b: float, y: bool}, label: y}
models: {tree: {estimator: tree.HoeffdingTreeClassifier, params: {grace_period: 50}}}
""")
    _nb_reuse.uninstall()
    core = LearnerCore(spec)
    assert _nb_reuse.installed()
    for i, (x, y) in enumerate(stream(500)):
        core.on_event({"id": f"e{i}", "ts": float(i), "x": {"a": x["f0"], "b": x["f1"]}, "y": y})
    x = {"a": 0.5, "b": -0.2}
    core.runners["tree"].model.predict_proba_one(x)  # leaves a vote waiting to be learned
    assert len(_nb_reuse._memo) == 1
    blob = pickle.dumps(core)
    assert b"_memo" not in blob and pickle.dumps(x) not in blob
    _nb_reuse.uninstall()
    pickle.loads(blob)  # a restored learner reuses again
    assert _nb_reuse.installed()


def test_only_on_the_river_release_it_copies(monkeypatch):
    """The reuse repeats river's ``LeafNaiveBayesAdaptive`` methods; another release keeps its own.
    If river is upgraded, compare its methods with models/_nb_reuse.py and move RIVER_VERSION."""
    assert river.__version__ == _nb_reuse.RIVER_VERSION, "river moved: re-check models/_nb_reuse.py"
    source = inspect.getsource(_nb_reuse._ORIGINAL["learn_one"])
    assert "do_naive_bayes_prediction(x, self.stats, self.splitters)" in source
    monkeypatch.setattr(river, "__version__", "99.0")
    assert not _nb_reuse.install()
    assert not _nb_reuse.installed()


@pytest.mark.parametrize("stats", [
    {True: 3.0, False: 3.0}, {False: 3.0, True: 3.0}, {0: 1.0, 1: 2.0, 2: 2.0}, {"a": 0.0, "b": 0.0},
    {"a": 0.1, "b": 0.2, "c": 0.30000000000000004}, {"a": 1e-320, "b": 2e-320}, {"a": float("nan"), "b": 1.0},
    {"a": 7.0, "b": -7.0}, {"x": 0.7, "y": 0.7000000000000001, "z": 1.0},  # y's larger count and x's scale to the same value
])
def test_the_majority_vote_without_the_copy_is_rivers(stats):
    """``_majority`` picks the class of river's normalized deep copy: ties, counts that scale to the
    same value, zero and NaN sums included (an empty leaf never asks: it counts as a hit first)."""
    from river.tree.nodes.htc_nodes import LeafMajorityClass

    leaf = LeafNaiveBayesAdaptive(dict(stats), depth=0, splitter=tree.splitter.GaussianSplitter())
    mc = LeafMajorityClass.prediction(leaf, {})
    assert _nb_reuse._majority(leaf) == max(mc, key=mc.get)
    assert leaf.stats == stats  # the counts are left as they were


def test_every_river_leaf_class_takes_the_plain_majority_vote():
    """The shortcut applies to the leaves river makes; a subclass with its own vote keeps it."""
    from river.tree.nodes.arf_htc_nodes import RandomLeafNaiveBayesAdaptive
    from river.tree.nodes.efdtc_nodes import EFDTLeafNaiveBayesAdaptive
    from river.tree.nodes.hatc_nodes import AdaLeafClassifier

    for cls in (LeafNaiveBayesAdaptive, RandomLeafNaiveBayesAdaptive, EFDTLeafNaiveBayesAdaptive, AdaLeafClassifier):
        assert _nb_reuse._plain_majority(cls)

    class Own(LeafNaiveBayesAdaptive):
        pass

    class Voting(tree.nodes.htc_nodes.LeafMajorityClass):
        def prediction(self, x, *, tree=None):
            return {"always": 1.0}

    class Mixed(LeafNaiveBayesAdaptive, Voting):
        pass

    assert _nb_reuse._plain_majority(Own)
    assert not _nb_reuse._plain_majority(Mixed)
