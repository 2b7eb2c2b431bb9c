"""Snapshots of the state on the remote, so a device that is new or far behind folds only the events after one.

``<cloudName>/snapshots/<position:016x>-<hash:16>.snap`` holds the whole state
at a merged position, with its state hash, the per-device heads (seq and hlc)
and the last event's key it covers, the epoch it was made in and the conflicts
so far. Devices upload one after a sync at most every ``--snapshot-every``
events (``oplog.sync``), create-only; the newest ``KEEP`` are kept.

Why not the checkpoint bytes as they are: a checkpoint is ``marshal`` (fast,
but only ever to be fed bytes this process wrote, and tied to the Python
version), and a remote is somebody else's disk. A snapshot is a small JSON
header and a zlib-compressed JSON body with the checkpoint's nesting (lists for
tuples, no stored per-block digests), closed by a blake2b digest of the rest;
``json`` parses hostile bytes safely. Loading rebuilds the tree with the
checkpoint's own decoder (``checkpoint.decode_parts``), re-hashes every block
and refuses a snapshot whose state does not hash to what its header says.

A snapshot that decodes is still only a claim about history: that these events
fold to this state. The device that loads one checks (``replay.prime``) that
its logs hold the heads it names and that nothing it lacks sorts inside it, and
later folds the whole history itself (``check_snapshot``) to confirm the hash;
a mismatch is reported and the device falls back to its own fold.
"""

from __future__ import annotations

import json
import marshal
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from oplog.checkpoint import (
    Checkpoint,
    CheckpointInfo,
    ConflictRecord,
    DamagedCheckpoint,
    Snapshot,
    decode_parts,
    verified_hash,
)
from oplog.collector import collector_paused
from oplog.errors import StorageError

__all__ = [
    "SNAPSHOTS",
    "FORMAT",
    "KEEP",
    "SnapshotName",
    "SnapshotHeader",
    "snapshot_name",
    "parse_name",
    "newest_first",
    "encode_snapshot",
    "read_header",
    "decode_snapshot",
    "to_prune",
]

#: The folder under ``<cloudName>/``.
SNAPSHOTS = "snapshots"
#: The snapshot format this oplog writes and the newest it reads.
FORMAT = 1
#: Snapshots kept on the remote (the newest by position); older ones are deleted by whoever uploads.
KEEP = 3

_MAGIC = b"OPLOGSNAP\n"
#: After the magic: the format version (read before anything else: a newer format may lay out
#: the rest differently) and the header's length.
_PREFIX = struct.Struct(">HI")
_DIGEST = 32
_PERSON = b"oplog-snap-v1"
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


@dataclass(frozen=True, order=True)
class SnapshotName:
    """What a snapshot's object name says: its merged position and the start of its state hash."""

    position: int
    hash_prefix: str

    @property
    def name(self) -> str:
        """The object name under ``snapshots/``."""
        return snapshot_name(self.position, self.hash_prefix)


def snapshot_name(position: int, state_hash: str) -> str:
    """``<position:016x>-<first 16 hex digits of the state hash>.snap``."""
    return f"{position:016x}-{state_hash[:16]}.snap"


def parse_name(name: str) -> SnapshotName | None:
    """The position and hash prefix a name carries, or None for anything else (temporaries, strangers)."""
    m = _NAME.match(name)
    return SnapshotName(int(m.group(1), 16), m.group(2)) if m else None


def newest_first(names: Iterable[str]) -> list[SnapshotName]:
    """The snapshot names among ``names``, newest (largest position) first."""
    return sorted((n for n in map(parse_name, names) if n is not None), reverse=True)


def to_prune(names: Iterable[str], keep: int = KEEP) -> list[str]:
    """The snapshot names past the newest ``keep``: what an uploader deletes."""
    return [n.name for n in newest_first(names)[keep:]]


@dataclass(frozen=True)
class SnapshotHeader:
    """A snapshot's header: everything but the state."""

    format: int
    position: int
    state_hash: str
    block_count: int
    heads: dict[str, int]
    head_hlcs: dict[str, int]
    last_key: tuple[int, str, int] | None
    epoch: str
    device: str
    created_ms: int


