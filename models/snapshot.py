"""Signed model snapshots: verified before a single byte is unpickled.

A snapshot is one byte string::

    MAGIC (8 bytes, b"DLSNAP01")
    HMAC-SHA256 over everything after it (32 bytes)
    meta length (4 bytes, big-endian)
    meta (JSON: model, version, spec hash, offsets, counts, metrics, time, payload sha256)
    payload (pickle of the learner state)

Reading goes through these steps, in order, and stops at the first failure:

1. **Magic.** Anything else is not a snapshot (``not_a_snapshot``).
2. **Signature.** The HMAC is recomputed with our key and compared in constant
   time. A flipped byte or a wrong key fails here (``bad_signature``), before
   the payload is touched, so a forged pickle never runs.
3. **Meta.** Parsed as JSON, never as pickle (``corrupt``).
4. **Version.** A version at or below the newest already accepted is a replay
   (``stale_version``).
5. **Payload.** Its SHA-256 must match the meta; only then is it unpickled.

>>> key = b"k" * 32
>>> blob = dump_snapshot({"model": "lr", "version": 3}, {"weights": [1.0]}, key)
>>> snap = load_snapshot(blob, key)
>>> snap.meta["version"], snap.state
(3, {'weights': [1.0]})
>>> load_snapshot(blob, b"x" * 32)
Traceback (most recent call last):
...
models.snapshot.SnapshotRefused: bad_signature: the HMAC does not match (tampered, or signed with another key)
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import pickle
import secrets
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Snapshot", "SnapshotRefused", "dump_snapshot", "seal", "pickle_sharing", "load_snapshot", "snapshot_key",
           "write_local", "load_latest_local", "MAGIC"]

MAGIC = b"DLSNAP01"
_SIG = 32
_HEADER = len(MAGIC) + _SIG + 4


class SnapshotRefused(Exception):
    """A snapshot failed verification; ``reason`` is a short code for metrics."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class Snapshot:
    meta: dict
    state: object


def snapshot_key(environ=None) -> bytes:
    """The signing key: ``DRIFTLINE_SNAPSHOT_KEY``, else the file named by
    ``DRIFTLINE_SNAPSHOT_KEY_FILE``, else ``$DRIFTLINE_HOME/snapshot.key``
    (created with mode 0600 on first use, for a single-machine setup)."""
    env = os.environ if environ is None else environ
    if env.get("DRIFTLINE_SNAPSHOT_KEY"):
        return env["DRIFTLINE_SNAPSHOT_KEY"].encode()
    path = env.get("DRIFTLINE_SNAPSHOT_KEY_FILE")
    if path:
        key = Path(path).read_bytes().strip()
        if len(key) < 16:
            raise ValueError(f"{path}: a snapshot key needs at least 16 bytes")
        return key
    home = Path(env.get("DRIFTLINE_HOME", Path.home() / ".driftline"))
    f = home / "snapshot.key"
    if not f.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return f.read_bytes().strip()


def dump_snapshot(meta: dict, state: object, key: bytes) -> bytes:
    return seal(meta, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), key)


def seal(meta: dict, payload: bytes, key: bytes) -> bytes:
    """A snapshot of an already pickled ``payload``: what :func:`dump_snapshot` makes of its state."""
    meta = {**meta, "payload_sha256": hashlib.sha256(payload).hexdigest(), "format": 1}
    meta_bytes = json.dumps(meta, sort_keys=True, default=str).encode()
    body = struct.pack(">I", len(meta_bytes)) + meta_bytes + payload
    sig = hmac.new(key, MAGIC + body, hashlib.sha256).digest()
    return MAGIC + sig + body


