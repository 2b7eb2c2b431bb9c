"""Check a data directory for damage without changing anything.

``verify_data_dir`` walks every local segment (header, every frame and CRC, the
seal trailer, dense sequence numbers, the events inside), every checkpoint in
``checkpoints.db`` (it decodes, the state it holds hashes to the saved state
hash, its heads still fit the logs), the journal and ``sync.json``. It returns
a ``VerifyReport`` whose findings name the file, the offset where known, and
what is wrong; ``oplog.verify_remote`` adds a sync remote's findings to it.

Two severities: ``damage`` (bytes that are wrong: a bad checksum, a missing or
mismatched file, a checkpoint whose state does not match its hash) and
``warning`` (sound but worth knowing: a torn tail a writable open would cut, a
checkpoint that later pulls made unusable, a journal that lags its logs).

It never takes the writer's lock and never writes, so it runs while a server
appends: the open segment is read once, and a tail that is a valid prefix of a
frame (a write in flight) is not reported at all.
"""

from __future__ import annotations

import os
import re
import warnings
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from oplog import framing
from oplog.checkpoint import CHECKPOINTS_FILE, CheckpointInfo, CheckpointStore, DamagedCheckpoint
from oplog.errors import CorruptSegment, InconsistentTree, OplogError, StorageError
from oplog.eventlog import decode_event
from oplog.identity import DEVICE_FILE, DEVICES_DIR, is_device_id
from oplog.journal import JOURNAL_FILE, Journal
from oplog.segment import (
    SEGMENT_HEADER_SIZE,
    check_device_id,
    parse_segment_name,
    scan_segment,
    split_covered,
)
from oplog.statehash import StateHash
from oplog.syncstate import SYNC_FILE, describe_snapshot_check, load_state
from oplog.tree import check_invariants

__all__ = [
    "DAMAGE",
    "WARNING",
    "Finding",
    "VerifyReport",
    "Progress",
    "NoProgress",
    "check_events",
    "reason_of",
    "verify_data_dir",
]

DAMAGE = "damage"
WARNING = "warning"
_LEFTOVER_RE = re.compile(r"^[0-9a-f]{16}(-[0-9a-f]{16})?\.seg\.(broken|tmp)")


@dataclass(frozen=True)
class Finding:
    """One problem: how bad, which kind of thing, the file, the offset (when known), what is wrong."""

    severity: str
    area: str
    path: str
    problem: str
    offset: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "severity": self.severity,
            "area": self.area,
            "path": self.path,
            "offset": self.offset,
            "problem": self.problem,
        }

    def line(self) -> str:
        """One human-readable line."""
        where = self.path if self.offset is None else f"{self.path} at offset {self.offset}"
        return f"{self.severity}: {where}: {self.problem}"


@dataclass
class VerifyReport:
    """Everything a verify run found, and how much it checked."""

    findings: list[Finding] = field(default_factory=list)
    devices: int = 0
    segments: int = 0
    events: int = 0
    bytes: int = 0
    checkpoints: int = 0
    remote_manifests: int = 0
    remote_segments: int = 0
    remote_bytes: int = 0

    @property
    def damaged(self) -> bool:
        """True when at least one finding is damage."""
        return any(f.severity == DAMAGE for f in self.findings)

    def add(
        self, severity: str, area: str, path: str | Path, problem: str, offset: int | None = None
    ) -> None:
        """Record a finding."""
        self.findings.append(Finding(severity, area, str(path), problem, offset))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "sound": not self.damaged,
            "damage": sum(1 for f in self.findings if f.severity == DAMAGE),
            "warnings": sum(1 for f in self.findings if f.severity == WARNING),
            "findings": [f.as_dict() for f in self.findings],
            "checked": {
                "devices": self.devices,
                "segments": self.segments,
                "events": self.events,
                "bytes": self.bytes,
                "checkpoints": self.checkpoints,
                "remote_manifests": self.remote_manifests,
                "remote_segments": self.remote_segments,
                "remote_bytes": self.remote_bytes,
            },
        }