def encode_snapshot(snap: Snapshot, *, epoch: str, device: str, created_ms: int) -> bytes:
    """A remote snapshot of a captured state (``checkpoint.capture``: its ``blob`` is this process's own)."""
    with collector_paused():
        parts = marshal.loads(snap.blob)
        docs = [[box, path, flat, ""] for box, path, flat, _digests in parts[0]]
        body = [docs, parts[1], parts[2] if len(parts) > 2 else []]
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    header = {
        "format": FORMAT,
        "position": snap.position,
        "state_hash": snap.state_hash,
        "block_count": snap.block_count,
        "heads": snap.heads,
        "head_hlcs": snap.head_hlcs,
        "last_key": list(snap.last_key) if snap.last_key else None,
        "epoch": epoch,
        "device": device,
        "created_ms": created_ms,
        "conflicts": [list(c) for c in snap.conflicts],
    }
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    out = _MAGIC + _PREFIX.pack(FORMAT, len(head)) + head + zlib.compress(raw, 1)
    return out + blake2b(out, digest_size=_DIGEST, person=_PERSON).digest()


def _split(data: bytes, where: str) -> tuple[dict[str, Any], memoryview]:
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + _PREFIX.size + _DIGEST:
        raise DamagedCheckpoint(f"{where} is not an oplog snapshot")
    version, size = _PREFIX.unpack_from(data, len(_MAGIC))
    if version > FORMAT:
        raise StorageError(
            f"{where} has snapshot format {version}, newer than this oplog understands ({FORMAT}): upgrade oplog"
        )
    body = memoryview(data)[:-_DIGEST]
    if blake2b(body, digest_size=_DIGEST, person=_PERSON).digest() != data[-_DIGEST:]:
        raise DamagedCheckpoint(f"{where} does not match its digest (damaged or cut short)")
    start = len(_MAGIC) + _PREFIX.size
    try:
        header = json.loads(bytes(body[start : start + size]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedCheckpoint(f"{where} has an unreadable header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != version:
        raise DamagedCheckpoint(f"{where} has an unreadable header")
    return header, body[start + size :]


def read_header(data: bytes, where: str = "snapshot") -> tuple[SnapshotHeader, list[ConflictRecord]]:
    """The header and conflict list of snapshot bytes; ``DamagedCheckpoint`` or ``StorageError`` (too new)."""
    header, _ = _split(data, where)
    return _header(header, where)


def _header(raw: dict[str, Any], where: str) -> tuple[SnapshotHeader, list[ConflictRecord]]:
    version = raw.get("format")
    try:
        last = raw["last_key"]
        header = SnapshotHeader(
            format=int(version),  # type: ignore[arg-type]
            position=int(raw["position"]),
            state_hash=str(raw["state_hash"]),
            block_count=int(raw["block_count"]),
            heads={str(k): int(v) for k, v in raw["heads"].items()},
            head_hlcs={str(k): int(v) for k, v in raw["head_hlcs"].items()},
            last_key=(int(last[0]), str(last[1]), int(last[2])) if last else None,
            epoch=str(raw["epoch"]),
            device=str(raw["device"]),
            created_ms=int(raw["created_ms"]),
        )
        conflicts = [
            ConflictRecord(str(a), int(b), int(c), str(d), str(e), str(f))
            for a, b, c, d, e, f in raw["conflicts"]
        ]
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DamagedCheckpoint(f"{where} has a malformed header: {exc}") from exc
    if header.position < 0 or (header.position > 0) != (header.last_key is not None):
        raise DamagedCheckpoint(f"{where} has a malformed header: position and last event disagree")
    return header, conflicts


def decode_snapshot(data: bytes, name: str) -> tuple[Checkpoint, SnapshotHeader]:
    """A loaded snapshot as a replay base (``info.source`` = its name) and its header.

    Every block is re-hashed: the state must hash to the header's state hash,
    else ``DamagedCheckpoint``. A newer format: ``StorageError`` naming "upgrade oplog".
    """
    where = f"snapshot {SNAPSHOTS}/{name}"
    raw, body = _split(data, where)
    header, conflicts = _header(raw, where)
    try:
        with collector_paused():
            parts = json.loads(zlib.decompress(body))
    except (zlib.error, ValueError, UnicodeDecodeError) as exc:
        raise DamagedCheckpoint(f"{where}: the state does not decode: {exc}") from exc
    if not isinstance(parts, list):
        raise DamagedCheckpoint(f"{where}: the state does not decode")
    with collector_paused():
        ws, _ = decode_parts(parts)
        state_hash = verified_hash(ws, None)
    if state_hash.hexdigest() != header.state_hash or len(ws.blocks) != header.block_count:
        raise DamagedCheckpoint(f"{where}: the state does not hash to the snapshot's state hash")
    info = CheckpointInfo(
        id=-1,
        position=header.position,
        last_key=header.last_key,
        heads=dict(header.heads),
        head_hlcs=dict(header.head_hlcs),
        state_hash=header.state_hash,
        block_count=header.block_count,
        size=len(data),
        source=name,
    )
    return Checkpoint.of(info, ws, state_hash, conflicts), header
