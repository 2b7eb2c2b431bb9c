"""File helpers and the file-ops seam the log writes through.

Everything the log does to the disk goes through a ``FileOps`` object, so tests
can swap in a fault-injecting implementation (``tests/faultfs.py``) that keeps
written-but-unsynced bytes apart and simulates a crash at any sync point.
``OsFileOps`` is the real thing: thin wrappers over ``os``.
"""

from __future__ import annotations

import os
from typing import Protocol

from oplog.errors import StorageError

__all__ = ["FileOps", "OsFileOps", "atomic_write", "fsync_dir", "read_file", "full_disk_hint"]


class FileOps(Protocol):
    """The narrow set of file operations the log needs (fd-based, like ``os``)."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Open ``path`` and return a file descriptor."""
        ...

    def close(self, fd: int) -> None:
        """Close a file descriptor."""
        ...

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        """Write at the descriptor's position; return the bytes written."""
        ...

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``."""
        ...

    def fdatasync(self, fd: int) -> None:
        """Make the file's data (and size) durable."""
        ...

    def fsync(self, fd: int) -> None:
        """Make the file's data and metadata durable."""
        ...

    def ftruncate(self, fd: int, length: int) -> None:
        """Cut the file to ``length`` bytes."""
        ...

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        """Move the descriptor's position; return the new one."""
        ...

    def fsize(self, fd: int) -> int:
        """The file's current size."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src``."""
        ...

    def unlink(self, path: str) -> None:
        """Remove a file."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Names in a folder."""
        ...

    def makedirs(self, path: str) -> None:
        """Create a folder and its parents if missing."""
        ...

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        ...

    def fsync_dir(self, path: str) -> None:
        """Make the folder's entries (creations, renames) durable."""
        ...


class OsFileOps:
    """The real file operations: thin wrappers over ``os``."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Open ``path`` and return a file descriptor."""
        return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), mode)

    def close(self, fd: int) -> None:
        """Close a file descriptor."""
        os.close(fd)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        """Write at the descriptor's position; return the bytes written."""
        return os.write(fd, data)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``."""
        return os.pread(fd, size, offset)

    def fdatasync(self, fd: int) -> None:
        """Make the file's data (and size) durable."""
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        """Make the file's data and metadata durable."""
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        """Cut the file to ``length`` bytes."""
        os.ftruncate(fd, length)

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        """Move the descriptor's position; return the new one."""
        return os.lseek(fd, offset, whence)

    def fsize(self, fd: int) -> int:
        """The file's current size."""
        return os.fstat(fd).st_size

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src``."""
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        """Remove a file."""
        os.unlink(path)

    def listdir(self, path: str) -> list[str]:
        """Names in a folder."""
        return os.listdir(path)

    def makedirs(self, path: str) -> None:
        """Create a folder and its parents if missing."""
        os.makedirs(path, exist_ok=True)

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        return os.path.exists(path)

    def fsync_dir(self, path: str) -> None:
        """Make the folder's entries (creations, renames) durable."""
        fsync_dir(path)


_OS = OsFileOps()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so that creations and renames inside it survive a crash."""
    fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: str, ops: FileOps | None = None) -> bytes:
    """Read a whole file with one or a few big reads."""
    ops = ops or _OS
    fd = ops.open(path, os.O_RDONLY)
    try:
        size = ops.fsize(fd)
        chunks: list[bytes] = []
        offset = 0
        # Read to EOF rather than trusting the size: a writer may still be appending.
        while True:
            chunk = ops.pread(fd, max(size - offset, 1 << 20), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        ops.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, ops: FileOps | None = None) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    Write a temporary file beside it, fsync it, rename it over ``path``, fsync
    the folder: nothing partial is ever visible under the final name.
    """
    ops = ops or _OS
    final = os.fspath(path)
    folder = os.path.dirname(final) or "."
    tmp = f"{final}.tmp"
    try:
        fd = ops.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = ops.write(fd, view)
                view = view[written:]
            ops.fsync(fd)
        finally:
            ops.close(fd)
        ops.rename(tmp, final)
        ops.fsync_dir(folder)
    except OSError as exc:
        raise StorageError(f"cannot write {final}: {exc.strerror or exc}") from exc


def full_disk_hint(path: str | os.PathLike[str]) -> str:
    """``" (the disk holding PATH is full: free space there)"`` when it has no room left, else ``""``.

    SQLite reports a full disk as ``disk I/O error`` in some places; this names the real problem.
    """
    try:
        st = os.statvfs(os.fspath(path))
    except OSError:
        return ""
    if not st.f_blocks:
        return ""  # /proc and friends report no size at all: not a disk
    if st.f_bavail * st.f_frsize < (1 << 20) or (st.f_files and st.f_favail == 0):
        return f" (the disk holding {os.fspath(path)} is full: free space there)"
    return ""
