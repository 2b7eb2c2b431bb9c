"""Segment files: a file header, framed records, and a seal trailer once closed.

Layout of one segment file::

    0   64-byte header  magic b"OPLOGSEG", u16 format version, u16 header size,
                        u64 first device_seq, u8 device-id length, the device id
                        (UTF-8, zero padded to 39 bytes), u32 CRC-32C of bytes 0..59
    64  records         framed by ``oplog.framing``; batches are atomic
    end seal trailer    (sealed segments only) one frame with FLAG_SEAL whose payload
                        is u64 first_seq, u64 record count, u64 data length,
                        u32 CRC-32C of the record bytes 64..trailer

Names are ``%016x.seg`` of the first device_seq, so a plain sort is log order.
A *merged* segment (``oplog.compaction``) is named ``%016x-%016x.seg`` of its
first and last seq, so it never takes the name of a piece it replaces (it is
written create-only beside them, and the pieces go after); its bytes are those of
an ordinary segment with more records, except that its header says format
version 2, so an oplog that predates merging refuses it by its version check
instead of misreading a name it does not know. A sealed segment never changes again; a reader tells sealed from open by the
trailer, and can check a sealed segment at memory speed with the trailer's
whole-data CRC before walking frames.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import google_crc32c

from oplog import framing
from oplog.errors import CorruptSegment, StorageError

__all__ = [
    "SEGMENT_MAGIC",
    "FORMAT_VERSION",
    "SEGMENT_HEADER_SIZE",
    "SegmentHeader",
    "SealInfo",
    "SegmentScan",
    "MERGED_FORMAT_VERSION",
    "READABLE_VERSIONS",
    "segment_name",
    "merged_segment_name",
    "parse_segment_name",
    "parse_segment_range",
    "split_covered",
    "encode_header",
    "parse_header",
    "encode_seal",
    "parse_seal",
    "scan_segment",
    "quick_check_sealed",
    "verify_segment",
    "check_device_id",
    "check_identity",
]

SEGMENT_MAGIC = b"OPLOGSEG"
FORMAT_VERSION = 1
#: Merged segments: the same layout, named by their seq range (see the module docstring).
MERGED_FORMAT_VERSION = 2
READABLE_VERSIONS = (FORMAT_VERSION, MERGED_FORMAT_VERSION)
_HEADER = struct.Struct("<8sHHQB39sI")
SEGMENT_HEADER_SIZE = _HEADER.size
_HEADER_CRC_SPAN = SEGMENT_HEADER_SIZE - 4
_MAX_DEVICE_ID = 39
_SEAL = struct.Struct("<QQQI")
SEAL_FRAME_SIZE = framing.HEADER_SIZE + _SEAL.size
_NAME_RE = re.compile(r"^([0-9a-f]{16})(?:-([0-9a-f]{16}))?\.seg$")


@dataclass(frozen=True)
class SegmentHeader:
    """The fields of a segment's file header."""

    version: int
    first_seq: int
    device_id: str


@dataclass(frozen=True)
class SealInfo:
    """The fields of a seal trailer."""

    first_seq: int
    count: int
    data_len: int
    data_crc: int


@dataclass
class SegmentScan:
    """The outcome of walking one segment file."""

    header: SegmentHeader
    count: int
    sealed: bool
    #: offset just past the last complete batch (or the seal trailer)
    good_end: int
    size: int
    #: True when bytes after ``good_end`` are a torn tail (only possible when not sealed)
    torn: bool
    #: CRC-32C of the record bytes from the header to ``good_end`` (trailer excluded)
    data_crc: int
    payloads: list[bytes]


def segment_name(first_seq: int) -> str:
    """The file name of the segment whose first record is ``first_seq``."""
    return f"{first_seq:016x}.seg"


def merged_segment_name(first_seq: int, last_seq: int) -> str:
    """The file name of a merged segment holding seqs ``first_seq``..``last_seq``."""
    return f"{first_seq:016x}-{last_seq:016x}.seg"


def parse_segment_name(name: str) -> int | None:
    """The first seq encoded in a segment file name (plain or merged), or None if it is not one."""
    match = _NAME_RE.match(name)
    return int(match.group(1), 16) if match else None


