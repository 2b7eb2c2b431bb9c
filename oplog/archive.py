"""The archive: whole segment files that left the shared history, kept for listing and restoring.

Layout under the data directory::

    archive/index.json                     every archive entry (JSON, replaced atomically)
    archive/<id>/<device_id>/%016x.seg     the archived segment files, bytes unchanged

Segments are copied into the archive and the index is written before they are
removed from ``devices/``, so a crash leaves events in both places, never in
neither. Nothing here is ever deleted by oplog.

Restoring (:func:`restore`) re-applies archived events as new local events,
exactly as sync rebases: same transaction, req id, app, session and time, a
new seq and hlc, folded with the replay tolerance rules. An event is skipped
when sync already rebased it, when an earlier restore re-applied it (both kept
in the index), or when the history still holds it or a copy of it (an event
with the same origin: everything but device, seq and hlc). See docs/archive.md.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from oplog.devicelog import SegmentInfo
from oplog.errors import InvalidArgument, StorageError
from oplog.eventlog import EventLog, decode_event
from oplog.fsutil import atomic_write, read_file
from oplog.merge import order_key
from oplog.segment import scan_segment
from oplog.v1 import oplog_pb2 as pb

if TYPE_CHECKING:
    from oplog.store import Store

__all__ = [
    "ARCHIVE_DIR",
    "ArchiveEntry",
    "ArchivedSegment",
    "RestoreResult",
    "SeqRange",
    "list_archive",
    "add_to_archive",
    "archived_events",
    "find_entry",
    "entry_events",
    "record_restored",
    "plan_restore",
    "restore",
    "origin_key",
]

ARCHIVE_DIR = "archive"
INDEX_FILE = "index.json"

#: Why an archived event is not restored: its seq is in ``rebased``, in ``restored``,
#: or the history holds it (or a copy of it).
SKIP_REBASED = "rebased"
SKIP_RESTORED = "restored"
SKIP_IN_HISTORY = "in_history"

#: ``progress(done, total)``: events of the history scanned so far.
Progress = Callable[[int, int], None]


@dataclass
class ArchivedSegment:
    """One archived segment file."""

    device_id: str
    name: str
    first_seq: int
    count: int

    @property
    def last_seq(self) -> int:
        """The seq of the segment's last event."""
        return self.first_seq + self.count - 1


@dataclass
class ArchiveEntry:
    """One archiving: why, when, and which segments."""

    id: str
    time_ms: int
    reason: str
    epoch_from: str
    epoch_to: str
    segments: list[ArchivedSegment] = field(default_factory=list)
    #: seqs of the local events re-applied as new events (rebased), per device
    rebased: dict[str, list[int]] = field(default_factory=dict)
    #: seqs of the events re-applied by ``restore``, per device
    restored: dict[str, list[int]] = field(default_factory=dict)

    @property
    def device_ids(self) -> list[str]:
        """The devices whose segments this entry holds."""
        return sorted({s.device_id for s in self.segments})

    @property
    def event_count(self) -> int:
        """How many events the entry's segments hold."""
        return sum(s.count for s in self.segments)


