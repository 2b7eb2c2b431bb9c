"""Open a data directory for a sync, repairing damaged local copies of other devices' segments first.

A pulled segment (``devices/<other>/``) is a copy: the remote holds the original,
under the same name, with the checksum this device recorded in ``sync.json``
when it pulled it. When that copy is damaged the store cannot open (its replay
or its open checks meet the damage), so no command works and the sync that
could fix it never starts. :func:`open_for_sync` breaks that circle: when
opening fails on damage in another device's folder, it takes the writer's
lock, fetches the remote copy, and puts it in place only if it is sound (the
recorded checksum, or the manifest's where none was recorded, and a full frame
scan). The bytes are then exactly those the store had folded in, so nothing
else changes. Damage in this device's own log is not touched: the remote copy
of that is derived from it, never the other way round.
"""

from __future__ import annotations

from pathlib import Path

from oplog.clock import Clock
from oplog.errors import CorruptSegment, OplogError, StorageError
from oplog.fsutil import atomic_write
from oplog.identity import DEVICE_FILE, DEVICES_DIR
from oplog.lockfile import DataDirLock
from oplog.remote import Remote
from oplog.segment import parse_segment_name, scan_segment
from oplog.store import Store, StoreOptions
from oplog.syncformat import DEVICES, MANIFEST, Manifest, SegEntry, cloud_path, segment_crc
from oplog.syncstate import load_state

__all__ = ["open_for_sync", "repair_pulled_copy"]

#: Each repair fixes one file; more damaged copies than this in one directory is not bit rot.
_MAX_REPAIRS = 64


def _damaged_foreign_copy(data_dir: Path, exc: CorruptSegment) -> tuple[str, str] | None:
    """``(device_id, segment name)`` when ``exc`` is about another device's segment in ``data_dir``."""
    path = Path(exc.path)
    try:
        rel = path.resolve().relative_to((data_dir / DEVICES_DIR).resolve())
    except (OSError, ValueError):
        return None
    if len(rel.parts) != 2:
        return None
    try:
        me = (data_dir / DEVICE_FILE).read_text(encoding="ascii").strip()
    except OSError:
        return None
    device_id, name = rel.parts
    if device_id == me:
        return None
    return device_id, name


def repair_pulled_copy(data_dir: Path, device_id: str, name: str, remote: Remote, cloud: str) -> str:
    """Replace the local copy of ``device_id``'s segment ``name`` with the remote's sound copy; one line saying so.

    The caller holds the writer's lock. ``StorageError`` (naming the device and
    what to do) when the remote has no sound copy of the same bytes.
    """
    where = cloud_path(cloud, DEVICES, device_id, name)
    recorded = load_state(data_dir).known.get(device_id, {}).get(name)
    data = remote.read(where)
    if data is None:
        raise StorageError(
            f"the local copy of device {device_id}'s segment {name} is damaged and {where} is not on the "
            "remote to re-fetch it from; run `oplog verify` and see docs/sync.md (repair)"
        )
    entry: SegEntry | None = None
    raw = remote.read(cloud_path(cloud, DEVICES, device_id, MANIFEST))
    if raw is not None:
        try:
            entry = next((e for e in Manifest.decode(raw).segments if e.name == name), None)
        except ValueError:
            entry = None
    want = str(recorded[1]) if recorded else (entry.crc if entry is not None else None)
    if want is None or segment_crc(data) != want:
        raise StorageError(
            f"the local copy of device {device_id}'s segment {name} is damaged and the remote copy {where} "
            "is not the same file (or not sound); run `oplog verify` and see docs/sync.md (repair)"
        )
    first_seq = parse_segment_name(name)
    if first_seq is None:
        raise StorageError(
            f"{data_dir / DEVICES_DIR / device_id / name} is damaged and is not a segment name"
        )
    try:
        scan_segment(data, where, device_id=device_id, first_seq=first_seq, must_be_sealed=True)
    except OplogError as exc:
        raise StorageError(
            f"the local copy of device {device_id}'s segment {name} is damaged and so is the remote copy: {exc}"
        ) from None
    atomic_write(data_dir / DEVICES_DIR / device_id / name, data)
    return f"{DEVICES}/{device_id}/{name}: the local copy was damaged; re-fetched from the remote"


def open_for_sync(
    data_dir: str | Path,
    remote: Remote,
    cloud: str | None,
    *,
    options: StoreOptions | None = None,
    clock: Clock | None = None,
) -> tuple[Store, list[str]]:
    """``Store.open`` for a sync, re-fetching damaged pulled copies that keep it from opening; the repairs done.

    ``cloud`` is the cloud folder the sync will use (None: the directory's current one, or main).
    """
    from oplog.syncformat import DEFAULT_CLOUD

    path = Path(data_dir)
    options = options or StoreOptions()
    repaired: list[str] = []
    while True:
        try:
            return Store.open(path, options=options, clock=clock), repaired
        except CorruptSegment as exc:
            target = _damaged_foreign_copy(path, exc)
            if target is None or len(repaired) >= _MAX_REPAIRS:
                raise
            device_id, name = target
            folder = cloud or load_state(path).cloud_name or DEFAULT_CLOUD
            lock = DataDirLock(path)
            lock.acquire(options.lock_timeout_s)
            try:
                repaired.append(repair_pulled_copy(path, device_id, name, remote, folder))
            finally:
                lock.release()
