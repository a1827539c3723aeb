"""A child process with its log, for the benchmarks and the chaos suite: ``stop`` is SIGTERM then
SIGKILL, ``kill`` is a kill -9 (the crash marker), as :class:`processors.testing.Worker`.

>>> import sys, tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     p = Proc("sleeper", [sys.executable, "-c", "print('up', flush=True); import time; time.sleep(60)"],
...              {}, f"{d}/sleeper.log")
...     p.kill()
...     p.alive(), p.proc.returncode
(False, -9)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from processors.testing import Worker

__all__ = ["Proc"]


class Proc(Worker):
    """Runs ``cmd`` in its own session, stdout and stderr appended to ``log``."""

    def __init__(self, name: str, cmd: list[str], env: dict, log: str | Path):
        self.name, self.log = name, Path(log)
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, env=env or None, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def __repr__(self) -> str:
        return f"{self.name} (pid {self.proc.pid})"

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]