@dataclass(frozen=True, slots=True)
class SeqRange:
    """Seqs ``first..last`` (both included)."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if self.first < 1 or self.last < self.first:
            raise InvalidArgument(f"seq range {self.first}-{self.last} is empty or below 1")

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and self.first <= seq <= self.last


@dataclass
class RestoreResult:
    """What a restore re-applied (or, on a dry run, would re-apply) and what it skipped."""

    entry_id: str
    dry_run: bool
    #: the archived events re-applied, in merged order
    originals: list[pb.Event] = field(default_factory=list)
    #: their new local events (same order; empty on a dry run)
    copies: list[pb.Event] = field(default_factory=list)
    #: skip reason -> how many events
    skipped: dict[str, int] = field(default_factory=dict)


# ---- the index ----


def _index_path(data_dir: Path) -> Path:
    return data_dir / ARCHIVE_DIR / INDEX_FILE


def _seqs(raw: dict[str, list[int]]) -> dict[str, list[int]]:
    return {str(k): [int(s) for s in v] for k, v in raw.items()}


def list_archive(data_dir: str | Path) -> list[ArchiveEntry]:
    """Every archive entry, oldest first."""
    path = _index_path(Path(data_dir))
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return [
            ArchiveEntry(
                id=e["id"],
                time_ms=e["time_ms"],
                reason=e["reason"],
                epoch_from=e["epoch_from"],
                epoch_to=e["epoch_to"],
                segments=[ArchivedSegment(**s) for s in e["segments"]],
                rebased=_seqs(e.get("rebased", {})),
                restored=_seqs(e.get("restored", {})),
            )
            for e in raw["entries"]
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(f"archive index {path} is unreadable: {exc}") from exc


def _write_index(data_dir: Path, entries: list[ArchiveEntry]) -> None:
    body = json.dumps({"entries": [asdict(e) for e in entries]}, indent=1, sort_keys=True)
    atomic_write(_index_path(data_dir), body.encode("utf-8"))


def add_to_archive(data_dir: Path, entry: ArchiveEntry, files: dict[tuple[str, str], bytes]) -> None:
    """Copy segment files into ``archive/<id>/`` and add ``entry`` to the index (both durable)."""
    root = data_dir / ARCHIVE_DIR / entry.id
    for (device_id, name), data in files.items():
        folder = root / device_id
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / name, data)
    entries = list_archive(data_dir)
    entries.append(entry)
    _write_index(data_dir, entries)


def find_entry(data_dir: str | Path, entry_id: str) -> ArchiveEntry:
    """The archive entry ``entry_id``; ``InvalidArgument`` when there is no archive or no such entry."""
    entries = list_archive(data_dir)
    if not entries:
        raise InvalidArgument(f"{data_dir} has no archive (nothing was ever archived there)")
    for entry in entries:
        if entry.id == entry_id:
            return entry
    raise InvalidArgument(f"no archive entry {entry_id!r} in {data_dir} (see 'oplog archive list')")


def record_restored(data_dir: str | Path, entry_id: str, restored: Mapping[str, Iterable[int]]) -> None:
    """Add ``restored`` seqs to the entry's record in the index (the caller holds the writer's lock)."""
    data = Path(data_dir)
    entries = list_archive(data)
    for entry in entries:
        if entry.id == entry_id:
            for device_id, seqs in restored.items():
                entry.restored[device_id] = sorted(set(entry.restored.get(device_id, ())) | set(seqs))
            _write_index(data, entries)
            return
    raise InvalidArgument(f"no archive entry {entry_id!r} in {data}")


# ---- reading archived events ----


def _segment_payloads(root: Path, seg: ArchivedSegment) -> list[bytes]:
    path = root / seg.device_id / seg.name
    try:
        data = read_file(str(path))
    except OSError as exc:
        raise StorageError(f"archived segment {path} cannot be read: {exc.strerror or exc}") from exc
    return scan_segment(data, str(path), device_id=seg.device_id, payloads=True).payloads


def archived_events(data_dir: str | Path, entry: ArchiveEntry) -> Iterator[pb.Event]:
    """The events of one archive entry, segment by segment, in seq order."""
    return entry_events(data_dir, entry)


def entry_events(
    data_dir: str | Path,
    entry: ArchiveEntry,
    *,
    device_id: str | None = None,
    seqs: SeqRange | None = None,
) -> Iterator[pb.Event]:
    """The entry's events, segment by segment, optionally only one device's and only ``seqs``."""
    root = Path(data_dir) / ARCHIVE_DIR / entry.id
    for seg in entry.segments:
        if device_id is not None and seg.device_id != device_id:
            continue
        if seqs is not None and (seg.last_seq < seqs.first or seg.first_seq > seqs.last):
            continue
        for payload in _segment_payloads(root, seg):
            event = decode_event(payload)
            if seqs is None or event.device_seq in seqs:
                yield event


# ---- restoring ----


def origin_key(event: pb.Event) -> bytes:
    """A digest of everything but device, seq and hlc: equal for an event and its rebased or restored copies."""
    bare = pb.Event()
    bare.CopyFrom(event)
    for name in ("device_id", "device_seq", "hlc"):
        bare.ClearField(name)
    return hashlib.blake2b(bare.SerializeToString(deterministic=True), digest_size=16).digest()


class _LastHlcs:
    """A lazy sequence of each segment's last stamp, for ``bisect``."""

    def __init__(self, log: EventLog, segments: list[SegmentInfo]) -> None:
        self._log = log
        self._segments = segments

    def __len__(self) -> int:
        return len(self._segments)

    def __getitem__(self, index: int) -> int:
        seg = self._segments[index]
        last = seg.first_seq + seg.count - 1
        return next(self._log.read(last, last)).hlc


