"""Sync remotes: the narrow storage interface sync needs, a local folder, and a fake with faults.

Paths are ``/``-separated and relative to the remote's root. Layout (SPEC §6)::

    <cloudName>/EPOCH                          the current epoch (JSON, replaced atomically)
    <cloudName>/devices/<device_id>/%016x.seg  that device's sealed segments (same bytes as locally)
    <cloudName>/devices/<device_id>/MANIFEST   written last: epoch, segments, counts, checksums, last seq

A device writes only its own folder; there is no global lock. Nothing partial
is ever visible under a final name: ``LocalDirRemote`` writes a temporary file,
fsyncs it, then links (create-only) or renames (replace) it into place.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from oplog.errors import RemoteError, TransientRemoteError
from oplog.fsutil import fsync_dir

__all__ = [
    "Remote",
    "LocalDirRemote",
    "FakeRemote",
    "Faults",
    "SeededFaults",
    "check_remote_path",
    "lookup_failed",
    "remote_url",
]

_TMP_MARK = ".tmp-"


def check_remote_path(path: str) -> list[str]:
    """Split a remote path into parts, refusing anything that could leave the root."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise RemoteError(f"invalid remote path {path!r}")
    return parts


def remote_url(remote: object) -> str:
    """What identifies ``remote`` across runs (its ``url``), "" for a remote that has none."""
    return str(getattr(remote, "url", ""))


def lookup_failed(exc: BaseException) -> bool:
    """Whether a connection error was a failed DNS lookup anywhere in its chain (an unknown host: permanent).

    The network backends' client libraries wrap ``socket.gaierror`` differently (httpx in ``__cause__``,
    urllib3 in a ``NameResolutionError`` carried in botocore's ``kwargs`` or ``args``): walk them all.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, socket.gaierror) or "NameResolutionError" in type(e).__name__:
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "kwargs", {}).get("error")]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return False


class Remote(Protocol):
    """What sync needs from a remote store of files."""

    def list(self, folder: str) -> list[str]:
        """Names directly inside ``folder`` (files and folders), sorted; [] if it does not exist."""
        ...

    def sizes(self, folder: str) -> dict[str, int]:
        """The files directly inside ``folder`` and their sizes in bytes; {} if it does not exist.

        One listing, as cheap as ``list`` (object stores return sizes with names):
        sync compares them with a manifest to find damaged copies without reading them.
        """
        ...

    def read(self, path: str) -> bytes | None:
        """The whole file, or None if it does not exist."""
        ...

    def write_new(self, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data`` unless it exists; False (nothing written) if it does."""
        ...

    def replace(self, path: str, data: bytes) -> None:
        """Atomically create or replace a file (manifests, ``EPOCH``)."""
        ...

    def delete(self, path: str) -> None:
        """Remove a file; no error if it is already gone."""
        ...

    def sweep(self, folder: str) -> int:
        """Remove what interrupted writes left directly inside ``folder`` (never a listed file); how many.

        Only safe where nobody else is writing: sync sweeps its own device's folder.
        """
        ...


