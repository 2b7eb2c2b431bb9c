"""The data directory's writer lock."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from oplog.clock import RandomIds
from oplog.errors import DataDirLocked, StorageError
from oplog.identity import load_or_create_device_id
from oplog.lockfile import DataDirLock

HOLDER = """
import sys
from oplog.lockfile import DataDirLock
lock = DataDirLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.readline()
"""


def test_second_opener_in_same_process_is_refused(data_dir: Path) -> None:
    with DataDirLock(data_dir) as first:
        assert first.held
        with pytest.raises(DataDirLocked, match="is locked"):
            DataDirLock(data_dir).acquire()
    second = DataDirLock(data_dir)
    second.acquire()
    second.release()
    second.release()


def test_second_process_is_refused_and_named(data_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirLocked, match=f"process {proc.pid}"):
            DataDirLock(data_dir).acquire(timeout_s=0.1)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    with DataDirLock(data_dir) as lock:  # released by the holder's exit
        assert lock.held


def test_bounded_wait_gets_the_lock_once_released(data_dir: Path) -> None:
    first = DataDirLock(data_dir)
    first.acquire()
    released = threading.Event()

    def release_soon() -> None:
        released.wait(0.2)
        first.release()

    thread = threading.Thread(target=release_soon)
    thread.start()
    second = DataDirLock(data_dir)
    second.acquire(timeout_s=10)
    assert second.held
    second.release()
    thread.join()


def test_device_identity_is_created_once(data_dir: Path) -> None:
    first = load_or_create_device_id(data_dir, RandomIds(1))
    assert len(first) == 16 and int(first, 16) >= 0
    assert load_or_create_device_id(data_dir, RandomIds(2)) == first
    assert (data_dir / "DEVICE").read_text().strip() == first
    (data_dir / "DEVICE").write_text("not an id")
    with pytest.raises(StorageError, match="does not hold a device id"):
        load_or_create_device_id(data_dir, RandomIds(3))
