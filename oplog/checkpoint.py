"""Checkpoints: the whole state at a merged position, saved in SQLite so start-up replays only the tail.

``<data>/checkpoints.db`` (separate from the ``blocks`` view) holds one row per
checkpoint in ``checkpoints`` — the merged position it covers, the key of the
last event folded in, per-device heads (seq and hlc, to tell later whether the
logs still hold the same history), the state hash, the conflicts so far — and
the state itself in ``checkpoint_chunks``: one ``marshal`` image of the block
trees (pre-order, with child counts), the documents' box and path, and the
attribute views, cut into chunks of a few MB.

Saving is one SQLite transaction (a crash mid-save leaves the older checkpoints
as they were); the newest ``keep`` survive. Loading checks the chunks' blake2b
first (``marshal`` is only ever fed bytes we wrote), rebuilds the tree, takes
the per-block digests stored beside it (re-hashing one block in
``VERIFY_EVERY`` against the rebuilt tree), and compares their sum with the
saved state hash. Any failure —
a missing, truncated or flipped file, a hash mismatch — warns and falls back
to the next older checkpoint, then to none (full replay).

Capturing (``capture``) must happen while the state cannot change (under the
store's write lock); writing (``CheckpointStore.save``) may happen anywhere.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import sqlite3
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import sqlite_utils

from oplog.collector import collector_paused
from oplog.errors import DamagedCheckpoint, StorageError
from oplog.fsutil import full_disk_hint
from oplog.sqlite_readonly import connect_readonly
from oplog.statehash import StateHash, block_digest, prev_id
from oplog.tree import Node, Workspace

__all__ = [
    "CHECKPOINTS_FILE",
    "capture_base",
    "CheckpointStore",
    "Checkpoint",
    "CheckpointInfo",
    "Snapshot",
    "ConflictRecord",
    "capture",
    "encode_state",
    "decode_state",
    "decode_parts",
    "verified_hash",
    "DamagedCheckpoint",
]

log = logging.getLogger(__name__)

CHECKPOINTS_FILE = "checkpoints.db"
_FORMAT = f"marshal-{marshal.version}-v2"
_CHUNK = 4 << 20
_PERSON = b"oplog-ckpt-v1"


class ConflictRecord(NamedTuple):
    """A replayed operation that hit a conflict: where it came from and the rule applied."""

    device_id: str
    device_seq: int
    op_index: int
    action: str
    block_id: str
    reason: str


@dataclass(frozen=True)
class CheckpointInfo:
    """What the ``checkpoints`` row says, without the state."""

    id: int
    position: int
    last_key: tuple[int, str, int] | None
    heads: dict[str, int]
    head_hlcs: dict[str, int]
    state_hash: str
    block_count: int
    size: int
    #: Where the state came from when not this device's checkpoints file: a remote snapshot's name.
    source: str = ""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the state and the merged position it covers."""

    ws: Workspace
    state_hash: StateHash
    position: int
    heads: dict[str, int]
    head_hlcs: dict[str, int]
    last_key: tuple[int, str, int] | None
    conflicts: list[ConflictRecord] = field(default_factory=list)
    info: CheckpointInfo | None = None

    @classmethod
    def of(
        cls, info: CheckpointInfo, ws: Workspace, state_hash: StateHash, conflicts: list[ConflictRecord]
    ) -> Checkpoint:
        """A loaded state standing where ``info`` says (position, heads, last event)."""
        return cls(
            ws=ws,
            state_hash=state_hash,
            position=info.position,
            heads=dict(info.heads),
            head_hlcs=dict(info.head_hlcs),
            last_key=info.last_key,
            conflicts=conflicts,
            info=info,
        )


@dataclass(frozen=True)
class Snapshot:
    """A captured state, ready to be saved (immutable bytes: safe to hand to another thread)."""

    blob: bytes
    position: int
    heads: dict[str, int]
    head_hlcs: dict[str, int]
    last_key: tuple[int, str, int] | None
    state_hash: str
    block_count: int
    conflicts: tuple[ConflictRecord, ...]


# ---------------------------------------------------------------- encoding