class LocalDirRemote:
    """A remote that is a folder on a local or mounted file system."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Use ``root`` (created on first write) as the remote's root."""
        self.root = Path(root)
        #: the absolute folder: the same remote however it was spelled on the command line
        self.url = f"file://{self.root.resolve()}"

    def _path(self, path: str) -> Path:
        return self.root.joinpath(*check_remote_path(path))

    def _io(self, what: str, path: str, exc: OSError) -> RemoteError:
        transient = exc.errno in (errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT, errno.EIO)
        cls = TransientRemoteError if transient else RemoteError
        return cls(f"remote {self.root}: cannot {what} {path}: {exc.strerror or exc}")

    def list(self, folder: str) -> list[str]:
        """Names inside ``folder``, temporaries excluded."""
        target = self._path(folder) if folder else self.root
        try:
            return sorted(n for n in os.listdir(target) if _TMP_MARK not in n)
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            return []
        except OSError as exc:
            raise self._io("list", folder, exc) from exc

    def sizes(self, folder: str) -> dict[str, int]:
        """Regular files inside ``folder`` with their sizes, temporaries excluded."""
        target = self._path(folder) if folder else self.root
        out: dict[str, int] = {}
        try:
            with os.scandir(target) as entries:
                for entry in entries:
                    if _TMP_MARK not in entry.name and entry.is_file(follow_symlinks=False):
                        out[entry.name] = entry.stat(follow_symlinks=False).st_size
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise self._io("list", folder, exc) from exc
        return out

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when missing."""
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._io("read", path, exc) from exc

    def _tmp(self, final: Path, data: bytes) -> Path:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{final.name}{_TMP_MARK}{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def write_new(self, path: str, data: bytes) -> bool:
        """Write a temporary file, then hard-link it to the final name (fails if it exists)."""
        final = self._path(path)
        if final.exists():
            return False
        try:
            tmp = self._tmp(final, data)
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
            fsync_dir(final.parent)
        except OSError as exc:
            raise self._io("write", path, exc) from exc
        return True

    def replace(self, path: str, data: bytes) -> None:
        """Write a temporary file, fsync it, rename it over the final name, fsync the folder."""
        final = self._path(path)
        try:
            tmp = self._tmp(final, data)
            try:
                os.replace(tmp, final)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise
            fsync_dir(final.parent)
        except OSError as exc:
            raise self._io("replace", path, exc) from exc

    def delete(self, path: str) -> None:
        """Unlink a file if present."""
        try:
            self._path(path).unlink(missing_ok=True)
        except OSError as exc:
            raise self._io("delete", path, exc) from exc

    def sweep(self, folder: str) -> int:
        """Unlink the temporaries (``<name>.tmp-<hex>``) a killed writer left in ``folder``."""
        target = self._path(folder) if folder else self.root
        removed = 0
        try:
            for name in sorted(os.listdir(target)):
                if _TMP_MARK in name:
                    (target / name).unlink(missing_ok=True)
                    removed += 1
            if removed:
                fsync_dir(target)
        except FileNotFoundError:
            return removed
        except OSError as exc:
            raise self._io("sweep", folder, exc) from exc
        return removed

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """The file's bytes and a version (a digest of them), or (None, None) when missing."""
        data = self.read(path)
        return data, content_version(data)

    def version(self, path: str) -> str | None:
        """A version of the file without reading it (size, modification time, inode), or None when missing."""
        try:
            st = self._path(path).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._io("stat", path, exc) from exc
        return f"{st.st_size}-{st.st_mtime_ns}-{st.st_ino}"

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """Replace only if the file is still at ``version`` (None: only if absent); best effort, see below.

        The check and the rename happen under an exclusive ``flock`` on the folder, so two
        oplog processes on one machine (or on a file system whose ``flock`` is shared, as
        local ones are) cannot both win; on network file systems that do not share
        ``flock`` this is best effort. Plain ``replace`` does not take the lock.
        """
        final = self._path(path)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(final.parent, os.O_RDONLY)
        except OSError as exc:
            raise self._io("replace", path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if content_version(self.read(path)) != version:
                return False
            self.replace(path, data)
            return True
        finally:
            os.close(fd)  # closing the descriptor releases the lock


@dataclass
class Faults:
    """Fault rates of a ``FakeRemote`` (each a probability per call)."""

    #: the call fails with ``TransientRemoteError`` before doing anything
    io_error: float = 0.0
    #: a segment upload leaves a truncated file under the final name, then fails (a non-atomic store)
    partial_upload: float = 0.0
    #: a write succeeds but reports failure, so the caller uploads it again
    duplicate_upload: float = 0.0
    #: a listing misses names added since the previous listing of that folder
    stale_listing: float = 0.0
    #: hard stop: every call after this many calls fails (an interrupted sync); None = never
    fail_after: int | None = None
    kinds: list[str] = field(default_factory=list)


class SeededFaults:
    """The seeded fault decisions of ``FakeRemote`` and of wrappers that put its fault model around a real remote.

    The host sets ``faults``, ``_rng`` (a seeded ``random.Random``), ``_listed`` (an empty dict) and
    ``calls``; ``fault_label`` names it in the errors it raises. Every call enters through :meth:`_enter`,
    so the faults fall in seed order.
    """

    fault_label = "fake remote"
    faults: Faults
    _rng: random.Random
    _listed: dict[str, list[str]]
    calls: int

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def _enter(self, what: str, path: str) -> None:
        self.calls += 1
        f = self.faults
        if f.fail_after is not None and self.calls > f.fail_after:
            raise TransientRemoteError(f"{self.fault_label}: {what} {path}: connection lost")
        if self._roll(f.io_error):
            f.kinds.append("io_error")
            raise TransientRemoteError(f"{self.fault_label}: {what} {path}: I/O error")

    def _listing(self, folder: str, names: list[str]) -> list[str]:
        """``names``, the listing of ``folder`` now; sometimes an older one (names added since the last missing)."""
        previous = self._listed.get(folder)
        self._listed[folder] = names
        if previous is not None and self._roll(self.faults.stale_listing):
            self.faults.kinds.append("stale_listing")
            return [n for n in names if n in previous]
        return names


class FakeRemote(SeededFaults):
    """An in-memory remote with a seeded fault model, for tests and simulations."""

    #: reads one at a time: concurrent calls would draw the seeded faults in a racy order
    read_workers = 1

    def __init__(self, seed: int = 0, faults: Faults | None = None, *, name: str = "fake") -> None:
        """An empty remote; ``faults`` default to none; ``name`` tells two fakes apart (its ``url``)."""
        self.url = f"fake:{name}"
        self.files: dict[str, bytes] = {}
        self.faults = faults or Faults()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._listed: dict[str, list[str]] = {}
        self.calls = 0
        self.bytes_written = 0
        self.bytes_read = 0
        self.files_written = 0
        self.files_read = 0

    def list(self, folder: str) -> list[str]:
        """Names directly inside ``folder``; sometimes an older listing."""
        with self._lock:
            self._enter("list", folder)
            prefix = f"{folder}/" if folder else ""
            names = sorted({k[len(prefix) :].split("/", 1)[0] for k in self.files if k.startswith(prefix)})
            return self._listing(folder, names)

    def sizes(self, folder: str) -> dict[str, int]:
        """Files directly inside ``folder`` and their sizes."""
        with self._lock:
            self._enter("list", folder)
            prefix = f"{folder}/"
            return {
                k[len(prefix) :]: len(v)
                for k, v in self.files.items()
                if k.startswith(prefix) and "/" not in k[len(prefix) :]
            }

    def read(self, path: str) -> bytes | None:
        """The stored bytes, or None."""
        with self._lock:
            check_remote_path(path)
            self._enter("read", path)
            data = self.files.get(path)
            if data is not None:
                self.files_read += 1
                self.bytes_read += len(data)
            return data

    def _store(self, path: str, data: bytes, *, may_tear: bool) -> None:
        f = self.faults
        if may_tear and self._roll(f.partial_upload) and len(data) > 1:
            f.kinds.append("partial_upload")
            self.files[path] = data[: self._rng.randrange(1, len(data))]
            raise TransientRemoteError(f"fake remote: write {path}: connection reset mid-upload")
        self.files[path] = bytes(data)
        self.files_written += 1
        self.bytes_written += len(data)
        if self._roll(f.duplicate_upload):
            f.kinds.append("duplicate_upload")
            raise TransientRemoteError(f"fake remote: write {path}: timed out waiting for the reply")

    def write_new(self, path: str, data: bytes) -> bool:
        """Create unless present."""
        with self._lock:
            check_remote_path(path)
            self._enter("write", path)
            if path in self.files:
                return False
            # A torn upload is simulated for segments, the big files; small JSON files go up whole.
            self._store(path, data, may_tear=path.endswith(".seg"))
            return True

    def replace(self, path: str, data: bytes) -> None:
        """Create or replace."""
        with self._lock:
            check_remote_path(path)
            self._enter("replace", path)
            # Replacing small files (manifests, EPOCH) is atomic on real object stores too.
            self._store(path, data, may_tear=False)

    def delete(self, path: str) -> None:
        """Remove if present."""
        with self._lock:
            check_remote_path(path)
            self._enter("delete", path)
            self.files.pop(path, None)

    def sweep(self, folder: str) -> int:
        """Nothing to sweep: a torn upload here leaves the final name, which sync's checks catch."""
        with self._lock:
            self._enter("sweep", folder)
            return 0

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """The stored bytes and their digest, or (None, None)."""
        data = self.read(path)
        return data, content_version(data)

    def version(self, path: str) -> str | None:
        """The stored bytes' digest (not counted as a read), or None."""
        with self._lock:
            check_remote_path(path)
            self._enter("stat", path)
            return content_version(self.files.get(path))

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """Replace only if the bytes still have digest ``version`` (None: only if absent)."""
        with self._lock:
            check_remote_path(path)
            self._enter("replace", path)
            if content_version(self.files.get(path)) != version:
                return False
            self._store(path, data, may_tear=False)
            return True

    def reset_counters(self) -> None:
        """Zero the call, byte and file counters (benchmarks)."""
        self.calls = self.bytes_written = self.bytes_read = self.files_written = self.files_read = 0


@runtime_checkable
class VersionedRemote(Remote, Protocol):
    """A remote that can replace a file only if nobody changed it since it was read (for ``EPOCH``).

    ``version`` is opaque: an ETag on S3 and WebDAV, a digest of the bytes on a folder.
    ``isinstance(remote, VersionedRemote)`` tells whether a remote has it (every backend here does).
    """

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """The whole file and its version, or (None, None) if it does not exist."""
        ...

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """Atomically replace ``path`` if it is still at ``version`` (None: create it only if absent).

        False, nothing written, when it changed (or appeared) since that version was read.
        """
        ...


@runtime_checkable
class PollableRemote(Protocol):
    """A remote that tells a file's version without sending its bytes (HEAD): what ``oplog watch`` polls.

    Apart from ``VersionedRemote`` so that a wrapper remote without it still gets conditional writes.
    """

    def list(self, folder: str) -> list[str]:
        """As ``Remote.list``."""
        ...

    def version(self, path: str) -> str | None:
        """The file's current version (as ``read_versioned`` gives it, or another opaque one), None if absent."""
        ...


def content_version(data: bytes | None) -> str | None:
    """The version of a file by its bytes (for remotes without ETags); None for no file."""
    return None if data is None else hashlib.blake2b(data, digest_size=16).hexdigest()


__all__ += ["VersionedRemote", "PollableRemote", "content_version"]
