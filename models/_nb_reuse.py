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

The vote and the leaf's splitter update, river's ``do_naive_bayes_prediction`` and
``HTLeaf.update_splitters``, run compiled (``models/_nb_fast.pyx``, built by ``setup.py`` at
install): the same statements in one loop each, where river calls down three or four levels per
feature and class, on C doubles where the numbers are plain floats, with libm's ``pow`` and ``log``
as CPython calls them, so the same floats. The tree's ``on_event`` over ``examples/bench.yaml``
takes about a quarter less with them (``bench/NOTES.md``). Without a C compiler at install, river's
own two functions run (``RIVER``), with the memo as above.

It is installed only on the river release it was written against (:data:`RIVER_VERSION`);
another release keeps river's own methods.
"""

from __future__ import annotations

import math
import weakref

import river
from river.tree.nodes.htc_nodes import LeafMajorityClass, LeafNaiveBayesAdaptive
from river.tree.nodes.leaf import HTLeaf
from river.tree.utils import do_naive_bayes_prediction

__all__ = ["install", "uninstall", "installed", "RIVER_VERSION"]

RIVER_VERSION = "0.26.1"
_ORIGINAL = {"prediction": LeafNaiveBayesAdaptive.prediction, "learn_one": LeafNaiveBayesAdaptive.learn_one,
             "update_splitters": HTLeaf.update_splitters}
_EMPTY = object()  # the vote was empty (river then counts no naive Bayes hit)
_memo: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


# The vote and the splitter update: compiled (models/_nb_fast.pyx), or river's own where the
# extension was not built (no C compiler at install). RIVER keeps river's for the tests.
RIVER = {"naive_bayes": do_naive_bayes_prediction, "update_splitters": _ORIGINAL["update_splitters"]}
try:
    from models._nb_fast import naive_bayes as _naive_bayes, update_splitters as _update_splitters
except ImportError:  # pragma: no cover - the extension is optional
    _naive_bayes, _update_splitters = RIVER["naive_bayes"], RIVER["update_splitters"]
COMPILED = _naive_bayes is not RIVER["naive_bayes"]


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