def _flatten(doc: Node, out: list[Any]) -> None:
    append = out.append
    stack = [doc]
    pop = stack.pop
    extend = stack.extend
    while stack:
        node = pop()
        children = node.children
        attrs = node.attrs
        append(node.id)
        append(node.type)
        append(node.subtype)
        append(node.markdown)
        append({k: attrs[k] for k in sorted(attrs)} if attrs else None)
        append(len(children))
        if children:
            extend(reversed(children))


def encode_state(ws: Workspace, state_hash: StateHash | None = None) -> bytes:
    """The whole state as bytes: per document (box, path, pre-order blocks, their digests), the attribute views, notebook confs.

    Each block's state-hash digest is stored beside it so a load need not
    re-hash every block (it re-hashes a sample and checks the sum).
    """
    docs = []
    for doc_id in sorted(ws.docs):
        doc = ws.docs[doc_id]
        flat: list[Any] = []
        _flatten(doc, flat)
        digests = b""
        if state_hash is not None:
            parts = []
            for i in range(0, len(flat), 6):
                value = state_hash.digest_of(flat[i])
                if value is None:
                    node = ws.blocks[flat[i]]
                    value = block_digest(node, prev_id(node))
                parts.append(value.to_bytes(32, "little"))
            digests = b"".join(parts)
        docs.append((doc.box, doc.path, flat, digests))
    avs = sorted(ws.avs.items())
    if ws.notebooks:
        # A third part only when there are notebook confs: older states keep their exact bytes.
        notebooks = [(box, sorted(conf.items())) for box, conf in sorted(ws.notebooks.items())]
        return marshal.dumps((docs, avs, notebooks))
    return marshal.dumps((docs, avs))


def decode_state(blob: bytes) -> Workspace:
    """Rebuild a workspace from ``encode_state`` bytes (trusted: check their digest first)."""
    return _decode(blob)[0]


def _decode(blob: bytes) -> tuple[Workspace, dict[str, int] | None]:
    with collector_paused():
        return _decode_state(blob)


def _decode_state(blob: bytes) -> tuple[Workspace, dict[str, int] | None]:
    try:
        parts = marshal.loads(blob)
    except (ValueError, EOFError, TypeError) as exc:
        raise DamagedCheckpoint(f"state does not decode: {exc}") from exc
    return decode_parts(parts)


def decode_parts(parts: Sequence[Any]) -> tuple[Workspace, dict[str, int] | None]:
    """Rebuild a workspace from the decoded parts of ``encode_state`` (docs, avs[, notebooks]).

    Also what a remote snapshot (``oplog.remotesnap``) decodes to, from JSON: the
    same nesting with lists for tuples and no stored digests. ``DamagedCheckpoint``
    when the parts do not describe whole block trees.
    """
    try:
        docs, avs = parts[0], parts[1]
        notebooks = parts[2] if len(parts) > 2 else ()
    except (TypeError, IndexError, KeyError) as exc:
        raise DamagedCheckpoint(f"state does not decode: {exc}") from exc
    digests: dict[str, int] | None = {}
    from_bytes = int.from_bytes
    ws = Workspace()
    blocks = ws.blocks
    try:
        for box, path, flat, packed in docs:
            if len(flat) % 6 or not flat:
                raise DamagedCheckpoint("a document's block list is cut short")
            if digests is not None and len(packed) == len(flat) // 6 * 32:
                digests.update(
                    zip(
                        flat[0::6],
                        [from_bytes(packed[k : k + 32], "little") for k in range(0, len(packed), 32)],
                        strict=True,
                    )
                )
            else:
                digests = None
            # Six fields per block in pre-order; ``left`` counts the children ``parent`` still expects.
            # Unpacking rows with zip instead of indexing ``flat[i + k]`` halves the loop's cost (measured).
            it = iter(flat)
            rows = zip(it, it, it, it, it, it, strict=False)  # length checked above
            doc_id, doc_type, doc_subtype, doc_markdown, doc_attrs, left = next(rows)
            doc = Node(doc_id, doc_type, doc_subtype, doc_markdown, doc_attrs)
            doc.box = box
            doc.path = path
            doc.root = doc
            blocks[doc_id] = doc
            parent = doc
            stack: list[tuple[Node, int]] = []
            for block_id, type_, subtype, markdown, attrs, count in rows:
                if not left:
                    raise DamagedCheckpoint("a document's block tree has blocks past its end")
                node = Node(block_id, type_, subtype, markdown, attrs)
                node.parent = parent
                node.root = doc
                parent.children.append(node)
                blocks[block_id] = node
                left -= 1
                if count:
                    stack.append((parent, left))
                    parent = node
                    left = count
                else:
                    while not left and stack:
                        parent, left = stack.pop()
            if left or stack:
                raise DamagedCheckpoint("a document's block tree is incomplete")
            ws.docs[doc.id] = doc
        ws.avs.update(avs)
        ws.notebooks.update((box, dict(conf)) for box, conf in notebooks)
    except (IndexError, TypeError, ValueError, AttributeError) as exc:
        raise DamagedCheckpoint(f"state is malformed: {exc}") from exc
    return ws, digests