def verify_snapshot(blob: bytes, key: bytes, newer_than: int | None = None) -> dict:
    """Steps 1-4: return the verified meta without unpickling anything."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < _HEADER or blob[:len(MAGIC)] != MAGIC:
        raise SnapshotRefused("not_a_snapshot", "missing the DLSNAP01 header (unsigned or foreign bytes)")
    sig = blob[len(MAGIC):len(MAGIC) + _SIG]
    body = blob[len(MAGIC) + _SIG:]
    expected = hmac.new(key, MAGIC + body, hashlib.sha256).digest()
    if not hmac.compare_digest(sig, expected):
        raise SnapshotRefused("bad_signature", "the HMAC does not match (tampered, or signed with another key)")
    (n,) = struct.unpack(">I", body[:4])
    try:
        meta = json.loads(body[4:4 + n])
    except ValueError as exc:
        raise SnapshotRefused("corrupt", f"meta is not JSON: {exc}") from None
    version = meta.get("version")
    if newer_than is not None and (not isinstance(version, int) or version <= newer_than):
        raise SnapshotRefused("stale_version", f"version {version} is not newer than {newer_than}")
    return meta


def load_snapshot(blob: bytes, key: bytes, newer_than: int | None = None) -> Snapshot:
    meta = verify_snapshot(blob, key, newer_than)
    (n,) = struct.unpack(">I", blob[_HEADER - 4:_HEADER])
    payload = blob[_HEADER + n:]
    if hashlib.sha256(payload).hexdigest() != meta.get("payload_sha256"):
        raise SnapshotRefused("corrupt", "payload digest does not match its meta")
    return Snapshot(meta, pickle.loads(payload))  # noqa: S301 - signature verified above


def pickle_sharing(state: object, shared: dict[int, tuple[bytes, str]]) -> bytes:
    """Pickle ``state``, with each object whose ``id`` is in ``shared`` taken from its ready pickle
    (``payload``, and the ``item`` of it that is the object) instead of pickled again. The result
    loads with plain ``pickle.loads``; the object's pickle is in it byte for byte.

    A checkpoint holds every model, and each model also gets a snapshot of its own: pickled once for
    both, the writer child's work for the benchmark's tree went from 91 to 58 ms
    (``driftline/checkpoint.py``).

    >>> from collections import Counter
    >>> model = Counter({"hits": 3})
    >>> ready = pickle.dumps({"model": model}, protocol=pickle.HIGHEST_PROTOCOL)
    >>> whole = pickle_sharing({"core": [model, model]}, {id(model): (ready, "model")})
    >>> ready in whole
    True
    >>> core = pickle.loads(whole)["core"]
    >>> core == [model, model] and core[0] is core[1]
    True
    """
    buf = io.BytesIO()
    _SharingPickler(buf, shared).dump(state)
    return buf.getvalue()


class _SharingPickler(pickle.Pickler):
    def __init__(self, file, shared: dict[int, tuple[bytes, str]]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared = shared

    def reducer_override(self, obj):  # not called for builtin containers and atoms: they are never shared here
        ready = self.shared.get(id(obj))
        if ready is None:
            return NotImplemented
        return _item_of, ready


def _item_of(payload: bytes, item: str):
    return pickle.loads(payload)[item]  # noqa: S301 - inside a payload whose signature was verified


def local_path(directory: str | Path, name: str, version: int) -> Path:
    """Where :func:`write_local` puts ``name``'s snapshot ``version``.

    >>> local_path("snaps", "lr", 42).as_posix()
    'snaps/lr/000000000042.snap'
    """
    return Path(directory) / name / f"{version:012d}.snap"


def write_local(directory: str | Path, name: str, version: int, blob: bytes, keep: int = 3) -> Path:
    """Write ``<dir>/<name>/<version>.snap`` (:func:`local_path`) atomically: temp file, fsync,
    rename, fsync dir.

    A crash at any point leaves either the old set of files or the new one, never a torn file
    under a final name. Only the newest ``keep`` versions are kept.
    """
    final = local_path(directory, name, version)
    d = final.parent
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".snap")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for old in sorted(d.glob("*.snap"))[:-keep]:
        old.unlink(missing_ok=True)
    return final


def load_latest_local(directory: str | Path, name: str, key: bytes) -> tuple[Snapshot | None, list[str]]:
    """The newest snapshot of ``name`` that verifies, and the reasons older/newer ones were refused."""
    d = Path(directory) / name
    refused = []
    for path in sorted(d.glob("*.snap"), reverse=True):
        try:
            return load_snapshot(path.read_bytes(), key), refused
        except SnapshotRefused as exc:
            refused.append(f"{path.name}: {exc}")
    return None, refused
