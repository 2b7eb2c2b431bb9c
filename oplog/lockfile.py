"""The writer's lock on a data directory: ``fcntl.flock`` on ``<data>/LOCK``.

flock locks belong to the open file description, so a second opener in the same
process is refused too, and the kernel drops the lock when the holder dies: a
stale LOCK file never blocks anybody. The holder writes its pid into the file
so the error can name it. The file is never deleted (deleting lock files races).
"""

from __future__ import annotations

import fcntl
import os
import threading
from types import TracebackType

from oplog.errors import DataDirLocked, StorageError

__all__ = ["DataDirLock", "LOCK_FILE"]

LOCK_FILE = "LOCK"
_POLL_S = 0.05


class DataDirLock:
    """An exclusive, process-wide writer lock on one data directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """``path`` is the data directory; the lock file is ``<path>/LOCK``."""
        self.data_dir = os.fspath(path)
        self.path = os.path.join(self.data_dir, LOCK_FILE)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def _holder(self, fd: int) -> str:
        try:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        except OSError:
            return ""
        return text if text.isdigit() else ""

    def acquire(self, timeout_s: float = 0) -> None:
        """Take the lock, waiting up to ``timeout_s`` seconds; ``DataDirLocked`` if still held elsewhere."""
        if self._fd is not None:
            return
        try:
            os.makedirs(self.data_dir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open lock file {self.path}: {exc.strerror or exc}") from exc
        # Poll in fixed steps rather than reading a clock: the core takes time only from a Clock.
        polls = max(int(timeout_s / _POLL_S + 0.999), 0)
        pause = threading.Event()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if polls <= 0:
                    holder = self._holder(fd)
                    os.close(fd)
                    who = f" by process {holder}" if holder else " by another process"
                    raise DataDirLocked(
                        f"data directory {self.data_dir} is locked{who}; is another oplog running?"
                    ) from None
                polls -= 1
                pause.wait(_POLL_S)
            except OSError as exc:
                os.close(fd)
                raise StorageError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass  # the pid is only a hint for error messages
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
