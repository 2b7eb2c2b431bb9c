"""DeviceLog: appends, reads, segments, durability modes, bad folders, EventLog."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from oplog import segment
from oplog.devicelog import DeviceLog
from oplog.errors import CorruptSegment, InvalidArgument, StorageError
from oplog.eventlog import EventLog, decode_event, encode_event
from oplog.fsutil import OsFileOps, atomic_write
from oplog.v1.oplog_pb2 import Event
from tests.log_helpers import DEVICE, folder_state, open_log, payload, seg_paths


def test_append_and_read(log_folder: str) -> None:
    with open_log(log_folder) as log:
        assert log.last_seq == 0 and list(log.read()) == []
        assert log.append([payload(1)]) == 1
        assert log.append([payload(2), payload(3), payload(4)]) == 4
        log.wait_durable(4)
        assert log.durable_seq == 4
        assert list(log.read()) == [(s, payload(s)) for s in range(1, 5)]
        assert list(log.read(3)) == [(3, payload(3)), (4, payload(4))]
        assert list(log.read(2, 3)) == [(2, payload(2)), (3, payload(3))]
        assert list(log.read(9)) == []
    with open_log(log_folder) as log:
        assert log.last_seq == 4 and log.durable_seq == 4
        assert log.append_durable([payload(5)]) == 5


def test_rollover_and_seal(log_folder: str) -> None:
    with open_log(log_folder, segment_bytes=1024) as log:
        for s in range(1, 61):
            log.append([payload(s)])
        segs = log.segments()
        assert len(segs) > 2
        assert all(s.sealed for s in segs[:-1]) and not segs[-1].sealed
        assert all(s.size <= 1024 for s in segs)
        assert [s.first_seq for s in segs] == sorted(s.first_seq for s in segs)
        assert sum(s.count for s in segs) == 60
        assert log.seal() and not log.seal()
        assert log.segments()[-1].sealed
        assert log.append([payload(61)]) == 61
        assert log.segments()[-1].first_seq == 61
        assert list(log.read(55)) == [(s, payload(s)) for s in range(55, 62)]
    with open_log(log_folder, writable=False) as log:
        assert [p for _, p in log.read()] == [payload(s) for s in range(1, 62)]
        assert log.verify() == 61


def test_big_batch_gets_its_own_segment(log_folder: str) -> None:
    with open_log(log_folder, segment_bytes=512) as log:
        log.append([payload(1)])
        log.append([payload(s, 300) for s in range(2, 5)])
        assert [s.count for s in log.segments()] == [1, 3]


def test_read_only_open_changes_nothing(log_folder: str) -> None:
    with open_log(log_folder) as log:
        log.append([payload(1)])
    with open(seg_paths(log_folder)[0], "ab") as handle:
        handle.write(b"\xb1\x00torn")
    before = folder_state(log_folder)
    with open_log(log_folder, writable=False) as log:
        assert list(log.read()) == [(1, payload(1))]
        with pytest.raises(StorageError, match="read-only"):
            log.append([b"x"])
    assert folder_state(log_folder) == before
    missing = os.path.join(log_folder, "..", "nobody")
    with open_log(missing, writable=False) as log:
        assert log.last_seq == 0
    assert not os.path.exists(missing)


def test_expect_seq_and_bad_arguments(log_folder: str) -> None:
    with open_log(log_folder) as log:
        assert log.append([b"a"], expect_seq=1) == 1
        with pytest.raises(StorageError, match="next seq is 2"):
            log.append([b"b"], expect_seq=5)
        with pytest.raises(InvalidArgument):
            log.append([])
        with pytest.raises(InvalidArgument):
            log.wait_durable(7)
    with pytest.raises(InvalidArgument):
        open_log(log_folder, durability="sometimes")
    with pytest.raises(StorageError, match="closed"):
        log.append([b"c"])


def test_interval_mode(log_folder: str) -> None:
    log = open_log(log_folder, durability="interval", interval_ms=5)
    for s in range(1, 101):
        log.append_durable([payload(s)])
    log.wait_durable(100)  # returns at once
    log.sync()
    assert log.durable_seq == 100
    log.close()
    with open_log(log_folder, writable=False) as log:
        assert log.last_seq == 100


def test_concurrent_appenders_group_commit(log_folder: str) -> None:
    class CountingOps(OsFileOps):
        syncs = 0

        def fdatasync(self, fd: int) -> None:
            CountingOps.syncs += 1
            super().fdatasync(fd)

    log = open_log(log_folder, segment_bytes=4096, file_ops=CountingOps())
    acked: dict[tuple[int, int], int] = {}
    lock = threading.Lock()

    def worker(t: int) -> None:
        for c in range(40):
            k = 1 + (t + c) % 3
            seq = log.append_durable([f"{t}:{c}:{i}:{k}".encode() for i in range(k)])
            assert log.durable_seq >= seq
            with lock:
                acked[(t, c)] = seq

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    log.close()
    records = list(open_log(log_folder, writable=False).read())
    assert [s for s, _ in records] == list(range(1, len(records) + 1))
    by_seq = dict(records)
    for (t, c), seq in acked.items():
        k = 1 + (t + c) % 3
        assert [by_seq[seq - k + 1 + i] for i in range(k)] == [f"{t}:{c}:{i}:{k}".encode() for i in range(k)]
    assert len(acked) == 240 and CountingOps.syncs <= len(acked) + 20


def test_write_error_poisons_the_log(log_folder: str) -> None:
    class FullDisk(OsFileOps):
        full = False

        def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
            if self.full:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(fd, data)

    ops = FullDisk()
    log = open_log(log_folder, file_ops=ops)
    log.append_durable([payload(1)])
    ops.full = True
    log.append([payload(2)])
    with pytest.raises(StorageError, match="No space left"):
        log.wait_durable(2)
    with pytest.raises(StorageError, match="unusable"):
        log.append([payload(3)])
    log.close()
    with open_log(log_folder) as again:
        assert list(again.read()) == [(1, payload(1))]


def test_unrelated_files_are_ignored_with_a_warning(log_folder: str) -> None:
    with open_log(log_folder) as log:
        log.append([payload(1)])
    Path(log_folder, "notes.txt").write_text("hello")
    Path(log_folder, "0000000000000001.seg.broken").write_bytes(b"old tail")
    with pytest.warns(UserWarning, match="notes.txt"):
        with open_log(log_folder) as log:
            assert list(log.read()) == [(1, payload(1))]


@pytest.mark.parametrize(
    "content, error, message",
    [
        (b"", CorruptSegment, "cut short"),
        (b"\x00" * 100, CorruptSegment, "bad magic"),
        (b"garbage that is not a segment at all" * 3, CorruptSegment, "bad magic"),
    ],
)
def test_garbage_segment_files(log_folder: str, content: bytes, error: type, message: str) -> None:
    os.makedirs(log_folder)
    Path(log_folder, segment.segment_name(1)).write_bytes(content)
    for writable in (True, False):
        with pytest.raises(error, match=message):
            open_log(log_folder, writable=writable)
    assert Path(log_folder, segment.segment_name(1)).read_bytes() == content


def test_unknown_version_and_foreign_device(log_folder: str) -> None:
    os.makedirs(log_folder)
    path = os.path.join(log_folder, segment.segment_name(1))
    atomic_write(path, segment.encode_header("fedcba9876543210", 1))
    with pytest.raises(StorageError, match="belongs to device 'fedcba9876543210'"):
        open_log(log_folder)
    head = bytearray(segment.encode_header(DEVICE, 1))
    head[8] = 9
    Path(path).write_bytes(bytes(head))
    with pytest.raises(StorageError, match="version 9"):
        open_log(log_folder)


def test_missing_segment_is_reported(log_folder: str) -> None:
    with open_log(log_folder, segment_bytes=512) as log:
        for s in range(1, 30):
            log.append([payload(s)])
    os.unlink(seg_paths(log_folder)[1])
    with pytest.raises(StorageError, match="not dense"):
        open_log(log_folder)
    Path(seg_paths(log_folder)[0]).rename(os.path.join(log_folder, segment.segment_name(7)))
    with pytest.raises(StorageError, match="expected a segment starting at seq 1"):
        open_log(log_folder)


def _event(seq: int) -> Event:
    return Event(device_id=DEVICE, device_seq=seq, hlc=seq << 16, req_id=seq, app="test", session="s")


def test_eventlog_round_trip_and_checks(log_folder: str) -> None:
    assert decode_event(encode_event(_event(3))) == _event(3)
    with pytest.raises(StorageError, match="does not decode"):
        decode_event(b"\xff\xff\xff")
    with EventLog.open(log_folder, DEVICE) as elog:
        assert elog.append_durable([_event(1), _event(2)]) == 2
        with pytest.raises(StorageError, match="device_seq 5"):
            elog.append([_event(5)])
        with pytest.raises(StorageError, match="for device"):
            elog.append([Event(device_id="other", device_seq=3)])
        assert list(elog.read()) == [_event(1), _event(2)]
        # A record whose device_seq disagrees with its position is refused on read.
        elog.log.append([encode_event(_event(9))])
        with pytest.raises(StorageError, match="record 3 holds event"):
            list(elog.read())


def test_device_log_rejects_bad_device_ids(tmp_path: Path) -> None:
    for bad in ("", "a/b", "x" * 40):
        with pytest.raises(StorageError):
            DeviceLog.open(str(tmp_path / "d"), bad)


def test_refresh_takes_in_only_new_sealed_segments(tmp_path: Path) -> None:
    """A read-only log picks up segments another writer sealed later; a changed prefix asks for a reopen."""
    writer_dir, reader_dir = str(tmp_path / "w"), str(tmp_path / "r")
    with open_log(writer_dir, segment_bytes=512) as writer:
        for s in range(1, 21):
            writer.append([payload(s)])
        writer.seal()
        os.makedirs(reader_dir)
        first = seg_paths(writer_dir)
        for path in first:
            os.link(path, os.path.join(reader_dir, os.path.basename(path)))
        with open_log(reader_dir, writable=False) as reader:
            assert reader.last_seq == 20 and reader.refresh() == 0
            for s in range(21, 41):
                writer.append([payload(s)])
            writer.seal()
            for path in seg_paths(writer_dir)[len(first) :]:
                os.link(path, os.path.join(reader_dir, os.path.basename(path)))
            assert reader.refresh() == 20
            assert reader.last_seq == 40
            assert [p for _, p in reader.read(18)] == [payload(s) for s in range(18, 41)]
            os.unlink(seg_paths(reader_dir)[0])
            with pytest.raises(StorageError, match="reopen"):
                reader.refresh()
        with pytest.raises(StorageError, match="read-only"):
            writer.refresh()
