"""What the synthetic histories of the benchmarks share: serial block ids, and writing the events to logs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from oplog.eventlog import EventLog
from oplog.syncformat import DEVICES, MANIFEST, Manifest, SegEntry, segment_crc
from oplog.v1 import oplog_pb2 as pb

__all__ = ["block_id", "write_events", "publish_log"]

_ALPHA = "0123456789abcdefghijklmnopqrstuvwxyz"
#: Events appended to a device log at a time.
BATCH = 512


def block_id(ms: int, n: int) -> str:
    """A SiYuan-shaped block id: the stamp of second ``ms // 1000`` (on 2024-07-21) and ``n`` in base 36."""
    suffix = ""
    for _ in range(7):
        n, r = divmod(n, 36)
        suffix += _ALPHA[r]
    return f"20240721{ms // 1000 % 1000000:06d}-{suffix}"


def publish_log(log: EventLog, cloud: Path, epoch: str = "0") -> int:
    """Seal and close ``log``; lay its segments out under ``cloud/devices/<id>/`` with a ``MANIFEST`` as sync
    writes them (the caller writes ``EPOCH``). Returns the bytes copied."""
    device_id = log.log.device_id
    log.log.seal()
    segments = log.log.segments()
    log.close()
    dest = cloud / DEVICES / device_id
    dest.mkdir(parents=True)
    entries = []
    for seg in segments:
        data = (Path(log.log.folder) / seg.name).read_bytes()
        (dest / seg.name).write_bytes(data)
        entries.append(SegEntry(seg.name, seg.first_seq, seg.count, len(data), segment_crc(data)))
    (dest / MANIFEST).write_bytes(Manifest(epoch, device_id, entries).encode())
    return sum(e.size for e in entries)


def write_events(folder: Path, devices: list[str], events: Iterable[pb.Event]) -> None:
    """Append ``events`` to the device logs under ``folder/devices`` in batches; ``DEVICE`` names the first device."""
    logs = {
        d: EventLog.open(folder / "devices" / d, d, durability="interval", interval_ms=1000) for d in devices
    }
    (folder / "DEVICE").write_text(devices[0] + "\n")
    batches: dict[str, list[pb.Event]] = {d: [] for d in devices}
    try:
        for event in events:
            batch = batches[event.device_id]
            batch.append(event)
            if len(batch) >= BATCH:
                logs[event.device_id].append(batch)
                batch.clear()
        for device_id, batch in batches.items():
            if batch:
                logs[device_id].append(batch)
    finally:
        for log in logs.values():
            log.close()
