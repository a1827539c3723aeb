"""Builds driftline's one C extension, models/_nb_fast (the rest of the project is in pyproject.toml).

``-fno-builtin-pow`` keeps ``pow(d, 2.0)`` a call to libm, as CPython's ``d ** 2`` is: GCC would
otherwise compute it as ``d * d``, which rounds differently from glibc's ``pow`` now and then.
``-ffp-contract=off`` keeps every multiply and add rounded on its own, as in Python. The extension is
optional: without a C compiler, models/_nb_reuse.py runs river's own two functions instead.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize([Extension("models._nb_fast", ["models/_nb_fast.pyx"],
                                     extra_compile_args=["-fno-builtin-pow", "-ffp-contract=off"], optional=True)]),
)
