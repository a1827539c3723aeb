"""Learner checkpoints: a consistent cut of every model, taken without stalling the stream.

A checkpoint is taken in these steps, in order:

1. **Flush the producer.** Every prediction and decision for events before the
   cut is acknowledged by the broker, so the cut never promises work that is lost.
2. **Record the cut.** For every input partition, the offset of the first record the
   models have not taken (the head of the learner's merge buffer, or the next to fetch); a
   restore resumes exactly there, so each event is learned once across crashes.
3. **Fork, or pickle in place.** The child process holds a copy-on-write image of the learner at
   the cut; the parent goes back to the stream at once (a fork costs milliseconds, while pickling
   a 100 MB forest costs seconds). The child runs in Linux's idle scheduling class
   (``SCHED_IDLE``; elsewhere ``CHILD_NICE`` levels below the learner), so its pickling takes
   only cores the stream leaves idle; see :func:`_yield_cores`. A small learner, whose last
   checkpoint came to at most :data:`IN_PLACE_MAX_BYTES`, is pickled and signed in place instead,
   at the cut, which takes less than the fork, and a thread writes it (step 4).
4. **Pickle, sign, write** (the child, or the thread for what was pickled in place). The whole
   learner core goes to ``<dir>/checkpoint/<version>.snap`` and each model to
   ``<dir>/models/<name>/<v>.snap``, each by temp file, fsync, rename, fsync of the directory, so
   a crash leaves the previous checkpoint intact and never a torn one under a final name.
5. **Parent: publish.** When the child has exited (the thread has finished), the per-model
   snapshots are produced to the compacted models topic (key = model name) for serving.

Without ``fork`` (non-POSIX, or ``DRIFTLINE_SNAPSHOT_FORK=0``) every checkpoint is pickled in place.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from models.snapshot import load_latest_local, local_path, pickle_sharing, seal, write_local

__all__ = ["Checkpointer", "PendingCheckpoint"]

CHECKPOINT = "checkpoint"
MODELS = "models"  # <dir>/models/<name>/<version>.snap: each model's own snapshot (step 4)
# The writer child yields the cores to the live services: it runs at this niceness above the learner's,
# and in the idle scheduling class where there is one.
CHILD_NICE = 10
# A writer still running after this many seconds (cores never idle: a backlog) gets back the normal
# class, at its niceness, so that checkpoints keep being taken; so does one the learner waits for.
CHILD_IDLE_GRACE_S = 5.0
#: A learner whose last checkpoint file came to at most this many bytes is pickled in place (step
#: 3). Measured in a process of 150 MB besides its models: the fork stopped the stream 10.5 ms
#: whatever the models; pickling and signing in place took 0.8-1.1 ms for a StandardScaler |
#: LogisticRegression core of 15 KB, and 27 ms for the benchmark's LR and Hoeffding tree after
#: 40,000 events (1.66 MB, about 64 MB/s), so in place costs less than the fork up to about
#: 600 KB. A model seldom grows much between two checkpoints; a quarter of a MiB leaves the margin.
IN_PLACE_MAX_BYTES = 256 * 1024


def model_path(directory: str | Path, name: str, version: int) -> Path:
    """Where a checkpointer of ``directory`` writes model ``name``'s snapshot ``version`` (step 4)."""
    return local_path(Path(directory) / MODELS, name, version)


def _yield_cores() -> None:
    """In the writer child: run only when a core would otherwise be idle.

    At ``CHILD_NICE`` alone the child still took cores from the stream. At 4,500 events/s through
    the benchmark pipeline, a checkpoint every 10,000 events, the learner waited for a core 27-50 µs
    an event while a child was writing, against 13-23 µs between children; in the idle class 17-28
    µs (six alternating pairs of 20 s runs). The end-to-end p99 went from 54-102 ms to 30-80 ms.
    """
    try:
        os.nice(CHILD_NICE)  # kept when the class is raised again (:meth:`Checkpointer._raise_child`)
    except OSError:
        pass  # a lower priority is a courtesy: the checkpoint is written regardless
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass


