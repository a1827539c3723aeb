"""Builds driftline's two C extensions, models/_nb_fast (the Hoeffding tree's naive Bayes vote and
splitter update) and models/_scale_fast (river's StandardScaler); the rest is in pyproject.toml.

``-fno-builtin-pow`` keeps ``pow(d, 2.0)`` a call to libm, as CPython's ``d ** 2`` is: GCC would
otherwise compute it as ``d * d``, which rounds differently from glibc's ``pow`` now and then.
``-ffp-contract=off`` keeps every multiply and add rounded on its own, as in Python. The extensions are
optional: without a C compiler, river's own functions run instead (models/_nb_reuse.py, models/_scaler.py).
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

FLAGS = ["-fno-builtin-pow", "-ffp-contract=off"]

setup(
    ext_modules=cythonize([Extension(f"models.{name}", [f"models/{name}.pyx"], extra_compile_args=FLAGS, optional=True)
                           for name in ("_nb_fast", "_scale_fast")]),
)
