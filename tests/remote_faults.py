"""The simulation's seeded fault model around a real remote (``FaultyRemote``), for the S3 slice of the simulation.

``FakeRemote`` keeps its files in memory; the simulation's seeds also run
against moto's real S3 server through this wrapper, which draws the same kinds
of faults from its own seeded stream (``oplog.remote.Faults``) and passes every
call that survives them to the real backend. A torn upload is written as the
truncated bytes under the final name (what a non-atomic store could leave),
then fails, as the fake does.
"""

from __future__ import annotations

import random
import threading

from oplog.errors import TransientRemoteError
from oplog.remote import Faults, SeededFaults, VersionedRemote, check_remote_path

__all__ = ["FaultyRemote"]


class FaultyRemote(SeededFaults):
    """``inner`` with the seeded faults of ``faults`` (one call at a time, so the faults fall in seed order)."""

    read_workers = 1
    fault_label = "faulty remote"

    def __init__(self, inner: VersionedRemote, seed: int, faults: Faults | None = None, *, name: str) -> None:
        """Wrap ``inner``; ``name`` tells two of them apart (its ``url``)."""
        self.inner = inner
        self.url = f"{getattr(inner, 'url', '')}#{name}"
        self.faults = faults or Faults()
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._listed: dict[str, list[str]] = {}
        self.calls = 0

    def _after_write(self, path: str) -> None:
        if self._roll(self.faults.duplicate_upload):
            self.faults.kinds.append("duplicate_upload")
            raise TransientRemoteError(f"faulty remote: write {path}: timed out waiting for the reply")

    def list(self, folder: str) -> list[str]:
        """The inner listing; sometimes an older one (names added since the last listing missing)."""
        with self._lock:
            self._enter("list", folder)
            return self._listing(folder, self.inner.list(folder))

    def sizes(self, folder: str) -> dict[str, int]:
        """The inner sizes."""
        with self._lock:
            self._enter("list", folder)
            return self.inner.sizes(folder)

    def read(self, path: str) -> bytes | None:
        """The inner read."""
        with self._lock:
            check_remote_path(path)
            self._enter("read", path)
            return self.inner.read(path)

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """The inner versioned read."""
        with self._lock:
            check_remote_path(path)
            self._enter("read", path)
            return self.inner.read_versioned(path)

    def write_new(self, path: str, data: bytes) -> bool:
        """Create-only; a segment upload may tear (truncated bytes left under the final name, then an error)."""
        with self._lock:
            check_remote_path(path)
            self._enter("write", path)
            if path.endswith(".seg") and len(data) > 1 and self._roll(self.faults.partial_upload):
                self.faults.kinds.append("partial_upload")
                if self.inner.write_new(path, data[: self._rng.randrange(1, len(data))]):
                    raise TransientRemoteError(f"faulty remote: write {path}: connection reset mid-upload")
                return False
            created = self.inner.write_new(path, data)
            if created:
                self._after_write(path)
            return created

    def replace(self, path: str, data: bytes) -> None:
        """The inner replace (atomic), sometimes reported as failed after it happened."""
        with self._lock:
            check_remote_path(path)
            self._enter("replace", path)
            self.inner.replace(path, data)
            self._after_write(path)

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """The inner conditional replace, sometimes reported as failed after it happened."""
        with self._lock:
            check_remote_path(path)
            self._enter("replace", path)
            done = self.inner.replace_if(path, data, version)
            if done:
                self._after_write(path)
            return done

    def delete(self, path: str) -> None:
        """The inner delete."""
        with self._lock:
            check_remote_path(path)
            self._enter("delete", path)
            self.inner.delete(path)

    def sweep(self, folder: str) -> int:
        """The inner sweep."""
        with self._lock:
            self._enter("sweep", folder)
            return self.inner.sweep(folder)

    @property
    def files(self) -> dict[str, bytes]:
        """Every file under every cloud folder (for the simulation's checks; not a sync path)."""
        out: dict[str, bytes] = {}

        def walk(folder: str) -> None:
            sizes = self.inner.sizes(folder)
            for name in self.inner.list(folder):
                path = f"{folder}/{name}" if folder else name
                if name in sizes:
                    data = self.inner.read(path)
                    if data is not None:
                        out[path] = data
                else:
                    walk(path)

        walk("")
        return out
