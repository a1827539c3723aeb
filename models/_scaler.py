"""river's ``StandardScaler``, compiled where it can be: the same floats, in less time.

``StandardScaler | LogisticRegression`` learns the scaler and transforms each event twice (to
predict, and to learn after the update); over ``examples/bench.yaml``'s 15 features that was
8.2 µs to learn and 3.3 to transform an event, about a ninth of both models' ``on_event``. The two
methods run compiled (``models/_scale_fast.pyx``): river's statements, feature by feature, on C
doubles where the numbers are plain floats, so the same results bit for bit
(``tests/unit/test_scaler.py``). A scaler with a window or without ``with_std`` runs river's own
methods, as does every scaler where the extension was not built (no C compiler at install).

Installed, like :mod:`models._nb_reuse`, only on the river release it was written against.
"""

from __future__ import annotations

import river
from river.preprocessing import StandardScaler

__all__ = ["install", "uninstall", "installed", "COMPILED"]

RIVER_VERSION = "0.26.1"
_ORIGINAL = {"learn_one": StandardScaler.__dict__["learn_one"],
             "transform_one": StandardScaler.__dict__["transform_one"]}
try:
    from models._scale_fast import learn_one as _learn_one, transform_one as _transform_one
except ImportError:  # pragma: no cover - the extension is optional
    _learn_one = _transform_one = None
COMPILED = _learn_one is not None


def install() -> bool:
    """The compiled methods from now on, in this process; False (river's own) without the extension
    or on another river release."""
    if not COMPILED or river.__version__ != RIVER_VERSION:
        return False
    StandardScaler.learn_one = _learn_one
    StandardScaler.transform_one = _transform_one
    return True


def uninstall() -> None:
    """river's own methods again (the tests compare the two)."""
    StandardScaler.learn_one = _ORIGINAL["learn_one"]
    StandardScaler.transform_one = _ORIGINAL["transform_one"]


def installed() -> bool:
    return StandardScaler.learn_one is _learn_one and COMPILED
