"""Merging sealed segments of one log: tiers, the merge plan, rebuilding a segment from its records.

The log-layer half of compaction (the sync half, comparing two tilings of a
device's log, is ``oplog.compaction``; the design is explained there and in
docs/log-format.md). Kept in the log layer so ``DeviceLog.compact`` can merge
its own sealed segments without knowing anything about remotes.

* A segment's *tier* is ``floor(log_F(record bytes))``; ``plan_merge`` merges
  the tail while the last ``F`` sealed segments share a tier or the last one
  out-tiers the one before it, so tiers stay non-increasing with fewer than ``F``
  per tier: at most ``(F - 1) × tiers`` sealed segments, each event copied
  ``O(log_F n)`` times. Segments of ``segment_bytes / F`` or more never merge.
* A segment's bytes are a function of (device, first seq, format version,
  record frames): ``encode_segment`` rebuilds any tiling from any other, so
  two devices merging the same events write the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import google_crc32c

from oplog import framing, segment
from oplog.errors import CorruptSegment
from oplog.fsutil import FileOps, OsFileOps, atomic_write, read_file

__all__ = [
    "DEFAULT_FANOUT",
    "tier",
    "plan_merge",
    "segment_frames",
    "encode_segment",
    "version_for_name",
    "record_offsets",
    "merge_files",
    "write_segments",
    "remove_segments",
]

#: Segments per tier before they merge: with 4, 1,000 single-event syncs keep ≤ 15 segments.
DEFAULT_FANOUT = 4


def tier(data_len: int, fanout: int = DEFAULT_FANOUT) -> int:
    """The tier of a segment holding ``data_len`` bytes of records."""
    t = 0
    size = max(data_len, 1)
    while size >= fanout:
        size //= fanout
        t += 1
    return t


def plan_merge(
    data_lens: Sequence[int], segment_bytes: int, fanout: int = DEFAULT_FANOUT
) -> tuple[int, int] | None:
    """The next ``[start, stop)`` run of sealed segments to merge into one, or None when the tail is settled.

    ``data_lens`` are the record bytes of the sealed segments in log order.
    """
    big = max(segment_bytes // fanout, 1)
    start = 0
    for index, length in enumerate(data_lens):
        if length >= big:
            start = index + 1  # a big segment is a barrier: nothing before it merges any more
    tail = [tier(n, fanout) for n in data_lens[start:]]
    n = len(tail)
    if n >= 2 and tail[-2] < tail[-1]:
        return start + n - 2, start + n
    if n >= fanout and len(set(tail[-fanout:])) == 1:
        return start + n - fanout, start + n
    return None


def segment_frames(data: bytes, path: str, device_id: str, first_seq: int) -> tuple[bytes, int]:
    """The record bytes (frames, seal excluded) of a sealed segment and its record count, fully checked."""
    scan = segment.scan_segment(data, path, device_id=device_id, first_seq=first_seq, must_be_sealed=True)
    end = len(data) - segment.SEAL_FRAME_SIZE
    return data[segment.SEGMENT_HEADER_SIZE : end], scan.count


def encode_segment(device_id: str, first_seq: int, frames: bytes, count: int, version: int) -> bytes:
    """A sealed segment of ``count`` records whose frames are ``frames`` (the inverse of ``segment_frames``)."""
    crc = google_crc32c.value(frames)
    return (
        segment.encode_header(device_id, first_seq, version)
        + frames
        + segment.encode_seal(first_seq, count, len(frames), crc)
    )


def version_for_name(name: str) -> int:
    """The header version a segment of this name carries (2 for a merged name, 1 for a plain one)."""
    parsed = segment.parse_segment_range(name)
    return (
        segment.MERGED_FORMAT_VERSION
        if parsed is not None and parsed[1] is not None
        else segment.FORMAT_VERSION
    )


def record_offsets(frames: bytes) -> list[int]:
    """Offsets in ``frames`` where each record ends (whole batches only, as sealed segments hold)."""
    ends: list[int] = []
    pos = 0
    size = len(frames)
    while pos < size:
        _magic, _flags, length, _crc = framing.unpack_header(frames, pos)
        pos += framing.HEADER_SIZE + length
        ends.append(pos)
    if pos != size:
        raise CorruptSegment("records do not end on a frame boundary", path="<frames>", offset=pos)
    return ends


def write_segments(
    folder: str | os.PathLike[str], writes: Sequence[tuple[str, bytes]], ops: FileOps | None = None
) -> None:
    """Write segment files durably (tmp → fsync → rename → directory fsync)."""
    ops = ops or OsFileOps()
    for name, data in writes:
        atomic_write(os.path.join(folder, name), data, ops)


def remove_segments(folder: str | os.PathLike[str], names: Sequence[str], ops: FileOps | None = None) -> None:
    """Remove segment files that a written segment covers (only after that one is durable)."""
    ops = ops or OsFileOps()
    for name in names:
        try:
            ops.unlink(os.path.join(folder, name))
        except FileNotFoundError:
            pass
    if names:
        ops.fsync_dir(os.fspath(folder))


def merge_files(
    folder: str | os.PathLike[str], device_id: str, names: Sequence[str], ops: FileOps | None = None
) -> tuple[str, bytes]:
    """Merge sealed segment files (consecutive, in log order) into one; return its name and bytes (not written)."""
    ops = ops or OsFileOps()
    parts: list[bytes] = []
    count = 0
    first = None
    for name in names:
        parsed = segment.parse_segment_name(name)
        assert parsed is not None
        if first is None:
            first = parsed
        path = os.path.join(folder, name)
        frames, n = segment_frames(read_file(path, ops), path, device_id, parsed)
        if parsed != first + count:
            raise CorruptSegment(
                f"segment {name} does not follow seq {first + count - 1}",
                path=os.path.join(folder, name),
                offset=0,
            )
        parts.append(frames)
        count += n
    assert first is not None
    last = first + count - 1
    return segment.merged_segment_name(first, last), encode_segment(
        device_id, first, b"".join(parts), count, segment.MERGED_FORMAT_VERSION
    )
