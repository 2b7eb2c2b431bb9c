"""A sync's part in remote snapshots: offer one to a pull that is far behind, upload one now and then.

The format is ``oplog.remotesnap``; the session (``oplog.sync``) calls in here
at two points:

* Before storing a pull of at least ``min_gain`` events, ``offer_snapshots``
  lists ``<cloud>/snapshots/`` (one listing, only then) and downloads the
  newest snapshot that is of this epoch, at least ``min_gain`` events past this
  device's state, and covers only events the remote holds. The store's fold
  beside (``Store.fold_pulled``) then starts from it if it is still a prefix
  of the merged order, and folds only the events after it.
* After the push, ``upload_snapshot`` uploads this device's newest checkpoint
  when it is ``snapshot_every`` events past the newest snapshot this device
  knows of and covers only events the remote holds, then deletes all but the
  newest ``KEEP``. A fresh checkpoint is captured for it only when none is
  recent enough and the state is small (``CAPTURE_MAX_BLOCKS``): capturing
  holds the write lock.

Neither is needed for correctness: any failure here is logged and the sync goes
on (a full fold is always right).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from oplog.checkpoint import Checkpoint, CheckpointInfo
from oplog.errors import OplogError
from oplog.remote import Remote
from oplog.remotesnap import KEEP, SNAPSHOTS, decode_snapshot, encode_snapshot, newest_first, snapshot_name
from oplog.snapcheck import PENDING
from oplog.store import Store
from oplog.syncformat import SegEntry
from oplog.syncstate import SyncState
from oplog.syncsummary import SyncSummary

T = TypeVar("T")


class Session(Protocol):
    """What the snapshot steps use of a sync (``oplog.sync.SyncSession``; a Protocol, as this module sits below it)."""

    store: Store
    remote: Remote
    state: SyncState
    result: SyncSummary
    url: str
    cloud: str
    me: str
    #: the snapshot offered to this sync's fold ("" if none)
    offered_snapshot: str

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T: ...

    def _path(self, *parts: str) -> str: ...

    def _log(self, msg: str) -> None: ...

    def _save_state(self) -> None: ...


__all__ = ["DEFAULT_SNAPSHOT_EVERY", "offer_snapshots", "upload_snapshot", "remote_heads", "note_adopted"]

#: Events between two snapshots a device uploads (``--snapshot-every``); also how far behind a
#: device must be to start from one.
DEFAULT_SNAPSHOT_EVERY = 10_000

#: Up to this many blocks a sync captures a fresh checkpoint to upload when none is recent enough:
#: capturing holds the write lock (59 ms for 20,358 blocks, measured). A bigger state waits for the
#: store's own checkpoints (every ``StoreOptions.checkpoint_every`` events, and at close) instead of
#: stalling requests here.
CAPTURE_MAX_BLOCKS = 20_000


def remote_heads(views: Mapping[str, list[SegEntry] | None]) -> dict[str, int]:
    """The last seq the remote's history holds per device (0 for none)."""
    return {d: (view[-1].last_seq if view else 0) for d, view in views.items()}


def _covered(heads: Mapping[str, int], held: Mapping[str, int]) -> bool:
    return all(seq <= held.get(device, 0) for device, seq in heads.items() if seq)


def offer_snapshots(
    session: Session, epoch: str, held: Mapping[str, int], pending_events: int, min_gain: int
) -> Checkpoint | None:
    """Hand the store the newest usable remote snapshot when the pull is ``min_gain`` events or more; it, or None."""
    if min_gain <= 0 or pending_events < min_gain:
        return None
    if session.state.snapshot_check.get("status") == PENDING:
        # The state may rest on an earlier snapshot not checked yet (a process stopped before its
        # check): that check runs after this sync; no second snapshot before it.
        session._log("a remote snapshot's check is pending; folding every event")
        return None
    store = session.store
    position = store.state().position
    try:
        names = session._call("list snapshots", session.remote.list, session._path(SNAPSHOTS))
    except OplogError as exc:
        session._log(f"remote snapshots unavailable ({exc}); folding every event")
        return None
    for name in newest_first(names)[:KEEP]:
        if name.position < position + min_gain:
            return None
        base = _fetch(session, name.name, epoch, held)
        if base is not None and base.info is not None:
            # Recorded (durably) before anything can rest on it: should the process stop after a
            # checkpoint built on it was saved, the check still runs (oplog.snapcheck).
            session.state.snapshot_check = _pending(base.info)
            session.offered_snapshot = base.info.source
            session._save_state()
            store.offer_bases([base])
            return base
    return None