@dataclass
class PendingCheckpoint:
    version: int
    pid: int | None
    started: float
    models: dict[str, int] = field(default_factory=dict)  # model → snapshot version (events learned)
    raised: bool = False  # the writer child was given the normal scheduling class back
    writer: threading.Thread | None = None  # the thread writing what was pickled in place
    size: int | None = None  # the checkpoint file's bytes, when pickled in place
    error: BaseException | None = None  # what stopped the writer thread


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
        #: The last checkpoint file's size (the whole core, each model's payload once); None before
        #: the first: a learner restored with a large forest forks at once.
        self.last_bytes: int | None = None

    # ---------------------------------------------------------------- write

    def _seal(self, version: int, meta: dict, core, model_metas: dict[str, dict]) -> list[tuple[Path, str, int, bytes]]:
        """The signed files of a checkpoint, ``(directory, name, version, blob)``, the models' first
        and the core's last (the order they are written in).

        Each model is pickled once, for its own snapshot and for the checkpoint's core, which takes
        the model's pickle as it is (:func:`models.snapshot.pickle_sharing`). Pickled twice, a
        Hoeffding tree of 3.7 MB (the benchmark's after 90,000 events) cost 29 ms more each
        checkpoint: the core alone pickles in 37 ms."""
        payloads = {name: pickle.dumps({"model": r.model, "runner": r}, protocol=pickle.HIGHEST_PROTOCOL)
                    for name, r in core.runners.items()}
        files = [(self.directory / MODELS, name, m["version"], seal(m, payloads[name], self.key))
                 for name, m in model_metas.items()]
        shared = {id(r): (payloads[name], "runner") for name, r in core.runners.items()}
        files.append((self.directory, CHECKPOINT, version, seal(meta, pickle_sharing({"core": core}, shared), self.key)))
        return files

    def _store(self, files: list[tuple[Path, str, int, bytes]]) -> None:
        for directory, name, version, blob in files:
            write_local(directory, name, version, blob, keep=self.keep)

    def _write(self, version: int, meta: dict, core, model_metas: dict[str, dict]) -> None:
        """Step 4 whole, in the writer child."""
        self._store(self._seal(version, meta, core, model_metas))

    def start(self, version: int, meta: dict, core, model_metas: dict[str, dict]) -> None:
        """Steps 3-4. ``meta``/``model_metas`` already hold the cut (step 2)."""
        t0 = time.monotonic()
        models = {n: m["version"] for n, m in model_metas.items()}
        if self.use_fork and (self.last_bytes is None or self.last_bytes > IN_PLACE_MAX_BYTES):
            pid = os.fork()
            if pid == 0:  # child: no logging, no Kafka; write and leave
                code = 0
                # No collection in the child: it would run the finalizers of the parent's garbage,
                # and a librdkafka client's (rd_kafka_destroy) joins threads a fork does not copy.
                gc.disable()
                _yield_cores()
                try:
                    self._write(version, meta, core, model_metas)
                except BaseException:  # noqa: BLE001
                    code = 1
                os._exit(code)
            self.pending = PendingCheckpoint(version, pid, t0, models)
            return
        files = self._seal(version, meta, core, model_metas)  # at the cut, in the learner's thread
        p = PendingCheckpoint(version, None, t0, models, size=len(files[-1][3]))

        def store() -> None:
            try:
                self._store(files)
            except BaseException as exc:  # noqa: BLE001 - raised in the learner's thread by poll()
                p.error = exc

        # Not a daemon: an interpreter on its way out waits for the files rather than tearing them.
        p.writer = threading.Thread(target=store, name=f"driftline-checkpoint-{version}")
        p.writer.start()
        self.pending = p

    def poll(self, block: bool = False) -> PendingCheckpoint | None:
        """The checkpoint that has just finished writing, if any (step 5 is the caller's)."""
        p = self.pending
        if p is None:
            return None
        if p.pid is not None:
            if not p.raised and (block or time.monotonic() - p.started >= CHILD_IDLE_GRACE_S):
                self._raise_child(p)
            pid, status = os.waitpid(p.pid, 0 if block else os.WNOHANG)
            if pid == 0:
                return None
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                self.pending = None
                how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
                raise RuntimeError(f"checkpoint {p.version} failed in its writer process ({how})")
            try:
                self.last_bytes = local_path(self.directory, CHECKPOINT, p.version).stat().st_size
            except OSError:  # a child that wrote nothing (a test's stand-in): fork again next time
                self.last_bytes = None
        elif p.writer is not None:
            if block:
                p.writer.join()
            elif p.writer.is_alive():
                return None
            if p.error is not None:
                self.pending = None
                raise RuntimeError(f"checkpoint {p.version} failed in its writer thread "
                                   f"({type(p.error).__name__}: {p.error})") from p.error
            self.last_bytes = p.size
        self.pending = None
        self.last_duration_s = time.monotonic() - p.started
        return p

    @staticmethod
    def _raise_child(p: PendingCheckpoint) -> None:
        """Give a writer in the idle class the normal one back (at its niceness), once. Without the
        privilege to (``CAP_SYS_NICE``, or ``RLIMIT_NICE``), it stays idle and finishes when a core is."""
        if hasattr(os, "SCHED_IDLE"):
            try:
                if os.sched_getscheduler(p.pid) == os.SCHED_IDLE:
                    os.sched_setscheduler(p.pid, os.SCHED_OTHER, os.sched_param(0))
            except OSError:  # no privilege, or the child has just exited
                pass
        p.raised = True

    def model_blob(self, name: str, version: int) -> bytes:
        return model_path(self.directory, name, version).read_bytes()

    # ---------------------------------------------------------------- read

    def latest(self):
        """The newest checkpoint that verifies, and what was refused on the way."""
        return load_latest_local(self.directory, CHECKPOINT, self.key)