def parse_segment_range(name: str) -> tuple[int, int | None] | None:
    """``(first, last)`` of a merged segment's name, ``(first, None)`` of a plain one, None otherwise."""
    match = _NAME_RE.match(name)
    if not match:
        return None
    last = match.group(2)
    return int(match.group(1), 16), (int(last, 16) if last else None)


def split_covered(found: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], list[str]]:
    """Split a folder's ``(first seq, name)`` listing into the segments to read and those a merged one covers.

    A merge writes the merged segment before it removes the pieces, so a folder
    may hold both after a crash: the widest segment is read, the covered names
    are leftovers (a writable open removes them).
    """
    spans = []
    for first, name in found:
        parsed = parse_segment_range(name)
        if parsed is not None and parsed[1] is not None:
            spans.append((first, parsed[1]))
    if not spans:
        return found, []
    kept: list[tuple[int, str]] = []
    covered: list[str] = []
    for first, name in found:
        parsed = parse_segment_range(name)
        last = parsed[1] if parsed is not None else None
        if any(a <= first <= b and (last is None or last <= b) and (a, b) != (first, last) for a, b in spans):
            covered.append(name)
        else:
            kept.append((first, name))
    return kept, covered


def check_device_id(device_id: str) -> bytes:
    """Validate a device id for use in folder names and segment headers; return it encoded."""
    raw = device_id.encode("utf-8")
    if (
        not raw
        or len(raw) > _MAX_DEVICE_ID
        or any(c in device_id for c in "/\\\0")
        or device_id in (".", "..")
    ):
        raise StorageError(f"invalid device id {device_id!r}")
    return raw


def encode_header(device_id: str, first_seq: int, version: int = FORMAT_VERSION) -> bytes:
    """The 64-byte file header of a new segment (``version`` 2 for a merged one)."""
    raw = check_device_id(device_id)
    body = _HEADER.pack(SEGMENT_MAGIC, version, SEGMENT_HEADER_SIZE, first_seq, len(raw), raw, 0)
    return body[:_HEADER_CRC_SPAN] + struct.pack("<I", google_crc32c.value(body[:_HEADER_CRC_SPAN]))


def parse_header(buf: bytes, path: str) -> SegmentHeader:
    """Parse and check a segment header; ``CorruptSegment`` or ``StorageError`` if unusable."""
    if len(buf) < SEGMENT_HEADER_SIZE:
        if len(buf) >= 8 and buf[:8] != SEGMENT_MAGIC:
            raise CorruptSegment("not an oplog segment (bad magic)", path=path, offset=0)
        raise CorruptSegment(f"segment header is cut short ({len(buf)} bytes)", path=path, offset=len(buf))
    magic, version, header_size, first_seq, id_len, raw_id, crc = _HEADER.unpack_from(buf, 0)
    if magic != SEGMENT_MAGIC:
        raise CorruptSegment("not an oplog segment (bad magic)", path=path, offset=0)
    if version not in READABLE_VERSIONS:
        # Checked before the CRC: a newer format may lay its header out differently.
        raise StorageError(
            f"{path}: segment format version {version} is not supported (this oplog reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}): upgrade oplog"
        )
    if google_crc32c.value(buf[:_HEADER_CRC_SPAN]) != crc:
        raise CorruptSegment("segment header checksum mismatch", path=path, offset=0)
    if header_size != SEGMENT_HEADER_SIZE or not 0 < id_len <= _MAX_DEVICE_ID:
        raise CorruptSegment("segment header has impossible fields", path=path, offset=0)
    try:
        device_id = raw_id[:id_len].decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptSegment("segment header device id is not UTF-8", path=path, offset=0) from None
    return SegmentHeader(version=version, first_seq=first_seq, device_id=device_id)


def encode_seal(first_seq: int, count: int, data_len: int, data_crc: int) -> bytes:
    """The framed seal trailer for a segment holding ``count`` records."""
    return framing.encode_record(_SEAL.pack(first_seq, count, data_len, data_crc), framing.FLAG_SEAL)


def parse_seal(payload: bytes) -> SealInfo | None:
    """The fields of a seal trailer payload, or None if it has the wrong size."""
    if len(payload) != _SEAL.size:
        return None
    return SealInfo(*_SEAL.unpack(payload))


