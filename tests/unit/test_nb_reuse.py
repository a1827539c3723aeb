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


@pytest.fixture(params=["compiled", "river"])
def impl(request, monkeypatch):
    """Run a test with the compiled loops (models/_nb_fast.pyx) and again with river's own, which
    the reuse runs where the extension was not built."""
    if request.param == "river":
        monkeypatch.setattr(_nb_reuse, "_naive_bayes", _nb_reuse.RIVER["naive_bayes"])
        monkeypatch.setattr(_nb_reuse, "_update_splitters", _nb_reuse.RIVER["update_splitters"])
    else:
        assert _nb_reuse.COMPILED, "models/_nb_fast is not built: `pip install -e .` builds it (needs a C compiler)"
    return request.param


def stream(n: int, seed: int = 7, classes: int = 2):
    rng = random.Random(seed)
    w = [rng.uniform(-1, 1) for _ in range(6)]
    for _ in range(n):
        x = {f"f{k}": rng.gauss(0, 1) for k in range(6)}
        s = sum(w[k] * x[f"f{k}"] for k in range(6)) + rng.gauss(0, 0.5)
        yield x, (s > 0) if classes == 2 else min(classes - 1, max(0, int(s + classes / 2)))


def splitter_state(splitters) -> tuple:
    """Every Gaussian splitter's per-class min, max and Welford state (n, mean, S), in order (none
    for a leaf deactivated by the tree's memory limit)."""
    from river.tree.splitter import GaussianSplitter

    out = []
    for att, s in (splitters or {}).items():
        if not isinstance(s, GaussianSplitter):
            out.append((att, type(s).__name__))
            continue
        dists = s._att_dist_per_class
        out.append((att, tuple(s._min_per_class.items()), tuple(s._max_per_class.items()),
                    tuple((c, g._var.mean.n, g._var.mean._mean, g._var._S) for c, g in dists.items())))
    return tuple(out)


def leaves(model):
    """(class counts, mc score, nb score, splitter state) of every leaf, in a fixed walk order."""
    out = []
    trees = [m for m in model] if isinstance(model, forest.ARFClassifier) else [model]
    for t in trees:
        if t._root is None:
            continue
        for node in t._root.iter_dfs():
            if isinstance(node, LeafNaiveBayesAdaptive):
                out.append((tuple(node.stats.items()), node._mc_correct_weight, node._nb_correct_weight,
                            splitter_state(node.splitters)))
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
def test_same_predictions_and_leaves_as_river(name, order, impl):
    events = list(stream(3000, classes=3 if name == "hoeffding_multiclass" else 2))
    plain = run(MODELS[name], events, reuse=False, order=order)
    reused = run(MODELS[name], events, reuse=True, order=order)
    assert plain[1], "the tree grew no naive Bayes leaves"
    assert reused == plain


def test_the_vote_is_computed_once_per_event(monkeypatch):
    calls = {"n": 0}
    original = _nb_reuse._naive_bayes

    def counted(*args):
        calls["n"] += 1
        return original(*args)

    monkeypatch.setattr(_nb_reuse, "_naive_bayes", counted)
    events = list(stream(2000))
    _nb_reuse.install()
    model = tree.HoeffdingTreeClassifier(grace_period=50)
    for x, y in events:
        model.predict_proba_one(x)
        model.learn_one(x, y)
    # river computes it in learn_one for every event, and again in prediction when naive Bayes leads
    assert calls["n"] <= len(events) + 5
    assert calls["n"] > len(events) // 2


def _leaf_cases():
    """Leaves in the states a vote meets: grown on a stream, then with a class never seen by some
    splitters, a zero-weight class, a Gaussian with one sample (no variance yet) or a constant
    feature (variance 0), a feature missing from x, and a nominal splitter beside the Gaussian ones."""
    from river.tree.splitter import GaussianSplitter
    from river.tree.splitter.nominal_splitter_classif import NominalSplitterClassif

    rng = random.Random(11)
    for case in range(40):
        classes = [0, 1, 2][: 2 + case % 2]
        stats, splitters = {}, {}
        for att in ("a", "b", "c", "d"):
            splitters[att] = GaussianSplitter()
        splitters["n"] = NominalSplitterClassif()
        for _ in range(rng.choice([1, 2, 5, 60])):
            y = rng.choice(classes)
            stats[y] = stats.get(y, 0.0) + 1.0
            for att, s in splitters.items():
                if att == "n":
                    s.update(rng.choice("xyz"), y, 1.0)
                elif att == "d":
                    s.update(3.0, y, 1.0)  # constant: variance 0
                elif rng.random() < 0.8:
                    s.update(rng.gauss(0, 1) + y, y, rng.choice([1.0, 0.5]))
        if case % 5 == 0:
            stats[max(classes) + 1] = 0.0  # a class with no weight
        splitters["late"] = GaussianSplitter()  # no class seen at all
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 2), "d": 3.0 if case % 2 else 2.5, "n": rng.choice("xyw"),
             "late": 0.1}
        if case % 3 == 0:
            del x["b"]
        yield x, stats, splitters


def test_the_inlined_vote_is_rivers_bit_for_bit():
    assert _nb_reuse.COMPILED, "models/_nb_fast is not built: `pip install -e .` builds it (needs a C compiler)"
    from river.tree.utils import do_naive_bayes_prediction

    n = 0
    for x, stats, splitters in _leaf_cases():
        assert _nb_reuse._naive_bayes(x, stats, splitters) == do_naive_bayes_prediction(x, stats, splitters)
        n += 1
    assert n == 40
    assert _nb_reuse._naive_bayes({"a": 1.0}, {}, {}) == {} == do_naive_bayes_prediction({"a": 1.0}, {}, {})


