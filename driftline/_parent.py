"""A service that ``driftline run`` starts ends when ``driftline run`` ends, however it ends.

``driftline run`` starts its processor worker (and, live, ``driftline serve``) in sessions of their
own, so that a Ctrl-C in the terminal reaches only the parent, which then stops them in order. When
the parent is killed instead (``kill -9``, the OOM killer, a test's clean-up), nothing stopped
them: they went on reading the run's topics, and without a broker they retried for ever.

The parent names itself in ``DRIFTLINE_PARENT_PID`` (:func:`child_env`). A child that finds it
there asks Linux to send it SIGTERM when that parent dies (``PR_SET_PDEATHSIG``, see prctl(2)),
which every driftline service handles as its graceful stop (:func:`exit_with_parent`). Linux ties
the request to the *thread* that started the child, so the parent starts its children from its main
thread. Elsewhere than Linux the variable is ignored.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from typing import MutableMapping

__all__ = ["PARENT_ENV", "child_env", "exit_with_parent"]

log = logging.getLogger("driftline")

PARENT_ENV = "DRIFTLINE_PARENT_PID"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def child_env(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """``env`` for a child that should end with this process (its main thread)."""
    env[PARENT_ENV] = str(os.getpid())
    return env


def exit_with_parent(environ: MutableMapping[str, str] = os.environ) -> bool:
    """If ``DRIFTLINE_PARENT_PID`` names our parent, get SIGTERM when it dies; True if arranged.

    The variable is removed from ``environ``, so that this process's own children do not inherit it.
    Raises SystemExit when the parent has died already (before the request could take effect).
    """
    raw = environ.pop(PARENT_ENV, None)
    if not raw:
        return False
    try:
        parent = int(raw)
    except ValueError:
        raise SystemExit(f"driftline: {PARENT_ENV}={raw!r} is not a process id; unset it") from None
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        log.warning("could not ask to end with the parent process %d: %s", parent,
                    os.strerror(ctypes.get_errno()))
        return False
    if os.getppid() != parent:  # it died before the request: no signal will come
        raise SystemExit(f"driftline: the parent process {parent} has exited; not starting")
    return True