def check_identity(header: SegmentHeader, path: str, device_id: str | None, first_seq: int | None) -> None:
    """Raise unless the header names this device and first seq (None: not checked)."""
    if device_id is not None and header.device_id != device_id:
        raise StorageError(f"{path}: segment belongs to device {header.device_id!r}, not {device_id!r}")
    if first_seq is not None and header.first_seq != first_seq:
        raise CorruptSegment(
            f"segment header says first seq {header.first_seq}, its name says {first_seq}",
            path=path,
            offset=0,
        )


def scan_segment(
    buf: bytes,
    path: str,
    *,
    device_id: str | None = None,
    first_seq: int | None = None,
    payloads: bool = False,
    must_be_sealed: bool = False,
) -> SegmentScan:
    """Walk every frame of a segment; raise ``CorruptSegment`` for damage, report a torn tail."""
    header = parse_header(buf, path)
    check_identity(header, path, device_id, first_seq)
    size = len(buf)
    dec = framing.decode(buf, SEGMENT_HEADER_SIZE, size, payloads=payloads)
    if dec.problem == "damage":
        raise CorruptSegment("bad record checksum or frame", path=path, offset=dec.bad_offset)
    sealed = dec.seal is not None
    data_end = dec.seal_offset if sealed else dec.good_end
    data_crc = google_crc32c.value(buf[SEGMENT_HEADER_SIZE:data_end])
    if sealed:
        assert dec.seal is not None
        seal = parse_seal(dec.seal)
        if seal is None:
            raise CorruptSegment("seal trailer has the wrong size", path=path, offset=dec.seal_offset)
        if (
            seal.first_seq != header.first_seq
            or seal.count != dec.count
            or seal.data_len != data_end - SEGMENT_HEADER_SIZE
            or seal.data_crc != data_crc
        ):
            raise CorruptSegment("seal trailer does not match the records", path=path, offset=dec.seal_offset)
        if dec.good_end != size:
            raise CorruptSegment("bytes after the seal trailer", path=path, offset=dec.good_end)
    torn = not sealed and dec.good_end != size
    if must_be_sealed and not sealed:
        where = dec.bad_offset if dec.bad_offset >= 0 else size
        raise CorruptSegment(
            "segment should be sealed but has no valid seal trailer", path=path, offset=where
        )
    return SegmentScan(
        header=header,
        count=dec.count,
        sealed=sealed,
        good_end=dec.good_end,
        size=size,
        torn=torn,
        data_crc=data_crc,
        payloads=dec.payloads,
    )


def quick_check_sealed(
    buf: bytes, path: str, *, device_id: str | None = None, first_seq: int | None = None
) -> SegmentScan | None:
    """Check a sealed segment with one CRC over its data; None if that fails or it is not sealed.

    On None the caller falls back to ``scan_segment``, which names the exact offset.
    """
    header = parse_header(buf, path)
    check_identity(header, path, device_id, first_seq)
    size = len(buf)
    trailer = size - SEAL_FRAME_SIZE
    if trailer < SEGMENT_HEADER_SIZE or framing.frame_ok(buf, trailer, size) != size:
        return None
    if buf[trailer + 1] != framing.FLAG_SEAL:
        return None
    seal = parse_seal(buf[trailer + framing.HEADER_SIZE : size])
    if seal is None or seal.first_seq != header.first_seq or seal.data_len != trailer - SEGMENT_HEADER_SIZE:
        return None
    data_crc = google_crc32c.value(buf[SEGMENT_HEADER_SIZE:trailer])
    if data_crc != seal.data_crc:
        return None
    return SegmentScan(
        header=header,
        count=seal.count,
        sealed=True,
        good_end=size,
        size=size,
        torn=False,
        data_crc=data_crc,
        payloads=[],
    )


def verify_segment(
    data: bytes, *, path: str = "<segment>", device_id: str | None = None, first_seq: int | None = None
) -> SegmentScan:
    """Fully check a sealed segment (for sync's pulled segments and the ``verify`` tool)."""
    return scan_segment(data, path, device_id=device_id, first_seq=first_seq, must_be_sealed=True)
