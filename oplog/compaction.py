"""Compaction: merging a device's sealed segments, and re-tiling a log to another device's tiling.

Why this shape:

* **Leveled, like Litestream's L0 → L1 …** A segment's *tier* is
  ``floor(log_F(data bytes))``. After each seal the tail of the sealed segments
  is merged while either the last ``F`` segments share a tier (they become one
  segment of a higher tier) or the last segment has a higher tier than the one
  before it (the smaller one is absorbed). Tiers are then non-increasing from the
  head with fewer than ``F`` segments per tier, so a log keeps at most
  ``(F - 1) × tiers`` sealed segments — a base-``F`` counter of its bytes — and
  every event is copied ``O(log_F n)`` times. Segments of a quarter of
  ``segment_bytes`` or more are never merged, so no merge writes more than one
  roll-over segment's worth.
* **Bytes are a function of the records.** A segment is a header (device, first
  seq, format version), the records' frames verbatim, and a seal computed from
  them. So any tiling of a seq range can be rebuilt from any other tiling of the
  same events and compared by checksum: a device that pulled the pieces builds
  the merged segment itself and takes it when its checksum is the manifest's —
  no download, no archive, nothing folded twice. Events are compared by their
  frames (each carries its CRC-32C), never by file name.
* **Crash-safe by order.** A merged segment is written create-only under a name
  of its own (``%016x-%016x.seg``, ``oplog.segment``) beside its pieces —
  tmp → fsync → rename → directory fsync — before any piece is removed; a reader
  that finds both takes the widest segment and ignores what it covers (the
  writable open removes such leftovers). On the remote the same order holds
  because sync pushes the local tiling: merged segment uploaded create-only,
  manifest replaced, pieces deleted last.

The journal and the change feed never see any of this: they speak of
``(device, seq)`` runs, which merging does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from oplog import segment
from oplog.segmerge import encode_segment, record_offsets, segment_frames, version_for_name
from oplog.syncformat import SegEntry, segment_crc

__all__ = ["Retile", "match_tilings"]


@dataclass
class Retile:
    """What ``match_tilings`` found: how far two tilings hold the same events, and the files to make that so.

    ``local[:k_local]`` and ``view[:k_view]`` cover the same seqs with identical
    records. ``writes`` are the view's segments rebuilt from local records (plus,
    when the view ends inside a local segment, that segment's remainder), and
    ``removes`` the local files they replace: after writing the first and
    removing the second, the local log is tiled as the view up to ``k_view``.
    ``straddle`` is True when the local log ran out inside ``view[k_view]``:
    it holds that entry's first events, which the caller checks against the
    downloaded segment (``held_frames``) instead of archiving them.
    """

    k_local: int
    k_view: int
    writes: list[tuple[str, bytes]] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)
    straddle: bool = False
    held_frames: bytes = b""
    #: local files holding the straddled entry's first events: removed once it is stored
    held_names: list[str] = field(default_factory=list)
    #: the local entries after the matched prefix as they will be once re-tiled
    rest: list[SegEntry] = field(default_factory=list)


def match_tilings(
    device_id: str,
    local: list[SegEntry],
    view: list[SegEntry],
    read_local: Callable[[str], bytes],
) -> Retile:
    """Compare a local log's segments with another tiling of the same device's log, by events not names."""
    out = Retile(0, 0)
    i = j = 0
    while i < len(local) and j < len(view):
        if local[i].key() == view[j].key():
            i += 1
            j += 1
            continue
        if local[i].first_seq != view[j].first_seq:
            break
        i2, j2 = i, j
        while local[i2].last_seq != view[j2].last_seq:
            if local[i2].last_seq < view[j2].last_seq:
                if i2 + 1 == len(local):
                    break
                i2 += 1
            else:
                if j2 + 1 == len(view):
                    break
                j2 += 1
        frames = b"".join(
            segment_frames(read_local(e.name), e.name, device_id, e.first_seq)[0] for e in local[i : i2 + 1]
        )
        ends = record_offsets(frames)
        base = local[i].first_seq
        if local[i2].last_seq < view[j2].last_seq:
            # The local log ends inside view[j2]: it holds a prefix of that entry's events.
            matched, cut = _rebuild_into(device_id, view[j:j2], frames, ends, base, out)
            if not matched:
                break
            straddled = view[j2].first_seq
            out.removes.extend(e.name for e in local[i : i2 + 1] if e.last_seq < straddled)
            out.held_names = [e.name for e in local[i : i2 + 1] if e.last_seq >= straddled]
            out.rest = [e for e in local[i : i2 + 1] if e.last_seq >= straddled]
            out.straddle = True
            out.held_frames = frames[cut:]
            out.k_local, out.k_view = i2 + 1 - len(out.held_names), j2
            return _drop_same(out)
        upto = j2 + 1
        matched, cut = _rebuild_into(device_id, view[j:upto], frames, ends, base, out)
        if not matched:
            break
        out.removes.extend(e.name for e in local[i : i2 + 1])
        if local[i2].last_seq > view[j2].last_seq:
            # The view ends inside local[i2]: keep the remainder as a segment of its own.
            first = view[j2].last_seq + 1
            rest = frames[cut:]
            count = local[i2].last_seq - first + 1
            name = segment.merged_segment_name(first, local[i2].last_seq)
            data = encode_segment(device_id, first, rest, count, segment.MERGED_FORMAT_VERSION)
            out.writes.append((name, data))
            out.rest.append(SegEntry(name, first, count, len(data), segment_crc(data)))
            out.rest.extend(local[i2 + 1 :])
            out.k_local, out.k_view = i2, upto
            return _drop_same(out)
        i, j = i2 + 1, upto
    out.k_local, out.k_view = i, j
    out.rest = list(local[i:])
    return _drop_same(out)


def _rebuild_into(
    device_id: str, entries: list[SegEntry], frames: bytes, ends: list[int], base: int, out: Retile
) -> tuple[bool, int]:
    """Rebuild ``entries`` from local ``frames`` (records from seq ``base``); add them to ``out.writes``.

    Returns whether every rebuilt segment is byte-identical to its entry, and the
    offset in ``frames`` after the last rebuilt record.
    """
    cut = 0
    writes: list[tuple[str, bytes]] = []
    for entry in entries:
        start = 0 if entry.first_seq == base else ends[entry.first_seq - base - 1]
        if entry.last_seq - base >= len(ends):
            return False, cut
        stop = ends[entry.last_seq - base]
        data = encode_segment(
            device_id, entry.first_seq, frames[start:stop], entry.count, version_for_name(entry.name)
        )
        if len(data) != entry.size or segment_crc(data) != entry.crc:
            return False, cut
        writes.append((entry.name, data))
        cut = stop
    out.writes.extend(writes)
    return True, cut


def _drop_same(out: Retile) -> Retile:
    """A name both written and removed is rewritten in place, never removed after."""
    written = {name for name, _ in out.writes}
    out.removes = [n for n in out.removes if n not in written]
    return out
