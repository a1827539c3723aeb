"""Learner checkpoints: a consistent cut of every model, taken without stalling the stream.

A checkpoint is taken in these steps, in order:

1. **Flush the producer.** Every prediction and decision for events before the
   cut is acknowledged by the broker, so the cut never promises work that is lost.
2. **Record the cut.** For every input partition, the offset of the first record the
   models have not taken (the head of the learner's merge buffer, or the next to fetch); a
   restore resumes exactly there, so each event is learned once across crashes.
3. **Fork.** The child process holds a copy-on-write image of the learner at the
   cut; the parent goes back to the stream at once (a fork costs milliseconds,
   while pickling a 100 MB forest costs seconds). The child runs at a lower
   priority (``CHILD_NICE``), so its pickling does not take cores from the stream.
4. **Child: pickle, sign, write.** The whole learner core goes to
   ``<dir>/checkpoint/<version>.snap`` and each model to ``<dir>/models/<name>/<v>.snap``,
   each by temp file, fsync, rename, fsync of the directory, so a crash leaves the
   previous checkpoint intact and never a torn one under a final name.
5. **Parent: publish.** When the child has exited, the per-model snapshots are
   produced to the compacted models topic (key = model name) for serving.

Without ``fork`` (non-POSIX, or ``DRIFTLINE_SNAPSHOT_FORK=0``) step 4 runs inline.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from models.snapshot import dump_snapshot, load_latest_local, write_local

__all__ = ["Checkpointer", "PendingCheckpoint"]

CHECKPOINT = "checkpoint"
# The writer child yields the cores to the live services: it runs at this niceness above the learner's.
CHILD_NICE = 10


@dataclass
class PendingCheckpoint:
    version: int
    pid: int | None
    started: float
    models: dict[str, int] = field(default_factory=dict)  # model → snapshot version (events learned)


class Checkpointer:
    def __init__(self, directory: Path, key: bytes, keep: int = 3, use_fork: bool | None = None):
        self.directory = Path(directory)
        self.key = key
        self.keep = keep
        if use_fork is None:
            use_fork = hasattr(os, "fork") and os.environ.get("DRIFTLINE_SNAPSHOT_FORK", "1") != "0"
        self.use_fork = use_fork
        self.pending: PendingCheckpoint | None = None
        self.published: dict[str, int] = {}
        self.last_duration_s: float | None = None
        self.last_bytes: int = 0

    # ---------------------------------------------------------------- write

    def _write(self, version: int, meta: dict, core, model_metas: dict[str, dict]) -> int:
        total = 0
        for name, m in model_metas.items():
            runner = core.runners[name]
            blob = dump_snapshot(m, {"model": runner.model, "runner": runner}, self.key)
            write_local(self.directory / "models", name, m["version"], blob, keep=self.keep)
            total += len(blob)
        blob = dump_snapshot(meta, {"core": core}, self.key)
        write_local(self.directory, CHECKPOINT, version, blob, keep=self.keep)
        return total + len(blob)

    def start(self, version: int, meta: dict, core, model_metas: dict[str, dict]) -> None:
        """Steps 3-4. ``meta``/``model_metas`` already hold the cut (step 2)."""
        t0 = time.monotonic()
        models = {n: m["version"] for n, m in model_metas.items()}
        if self.use_fork:
            pid = os.fork()
            if pid == 0:  # child: no logging, no Kafka; write and leave
                code = 0
                try:
                    os.nice(CHILD_NICE)
                except OSError:
                    pass  # a lower priority is a courtesy: the checkpoint is written regardless
                try:
                    self._write(version, meta, core, model_metas)
                except BaseException:  # noqa: BLE001
                    code = 1
                os._exit(code)
            self.pending = PendingCheckpoint(version, pid, t0, models)
        else:
            self.last_bytes = self._write(version, meta, core, model_metas)
            self.pending = PendingCheckpoint(version, None, t0, models)

    def poll(self, block: bool = False) -> PendingCheckpoint | None:
        """The checkpoint that has just finished writing, if any (step 5 is the caller's)."""
        p = self.pending
        if p is None:
            return None
        if p.pid is not None:
            pid, status = os.waitpid(p.pid, 0 if block else os.WNOHANG)
            if pid == 0:
                return None
            if os.waitstatus_to_exitcode(status) != 0:
                self.pending = None
                raise RuntimeError(f"checkpoint {p.version} failed in its writer process (status {status})")
        self.pending = None
        self.last_duration_s = time.monotonic() - p.started
        return p

    def model_blob(self, name: str, version: int) -> bytes:
        return (self.directory / "models" / name / f"{version:012d}.snap").read_bytes()

    # ---------------------------------------------------------------- read

    def latest(self):
        """The newest checkpoint that verifies, and what was refused on the way."""
        return load_latest_local(self.directory, CHECKPOINT, self.key)
