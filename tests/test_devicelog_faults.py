"""DeviceLog under a full disk and in ``interval`` mode: what a caller was told is in the kernel, or nothing changed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from oplog.devicelog import DeviceLog
from oplog.errors import StorageError
from oplog.fsutil import OsFileOps
from tests.log_helpers import DEVICE, payload


class RoomOps(OsFileOps):
    """Real file operations on a disk with ``room`` bytes left: a write past it is cut short, then ENOSPC."""

    def __init__(self, room: int | None = None) -> None:
        self.room = room

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        """Write at most ``room`` bytes; none left raises ENOSPC, as a full disk does."""
        if self.room is None:
            return super().write(fd, data)
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = super().write(fd, bytes(data)[: self.room])
        self.room -= n
        return n

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Creating a file needs room too (a segment, its temporary)."""
        if flags & os.O_CREAT and self.room is not None and self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().open(path, flags, mode)


def _sizes(folder: str) -> dict[str, int]:
    return {name: os.path.getsize(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}


def test_a_failed_written_append_changes_nothing_and_can_be_retried(log_folder: str) -> None:
    ops = RoomOps()
    log = DeviceLog.open(log_folder, DEVICE, file_ops=ops)
    log.append_written([payload(1)])
    log.wait_durable(1)
    before = _sizes(log_folder)
    ops.room = 30  # the next batch is cut mid-frame
    with pytest.raises(StorageError, match="No space left"):
        log.append_written([payload(2, size=200)])
    assert log.last_seq == 1 and log.failed is None
    assert _sizes(log_folder) == before  # the partial frame was cut back
    ops.room = None
    assert log.append_written([payload(2)]) == 2
    log.wait_durable(2)
    log.close()
    with DeviceLog.open(log_folder, DEVICE) as again:
        assert list(again.read()) == [(1, payload(1)), (2, payload(2))]


def test_a_segment_that_cannot_be_created_is_created_on_a_later_append(log_folder: str) -> None:
    ops = RoomOps()
    log = DeviceLog.open(log_folder, DEVICE, file_ops=ops, segment_bytes=1024)
    seq = 0
    while len(log.segments()) == 1:
        seq = log.append_written([payload(seq + 1)])
    log.wait_durable(seq)
    sealed_then = len(log.segments())
    # Fill the new segment until the next roll, with the disk full at that moment.
    while True:
        ops.room = None
        count = len(log.segments())
        seq = log.append_written([payload(seq + 1)])
        if len(log.segments()) > count:
            break
    ops.room = 0
    with pytest.raises(StorageError):
        while True:
            log.append_written([payload(seq + 1)])
            seq += 1
    assert log.failed is None
    ops.room = None
    seq = log.append_written([payload(seq + 1)])
    log.wait_durable(seq)
    log.close()
    with DeviceLog.open(log_folder, DEVICE) as again:
        assert [s for s, _ in again.read()] == list(range(1, seq + 1))
        assert len(again.segments()) >= sealed_then


def test_interval_mode_hands_an_acknowledged_batch_to_the_kernel(log_folder: str) -> None:
    # An interval far longer than the test: only wait_durable can have written the batch.
    log = DeviceLog.open(log_folder, DEVICE, durability="interval", interval_ms=3_600_000)
    try:
        log.append([payload(1)])
        log.append([payload(2)])
        log.wait_durable(2)
        # Another reader of the file (what survives a SIGKILL of this process) sees both records.
        with DeviceLog.open(log_folder, DEVICE, writable=False) as reader:
            assert [s for s, _ in reader.read()] == [1, 2]
    finally:
        log.close()


def test_interval_append_durable_writes_before_returning(tmp_path: Path) -> None:
    folder = str(tmp_path / "log")
    log = DeviceLog.open(folder, DEVICE, durability="interval", interval_ms=3_600_000)
    try:
        log.append_durable([payload(1)])
        with DeviceLog.open(folder, DEVICE, writable=False) as reader:
            assert [s for s, _ in reader.read()] == [1]
    finally:
        log.close()
