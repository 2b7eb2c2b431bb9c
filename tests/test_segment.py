"""Segment headers, names, seal trailers and verify_segment."""

from __future__ import annotations

import pytest

from oplog import framing, segment
from oplog.errors import CorruptSegment, StorageError
from tests.log_helpers import DEVICE, open_log, payload, seg_paths


def _sealed_bytes(folder: str, n: int = 5) -> bytes:
    log = open_log(folder)
    for i in range(1, n + 1):
        log.append([payload(i)])
    log.seal()
    log.close()
    with open(seg_paths(folder)[0], "rb") as handle:
        return handle.read()


def test_names_sort_in_log_order() -> None:
    names = [segment.segment_name(s) for s in (1, 9, 10, 255, 4096, 2**40)]
    assert names == sorted(names)
    assert segment.segment_name(255) == "00000000000000ff.seg"
    assert [segment.parse_segment_name(n) for n in names] == [1, 9, 10, 255, 4096, 2**40]
    for bad in ("1.seg", "00000000000000FF.seg", "00000000000000ff.seg.broken", "x.txt"):
        assert segment.parse_segment_name(bad) is None


def test_header_round_trip() -> None:
    head = segment.encode_header(DEVICE, 42)
    assert len(head) == segment.SEGMENT_HEADER_SIZE and head.startswith(segment.SEGMENT_MAGIC)
    parsed = segment.parse_header(head, "x")
    assert (parsed.version, parsed.first_seq, parsed.device_id) == (1, 42, DEVICE)


def test_header_problems() -> None:
    head = bytearray(segment.encode_header(DEVICE, 1))
    with pytest.raises(CorruptSegment, match="cut short"):
        segment.parse_header(bytes(head[:20]), "x")
    with pytest.raises(CorruptSegment, match="bad magic"):
        segment.parse_header(b"garbage!" * 10, "x")
    bad_crc = bytearray(head)
    bad_crc[30] ^= 1
    with pytest.raises(CorruptSegment, match="checksum"):
        segment.parse_header(bytes(bad_crc), "x")
    newer = bytearray(head)
    newer[8] = 3
    with pytest.raises(StorageError, match="version 3 is not supported.*upgrade oplog"):
        segment.parse_header(bytes(newer), "x")
    with pytest.raises(StorageError, match="invalid device id"):
        segment.encode_header("a/b", 1)


def test_verify_sealed_segment(log_folder: str) -> None:
    data = _sealed_bytes(log_folder)
    scan = segment.verify_segment(data, device_id=DEVICE, first_seq=1)
    assert scan.sealed and scan.count == 5
    assert segment.quick_check_sealed(data, "x") is not None
    with pytest.raises(StorageError, match="belongs to device"):
        segment.verify_segment(data, device_id="fedcba9876543210")


def test_verify_refuses_open_segment(log_folder: str) -> None:
    log = open_log(log_folder)
    log.append([b"a"])
    log.close()
    with open(seg_paths(log_folder)[0], "rb") as handle:
        data = handle.read()
    with pytest.raises(CorruptSegment, match="should be sealed"):
        segment.verify_segment(data)


def test_every_flipped_bit_of_a_sealed_segment_is_found(log_folder: str) -> None:
    data = _sealed_bytes(log_folder, 3)
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 1 << (offset % 8)
        try:
            assert segment.quick_check_sealed(bytes(damaged), "x") is None
        except StorageError:
            assert offset < segment.SEGMENT_HEADER_SIZE
        with pytest.raises(StorageError):
            segment.verify_segment(bytes(damaged), path="seg", device_id=DEVICE, first_seq=1)


def test_bytes_after_seal_are_damage(log_folder: str) -> None:
    data = _sealed_bytes(log_folder, 2)
    with pytest.raises(CorruptSegment, match="after the seal") as info:
        segment.verify_segment(data + framing.encode_batch([b"late"]))
    assert info.value.offset == len(data)