#: One block in this many is re-hashed on load to check the stored digests against the rebuilt tree.
VERIFY_EVERY = 61


def verified_hash(ws: Workspace, digests: dict[str, int] | None) -> StateHash:
    if digests is None or len(digests) != len(ws.blocks):
        return StateHash.of(ws)
    for node in islice(ws.blocks.values(), 0, None, VERIFY_EVERY):
        if digests.get(node.id) != block_digest(node, prev_id(node)):
            raise DamagedCheckpoint(f"block {node.id} does not match its stored digest")
    return StateHash.from_digests(digests, ws)


def capture(
    ws: Workspace,
    state_hash: StateHash,
    *,
    position: int,
    heads: dict[str, int],
    head_hlcs: dict[str, int],
    last_key: tuple[int, str, int] | None,
    conflicts: Sequence[ConflictRecord] = (),
) -> Snapshot:
    """Capture the state for a checkpoint (call while the state cannot change)."""
    return Snapshot(
        blob=encode_state(ws, state_hash),
        position=position,
        heads=dict(heads),
        head_hlcs=dict(head_hlcs),
        last_key=tuple(last_key) if last_key else None,  # type: ignore[arg-type]
        state_hash=state_hash.hexdigest(),
        block_count=len(ws.blocks),
        conflicts=tuple(ConflictRecord(*c) for c in conflicts),
    )


def capture_base(base: Any) -> Snapshot:
    """Capture a replay result (anything with the fields of ``replay.Base``) for a checkpoint."""
    return capture(
        base.ws,
        base.state_hash,
        position=base.position,
        heads=base.heads,
        head_hlcs=base.head_hlcs,
        last_key=base.last_key,
        conflicts=base.conflicts,
    )


def _digest(chunks: Sequence[bytes]) -> str:
    h = blake2b(digest_size=32, person=_PERSON)
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- the store


#: (An alias: inside ``CheckpointStore`` the name ``list`` is its method.)
_Conflicts = list[ConflictRecord]