class Progress(Protocol):
    """Where a verify run reports how many bytes it has to check and has checked."""

    def add_total(self, n: int) -> None:
        """``n`` more bytes are planned."""
        ...

    def advance(self, n: int) -> None:
        """``n`` more bytes were checked."""
        ...


class NoProgress:
    """A ``Progress`` that shows nothing."""

    def add_total(self, n: int) -> None:
        """Ignore."""

    def advance(self, n: int) -> None:
        """Ignore."""


@dataclass
class _DeviceScan:
    """What the walk of one device's log established, for the checkpoint checks."""

    #: hlc of seq i+1 at index i, for the dense, verified prefix of the log
    hlcs: array[int]
    #: False when damage cut the verified prefix short
    complete: bool = True


# ---------------------------------------------------------------- segments


def reason_of(exc: OplogError, path: str) -> str:
    """The error's message without the path and offset it names (a finding carries those)."""
    text = str(exc)
    if isinstance(exc, CorruptSegment):
        suffix = f" in {exc.path} at offset {exc.offset}"
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    if text.startswith(f"{path}: "):
        text = text[len(path) + 2 :]
    return text


def _in_flight(buf: bytes, start: int) -> bool:
    """True when ``buf[start:]`` is whole frames and then a prefix of one more: a write in progress."""
    pos, size = start, len(buf)
    while pos < size:
        stop = framing.frame_ok(buf, pos, size)
        if stop > 0:
            pos = stop
            continue
        rest = size - pos
        if buf[pos] != framing.FRAME_MAGIC:
            return False
        if rest >= 2 and buf[pos + 1] & ~(framing.FLAG_MORE | framing.FLAG_SEAL):
            return False
        if rest < framing.HEADER_SIZE:
            return True
        _, _, length, _ = framing.unpack_header(buf, pos)
        # A whole frame that fails its CRC is garbage; only one that runs past the end is in flight.
        return length <= framing.MAX_PAYLOAD and pos + framing.HEADER_SIZE + length > size
    return True


def check_events(
    payloads: list[bytes],
    first: int,
    device_id: str,
    path: str | Path,
    hlcs: array[int],
    report: VerifyReport,
) -> bool:
    """Check that record i is event ``device_id``#``first+i`` and stamps grow; append each hlc to ``hlcs``."""
    offset = SEGMENT_HEADER_SIZE
    for index, payload in enumerate(payloads):
        seq = first + index
        try:
            event = decode_event(payload)
        except StorageError as exc:
            report.add(DAMAGE, "segment", path, f"record {seq} does not decode as an Event: {exc}", offset)
            return False
        if event.device_id != device_id or event.device_seq != seq:
            report.add(
                DAMAGE,
                "segment",
                path,
                f"record {seq} holds event {event.device_id}#{event.device_seq}, expected {device_id}#{seq}",
                offset,
            )
            return False
        if hlcs and event.hlc <= hlcs[-1]:
            report.add(
                DAMAGE,
                "segment",
                path,
                f"event {device_id}#{seq} has hlc {event.hlc}, not after the previous event's {hlcs[-1]}",
                offset,
            )
            return False
        hlcs.append(event.hlc)
        offset += framing.HEADER_SIZE + len(payload)
    return True


def _segment_files(folder: Path, report: VerifyReport) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for name in sorted(os.listdir(folder)):
        first = parse_segment_name(name)
        if first is not None:
            found.append((first, name))
        elif not _LEFTOVER_RE.match(name) and (folder / name).is_file():
            report.add(WARNING, "log", folder / name, "unexpected file in a log folder (oplog ignores it)")
    # Pieces a merged segment covers (an interrupted compaction) are read as the merged one.
    kept, covered = split_covered(found)
    for name in covered:
        report.add(
            WARNING,
            "log",
            folder / name,
            "covered by a merged segment (left by an interrupted merge; the next writable open removes it)",
        )
    return kept


