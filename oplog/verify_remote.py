"""Check a sync remote's cloud folder for damage: ``EPOCH``, every ``MANIFEST``, every segment they list, snapshots.

Read-only, through the ``Remote`` interface (so any remote, fakes included).
Findings go into the same ``VerifyReport`` as ``oplog.verify``'s local checks;
paths in them are prefixed with the remote's label (its root folder).
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable

from oplog.errors import CorruptSegment, OplogError, StorageError
from oplog.remote import Remote
from oplog.remotesnap import SNAPSHOTS, decode_snapshot, newest_first
from oplog.segment import merged_segment_name, parse_segment_name, scan_segment, segment_name
from oplog.syncformat import DEVICES as DEVICES_DIR
from oplog.syncformat import EPOCH_FILE, MANIFEST, EpochInfo, Manifest, SegEntry, cloud_path, segment_crc
from oplog.verify import DAMAGE, WARNING, NoProgress, Progress, VerifyReport, check_events, reason_of

__all__ = ["verify_remote"]


def _check_remote_segment(
    data: bytes | None, entry: SegEntry, device_id: str, where: str, report: VerifyReport, severity: str
) -> None:
    if data is None:
        report.add(severity, "remote-segment", where, "missing (its manifest lists it)")
        return
    if len(data) != entry.size or segment_crc(data) != entry.crc:
        report.add(
            severity,
            "remote-segment",
            where,
            f"does not match its manifest: {len(data)} bytes crc {segment_crc(data)}, "
            f"the manifest says {entry.size} bytes crc {entry.crc}",
        )
        return
    try:
        scan = scan_segment(
            data, where, device_id=device_id, first_seq=entry.first_seq, payloads=True, must_be_sealed=True
        )
    except CorruptSegment as exc:
        report.add(severity, "remote-segment", where, reason_of(exc, where), exc.offset)
        return
    except StorageError as exc:
        report.add(severity, "remote-segment", where, reason_of(exc, where))
        return
    if scan.count != entry.count:
        report.add(
            severity, "remote-segment", where, f"holds {scan.count} events, the manifest says {entry.count}"
        )
        return
    check_events(scan.payloads, entry.first_seq, device_id, where, array("Q"), report)


def _check_entries(entries: list[SegEntry], where: str, report: VerifyReport) -> bool:
    expected = 1
    for entry in entries:
        # A plain name is its first seq's; a merged one names its first and last (oplog.segment).
        names = (segment_name(entry.first_seq), merged_segment_name(entry.first_seq, entry.last_seq))
        if entry.name not in names or entry.first_seq != expected or entry.count < 1:
            report.add(
                DAMAGE,
                "remote-manifest",
                where,
                f"segment list is not dense: entry {entry.name} (first seq {entry.first_seq}, "
                f"{entry.count} events) where seq {expected} should start",
            )
            return False
        expected = entry.last_seq + 1
    return True


def _read_json(remote: Remote, path: str, where: str, area: str, report: VerifyReport) -> bytes | None:
    try:
        return remote.read(path)
    except OplogError as exc:
        report.add(DAMAGE, area, where, f"cannot be read: {exc}")
        return None


def verify_remote(
    remote: Remote,
    cloud: str,
    *,
    label: str = "<remote>",
    progress: Progress | None = None,
    report: VerifyReport | None = None,
) -> VerifyReport:
    """Check ``<cloud>/EPOCH``, every device's ``MANIFEST`` and every segment the manifests list.

    ``label`` prefixes the paths in findings (the remote's root folder). A
    segment that an epoch's base lists for a device whose manifest has moved on
    is checked too; a problem there is a warning (docs/sync.md's known limits).
    """
    progress = progress or NoProgress()
    report = report if report is not None else VerifyReport()

    def at(*parts: str) -> str:
        return "/".join((label, cloud, *parts))

    epoch: EpochInfo | None = None
    raw_epoch = _read_json(remote, cloud_path(cloud, EPOCH_FILE), at(EPOCH_FILE), "remote-epoch", report)
    if raw_epoch is not None:
        try:
            epoch = EpochInfo.decode(raw_epoch)
        except ValueError as exc:
            report.add(DAMAGE, "remote-epoch", at(EPOCH_FILE), f"does not parse: {exc}")
    try:
        devices = remote.list(cloud_path(cloud, DEVICES_DIR))
    except OplogError as exc:
        report.add(DAMAGE, "remote-manifest", at(DEVICES_DIR), f"cannot be listed: {exc}")
        return report
    if raw_epoch is None and devices:
        report.add(DAMAGE, "remote-epoch", at(EPOCH_FILE), "missing, yet device folders exist")
    manifests: dict[str, Manifest] = {}
    for device_id in devices:
        where = at(DEVICES_DIR, device_id, MANIFEST)
        data = _read_json(
            remote, cloud_path(cloud, DEVICES_DIR, device_id, MANIFEST), where, "remote-manifest", report
        )
        if data is None:
            try:
                names = remote.list(cloud_path(cloud, DEVICES_DIR, device_id))
            except OplogError:
                names = []
            if any(parse_segment_name(n) is not None for n in names):
                report.add(
                    WARNING, "remote-manifest", where, "missing: segments were pushed but no manifest yet"
                )
            continue
        report.remote_manifests += 1
        try:
            manifest = Manifest.decode(data)
            stated = json.loads(data).get("last_seq")
        except (ValueError, AttributeError) as exc:
            report.add(DAMAGE, "remote-manifest", where, f"does not parse: {exc}")
            continue
        if manifest.device_id != device_id:
            report.add(DAMAGE, "remote-manifest", where, f"names device {manifest.device_id!r}")
            continue
        if stated is not None and stated != manifest.last_seq:
            report.add(
                DAMAGE,
                "remote-manifest",
                where,
                f"says last_seq {stated}, its segments end at {manifest.last_seq}",
            )
        if _check_entries(manifest.segments, where, report):
            manifests[device_id] = manifest
    todo: list[tuple[str, SegEntry, str]] = [
        (device_id, entry, DAMAGE) for device_id, m in manifests.items() for entry in m.segments
    ]
    if epoch is not None:
        for device_id, entries in sorted(epoch.base.items()):
            current = manifests.get(device_id)
            if current is not None and current.epoch == epoch.epoch:
                continue
            if _check_entries(entries, at(EPOCH_FILE), report):
                listed = {e.key() for e in current.segments} if current is not None else set()
                todo.extend((device_id, e, WARNING) for e in entries if e.key() not in listed)
    progress.add_total(sum(entry.size for _, entry, _ in todo))
    for device_id, entry, severity in todo:
        where = at(DEVICES_DIR, device_id, entry.name)
        try:
            data = remote.read(cloud_path(cloud, DEVICES_DIR, device_id, entry.name))
        except OplogError as exc:
            report.add(DAMAGE, "remote-segment", where, f"cannot be read: {exc}")
            continue
        _check_remote_segment(data, entry, device_id, where, report, severity)
        report.remote_segments += 1
        report.remote_bytes += len(data or b"")
        progress.advance(entry.size)
    _check_snapshots(remote, cloud, at, report)
    return report


def _check_snapshots(remote: Remote, cloud: str, at: Callable[..., str], report: VerifyReport) -> None:
    """Every snapshot under ``snapshots/`` decodes, hashes to its header and matches its name.

    A bad one is a warning, not damage: snapshots are optional, and a device skips one
    that does not decode (docs/sync.md *Snapshots*).
    """
    try:
        names = remote.list(cloud_path(cloud, SNAPSHOTS))
    except OplogError as exc:
        report.add(WARNING, "remote-snapshot", at(SNAPSHOTS), f"cannot be listed: {exc}")
        return
    for name in newest_first(names):
        where = at(SNAPSHOTS, name.name)
        try:
            data = remote.read(cloud_path(cloud, SNAPSHOTS, name.name))
            if data is None:
                continue  # pruned since the listing
            _, header = decode_snapshot(data, name.name)
        except OplogError as exc:
            report.add(WARNING, "remote-snapshot", where, str(exc))
            continue
        if (header.position, header.state_hash[:16]) != (name.position, name.hash_prefix):
            report.add(
                WARNING, "remote-snapshot", where, "its name does not match its position and state hash"
            )
