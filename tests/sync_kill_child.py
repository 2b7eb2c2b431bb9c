"""Child for the kill test: sync with a LocalDirRemote that kills this process after N remote writes."""

from __future__ import annotations

import os
import signal
import sys

from oplog.clock import SystemClock
from oplog.remote import LocalDirRemote
from oplog.store import Store
from oplog.syncrunner import run_sync


class Dying(LocalDirRemote):
    """Dies by SIGKILL on the n-th write."""

    def __init__(self, root: str, n: int) -> None:
        super().__init__(root)
        self.n = n

    def _tick(self) -> None:
        self.n -= 1
        if self.n <= 0:
            os.kill(os.getpid(), signal.SIGKILL)

    def write_new(self, path: str, data: bytes) -> bool:
        self._tick()
        return super().write_new(path, data)

    def replace(self, path: str, data: bytes) -> None:
        self._tick()
        super().replace(path, data)


if __name__ == "__main__":
    data, remote, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Store.open(data) as store:
        run_sync(store, Dying(remote, n), SystemClock())
