"""A fault-injecting FileOps for crash simulation (after SQLite's crash tests).

``FaultFileOps`` performs every operation for real, but remembers for each file
the content it had at its last fsync/fdatasync and the writes made since. At
each sync point (just before the sync runs) it calls ``on_sync``, where a test
can take ``crash_image``: the files as a power loss at that moment might leave
them, each unsynced write independently kept, dropped, zeroed or garbled.

Directory operations (create, rename, unlink) are treated as durable at once:
the log only renames after an fsync and fsyncs the folder right after, so this
models the data path, which is where torn tails come from.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from oplog.fsutil import OsFileOps


class FaultFileOps(OsFileOps):
    """Real file operations that also track written-but-unsynced bytes."""

    def __init__(self) -> None:
        self.fd_path: dict[int, str] = {}
        self.fd_append: set[int] = set()
        self.durable: dict[str, bytes] = {}
        self.pending: dict[str, list[tuple[int, bytes]]] = {}
        self.on_sync: Callable[[], None] | None = None
        self.sync_points = 0

    def _track(self, path: str) -> None:
        if path not in self.durable:
            self.durable[path] = open(path, "rb").read() if os.path.exists(path) else b""
            self.pending[path] = []

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Open for real and start tracking the file."""
        fd = super().open(path, flags, mode)
        if flags & (os.O_WRONLY | os.O_RDWR):
            self._track(path)
            if flags & os.O_TRUNC:
                self.durable[path] = b""
                self.pending[path] = []
            self.fd_path[fd] = path
            if flags & os.O_APPEND:
                self.fd_append.add(fd)
        return fd

    def close(self, fd: int) -> None:
        """Close for real and forget the descriptor."""
        self.fd_path.pop(fd, None)
        self.fd_append.discard(fd)
        super().close(fd)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        """Write for real and remember the bytes as unsynced."""
        path = self.fd_path[fd]
        offset = os.fstat(fd).st_size if fd in self.fd_append else os.lseek(fd, 0, os.SEEK_CUR)
        n = super().write(fd, data)
        self.pending[path].append((offset, bytes(data[:n])))
        return n

    def _synced(self, fd: int) -> None:
        self.sync_points += 1
        if self.on_sync is not None:
            self.on_sync()

    def fdatasync(self, fd: int) -> None:
        """A crash point, then a real sync that makes the pending writes durable."""
        self._synced(fd)
        super().fdatasync(fd)
        self._settle(fd)

    def fsync(self, fd: int) -> None:
        """Same as ``fdatasync`` for this model."""
        self._synced(fd)
        super().fsync(fd)
        self._settle(fd)

    def _settle(self, fd: int) -> None:
        path = self.fd_path.get(fd)
        if path is not None:
            with open(path, "rb") as handle:
                self.durable[path] = handle.read()
            self.pending[path] = []

    def ftruncate(self, fd: int, length: int) -> None:
        """Truncate for real; the model keeps it as durable (only used to undo a failed write)."""
        super().ftruncate(fd, length)
        path = self.fd_path[fd]
        self.durable[path] = self.durable[path][:length]

    def rename(self, src: str, dst: str) -> None:
        """Rename for real and move the tracking along."""
        super().rename(src, dst)
        if src in self.durable:
            self.durable[dst] = self.durable.pop(src)
            self.pending[dst] = self.pending.pop(src)

    def unlink(self, path: str) -> None:
        """Remove for real and stop tracking."""
        super().unlink(path)
        self.durable.pop(path, None)
        self.pending.pop(path, None)

    def crash_image(self, rng: random.Random, mode: str = "mixed") -> dict[str, bytes]:
        """File contents a power loss right now might leave.

        ``mode``: "mixed" (each unsynced write kept, dropped, zeroed or garbled at
        random), "keep" (all kept), "drop" (all dropped), "prefix" (the writes
        reach the disk in order and stop somewhere, the last one possibly torn).
        """
        image: dict[str, bytes] = {}
        for path, base in self.durable.items():
            if not os.path.exists(path):
                continue
            content = bytearray(base)
            writes = self.pending[path]
            stop = rng.randrange(len(writes) + 1) if mode == "prefix" else len(writes)
            for index, (offset, data) in enumerate(writes):
                if mode == "keep":
                    fate = "keep"
                elif mode == "drop":
                    fate = "drop"
                elif mode == "prefix":
                    fate = "keep" if index < stop else ("torn" if index == stop else "drop")
                else:
                    fate = rng.choice(["keep", "keep", "drop", "zero", "garble", "torn"])
                if fate == "drop":
                    continue
                if fate == "zero":
                    data = bytes(len(data))
                elif fate == "garble":
                    data = rng.randbytes(len(data))
                elif fate == "torn":
                    cut = rng.randrange(len(data) + 1)
                    data = data[:cut] + rng.choice([bytes(len(data) - cut), rng.randbytes(len(data) - cut)])
                if len(content) < offset:
                    content.extend(bytes(offset - len(content)))
                content[offset : offset + len(data)] = data
            image[path] = bytes(content)
        return image