def _first_seq_from(log: EventLog, min_hlc: int) -> int:
    """The first seq of the first segment that may hold a stamp ``>= min_hlc``.

    A device's stamps grow with its seqs (its hybrid clock only moves forward),
    so a binary search over each segment's last event finds where to start.
    """
    segments = [s for s in log.log.segments() if s.count]
    index = bisect.bisect_left(_LastHlcs(log, segments), min_hlc)
    return segments[index].first_seq if index < len(segments) else log.last_seq + 1


def _present_origins(
    logs: Mapping[str, EventLog], wanted: set[bytes], min_hlc: int, progress: Progress | None
) -> set[bytes]:
    """Which of the ``wanted`` origin keys the logs hold at a stamp ``>= min_hlc``.

    A copy is always stamped later than its original (the device that made it
    had seen the original), so older events need not be read.
    """
    starts = {device_id: _first_seq_from(log, min_hlc) for device_id, log in logs.items()}
    total = sum(max(log.last_seq - starts[d] + 1, 0) for d, log in logs.items())
    done = 0
    found: set[bytes] = set()
    for device_id, log in sorted(logs.items()):
        for event in log.read(starts[device_id]):
            done += 1
            if event.hlc >= min_hlc:
                key = origin_key(event)
                if key in wanted:
                    found.add(key)
            if progress is not None and (done % 1000 == 0 or done == total):
                progress(done, total)
    return found


def plan_restore(
    data_dir: str | Path,
    entry: ArchiveEntry,
    logs: Mapping[str, EventLog],
    *,
    device_id: str | None = None,
    seqs: SeqRange | None = None,
    progress: Progress | None = None,
) -> RestoreResult:
    """What restoring ``entry`` (filtered) onto ``logs`` would re-apply; changes nothing (a dry run)."""
    result = RestoreResult(entry.id, dry_run=True)
    candidates: list[pb.Event] = []
    for event in entry_events(data_dir, entry, device_id=device_id, seqs=seqs):
        seq = event.device_seq
        if seq in entry.rebased.get(event.device_id, ()):
            reason = SKIP_REBASED
        elif seq in entry.restored.get(event.device_id, ()):
            reason = SKIP_RESTORED
        else:
            candidates.append(event)
            continue
        result.skipped[reason] = result.skipped.get(reason, 0) + 1
    if candidates:
        keys = [origin_key(e) for e in candidates]
        present = _present_origins(logs, set(keys), min(e.hlc for e in candidates), progress)
        for event, key in zip(candidates, keys, strict=True):
            if key in present:
                result.skipped[SKIP_IN_HISTORY] = result.skipped.get(SKIP_IN_HISTORY, 0) + 1
            else:
                result.originals.append(event)
    result.originals.sort(key=order_key)
    return result


def restore(
    store: Store,
    entry_id: str,
    *,
    device_id: str | None = None,
    seqs: SeqRange | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    """Re-apply an archive entry's events as new local events of ``store``; restoring twice = once.

    Order of writes: the new events are made durable, then the index records
    their originals, then the state is rebuilt. A crash between the first two
    is harmless: the copies are in the history, so the next restore skips them.
    """
    with store.sync_lock():
        # Sync writes the index under this lock too, so the entry read here stays current.
        entry = find_entry(store.data_dir, entry_id)
        logs = {d: log for d in store.device_ids() if (log := store.device_log(d)) is not None}
        result = plan_restore(store.data_dir, entry, logs, device_id=device_id, seqs=seqs, progress=progress)
        result.dry_run = dry_run
        if dry_run or not result.originals:
            return result
        result.copies = store.append_rebased(result.originals)
        restored: dict[str, list[int]] = {}
        for event in result.originals:
            restored.setdefault(event.device_id, []).append(event.device_seq)
        record_restored(store.data_dir, entry.id, restored)
        store.after_drop()
    return result