def test_the_inlined_splitter_update_is_rivers():
    """Weights, a feature missing from some events, None values, a nominal feature and a disabled
    attribute: the leaf's splitters end as river's own update leaves them."""
    from river.tree.splitter import GaussianSplitter

    rng = random.Random(5)
    events = []
    for i in range(400):
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(5, 2), "n": rng.choice("pq"), "z": None if i % 7 == 0 else 1.5}
        if i % 4 == 0:
            del x["b"]
        events.append((x, rng.choice([0, 1, 2]), rng.choice([1.0, 0.25, 2.0])))

    def grow(fast: bool):
        _nb_reuse.uninstall()
        if fast:
            _nb_reuse.install()
        leaf = LeafNaiveBayesAdaptive({}, depth=0, splitter=GaussianSplitter())
        leaf._disabled_attrs.add("q")
        for x, y, w in events:
            leaf.update_splitters(dict(x, q=rng.random()), y, w, {"n"})
        return splitter_state(leaf.splitters), sorted(leaf.splitters)

    assert grow(True) == grow(False)
    assert grow(True)[1] == ["a", "b", "n", "z"]


def test_a_changed_x_is_voted_again(impl):
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
    If river is upgraded, compare its methods with models/_nb_reuse.py and models/_nb_fast.pyx, and
    move RIVER_VERSION."""
    assert river.__version__ == _nb_reuse.RIVER_VERSION, "river moved: re-check models/_nb_reuse.py and _nb_fast.pyx"
    source = inspect.getsource(_nb_reuse._ORIGINAL["learn_one"])
    assert "do_naive_bayes_prediction(x, self.stats, self.splitters)" in source
    # The statements the inlined vote and splitter update repeat, as river 0.26.1 has them.
    from river.proba.gaussian import Gaussian
    from river.stats import Mean, Var
    from river.tree.splitter import GaussianSplitter
    from river.tree.utils import do_naive_bayes_prediction

    repeated = {
        do_naive_bayes_prediction: ["votes[class_index] = math.log(class_weight / total_weight)",
                                    "if log_p > -math.inf:", "votes[class_index] += log_p"],
        Gaussian.log_pdf: ["variance = var._S / (n - var.ddof)",
                           "return (x - mu) ** 2 / (-2.0 * variance) - _HALF_LOG_TAU - 0.5 * math.log(variance)"],
        GaussianSplitter.update: ["val_dist = self._att_dist_per_class[target_val]", "val_dist.update(att_val, w)"],
        Gaussian.update: ["self._var.update(x, w)"],
        Var.update: ["self._S += w * (x - mean_old) * (x - mean_new)"],
        Mean.update: ["self.n += w", "self._mean += (w / self.n) * (x - self._mean)"],
        _nb_reuse._ORIGINAL["update_splitters"]: ["splitter = self.splitter.clone()", "splitter.update(att_val, y, w)"],
    }
    for fn, lines in repeated.items():
        code = inspect.getsource(fn)
        for line in lines:
            assert line in code, f"{fn.__qualname__} changed: re-check models/_nb_fast.pyx"
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


def test_the_compiled_loops_are_rivers_bit_for_bit_over_many_votes():
    """Many votes and Welford updates through models/_nb_fast and through river's own functions: the
    same floats. The C vote squares with libm's ``pow``, as CPython does; if the compiler turned it
    into ``d * d`` (setup.py's ``-fno-builtin-pow`` stops it), about one square in a thousand would
    round differently and this would catch it over its ~200,000 densities. The odd inputs (an ``int``
    feature, a numpy scalar, an ``int`` weight) take the Python-object path and must agree too."""
    import numpy as np
    from river.tree.splitter import GaussianSplitter

    assert _nb_reuse.COMPILED, "models/_nb_fast is not built: `pip install -e .` builds it (needs a C compiler)"
    vote_c, vote_py = _nb_fast_functions()["naive_bayes"], _nb_reuse.RIVER["naive_bayes"]
    rng = random.Random(3)
    odd = [lambda v: v, lambda v: int(v * 3), lambda v: np.float64(v), lambda v: bool(v > 0)]
    pairs = []
    for case in range(60):
        classes = [0, 1, 2][: 2 + case % 2]
        leaves_ = [LeafNaiveBayesAdaptive({}, depth=0, splitter=GaussianSplitter()) for _ in range(2)]
        for _ in range(rng.choice([3, 30, 300])):
            x = {f"a{j}": rng.gauss(j, 1 + j) for j in range(8)}
            if case % 4 == 3:
                x["a1"] = odd[case // 4 % 4](x["a1"])
            y, w = rng.choice(classes), rng.choice([1.0, 0.5, 2.0] + ([1] if case % 6 == 5 else []))
            for leaf, update in zip(leaves_, (_nb_fast_functions()["update_splitters"],
                                              _nb_reuse.RIVER["update_splitters"])):
                leaf.stats[y] = leaf.stats.get(y, 0.0) + w
                update(leaf, x, y, w, None)
        assert splitter_state(leaves_[0].splitters) == splitter_state(leaves_[1].splitters)
        pairs.append(leaves_[0])
    n = 0
    for leaf in pairs:
        for _ in range(400):
            x = {f"a{j}": rng.gauss(j, 2 + j) for j in range(8)}
            if rng.random() < 0.1:
                x["a2"] = odd[rng.randrange(4)](x["a2"])
            assert vote_c(x, leaf.stats, leaf.splitters) == vote_py(x, leaf.stats, leaf.splitters)
            n += 1
    assert n == 24_000


def _nb_fast_functions():
    from models import _nb_fast

    return {"naive_bayes": _nb_fast.naive_bayes, "update_splitters": _nb_fast.update_splitters}