class CheckpointStore:
    """The checkpoints file of a data directory: save, list, load with fallback."""

    def __init__(self, path: str | os.PathLike[str], *, keep: int = 3, readonly: bool = False) -> None:
        """Open (creating unless ``readonly``) the checkpoints file; keep the newest ``keep`` checkpoints."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.path = Path(path)
        self.keep = keep
        self.readonly = readonly
        self._db: sqlite_utils.Database | None = None

    # -- connection

    def _open(self) -> sqlite_utils.Database | None:
        if self._db is not None:
            return self._db
        if self.readonly:
            if not self.path.exists():
                return None
            conn = connect_readonly(self.path)
            self._db = sqlite_utils.Database(conn, execute_plugins=False)
            return self._db
        try:
            self._db = self._create()
        except sqlite3.OperationalError as exc:
            # A full disk or an I/O error says nothing about the file: never set a sound file aside.
            raise StorageError(f"cannot open {self.path}: {exc}{full_disk_hint(self.path.parent)}") from exc
        except sqlite3.DatabaseError as exc:
            self._set_aside(f"cannot be opened ({exc})")
            self._db = self._create()
        return self._db

    def _create(self) -> sqlite_utils.Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), check_same_thread=False)
        db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            db.enable_wal()
            # A lost newest checkpoint only costs a longer replay; it never breaks the older ones.
            db.execute("PRAGMA synchronous=NORMAL")
            if "checkpoints" not in db.table_names():
                db.table("checkpoints").create(
                    {
                        "id": int,
                        "position": int,
                        "last_hlc": str,
                        "last_device": str,
                        "last_seq": int,
                        "heads": str,
                        "state_hash": str,
                        "block_count": int,
                        "format": str,
                        "chunks": int,
                        "size": int,
                        "blob_hash": str,
                        "conflicts": str,
                    },
                    pk="id",
                )
            if "checkpoint_chunks" not in db.table_names():
                db.table("checkpoint_chunks").create(
                    {"checkpoint_id": int, "seq": int, "data": bytes}, pk=("checkpoint_id", "seq")
                )
            db.execute("SELECT count(*) FROM checkpoints").fetchone()
        except BaseException:
            conn.close()
            raise
        return db

    def _set_aside(self, why: str) -> None:
        broken = self.path.with_name(self.path.name + ".broken")
        warnings.warn(
            f"checkpoints file {self.path} {why}; moved to {broken.name}, starting afresh", stacklevel=4
        )
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(broken) + suffix))

    def close(self) -> None:
        """Close the file."""
        if self._db is not None:
            self._db.conn.close()
            self._db = None

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing

    def save(self, snapshot: Snapshot) -> int:
        """Write a checkpoint in one transaction, then drop all but the newest ``keep``; returns its id."""
        if self.readonly:
            raise ValueError("checkpoint store opened read-only")
        db = self._open()
        assert db is not None
        blob = snapshot.blob
        chunks = [blob[i : i + _CHUNK] for i in range(0, len(blob), _CHUNK)] or [b""]
        last = snapshot.last_key or (0, "", 0)
        heads = {d: [snapshot.heads[d], snapshot.head_hlcs.get(d, 0)] for d in sorted(snapshot.heads)}
        conn = db.conn
        with db.atomic():
            cur = conn.execute(
                "INSERT INTO checkpoints (position, last_hlc, last_device, last_seq, heads, state_hash, "
                "block_count, format, chunks, size, blob_hash, conflicts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    snapshot.position,
                    # SQLite integers are signed 64-bit; an hlc may use the top bit.
                    str(last[0]),
                    last[1],
                    last[2],
                    json.dumps(heads),
                    snapshot.state_hash,
                    snapshot.block_count,
                    _FORMAT,
                    len(chunks),
                    len(blob),
                    _digest(chunks),
                    json.dumps([list(c) for c in snapshot.conflicts]),
                ),
            )
            ckpt_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO checkpoint_chunks (checkpoint_id, seq, data) VALUES (?,?,?)",
                ((ckpt_id, i, chunk) for i, chunk in enumerate(chunks)),
            )
            stale = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM checkpoints ORDER BY id DESC LIMIT -1 OFFSET ?", (self.keep,)
                )
            ]
            for old in stale:
                conn.execute("DELETE FROM checkpoint_chunks WHERE checkpoint_id = ?", (old,))
                conn.execute("DELETE FROM checkpoints WHERE id = ?", (old,))
        return ckpt_id

    # -- reading

    def list(self) -> list[CheckpointInfo]:
        """Every checkpoint, newest first (empty when the file is missing or unreadable, with a warning)."""
        try:
            db = self._open()
            if db is None:
                return []
            rows = db.conn.execute(
                "SELECT id, position, last_hlc, last_device, last_seq, heads, state_hash, block_count, size "
                "FROM checkpoints ORDER BY id DESC"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            warnings.warn(f"checkpoints file {self.path} is unreadable ({exc}); ignoring it", stacklevel=2)
            return []
        infos = []
        for ckpt_id, position, last_hlc, last_device, last_seq, heads_json, state_hash, blocks, size in rows:
            try:
                raw = json.loads(heads_json)
                heads = {str(d): int(v[0]) for d, v in raw.items()}
                hlcs = {str(d): int(v[1]) for d, v in raw.items()}
                hlc = int(last_hlc)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                warnings.warn(
                    f"checkpoint {ckpt_id} in {self.path} has a damaged header; skipping it", stacklevel=2
                )
                continue
            last_key = (hlc, str(last_device), int(last_seq)) if position else None
            infos.append(
                CheckpointInfo(
                    int(ckpt_id),
                    int(position),
                    last_key,
                    heads,
                    hlcs,
                    str(state_hash),
                    int(blocks),
                    int(size),
                )
            )
        return infos

    def drop_from(self, position: int) -> int:
        """Delete every checkpoint at or past ``position``; how many went."""
        if self.readonly:
            raise ValueError("checkpoint store opened read-only")
        db = self._open()
        if db is None:
            return 0
        with db.atomic():
            ids = [
                r[0] for r in db.conn.execute("SELECT id FROM checkpoints WHERE position >= ?", (position,))
            ]
            for old in ids:
                db.conn.execute("DELETE FROM checkpoint_chunks WHERE checkpoint_id = ?", (old,))
                db.conn.execute("DELETE FROM checkpoints WHERE id = ?", (old,))
        return len(ids)

    def saved(self, info: CheckpointInfo) -> Snapshot:
        """One checkpoint as saved: its state bytes (digest checked, not decoded) and where it stands."""
        blob, conflicts = self._read(info)
        return Snapshot(
            blob=blob,
            position=info.position,
            heads=dict(info.heads),
            head_hlcs=dict(info.head_hlcs),
            last_key=info.last_key,
            state_hash=info.state_hash,
            block_count=info.block_count,
            conflicts=tuple(conflicts),
        )

    def load(self, info: CheckpointInfo) -> Checkpoint:
        """Load one checkpoint and verify it; ``DamagedCheckpoint`` when it cannot be trusted."""
        blob, conflicts = self._read(info)
        ws, digests = _decode(blob)
        state_hash = verified_hash(ws, digests)
        if state_hash.hexdigest() != info.state_hash:
            raise DamagedCheckpoint("rebuilt state does not match the saved state hash")
        return Checkpoint.of(info, ws, state_hash, conflicts)

    def _read(self, info: CheckpointInfo) -> tuple[bytes, _Conflicts]:
        """A checkpoint's state bytes (checked against their digest) and conflict list."""
        try:
            db = self._open()
            if db is None:
                raise DamagedCheckpoint("checkpoints file is missing")
            conn = db.conn
            row = conn.execute(
                "SELECT format, chunks, size, blob_hash, conflicts FROM checkpoints WHERE id = ?", (info.id,)
            ).fetchone()
            if row is None:
                raise DamagedCheckpoint("checkpoint row is gone")
            fmt, nchunks, size, blob_hash, conflicts_json = row
            chunks = [
                bytes(r[0])
                for r in conn.execute(
                    "SELECT data FROM checkpoint_chunks WHERE checkpoint_id = ? ORDER BY seq", (info.id,)
                )
            ]
        except sqlite3.DatabaseError as exc:
            raise DamagedCheckpoint(f"cannot be read: {exc}") from exc
        if fmt != _FORMAT:
            raise DamagedCheckpoint(f"written in format {fmt!r}, this build reads {_FORMAT!r}")
        if len(chunks) != nchunks or sum(len(c) for c in chunks) != size or _digest(chunks) != blob_hash:
            raise DamagedCheckpoint("state bytes do not match their digest")
        try:
            conflicts = [
                ConflictRecord(str(a), int(b), int(c), str(d), str(e), str(f))
                for a, b, c, d, e, f in json.loads(conflicts_json)
            ]
        except (ValueError, TypeError) as exc:
            raise DamagedCheckpoint(f"conflict list is damaged: {exc}") from exc
        return b"".join(chunks), conflicts

    def candidates(self) -> Iterator[Checkpoint]:
        """Loaded, verified checkpoints newest first; damaged ones are skipped with a warning."""
        for info in self.list():
            try:
                yield self.load(info)
            except DamagedCheckpoint as exc:
                warnings.warn(
                    f"checkpoint {info.id} (position {info.position}) in {self.path} is damaged: {exc}; "
                    "falling back to an older one",
                    stacklevel=2,
                )
                log.warning("checkpoint %s at position %s damaged: %s", info.id, info.position, exc)