def _check_device(folder: Path, device_id: str, progress: Progress, report: VerifyReport) -> _DeviceScan:
    """Walk every segment of one device's log."""
    scan = _DeviceScan(array("Q"))
    listing = _segment_files(folder, report)
    expected = 1
    for index, (first, name) in enumerate(listing):
        path = folder / name
        last = index == len(listing) - 1
        if scan.complete and first != expected:
            report.add(
                DAMAGE,
                "log",
                path,
                f"log is not dense: expected a segment starting at seq {expected}, found {first}",
            )
            scan.complete = False
        try:
            buf = path.read_bytes()
        except FileNotFoundError:
            report.add(WARNING, "log", path, "vanished while being verified (archived by a concurrent sync?)")
            scan.complete = False
            continue
        except OSError as exc:
            report.add(DAMAGE, "segment", path, f"cannot be read: {exc.strerror or exc}")
            scan.complete = False
            continue
        progress.advance(len(buf))
        report.segments += 1
        report.bytes += len(buf)
        try:
            seg = scan_segment(
                buf, str(path), device_id=device_id, first_seq=first, payloads=True, must_be_sealed=not last
            )
        except CorruptSegment as exc:
            report.add(DAMAGE, "segment", path, reason_of(exc, str(path)), exc.offset)
            scan.complete = False
            continue
        except StorageError as exc:
            report.add(DAMAGE, "segment", path, reason_of(exc, str(path)))
            scan.complete = False
            continue
        if seg.torn and not _in_flight(buf, seg.good_end):
            report.add(
                WARNING,
                "segment",
                path,
                f"the open segment ends with {len(buf) - seg.good_end} bytes that are not a whole batch "
                "(a torn write; the next writable open saves them to .broken and cuts them)",
                seg.good_end,
            )
        report.events += seg.count
        if scan.complete:
            scan.complete = check_events(seg.payloads, first, device_id, path, scan.hlcs, report)
        else:
            # Continuity is already lost; still check the records of this segment on their own.
            check_events(seg.payloads, first, device_id, path, array("Q"), report)
        expected = first + seg.count
    return scan


# ---------------------------------------------------------------- checkpoints


def _check_fit(info: CheckpointInfo, scans: dict[str, _DeviceScan], where: str, report: VerifyReport) -> None:
    """Does the checkpoint still describe a prefix of the merged order of these logs (as ``rewind`` requires)?"""
    if info.position != sum(info.heads.values()):
        report.add(
            DAMAGE,
            "checkpoint",
            where,
            f"position {info.position} but its device heads add up to {sum(info.heads.values())}",
        )
        return
    for device, head in sorted(info.heads.items()):
        if not head:
            continue
        scan = scans.get(device)
        if scan is None:
            report.add(
                WARNING, "checkpoint", where, f"covers events of device {device}, which has no log here"
            )
            return
        if not scan.complete and len(scan.hlcs) < head:
            return  # the log itself is damaged there: already reported
        if len(scan.hlcs) < head:
            report.add(
                WARNING,
                "checkpoint",
                where,
                f"covers {device}#{head} but that log ends at seq {len(scan.hlcs)} (unusable; replay skips it)",
            )
            return
        if scan.hlcs[head - 1] != info.head_hlcs.get(device):
            report.add(
                WARNING,
                "checkpoint",
                where,
                f"event {device}#{head} is not the one it covers (the log was rewritten; replay skips it)",
            )
            return
    if not info.position:
        return
    heads = [(info.head_hlcs[d], d, h) for d, h in info.heads.items() if h]
    if info.last_key != max(heads):
        report.add(
            DAMAGE, "checkpoint", where, f"its last event {info.last_key} is not the latest of its heads"
        )
        return
    for device, scan in sorted(scans.items()):
        nxt = info.heads.get(device, 0) + 1
        if nxt <= len(scan.hlcs) and (scan.hlcs[nxt - 1], device, nxt) <= info.last_key:
            report.add(
                WARNING,
                "checkpoint",
                where,
                f"no longer a prefix of the merged order: {device}#{nxt} sorts before its last event "
                "(pulled later; replay skips it)",
            )
            return


