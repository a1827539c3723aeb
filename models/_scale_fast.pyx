# cython: language_level=3
"""river's ``StandardScaler.learn_one`` and ``transform_one`` (no window), compiled: river's
statements on river's dictionaries, one feature at a time.

Each feature takes the C path only where every number it reads is a plain ``float`` (the count a
plain ``int``), for which CPython's float arithmetic is these C operations on doubles, in the same
order; ``v ** 0.5`` is libm's ``pow(v, 0.5)``, as CPython calls it (setup.py builds with
``-fno-builtin-pow``, so the compiler keeps the call). Anything else (an ``int`` or ``bool``
feature, a numpy scalar, a negative variance, whose square root Python makes complex) runs river's
own statement on Python objects. A NaN is a NaN, but not always with river's sign bit: which of
two NaN operands an x86 add passes on depends on the order the compiler gave them, and CPython
itself differs there (3.11's specialized float add against ``float.__add__``).

The dictionaries are read and written in river's order, so a missing feature is added to them
exactly when river adds it. A scaler with a window, without ``with_std``, or whose dictionaries
are not the types river makes runs river's own method (``RIVER``). :mod:`models._scaler`
installs the two; ``tests/unit/test_scaler.py`` compares them with river's, bit for bit.
"""

from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.long cimport PyLong_AsLongLong, PyLong_CheckExact
from cpython.ref cimport PyObject
from libc.math cimport pow

from collections import Counter, defaultdict

from river.preprocessing import StandardScaler

cdef double ZERO = 0.0
cdef long long BIG = 1 << 52  # counts below this are exact as doubles


RIVER = {"learn_one": StandardScaler.__dict__["learn_one"],
         "transform_one": StandardScaler.__dict__["transform_one"]}
_RIVER_LEARN, _RIVER_TRANSFORM = RIVER["learn_one"], RIVER["transform_one"]


cdef bint _plain(self):
    """Does ``self`` scale as this module does: no window, ``with_std``, river's dictionaries?"""
    means, vars_ = self.means, self.vars
    return (self.window_size is None and self.with_std and type(self.counts) is Counter
            and type(means) is defaultdict and means.default_factory is float
            and type(vars_) is defaultdict and vars_.default_factory is float)


def learn_one(self, x):
    """``StandardScaler.learn_one(x)``, bit for bit."""
    if not _plain(self):
        return _RIVER_LEARN(self, x)
    _learn(self.counts, self.means, self.vars, x)


def transform_one(self, x):
    """``StandardScaler.transform_one(x)``, bit for bit."""
    if not _plain(self):
        return _RIVER_TRANSFORM(self, x)
    return _transform(self.means, self.vars, x)


cdef _learn(counts, means, vars_, x):  # untyped: a typed dict's [] would skip __missing__
    cdef PyObject *p
    cdef double xd, m_old, m_new, v_old, n
    cdef long long c
    for i, xi in x.items():
        p = PyDict_GetItem(counts, i)  # counts[i] += 1 (a Counter answers 0 for a missing key)
        if p == NULL:
            count = 1
        else:
            count = <object>p + 1
        counts[i] = count
        p = PyDict_GetItem(means, i)  # old_mean = means[i] (a defaultdict adds 0.0 for a missing key)
        if p == NULL:
            old_mean = 0.0
            PyDict_SetItem(means, i, old_mean)
        else:
            old_mean = <object>p
        if PyFloat_CheckExact(xi) and PyFloat_CheckExact(old_mean) and PyLong_CheckExact(count):
            c = PyLong_AsLongLong(count)
            p = PyDict_GetItem(vars_, i)
            if 0 < c < BIG and (p == NULL or PyFloat_CheckExact(<object>p)):
                v_old = ZERO if p == NULL else PyFloat_AS_DOUBLE(<object>p)
                xd, m_old, n = PyFloat_AS_DOUBLE(xi), PyFloat_AS_DOUBLE(old_mean), <double>c
                m_new = m_old + (xd - m_old) / n
                means[i] = m_new
                vars_[i] = v_old + ((xd - m_old) * (xd - m_new) - v_old) / n
                continue
        means[i] += (xi - old_mean) / counts[i]
        vars_[i] += ((xi - old_mean) * (xi - means[i]) - vars_[i]) / counts[i]


cdef dict _transform(means, vars_, x):
    cdef PyObject *p
    cdef double vd
    result = {}
    for i, xi in x.items():
        p = PyDict_GetItem(vars_, i)  # v = vars_[i]
        if p == NULL:
            v = 0.0
            PyDict_SetItem(vars_, i, v)
        else:
            v = <object>p
        if PyFloat_CheckExact(v):
            vd = PyFloat_AS_DOUBLE(v)
            if vd == 0.0:  # falsy: river's ``else 0.0``, without reading the mean
                result[i] = 0.0
                continue
            p = PyDict_GetItem(means, i)
            # (CPython answers NaN ** 0.5 with that NaN, without libm: left to Python.)
            if vd > 0.0 and PyFloat_CheckExact(xi) and p != NULL and PyFloat_CheckExact(<object>p):
                result[i] = (PyFloat_AS_DOUBLE(xi) - PyFloat_AS_DOUBLE(<object>p)) / pow(vd, 0.5)
                continue
        result[i] = (xi - means[i]) / v**0.5 if v else 0.0
    return result