def _pending(info: CheckpointInfo) -> dict[str, Any]:
    return {
        "name": info.source,
        "position": info.position,
        "state_hash": info.state_hash,
        "last_key": list(info.last_key) if info.last_key else None,
        "status": PENDING,
        "detail": "",
    }


def _fetch(session: Session, name: str, epoch: str, held: Mapping[str, int]) -> Checkpoint | None:
    path = session._path(SNAPSHOTS, name)
    try:
        data = session._call("read snapshot", session.remote.read, path)
        if data is None:
            return None  # deleted since the listing (pruned by another device)
        base, header = decode_snapshot(data, name)
    except OplogError as exc:  # damaged, not opening (sealed), newer format, unreachable
        session._log(f"remote snapshot {name} not used: {exc}")
        return None
    if header.epoch != epoch:
        session._log(f"remote snapshot {name} not used: it is of epoch {header.epoch}, not {epoch}")
        return None
    if not _covered(header.heads, held):
        session._log(f"remote snapshot {name} not used: it covers events the remote does not list")
        return None
    session.result.bytes_down = (session.result.bytes_down or 0) + len(data)
    return base


def note_adopted(session: Session) -> None:
    """Say whether the pull's fold started from the snapshot offered; if it did not, no check is owed."""
    session.store.offer_bases([])  # not left for a later pull when this one stored nothing
    adopted = session.store.take_adopted()
    check = session.state.snapshot_check
    if adopted is None:
        if check.get("status") == PENDING and check.get("name") == session.offered_snapshot:
            session.state.snapshot_check = {}  # offered, not started from: nothing rests on it
            session._save_state()
        return
    session.result.snapshot = adopted.source
    session._log(f"started from remote snapshot {adopted.source} (position {adopted.position})")


def upload_snapshot(
    session: Session, epoch: str, held: Mapping[str, int], every: int, now_ms: Callable[[], int]
) -> None:
    """Upload this device's newest checkpoint as a remote snapshot when one is due; prune old ones."""
    if every <= 0:
        return
    store = session.store
    url, cloud = session.url, session.cloud
    last = session.state.snapshot_position(url, cloud)
    now = store.state()
    if now.position - last < every:
        return
    snap = store.newest_checkpoint()
    if (snap is None or snap.position - last < every) and now.block_count <= CAPTURE_MAX_BLOCKS:
        store.checkpoint()
        snap = store.newest_checkpoint()
    if snap is None or snap.position - last < every:
        return
    if not _covered(snap.heads, held):
        session._log("no snapshot uploaded: the state holds events this remote does not list yet")
        return
    name = snapshot_name(snap.position, snap.state_hash)
    data = encode_snapshot(snap, epoch=epoch, device=session.me, created_ms=now_ms())
    folder = session._path(SNAPSHOTS)
    try:
        written = session._call("write snapshot", session.remote.write_new, f"{folder}/{name}", data)
        names: list[Any] = session._call("list snapshots", session.remote.list, folder)
        for old in newest_first(names)[KEEP:]:
            session._call("delete snapshot", session.remote.delete, f"{folder}/{old.name}")
    except OplogError as exc:
        session._log(f"snapshot upload failed, the sync itself did not: {exc}")
        return
    if written:
        session.result.bytes_up = (session.result.bytes_up or 0) + len(data)
        session._log(f"uploaded snapshot {name} (position {snap.position}, {len(data)} bytes)")
    session.state.keep_snapshot_position(url, cloud, snap.position)
