"""Recovery on open: torn tails are cut (and saved), damage is reported with file and offset."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from oplog import framing, segment
from oplog.errors import CorruptSegment
from tests.log_helpers import flip_bit, folder_state, open_log, payload, seg_paths

H = segment.SEGMENT_HEADER_SIZE


def _build(folder: str, batches: list[list[bytes]]) -> str:
    with open_log(folder) as log:
        for batch in batches:
            log.append(batch)
    return seg_paths(folder)[0]


def _reopen_quietly(folder: str, **kwargs: object):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_log(folder, **kwargs)


def _check_recovered(folder: str, path: str, good: bytes, full: bytes, expect: list[bytes]) -> None:
    """Reopen after cutting the file to ``full``; expect ``good`` kept and the rest in .broken."""
    Path(path).write_bytes(full)
    ro = _reopen_quietly(folder, writable=False)
    assert [p for _, p in ro.read()] == expect
    ro.close()
    assert Path(path).read_bytes() == full  # read-only changed nothing
    log = _reopen_quietly(folder)
    assert log.last_seq == len(expect)
    assert [p for _, p in log.read()] == expect
    assert Path(path).read_bytes() == good
    broken = Path(path + ".broken")
    if len(full) > len(good):
        assert broken.read_bytes() == full[len(good) :]
        broken.unlink()
    else:
        assert not broken.exists()
    assert log.append_durable([b"after"]) == len(expect) + 1
    log.close()
    assert [p for _, p in open_log(folder, writable=False).read()] == expect + [b"after"]
    Path(path).write_bytes(good)  # back to the state before this round


@pytest.mark.parametrize("last_batch", [[b"L" * 37], [b"one", b"two" * 9, b"three" * 5]])
def test_torn_last_batch_at_every_offset(log_folder: str, last_batch: list[bytes]) -> None:
    first = [[payload(1)], [payload(2), payload(3)]]
    path = _build(log_folder, first + [last_batch])
    full = Path(path).read_bytes()
    tail = len(framing.encode_batch(last_batch))
    good = full[: len(full) - tail]
    expect = [payload(1), payload(2), payload(3)]
    for cut in range(len(good), len(full)):
        _check_recovered(log_folder, path, good, full[:cut], expect)
    _check_recovered(log_folder, path, full, full, expect + last_batch)


@pytest.mark.parametrize("zeros", [1, 10, 4096])
def test_zero_filled_tail(log_folder: str, zeros: int) -> None:
    path = _build(log_folder, [[payload(1)], [payload(2)]])
    good = Path(path).read_bytes()
    _check_recovered(log_folder, path, good, good + bytes(zeros), [payload(1), payload(2)])


def test_last_record_zeroed_in_place(log_folder: str) -> None:
    path = _build(log_folder, [[payload(1)], [payload(2)]])
    full = Path(path).read_bytes()
    rec = len(framing.encode_batch([payload(2)]))
    good = full[:-rec]
    _check_recovered(log_folder, path, good, good + bytes(rec), [payload(1)])


def test_second_recovery_keeps_first_broken_file(log_folder: str) -> None:
    path = _build(log_folder, [[payload(1)]])
    for n in range(2):
        with open(path, "ab") as handle:
            handle.write(b"\xb1torn%d" % n)
        _reopen_quietly(log_folder).close()
    assert Path(path + ".broken").read_bytes() == b"\xb1torn0"
    assert Path(path + ".broken.2").read_bytes() == b"\xb1torn1"


def test_flip_mid_log_in_open_segment(log_folder: str) -> None:
    path = _build(log_folder, [[payload(s)] for s in range(1, 6)])
    rec = len(framing.encode_batch([payload(1)]))
    for target in range(4):  # any record but the last
        for where in (0, 1, 3, 7, rec - 1):
            offset = H + target * rec + where
            flip_bit(path, offset, 3)
            before = folder_state(log_folder)
            for writable in (True, False):
                with pytest.raises(CorruptSegment) as info:
                    open_log(log_folder, writable=writable)
                assert info.value.path == path and info.value.offset == H + target * rec
                assert path in str(info.value) and f"offset {H + target * rec}" in str(info.value)
            assert folder_state(log_folder) == before
            flip_bit(path, offset, 3)
    assert open_log(log_folder).last_seq == 5


def test_flip_anywhere_in_sealed_segment(log_folder: str) -> None:
    with open_log(log_folder, segment_bytes=600) as log:
        for s in range(1, 25):
            log.append([payload(s)])
    paths = seg_paths(log_folder)
    sealed = paths[0]
    size = os.path.getsize(sealed)
    rec = len(framing.encode_batch([payload(1)]))
    for offset in range(0, size, 7):
        flip_bit(sealed, offset, offset % 8)
        before = folder_state(log_folder)
        with pytest.raises(CorruptSegment) as info:
            open_log(log_folder)
        assert info.value.path == sealed
        if H <= offset < size - segment.SEAL_FRAME_SIZE:
            assert info.value.offset == H + (offset - H) // rec * rec
        assert folder_state(log_folder) == before
        # Without the open-time check the damage still surfaces on read, never silently.
        with pytest.raises(CorruptSegment):
            list(open_log(log_folder, writable=False, check_sealed=False).read())
        flip_bit(sealed, offset, offset % 8)
    assert open_log(log_folder, writable=False).verify() == 24


def test_last_segment_sealed_then_torn_tail_is_damage(log_folder: str) -> None:
    path = _build(log_folder, [[payload(1)]])
    with open_log(log_folder) as log:
        log.seal()
    sealed = Path(path).read_bytes()
    Path(path).write_bytes(sealed + framing.encode_batch([b"late"]))
    with pytest.raises(CorruptSegment, match="after the seal"):
        open_log(log_folder)
    Path(path).write_bytes(sealed)
    with open_log(log_folder) as log:
        assert log.append([b"next"]) == 2 and len(log.segments()) == 2
