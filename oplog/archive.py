"""The archive: whole segment files that left the shared history, kept for listing and restoring.

Layout under the data directory::

    archive/index.json                     every archive entry (JSON, replaced atomically)
    archive/<id>/<device_id>/%016x.seg     the archived segment files, bytes unchanged

Segments are copied into the archive and the index is written before they are
removed from ``devices/``, so a crash leaves events in both places, never in
neither. Nothing here is ever deleted by oplog.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from oplog.errors import StorageError
from oplog.eventlog import decode_event
from oplog.fsutil import atomic_write, read_file
from oplog.segment import scan_segment
from oplog.v1 import oplog_pb2 as pb

__all__ = [
    "ARCHIVE_DIR",
    "ArchiveEntry",
    "ArchivedSegment",
    "list_archive",
    "add_to_archive",
    "archived_events",
]

ARCHIVE_DIR = "archive"
INDEX_FILE = "index.json"


@dataclass
class ArchivedSegment:
    """One archived segment file."""

    device_id: str
    name: str
    first_seq: int
    count: int


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


def _index_path(data_dir: Path) -> Path:
    return data_dir / ARCHIVE_DIR / INDEX_FILE


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
                rebased={k: list(v) for k, v in e.get("rebased", {}).items()},
            )
            for e in raw["entries"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"archive index {path} is unreadable: {exc}") from exc


def add_to_archive(data_dir: Path, entry: ArchiveEntry, files: dict[tuple[str, str], bytes]) -> None:
    """Copy segment files into ``archive/<id>/`` and add ``entry`` to the index (both durable)."""
    root = data_dir / ARCHIVE_DIR / entry.id
    for (device_id, name), data in files.items():
        folder = root / device_id
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / name, data)
    entries = list_archive(data_dir)
    entries.append(entry)
    body = json.dumps({"entries": [asdict(e) for e in entries]}, indent=1, sort_keys=True)
    atomic_write(_index_path(data_dir), body.encode("utf-8"))


def archived_events(data_dir: str | Path, entry: ArchiveEntry) -> Iterator[pb.Event]:
    """The events of one archive entry, segment by segment, in seq order."""
    root = Path(data_dir) / ARCHIVE_DIR / entry.id
    for seg in entry.segments:
        path = root / seg.device_id / seg.name
        scan = scan_segment(read_file(str(path)), str(path), device_id=seg.device_id, payloads=True)
        for payload in scan.payloads:
            yield decode_event(payload)
