"""Record framing: length- and checksum-framed records grouped into atomic batches.

One record on disk::

    offset 0  u8   FRAME_MAGIC (0xB1: the frame format, version 1)
           1  u8   flags: FLAG_MORE (0x01) more records of this batch follow,
                          FLAG_SEAL (0x02) the segment's seal trailer
           2  u32  payload length (little endian)
           6  u32  CRC-32C (Castagnoli) over bytes 0..5 and the payload
          10  ...  payload

A batch (the events of one request) is one or more records; all but the last
carry ``FLAG_MORE``. A reader only accepts a batch whose last record is whole,
so a crash never leaves half a batch visible.

``decode`` walks a buffer and reports where the last complete batch ends. When it
meets a frame that is not whole and checksummed it classifies the rest: if no
whole, checksummed frame can be found anywhere after the bad spot, the rest is a
*torn tail* (an interrupted write, a zero-filled or garbled end); otherwise it is
*damage* before the tail, which the caller must report, never skip.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import google_crc32c

from oplog.errors import InvalidArgument

__all__ = [
    "FRAME_MAGIC",
    "FLAG_MORE",
    "FLAG_SEAL",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "Decoded",
    "encode_record",
    "encode_batch",
    "decode",
    "frame_ok",
]

FRAME_MAGIC = 0xB1
FLAG_MORE = 0x01
FLAG_SEAL = 0x02
KNOWN_FLAGS = FLAG_MORE | FLAG_SEAL
_KNOWN_FLAGS = KNOWN_FLAGS
# A bound on a single record, so a damaged length field cannot claim gigabytes.
MAX_PAYLOAD = 64 << 20

_PREFIX = struct.Struct("<BBI")
_HEADER = struct.Struct("<BBII")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size
_MAGIC_BYTE = bytes([FRAME_MAGIC])

_value = google_crc32c.value
_extend = google_crc32c.extend
_pack_prefix = _PREFIX.pack
_pack_crc = _CRC.pack
_unpack_header = _HEADER.unpack_from
#: ``(magic, flags, length, crc)`` of the frame header at ``buf[offset:]``.
unpack_header = _unpack_header


def encode_record(payload: bytes, flags: int = 0) -> bytes:
    """One framed record."""
    if len(payload) > MAX_PAYLOAD:
        raise InvalidArgument(f"a log record may hold at most {MAX_PAYLOAD} bytes, got {len(payload)}")
    prefix = _pack_prefix(FRAME_MAGIC, flags, len(payload))
    return prefix + _pack_crc(_extend(_value(prefix), payload)) + payload


def encode_batch(payloads: Sequence[bytes]) -> bytes:
    """Frame the records of one atomic batch as one contiguous byte string."""
    count = len(payloads)
    if count == 1:
        # The hot path: one event per request. Keep it to two packs and two CRC calls.
        payload = payloads[0]
        if len(payload) > MAX_PAYLOAD:
            raise InvalidArgument(f"a log record may hold at most {MAX_PAYLOAD} bytes, got {len(payload)}")
        prefix = _pack_prefix(FRAME_MAGIC, 0, len(payload))
        return prefix + _pack_crc(_extend(_value(prefix), payload)) + payload
    if count == 0:
        raise InvalidArgument("a batch needs at least one record")
    last = count - 1
    return b"".join(encode_record(p, FLAG_MORE if i < last else 0) for i, p in enumerate(payloads))


def frame_ok(buf: bytes, pos: int, end: int) -> int:
    """Return the end offset of a whole, checksummed frame at ``pos``, or -1."""
    if end - pos < HEADER_SIZE:
        return -1
    magic, flags, length, crc = _unpack_header(buf, pos)
    if magic != FRAME_MAGIC or flags & ~_KNOWN_FLAGS or length > MAX_PAYLOAD:
        return -1
    stop = pos + HEADER_SIZE + length
    if stop > end or _extend(_value(buf[pos : pos + 6]), buf[pos + HEADER_SIZE : stop]) != crc:
        return -1
    return stop


@dataclass
class Decoded:
    """What ``decode`` found in a buffer."""

    #: payloads of complete batches, in order (empty when not asked for)
    payloads: list[bytes] = field(default_factory=list)
    #: number of records in complete batches (the seal trailer not included)
    count: int = 0
    #: offset just past the last complete batch (or past the seal trailer)
    good_end: int = 0
    #: the seal trailer's payload, when the frames end with one
    seal: bytes | None = None
    #: offset of the seal trailer frame (when ``seal`` is set)
    seal_offset: int = -1
    #: None (clean), "torn" (an incomplete or unreadable tail), or "damage"
    problem: str | None = None
    #: offset of the first frame that is not whole and checksummed
    bad_offset: int = -1


def _resync(buf: bytes, start: int, end: int) -> int:
    """Offset of the first whole, checksummed frame at or after ``start``, or -1."""
    pos = buf.find(_MAGIC_BYTE, start, end)
    while pos >= 0:
        if frame_ok(buf, pos, end) >= 0:
            return pos
        pos = buf.find(_MAGIC_BYTE, pos + 1, end)
    return -1


def decode(buf: bytes, start: int = 0, end: int | None = None, *, payloads: bool = True) -> Decoded:
    """Decode the frames of ``buf[start:end]``, stopping at a seal trailer or the first bad frame."""
    if end is None:
        end = len(buf)
    out = Decoded(good_end=start)
    found: list[bytes] = out.payloads
    pending: list[bytes] = []
    pending_count = 0
    count = 0
    pos = start
    good = start
    unpack = _unpack_header
    value = _value
    extend = _extend
    bad = -1
    while pos < end:
        if end - pos < HEADER_SIZE:
            bad = pos
            break
        magic, flags, length, crc = unpack(buf, pos)
        stop = pos + HEADER_SIZE + length
        if magic != FRAME_MAGIC or flags & ~_KNOWN_FLAGS or length > MAX_PAYLOAD or stop > end:
            bad = pos
            break
        payload = buf[pos + HEADER_SIZE : stop]
        if extend(value(buf[pos : pos + 6]), payload) != crc:
            bad = pos
            break
        if flags & FLAG_SEAL:
            if pending_count or flags & FLAG_MORE:
                # A seal inside a batch is never written: treat as a bad frame.
                bad = pos
                break
            out.seal = payload
            out.seal_offset = pos
            good = stop
            pos = stop
            break
        if flags & FLAG_MORE:
            pending_count += 1
            if payloads:
                pending.append(payload)
        else:
            count += pending_count + 1
            pending_count = 0
            if payloads:
                if pending:
                    found.extend(pending)
                    pending.clear()
                found.append(payload)
            good = stop
        pos = stop
    out.count = count
    out.good_end = good
    if bad >= 0:
        out.bad_offset = bad
        out.problem = "damage" if _resync(buf, bad + 1, end) >= 0 else "torn"
    elif out.seal is None and pending_count:
        # Whole records of a batch whose last record never made it: an interrupted write.
        out.bad_offset = good
        out.problem = "torn"
    return out
