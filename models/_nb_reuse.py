"""Reuse a Hoeffding-tree leaf's naive Bayes vote between predicting an event and learning it.

river's ``LeafNaiveBayesAdaptive`` (the leaves of ``HoeffdingTreeClassifier``, its adaptive and
extremely fast variants and ARF's trees, all with the default ``leaf_prediction="nba"``) scores
naive Bayes against the majority class as it learns: ``learn_one`` computes the naive Bayes
prediction of ``x`` from the leaf's statistics, then updates them. Learning prequentially, the
same leaf has just computed that very prediction for the same ``x`` when it was asked to predict,
so the learner computed it twice per event. It is the costliest step of the tree: over
``examples/bench.yaml``'s stream, ``do_naive_bayes_prediction`` was a quarter of the learner's
own thread (py-spy), and the reuse takes 12-14% off ``LearnerCore.on_event``.

:func:`install` replaces the two methods with the same code plus a memo. ``prediction`` keeps,
per leaf, the winning class of the naive Bayes vote it computed, with what it was computed from.
``learn_one`` uses it only if nothing has changed since: the same ``x`` object with the same items,
and the leaf's class counts and splitters as they were (a leaf's statistics change only when it
learns or splits, and learning consumes the memo). Otherwise it computes the vote, as river does.
Its majority-class check, which river makes on a normalized deep copy of the class counts, is made
on the counts themselves (:func:`_majority`, the same class). Either way the outcome is river's,
bit for bit (``tests/unit/test_nb_reuse.py`` compares trees with and without it). The memo is kept
beside the tree, in a weak mapping, so snapshots do not carry it.

The vote itself is :func:`_naive_bayes`: river's ``do_naive_bayes_prediction`` with each Gaussian
splitter's log density computed in the loop, where river calls down three levels per feature and
class (``cond_log_proba``, ``Gaussian.log_pdf``), with the same arithmetic in the same order.

The leaf's statistics are updated by :func:`_update_splitters`: river's ``HTLeaf.update_splitters``
with a ``GaussianSplitter``'s update (its per-class min, max and ``Gaussian``, whose Welford
update is ``stats.Var`` over ``stats.Mean``) done in the loop, four calls per feature fewer, the
same arithmetic in the same order. Other splitters are updated as river updates them.

Both loops are also compiled (``models/_nb_fast.pyx``, built by ``setup.py`` at install): the same
statements in C on plain floats, libm's ``pow`` and ``log`` as CPython calls them, so the same
floats. The tree's ``on_event`` over ``examples/bench.yaml`` takes about a quarter less with them
(``bench/NOTES.md``). Without a C compiler the pure-Python loops here run; ``PURE`` keeps them for
the tests, which check both against river and against each other.

It is installed only on the river release it was written against (:data:`RIVER_VERSION`);
another release keeps river's own methods.
"""

from __future__ import annotations

import math
import numbers
import weakref

import river
from river.proba.gaussian import _HALF_LOG_TAU, Gaussian
from river.stats import Mean, Var
from river.tree.nodes.htc_nodes import LeafMajorityClass, LeafNaiveBayesAdaptive
from river.tree.nodes.leaf import HTLeaf
from river.tree.splitter import GaussianSplitter

__all__ = ["install", "uninstall", "installed", "RIVER_VERSION"]

RIVER_VERSION = "0.26.1"
_ORIGINAL = {"prediction": LeafNaiveBayesAdaptive.prediction, "learn_one": LeafNaiveBayesAdaptive.learn_one,
             "update_splitters": HTLeaf.update_splitters}