def _list_checkpoints(path: Path, report: VerifyReport) -> list[CheckpointInfo]:
    """The checkpoints' headers, listed before the logs are read (see ``_check_checkpoints``)."""
    if not path.exists():
        return []
    with warnings.catch_warnings(record=True) as caught, CheckpointStore(path, readonly=True) as store:
        warnings.simplefilter("always")
        infos = store.list()
        for warning in caught:
            report.add(DAMAGE, "checkpoint", path, str(warning.message))
    return infos


def _check_checkpoints(
    path: Path,
    infos: list[CheckpointInfo],
    scans: dict[str, _DeviceScan],
    progress: Progress,
    report: VerifyReport,
) -> None:
    """Load and fully check each checkpoint listed before the logs were read.

    Listing first means a running server's checkpoints cover only events that
    were on disk when the logs were read; one it dropped meanwhile (it keeps
    the newest few) is skipped, not reported.
    """
    if not infos:
        return
    progress.add_total(sum(i.size for i in infos))
    with CheckpointStore(path, readonly=True) as store:
        for info in reversed(infos):
            where = f"{path} checkpoint {info.id} (position {info.position})"
            try:
                checkpoint = store.load(info)
            except DamagedCheckpoint as exc:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    still_there = any(i.id == info.id for i in store.list())
                if still_there:
                    report.checkpoints += 1
                    report.add(DAMAGE, "checkpoint", where, str(exc))
                continue
            finally:
                progress.advance(info.size)
            report.checkpoints += 1
            # load() re-hashes a sample of blocks; verify re-hashes every one.
            full = StateHash.of(checkpoint.ws).hexdigest()
            if full != info.state_hash:
                report.add(
                    DAMAGE, "checkpoint", where, f"its state hashes to {full}, it says {info.state_hash}"
                )
                continue
            if len(checkpoint.ws.blocks) != info.block_count:
                report.add(
                    DAMAGE,
                    "checkpoint",
                    where,
                    f"holds {len(checkpoint.ws.blocks)} blocks, it says {info.block_count}",
                )
            try:
                check_invariants(checkpoint.ws)
            except InconsistentTree as exc:
                report.add(DAMAGE, "checkpoint", where, f"its block tree is inconsistent: {exc}")
            _check_fit(info, scans, where, report)


# ---------------------------------------------------------------- journal, sync state, device id


def _check_journal(data_dir: Path, local: str, scans: dict[str, _DeviceScan], report: VerifyReport) -> None:
    path = data_dir / JOURNAL_FILE
    if not path.exists():
        return
    try:
        runs = Journal(path, local).runs
    except StorageError as exc:
        report.add(DAMAGE, "journal", path, reason_of(exc, str(path)))
        return
    covered: dict[str, int] = {}
    for index, run in enumerate(runs):
        done = covered.get(run.device_id, 0)
        if run.first_seq != done + 1 or run.last_seq < run.first_seq:
            report.add(
                DAMAGE,
                "journal",
                path,
                f"run {index} ({run.device_id} {run.first_seq}..{run.last_seq}) does not continue "
                f"that device's previous run (which ended at {done})",
            )
            return
        covered[run.device_id] = run.last_seq
    for device, last in sorted(covered.items()):
        scan = scans.get(device)
        have = len(scan.hlcs) if scan is not None else 0
        if scan is not None and not scan.complete:
            continue
        if last > have:
            report.add(WARNING, "journal", path, f"records {device} up to seq {last}, its log ends at {have}")
    for device, scan in sorted(scans.items()):
        if device != local and scan.complete and covered.get(device, 0) < len(scan.hlcs):
            report.add(
                WARNING,
                "journal",
                path,
                f"records {device} up to seq {covered.get(device, 0)}, its log holds {len(scan.hlcs)} "
                "(the change feed lacks the rest)",
            )


