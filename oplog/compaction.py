"""Compaction, the sync half: comparing two tilings of one device's log by events, not by names.

The merging itself (tiers, the plan, rebuilding a segment) is ``oplog.segmerge``
in the log layer; ``DeviceLog.compact`` merges a device's own sealed segments
after each seal, and the push mirrors that tiling to the remote. This module is
what lets every other device — and this one, adopting an epoch whose ``base``
lists older pieces — take such a merge without downloading, archiving or folding
anything again. Why it can:

* **Bytes are a function of the records.** A segment is a header (device, first
  seq, format version), the records' frames verbatim, and a seal computed from
  them. So any tiling of a seq range can be rebuilt from any other tiling of the
  same events and compared by checksum: a device that pulled the pieces builds
  the merged segment itself and takes it when its checksum is the manifest's.
  Events are compared by their frames (each carries its CRC-32C), never by name.
* **Pulled half-way.** When the local log ends inside a view segment, that one
  segment is downloaded (it holds new events too) and its first records must be
  the held ones byte for byte; it then replaces the held pieces, stored before
  they are removed.
* **Crash-safe by order.** Re-tiled segments are written (tmp → fsync → rename →
  directory fsync) before what they replace is removed; a reader that finds both
  takes the widest (``oplog.segment.split_covered``).

The journal and the change feed never see any of this: they speak of
``(device, seq)`` runs, which re-tiling does not change.
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
            return _drop_same(out, local, view)
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
            return _drop_same(out, local, view)
        i, j = i2 + 1, upto
    out.k_local, out.k_view = i, j
    out.rest = list(local[i:])
    return _drop_same(out, local, view)


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


def _drop_same(out: Retile, local: list[SegEntry], view: list[SegEntry]) -> Retile:
    """A name both written and removed is rewritten in place, never removed after.

    A name written that a kept file also has (only possible when two histories
    reused a name) would overwrite that file: then nothing is re-tiled and the
    caller treats the difference as a different history (archive, as before).
    """
    written = {name for name, _ in out.writes}
    out.removes = [n for n in out.removes if n not in written]
    kept = {e.name for e in out.rest if e in local} | set(out.held_names)
    if written & kept:
        k = 0
        while k < len(local) and k < len(view) and local[k].key() == view[k].key():
            k += 1
        return Retile(k, k, rest=list(local[k:]))
    return out
