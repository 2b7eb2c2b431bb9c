"""Child for the kill test: sync with a LocalDirRemote that kills this process at its N-th remote write.

``python tests/sync_kill_child.py DATA REMOTE N [before|after-temporary]``: the kill comes as the write
starts (default) or once its temporary file is written and synced, before it takes its final name.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from oplog.clock import SystemClock
from oplog.remote import LocalDirRemote
from oplog.store import Store
from oplog.syncrunner import run_sync


class Dying(LocalDirRemote):
    """Dies by SIGKILL on the n-th write, as it starts or with its temporary file written."""

    def __init__(self, root: str, n: int, after_temporary: bool = False) -> None:
        super().__init__(root)
        self.n = n
        self.after_temporary = after_temporary

    def _tick(self) -> None:
        self.n -= 1
        if self.n <= 0 and not self.after_temporary:
            os.kill(os.getpid(), signal.SIGKILL)

    def _tmp(self, final: Path, data: bytes) -> Path:
        tmp = super()._tmp(final, data)
        if self.n <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return tmp

    def write_new(self, path: str, data: bytes) -> bool:
        self._tick()
        return super().write_new(path, data)

    def replace(self, path: str, data: bytes) -> None:
        self._tick()
        super().replace(path, data)


if __name__ == "__main__":
    data, remote, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    after_temporary = sys.argv[4:] == ["after-temporary"]
    with Store.open(data) as store:
        run_sync(store, Dying(remote, n, after_temporary), SystemClock())
