"""Child for the compaction kill tests: write one document, sync, repeat; SIGKILL itself at the N-th step.

``python tests/compaction_child.py DATA REMOTE FIRST COUNT WHERE N``: documents FIRST..FIRST+COUNT-1,
each acknowledged (``ACK n`` on stdout once ``apply`` returned) and followed by a sync with the folder
remote. ``WHERE`` picks what is counted: ``local`` — file operations on segment files of the data
directory (the merge's write, rename, removals; the log's own segment creation); ``remote`` — segment
and manifest writes and deletions on the remote (the push of a merged tiling). At the N-th such step the
process kills itself with SIGKILL, as the step starts; N = 0 never kills.

Two more for remote snapshots (``oplog.syncsnap``, a snapshot due every 5 events): ``snapshot`` —
writes and deletions under the remote's ``snapshots/`` (upload and pruning); ``join`` — every rename
and removal of any file in the data directory (segments stored, ``journal.json``, ``sync.json`` with
the pending snapshot check) while a device new to the remote starts from a snapshot and checks it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

from oplog import fsutil
from oplog.clock import FakeClock
from oplog.remote import LocalDirRemote
from oplog.store import Store
from oplog.syncrunner import run_sync
from oplog.syncsnap import DEFAULT_SNAPSHOT_EVERY
from oplog.wire import request_from_json
from tests.engine_helpers import numbered_doc_body

_left = [0]


def _tick() -> None:
    if _left[0] > 0:
        _left[0] -= 1
        if _left[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)


_rename = fsutil.OsFileOps.rename
_unlink = fsutil.OsFileOps.unlink


_ANY = [False]


def _dying_rename(self: fsutil.OsFileOps, src: str, dst: str) -> None:
    if _ANY[0] or ".seg" in dst:
        _tick()
    _rename(self, src, dst)


def _dying_unlink(self: fsutil.OsFileOps, path: str) -> None:
    if _ANY[0] or ".seg" in path:
        _tick()
    _unlink(self, path)


class _DyingSnapshots(LocalDirRemote):
    """A folder remote counting writes and deletions of snapshots."""

    def write_new(self, path: str, data: bytes) -> bool:
        if "/snapshots/" in path:
            _tick()
        return super().write_new(path, data)

    def delete(self, path: str) -> None:
        if "/snapshots/" in path:
            _tick()
        super().delete(path)


class _DyingRemote(LocalDirRemote):
    """A folder remote counting segment and manifest writes and deletions."""

    def write_new(self, path: str, data: bytes) -> bool:
        _tick()
        return super().write_new(path, data)

    def replace(self, path: str, data: bytes) -> None:
        if not path.endswith("EPOCH"):
            _tick()
        super().replace(path, data)

    def delete(self, path: str) -> None:
        _tick()
        super().delete(path)


#: The kill tests' seeds (``OPLOG_COMPACTION_SEED=n`` runs only seed n; every failure names its seed).
KILL_SEEDS = [int(os.environ["OPLOG_COMPACTION_SEED"])] if "OPLOG_COMPACTION_SEED" in os.environ else [3, 11]

_REPO = Path(__file__).resolve().parents[1]


def run_child(data: Path, remote: Path, first: int, count: int, where: str, n: int) -> list[int]:
    """Run this module as a child process; return the documents it acknowledged (it may have died at step ``n``)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.compaction_child",
            str(data),
            str(remote),
            str(first),
            str(count),
            where,
            str(n),
        ],
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, -9), proc.stderr[-2000:]
    return [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("ACK ")]


def main() -> None:
    """Run the documents and syncs, dying where told."""
    data, remote, first, count, where, n = sys.argv[1:7]
    warnings.simplefilter("ignore")
    _left[0] = int(n)
    every = 5 if where in ("snapshot", "join") else DEFAULT_SNAPSHOT_EVERY
    _ANY[0] = where == "join"
    if where in ("local", "join"):
        # Every default FileOps in the core is an OsFileOps made at call time: count through them all.
        fsutil.OsFileOps.rename = _dying_rename  # type: ignore[method-assign]
        fsutil.OsFileOps.unlink = _dying_unlink  # type: ignore[method-assign]
        target: LocalDirRemote = LocalDirRemote(remote)
    elif where == "snapshot":
        target = _DyingSnapshots(remote)
    else:
        target = _DyingRemote(remote)
    # A fake clock per round, later than the last round's: deterministic stamps, no future events.
    clock = FakeClock(1_721_527_400_000 + int(first) * 60_000, step_ms=11)
    with Store.open(Path(data), clock=clock) as store:
        for doc in range(int(first), int(first) + int(count)):
            store.apply(request_from_json(numbered_doc_body(doc)))
            print(f"ACK {doc}", flush=True)
            run_sync(store, target, clock, snapshot_every=every)


if __name__ == "__main__":
    main()