_ITER_FEATURES = HTLeaf._iter_features
_EMPTY = object()  # the vote was empty (river then counts no naive Bayes hit)
_memo: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _naive_bayes(x, observed_class_distribution, splitters) -> dict:
    """``do_naive_bayes_prediction(x, observed_class_distribution, splitters)``, bit for bit.

    river's vote asks each splitter for ``cond_log_proba(x[att], class)``, which for a
    ``GaussianSplitter`` looks up the class's ``Gaussian`` and calls its ``log_pdf``: two calls and an
    attribute walk per feature and class, 18% of the learner's samples over ``examples/bench.yaml``
    (py-spy). Here the density of a plain ``Gaussian`` is computed in the loop, as ``log_pdf`` computes
    it; any other splitter or distribution is asked as river asks it. The vote adds the same terms in
    the same order, so the probabilities are the same floats (``tests/unit/test_nb_reuse.py``).
    """
    total_weight = sum(observed_class_distribution.values())
    if not observed_class_distribution or total_weight == 0:
        return {}
    log, ninf = math.log, -math.inf
    # Per feature of x with a splitter: its value, the per-class Gaussians (a plain splitter's) and
    # the splitter itself (asked directly otherwise).
    atts = [(x[att], obs._att_dist_per_class if type(obs) is GaussianSplitter else None, obs)
            for att, obs in splitters.items() if att in x] if splitters else []
    votes = {}
    for c, class_weight in observed_class_distribution.items():
        if class_weight > 0:
            vote = log(class_weight / total_weight)
        else:
            votes[c] = 0.0
            continue
        for value, per_class, obs in atts:
            g = per_class.get(c, None) if per_class is not None else None
            if type(g) is Gaussian:  # Gaussian.log_pdf, inlined
                var = g._var
                n = var.mean.n
                if n > var.ddof:
                    variance = var._S / (n - var.ddof)
                    if variance > 0.0:
                        log_p = (value - var.mean._mean) ** 2 / (-2.0 * variance) - _HALF_LOG_TAU - 0.5 * log(variance)
                        if log_p > ninf:
                            vote += log_p
                continue
            if per_class is not None and g is None and c not in per_class:
                continue  # cond_log_proba: -inf for a class the splitter has not seen
            log_proba = getattr(obs, "cond_log_proba", None)
            if log_proba is not None:
                log_p = log_proba(value, c)
                if log_p > ninf:
                    vote += log_p
            else:
                tmp = obs.cond_proba(value, c)
                vote += log(tmp) if tmp > 0 else 0.0
        votes[c] = vote
    max_ll = max(votes.values())
    lse = max_ll + math.log(sum(math.exp(log_proba - max_ll) for log_proba in votes.values()))
    for c in votes:
        votes[c] = math.exp(votes[c] - lse)
    return votes


def _winner(proba: dict):
    """The class river's ``max(proba, key=proba.get)`` picks, or :data:`_EMPTY` for no vote."""
    return max(proba, key=proba.get) if len(proba) > 0 else _EMPTY


def _majority(leaf):
    """``max(mc, key=mc.get)`` for ``mc = LeafMajorityClass.prediction(leaf, x)``, river's majority
    vote: its class counts divided by their sum, in a deep copy (``normalize_values_in_dict``). The
    same values in the same order give the same class, without the copy: the normalizing was 4% of
    the learner's time (py-spy, the bench models), and the tree's ``on_event`` went from 42-44 to
    40-41 µs an event over ``examples/bench.yaml``'s stream (in-process, three alternating runs).
    Counts summing to 0 or NaN stay as they are, as river leaves them."""
    stats = leaf.stats
    factor = sum(stats.values())
    if factor == 0 or math.isnan(factor):
        return max(stats, key=stats.get)
    m = 1 / factor
    return max(stats, key=lambda c: stats[c] * m)


_PLAIN_MAJORITY: dict[type, bool] = {}


def _plain_majority(cls) -> bool:
    """Does a ``cls`` leaf take its majority vote from ``LeafMajorityClass`` itself (every river leaf
    class does)? A subclass that votes otherwise keeps its own vote."""
    plain = _PLAIN_MAJORITY.get(cls)
    if plain is None:
        plain = _PLAIN_MAJORITY[cls] = super(LeafNaiveBayesAdaptive, cls).prediction is LeafMajorityClass.prediction
    return plain


def _prediction(self, x, *, tree=None):
    if self.is_active() and self._nb_correct_weight >= self._mc_correct_weight:
        proba = _naive_bayes(x, self.stats, self.splitters)
        _memo[self] = (x, tuple(x.items()), tuple(self.stats.items()), self.splitters, len(self.splitters),
                       _winner(proba))
        return proba
    return super(LeafNaiveBayesAdaptive, self).prediction(x)


