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
try:
    from models import _scale_fast
except ImportError:  # pragma: no cover - the extension is optional
    _scale_fast = None
COMPILED = _scale_fast is not None


def install() -> bool:
    """The compiled methods from now on, in this process; False (river's own) without the extension
    or on another river release."""
    if not COMPILED or river.__version__ != RIVER_VERSION:
        return False
    StandardScaler.learn_one = _scale_fast.learn_one
    StandardScaler.transform_one = _scale_fast.transform_one
    return True


def uninstall() -> None:
    """river's own methods again (the tests compare the two); the extension kept them, for the
    scalers it leaves to river. Without it, they were never replaced."""
    if COMPILED:
        StandardScaler.learn_one = _scale_fast.RIVER["learn_one"]
        StandardScaler.transform_one = _scale_fast.RIVER["transform_one"]


def installed() -> bool:
    return COMPILED and StandardScaler.learn_one is _scale_fast.learn_one
