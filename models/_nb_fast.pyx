# cython: language_level=3
"""A Hoeffding-tree leaf's two hot loops, compiled: river's statements on river's objects.

``naive_bayes`` is river's ``do_naive_bayes_prediction`` and ``update_splitters`` its
``HTLeaf.update_splitters``, each in one loop where river calls down three or four levels per
feature and class (``cond_log_proba`` → ``Gaussian.log_pdf``; ``GaussianSplitter.update`` →
``Gaussian.update`` → ``Var.update`` → ``Mean.update``), for exactly those classes; any other
splitter or distribution is asked as river asks it. :mod:`models._nb_reuse` installs them; without
the extension (no C compiler at install) river's own functions run there, with the same results.

Each loop takes its C path only where every number it reads is a plain ``float`` (and a Welford
counter's ``ddof`` a plain ``int``), for which CPython's float arithmetic is these C operations on
doubles, in the same order: ``**`` is libm's ``pow`` (setup.py builds with ``-fno-builtin-pow`` so
the compiler does not turn ``pow(d, 2.0)`` into ``d * d``, which rounds differently now and then)
and ``log`` is libm's ``log``, which ``math.log`` calls for a positive finite argument. Anything else
(an ``int`` feature, a numpy scalar, a subclass of river's statistics) goes through Python objects
as river's code does. ``tests/unit/test_nb_reuse.py`` compares both loops with river's, bit for bit.
"""

import math
import numbers

from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.long cimport PyLong_CheckExact
from libc.math cimport log, pow

from river.proba.gaussian import _HALF_LOG_TAU, Gaussian
from river.stats import Mean, Var
from river.tree.nodes.leaf import HTLeaf
from river.tree.splitter import GaussianSplitter

_ITER_FEATURES = HTLeaf._iter_features
cdef double HALF_LOG_TAU = _HALF_LOG_TAU
cdef double NINF = -math.inf


def naive_bayes(x, observed_class_distribution, splitters):
    """river's ``do_naive_bayes_prediction(x, observed_class_distribution, splitters)``, bit for bit."""
    cdef double vote, variance, n, log_p, value_d, mean_d, ddof_d
    cdef object g, var, mean, S, ddof, value, per_class, obs
    cdef bint fast
    total_weight = sum(observed_class_distribution.values())
    if not observed_class_distribution or total_weight == 0:
        return {}
    py_log, ninf = math.log, -math.inf
    atts = [(x[att], obs._att_dist_per_class if type(obs) is GaussianSplitter else None, obs)
            for att, obs in splitters.items() if att in x] if splitters else []
    votes = {}
    for c, class_weight in observed_class_distribution.items():
        if class_weight > 0:
            vote = py_log(class_weight / total_weight)
        else:
            votes[c] = 0.0
            continue
        for value, per_class, obs in atts:
            g = per_class.get(c, None) if per_class is not None else None
            if type(g) is Gaussian:  # Gaussian.log_pdf, inlined
                var = g._var
                mean = var.mean
                n_o, ddof, S, m_o = mean.n, var.ddof, var._S, mean._mean
                fast = (PyFloat_CheckExact(value) and PyFloat_CheckExact(n_o) and PyLong_CheckExact(ddof)
                        and PyFloat_CheckExact(S) and PyFloat_CheckExact(m_o))
                if fast:
                    n, ddof_d = PyFloat_AS_DOUBLE(n_o), ddof
                    if n > ddof_d:
                        variance = PyFloat_AS_DOUBLE(S) / (n - ddof_d)
                        if variance > 0.0:
                            value_d, mean_d = PyFloat_AS_DOUBLE(value), PyFloat_AS_DOUBLE(m_o)
                            log_p = pow(value_d - mean_d, 2.0) / (-2.0 * variance) - HALF_LOG_TAU - 0.5 * log(variance)
                            if log_p > NINF:
                                vote += log_p
                elif n_o > ddof:
                    variance_o = S / (n_o - ddof)
                    if variance_o > 0.0:
                        log_p_o = (value - m_o) ** 2 / (-2.0 * variance_o) - _HALF_LOG_TAU - 0.5 * py_log(variance_o)
                        if log_p_o > ninf:
                            vote += log_p_o
                continue
            if per_class is not None and g is None and c not in per_class:
                continue  # cond_log_proba: -inf for a class the splitter has not seen
            log_proba = getattr(obs, "cond_log_proba", None)
            if log_proba is not None:
                log_p_o = log_proba(value, c)
                if log_p_o > ninf:
                    vote += log_p_o
            else:
                tmp = obs.cond_proba(value, c)
                vote += py_log(tmp) if tmp > 0 else 0.0
        votes[c] = vote
    max_ll = max(votes.values())
    lse = max_ll + math.log(sum(math.exp(log_proba - max_ll) for log_proba in votes.values()))
    for c in votes:
        votes[c] = math.exp(votes[c] - lse)
    return votes


def update_splitters(self, x, y, w, nominal_attributes):
    """river's ``HTLeaf.update_splitters``: the splitters end in the same state."""
    cdef double a, n, m_old, m_new, wd
    cdef object splitter, dist, var, mean, lows, highs
    items = x.items() if type(self)._iter_features is _ITER_FEATURES else self._iter_features(x)
    disabled, splitters = self._disabled_attrs, self.splitters
    w_float = PyFloat_CheckExact(w)
    wd = PyFloat_AS_DOUBLE(w) if w_float else 0.0
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
        if type(dist) is not Gaussian:
            dist.update(att_val, w)
            continue
        var = dist._var
        if type(var) is not Var:
            dist.update(att_val, w)
            continue
        mean = var.mean
        if type(mean) is not Mean:
            dist.update(att_val, w)
            continue
        # Gaussian.update → Var.update → Mean.update
        n_o, m_o, S_o = mean.n, mean._mean, var._S
        if (w_float and PyFloat_CheckExact(att_val) and PyFloat_CheckExact(n_o) and PyFloat_CheckExact(m_o)
                and PyFloat_CheckExact(S_o)):
            a, m_old = PyFloat_AS_DOUBLE(att_val), PyFloat_AS_DOUBLE(m_o)
            n = PyFloat_AS_DOUBLE(n_o) + wd
            mean.n = n
            m_new = m_old + (wd / n) * (a - m_old)
            mean._mean = m_new
            var._S = PyFloat_AS_DOUBLE(S_o) + wd * (a - m_old) * (a - m_new)
            continue
        mean_old = mean._mean
        mean.n += w
        mean._mean += (w / mean.n) * (att_val - mean._mean)
        var._S += w * (att_val - mean_old) * (att_val - mean._mean)
