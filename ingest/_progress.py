"""Feedback while ingesting: a progress bar on a terminal, plain log lines otherwise.

>>> import io
>>> out = io.StringIO()
>>> p = Progress(total=None, stream=out, every=0.0)
>>> p.update(sent=10, acknowledged=8, rejected=1); p.close()
>>> out.getvalue().startswith("ingest: sent=10 acknowledged=8 rejected=1")
True
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Shows count, rate and (for finite sources) ETA. ``every`` seconds between log lines."""

    def __init__(self, total: int | None, stream=None, every: float = 5.0, tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.total, self.every = total, every
        self.t0 = self._last = time.monotonic()
        self.tty = self.stream.isatty() if tty is None else tty
        self._bar = None
        if self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TaskProgressColumn,
                                       TextColumn, TimeElapsedColumn, TimeRemainingColumn)

            self._bar = Bar(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[rate]} ev/s  {task.fields[extra]}"), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=Console(file=self.stream), transient=False)
            self._task = self._bar.add_task("ingest", total=total, rate="-", extra="")
            self._bar.start()

    def update(self, sent: int, acknowledged: int, rejected: int) -> None:
        now = time.monotonic()
        rate = sent / max(now - self.t0, 1e-9)
        if self._bar is not None:
            self._bar.update(self._task, completed=sent + rejected, rate=f"{rate:,.0f}",
                             extra=f"acked {acknowledged:,} rejected {rejected:,}")
        elif now - self._last >= self.every:
            self._last = now
            eta = ""
            if self.total:
                left = max(self.total - sent - rejected, 0)
                eta = f" eta={left / rate:.0f}s" if rate > 0 else ""
            print(f"ingest: sent={sent} acknowledged={acknowledged} rejected={rejected} rate={rate:.0f}/s{eta}",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
