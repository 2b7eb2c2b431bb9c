"""Finding the server that holds a data directory.

``oplog serve`` writes ``<data>/SERVER`` (JSON ``{"address", "pid", "remote"}``, written
tmp → fsync → rename) once it listens, and removes it on a clean stop. Commands
that write read it: ``apply``, ``sync`` and ``watch`` send their work through
that server instead of waiting for the writer's lock; ``archive restore`` names
it when it refuses. A file
left behind by a killed server is ignored: it counts only while its pid is alive
and is the pid recorded in ``LOCK`` by the lock holder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from oplog.datadir import SERVER_FILE
from oplog.fsutil import atomic_write
from oplog.lockfile import LOCK_FILE

__all__ = ["SERVER_FILE", "ServerInfo", "write_server_file", "remove_server_file", "find_server"]


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A running server: where it listens and its process id."""

    address: str
    pid: int
    #: The server's remote folder, absolute ("" when the file predates it).
    remote: str = ""

    def other_remote(self, remote: str | os.PathLike[str]) -> bool:
        """Whether ``remote`` names a folder other than this server's remote."""
        from oplog.remoteurl import remote_identity

        return bool(self.remote) and remote_identity(remote) != remote_identity(self.remote)


def write_server_file(data_dir: str | os.PathLike[str], address: str, remote: str | os.PathLike[str]) -> None:
    """Record that this process serves ``data_dir`` at ``address``, syncing with ``remote``."""
    from oplog.remoteurl import remote_identity

    # Never the URL's userinfo: SERVER is readable by every local user of the directory.
    record = {"address": address, "pid": os.getpid(), "remote": remote_identity(remote)}
    body = json.dumps(record).encode()
    atomic_write(Path(data_dir) / SERVER_FILE, body)


def remove_server_file(data_dir: str | os.PathLike[str]) -> None:
    """Remove the record (only if it is this process's)."""
    path = Path(data_dir) / SERVER_FILE
    info = _read(path)
    if info is not None and info.pid == os.getpid():
        try:
            path.unlink()
        except OSError:
            pass


def _read(path: Path) -> ServerInfo | None:
    try:
        raw = json.loads(path.read_text())
        return ServerInfo(address=str(raw["address"]), pid=int(raw["pid"]), remote=str(raw.get("remote", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_server(data_dir: str | os.PathLike[str]) -> ServerInfo | None:
    """The live server holding ``data_dir``, or None."""
    data = Path(data_dir)
    info = _read(data / SERVER_FILE)
    if info is None or not _alive(info.pid):
        return None
    try:
        holder = (data / LOCK_FILE).read_text().strip()
    except OSError:
        return None
    return info if holder == str(info.pid) else None
