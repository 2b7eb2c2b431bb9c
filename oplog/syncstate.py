"""Local sync state: ``<data>/sync.json``, what this device knows about the remotes it synced with.

Kept apart from the session so that readers (``oplog verify``, ``GetSyncInfo``,
the daemon) can read it without importing the store or the sync machinery.

The top-level fields describe the *current* remote (the one of the last sync):
its cloud name, the epoch this device follows there, how far this device's own
log is in that remote's history (``pushed_seq``). ``remotes`` keeps the same two
facts for every remote (URL + cloud name) this device ever synced with, because
"which of my events does that history hold" is a property of a remote, not of
the device: an edit pushed to remote R2 is still missing from remote R, and
must be rebased, not archived, when R has moved to a new epoch (docs/sync.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oplog.errors import OplogError, StorageError
from oplog.fsutil import atomic_write

__all__ = [
    "SYNC_FILE",
    "RemotePosition",
    "SyncState",
    "load_state",
    "save_state",
    "record_error",
    "error_text",
    "remote_key",
    "describe_snapshot_check",
]

SYNC_FILE = "sync.json"


def remote_key(url: str, cloud: str) -> str:
    """The key of a remote's record in ``SyncState.remotes``: its URL and cloud name."""
    return f"{url}#{cloud}"


@dataclass
class RemotePosition:
    """Where this device stands on one remote: the epoch it follows and the last own seq that history holds."""

    epoch: str | None = None
    pushed_seq: int = 0


@dataclass
class SyncState:
    """``<data>/sync.json``: what this device knows about its cloud folder(s)."""

    cloud_name: str = ""
    epoch: str | None = None
    last_sync_time: int = 0
    pushed_seq: int = 0
    cursors: dict[str, int] = field(default_factory=dict)
    last_error: str = ""
    #: checksums of local segment files: device -> name -> [size, crc]
    known: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    #: the URL of the current remote ("" for remotes without one, and in files from before it was kept)
    remote_url: str = ""
    #: remote_key(url, cloud) -> {"epoch": ..., "pushed_seq": ..., "snapshot_position": ...} for every remote
    remotes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the remote snapshot this device's state started from and this device's own check of it
    #: ({"name", "position", "state_hash", "status": pending|verified|mismatch|superseded, "detail"}); {} if none
    snapshot_check: dict[str, Any] = field(default_factory=dict)

    def position(self, url: str, cloud: str) -> RemotePosition:
        """This device's position on remote ``url``/``cloud`` (unknown remote: never synced)."""
        raw = self.remotes.get(remote_key(url, cloud))
        if raw is not None:
            return RemotePosition(raw.get("epoch"), int(raw.get("pushed_seq", 0)))
        if not self.remotes and self.cloud_name == cloud and self.epoch is not None:
            # A sync.json written before positions were kept per remote: its one position is this cloud's.
            return RemotePosition(self.epoch, self.pushed_seq)
        return RemotePosition()

    def keep_position(self, url: str, cloud: str, position: RemotePosition) -> None:
        """Record ``position`` for ``url``/``cloud`` and make that remote the current one."""
        raw = self.remotes.setdefault(remote_key(url, cloud), {})
        raw.update(epoch=position.epoch, pushed_seq=position.pushed_seq)
        self.remote_url = url
        self.cloud_name = cloud
        self.epoch = position.epoch
        self.pushed_seq = position.pushed_seq

    def snapshot_position(self, url: str, cloud: str) -> int:
        """The position of the newest snapshot this device uploaded to or saw on ``url``/``cloud`` (0: none)."""
        return int(self.remotes.get(remote_key(url, cloud), {}).get("snapshot_position", 0))

    def keep_snapshot_position(self, url: str, cloud: str, position: int) -> None:
        """Remember that ``url``/``cloud`` holds a snapshot at ``position`` (the newest kept)."""
        raw = self.remotes.setdefault(remote_key(url, cloud), {})
        raw["snapshot_position"] = max(int(raw.get("snapshot_position", 0)), position)

    def cut_own_log(self, kept_end: int) -> None:
        """This device's log is rewritten after seq ``kept_end``: no remote holds what those seqs will hold."""
        for raw in self.remotes.values():
            raw["pushed_seq"] = min(int(raw.get("pushed_seq", 0)), kept_end)
        self.pushed_seq = min(self.pushed_seq, kept_end)

    def encode(self) -> bytes:
        """Deterministic JSON."""
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode("utf-8")


def describe_snapshot_check(check: dict[str, Any]) -> str:
    """One line for ``SyncState.snapshot_check`` ("" when the state never started from a remote snapshot)."""
    if not check:
        return ""
    text = f"{check.get('status', '?')}: snapshot {check.get('name', '?')} (position {check.get('position', '?')})"
    detail = check.get("detail")
    return f"{text}; {detail}" if detail else text


def load_state(data_dir: Path) -> SyncState:
    """The sync state of a data directory (empty if it never synced)."""
    path = data_dir / SYNC_FILE
    if not path.exists():
        return SyncState()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return SyncState(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise StorageError(f"sync state {path} is unreadable: {exc}") from exc


def save_state(data_dir: Path, state: SyncState) -> None:
    """Write ``sync.json`` durably (tmp, fsync, rename)."""
    atomic_write(data_dir / SYNC_FILE, state.encode())


def error_text(exc: BaseException) -> str:
    """How a failed sync is reported: an oplog error's message, else the exception's type and message."""
    return str(exc) if isinstance(exc, OplogError) else f"{type(exc).__name__}: {exc}"


def record_error(data_dir: Path, message: str) -> None:
    """Keep ``message`` as the last sync error in ``sync.json`` (everything else as it was on disk).

    Best effort: a sync that failed because the disk did must still report its
    own error, not this one.
    """
    try:
        state = load_state(data_dir)
        state.last_error = message
        save_state(data_dir, state)
    except (OplogError, OSError):
        pass