def _check_sync_state(data_dir: Path, report: VerifyReport) -> None:
    path = data_dir / SYNC_FILE
    if not path.exists():
        return
    try:
        state = load_state(data_dir)
    except StorageError as exc:
        report.add(DAMAGE, "sync-state", path, reason_of(exc, str(path)))
        return
    wrong = [
        name
        for name, value, kind in (
            ("cloud_name", state.cloud_name, str),
            ("last_sync_time", state.last_sync_time, int),
            ("pushed_seq", state.pushed_seq, int),
            ("cursors", state.cursors, dict),
            ("known", state.known, dict),
        )
        if not isinstance(value, kind)
    ]
    if state.epoch is not None and not isinstance(state.epoch, str):
        wrong.append("epoch")
    if wrong:
        report.add(DAMAGE, "sync-state", path, f"fields of the wrong type: {', '.join(wrong)}")
    check = state.snapshot_check if isinstance(state.snapshot_check, dict) else {}
    if check.get("status") in ("mismatch", "pending"):
        # The state itself is this device's own fold again after a mismatch (oplog.snapcheck):
        # what is wrong is the remote's snapshot, so a warning naming it, not damage here.
        report.add(WARNING, "snapshot", path, f"remote {describe_snapshot_check(check)}")


def _check_device_file(data_dir: Path, report: VerifyReport) -> str:
    path = data_dir / DEVICE_FILE
    if not path.exists():
        return ""
    try:
        text = path.read_bytes()[:256].decode("ascii", "replace").strip()
    except OSError as exc:
        report.add(DAMAGE, "device", path, f"cannot be read: {exc.strerror or exc}")
        return ""
    if not is_device_id(text):
        report.add(DAMAGE, "device", path, "does not hold a device id (16 lowercase hex characters)")
        return ""
    return text


# ---------------------------------------------------------------- the whole directory


def _device_folders(data_dir: Path, report: VerifyReport) -> list[tuple[str, Path]]:
    root = data_dir / DEVICES_DIR
    if not root.is_dir():
        return []
    out: list[tuple[str, Path]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            check_device_id(folder.name)
        except StorageError as exc:
            report.add(DAMAGE, "log", folder, str(exc))
            continue
        out.append((folder.name, folder))
    return out


def _planned_bytes(folders: Iterable[tuple[str, Path]]) -> int:
    total = 0
    for _, folder in folders:
        for name in os.listdir(folder):
            if parse_segment_name(name) is not None:
                try:
                    total += (folder / name).stat().st_size
                except OSError:
                    pass
    return total


def verify_data_dir(data_dir: str | os.PathLike[str], *, progress: Progress | None = None) -> VerifyReport:
    """Check every segment, checkpoint, the journal and sync.json of a data directory.

    Read-only: safe while a server holds the writer's lock. ``verify_remote``
    checks a remote into the same report.
    """
    path = Path(data_dir)
    progress = progress or NoProgress()
    report = VerifyReport()
    local = _check_device_file(path, report)
    folders = _device_folders(path, report)
    checkpoints = _list_checkpoints(path / CHECKPOINTS_FILE, report)
    progress.add_total(_planned_bytes(folders))
    scans: dict[str, _DeviceScan] = {}
    for device_id, folder in folders:
        report.devices += 1
        scans[device_id] = _check_device(folder, device_id, progress, report)
    _check_checkpoints(path / CHECKPOINTS_FILE, checkpoints, scans, progress, report)
    _check_journal(path, local, scans, report)
    _check_sync_state(path, report)
    _check_view(path, report)
    return report


def _check_view(data_dir: Path, report: VerifyReport) -> None:
    """``blocks.db`` changed outside oplog (its edit triggers fired): a warning, the next open rebuilds it."""
    from oplog.sqlview import VIEW_FILE, edited_outside

    table = edited_outside(data_dir / VIEW_FILE)
    if table is not None:
        report.add(
            WARNING,
            "view",
            data_dir / VIEW_FILE,
            f"its {table} table was changed outside oplog; the next open rebuilds it from the log",
        )