def _learn_one(self, x, y, *, w=1.0, tree=None):
    memo = _memo.pop(self, None)
    if self.is_active():
        # Empty node (assume the majority class will be the best option) or majority class prediction is correct
        if len(self.stats) == 0:
            self._mc_correct_weight += w
        elif _plain_majority(type(self)):
            if _majority(self) == y:
                self._mc_correct_weight += w
        else:
            mc_pred = super(LeafNaiveBayesAdaptive, self).prediction(x)
            if max(mc_pred, key=mc_pred.get) == y:
                self._mc_correct_weight += w
        if (memo is not None and memo[0] is x and memo[3] is self.splitters and memo[4] == len(self.splitters)
                and memo[2] == tuple(self.stats.items()) and memo[1] == tuple(x.items())):
            top = memo[5]
        else:
            top = _winner(_naive_bayes(x, self.stats, self.splitters))
        if top is not _EMPTY and top == y:
            self._nb_correct_weight += w
    super(LeafNaiveBayesAdaptive, self).learn_one(x, y, w=w, tree=tree)


def _update_splitters(self, x, y, w, nominal_attributes):
    """``HTLeaf.update_splitters``, with a plain ``GaussianSplitter``'s update inlined.

    Per feature, river calls ``GaussianSplitter.update`` → ``Gaussian.update`` → ``Var.update`` →
    ``Mean.update``: 7% of the learner's samples over ``examples/bench.yaml`` (py-spy). The same
    statements run here in the same order on the same objects, for exactly those classes; a
    subclass of any of them or a nominal splitter goes through river's calls, and a leaf that picks
    its own features (ARF's) is asked for them as river asks. The splitters end in the same state
    (``tests/unit/test_nb_reuse.py``).
    """
    items = x.items() if type(self)._iter_features is _ITER_FEATURES else self._iter_features(x)
    disabled, splitters = self._disabled_attrs, self.splitters
    for att_id, att_val in items:
        if att_id in disabled:
            continue
        try:
            splitter = splitters[att_id]
        except KeyError:
            if (nominal_attributes is not None and att_id in nominal_attributes) or not isinstance(att_val, numbers.Number):
                splitter = self.new_nominal_splitter()
            else:
                splitter = self.splitter.clone()
            splitters[att_id] = splitter
        if type(splitter) is not GaussianSplitter or att_val is None:
            splitter.update(att_val, y, w)
            continue
        # GaussianSplitter.update
        lows, highs = splitter._min_per_class, splitter._max_per_class
        try:
            dist = splitter._att_dist_per_class[y]
            if att_val < lows[y]:
                lows[y] = att_val
            if att_val > highs[y]:
                highs[y] = att_val
        except KeyError:
            dist = Gaussian()
            splitter._att_dist_per_class[y] = dist
            lows[y] = att_val
            highs[y] = att_val
        if type(dist) is not Gaussian or type(var := dist._var) is not Var or type(mean := var.mean) is not Mean:
            dist.update(att_val, w)
            continue
        # Gaussian.update → Var.update → Mean.update
        mean_old = mean._mean
        mean.n += w
        mean._mean += (w / mean.n) * (att_val - mean._mean)
        var._S += w * (att_val - mean_old) * (att_val - mean._mean)


# The compiled loops (models/_nb_fast.pyx, built by setup.py): the same statements in C where the
# numbers are plain floats. Without the extension (no C compiler at install) the loops above run.
PURE = {"naive_bayes": _naive_bayes, "update_splitters": _update_splitters}
try:
    from models import _nb_fast
except ImportError:  # pragma: no cover - the extension is optional
    _nb_fast = None
COMPILED = _nb_fast is not None
if COMPILED:
    _naive_bayes = _nb_fast.naive_bayes
    _update_splitters = _nb_fast.update_splitters


def install() -> bool:
    """Reuse the vote from now on, in this process; False (and river's methods) on another release."""
    if river.__version__ != RIVER_VERSION:
        return False
    LeafNaiveBayesAdaptive.prediction = _prediction
    LeafNaiveBayesAdaptive.learn_one = _learn_one
    HTLeaf.update_splitters = _update_splitters
    return True


def uninstall() -> None:
    """river's own methods again (the tests compare the two)."""
    LeafNaiveBayesAdaptive.prediction = _ORIGINAL["prediction"]
    LeafNaiveBayesAdaptive.learn_one = _ORIGINAL["learn_one"]
    HTLeaf.update_splitters = _ORIGINAL["update_splitters"]
    _memo.clear()


def installed() -> bool:
    return LeafNaiveBayesAdaptive.learn_one is _learn_one
