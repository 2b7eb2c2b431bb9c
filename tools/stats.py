"""``oplog stats``: segments, events per device, sizes, checkpoints, state hash, conflicts."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from oplog.checkpoint import CHECKPOINTS_FILE, CheckpointStore

__all__ = ["register", "run", "collect"]


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Add the ``stats`` subcommand."""
    cmd = subparsers.add_parser(
        "stats",
        parents=[parent],
        help="segments, events, devices, sizes, checkpoints, state hash",
        description="Summarise a data directory (read-only; works while a server runs).",
    )
    cmd.add_argument("--no-hash", action="store_true", help="skip the replay that computes the state hash")
    cmd.set_defaults(func=run)


def _size(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.path.getsize(str(path) + suffix)
        except OSError:
            pass
    return total


def collect(data: str | Path, *, with_hash: bool = True) -> dict[str, Any]:
    """The statistics of a data directory as a JSON-ready dict."""
    from oplog.tools.replay import check_data_dir, open_logs_readonly, replay_data_dir

    data_dir = check_data_dir(data)
    device_file = data_dir / "DEVICE"
    local = device_file.read_text().strip() if device_file.is_file() else ""
    devices: dict[str, Any] = {}
    logs = open_logs_readonly(data_dir)
    try:
        for device_id, log in sorted(logs.items()):
            segments = log.log.segments()
            devices[device_id] = {
                "events": log.last_seq,
                "segments": len(segments),
                "sealed": sum(1 for s in segments if s.sealed),
                "bytes": sum(s.size for s in segments),
                "local": device_id == local,
            }
    finally:
        for log in logs.values():
            log.close()
    with CheckpointStore(data_dir / CHECKPOINTS_FILE, readonly=True) as store:
        checkpoints = [
            {
                "id": c.id,
                "position": c.position,
                "blocks": c.block_count,
                "bytes": c.size,
                "state_hash": c.state_hash,
            }
            for c in store.list()
        ]
    stats: dict[str, Any] = {
        "data_dir": str(data_dir),
        "device_id": local,
        "devices": devices,
        "events": sum(d["events"] for d in devices.values()),
        "segments": sum(d["segments"] for d in devices.values()),
        "log_bytes": sum(d["bytes"] for d in devices.values()),
        "checkpoints": checkpoints,
        "checkpoints_bytes": _size(data_dir / CHECKPOINTS_FILE),
        "view_bytes": _size(data_dir / "blocks.db"),
    }
    if with_hash:
        result = replay_data_dir(data_dir)
        stats.update(
            state_hash=result.state_hash.hexdigest(),
            position=result.position,
            blocks=len(result.ws.blocks),
            documents=len(result.ws.docs),
            conflicts=len(result.conflicts),
        )
    return stats


def run(args: argparse.Namespace) -> int:
    """Print the statistics."""
    from oplog.tools.replay import one_line_warnings

    one_line_warnings()
    stats = collect(args.data, with_hash=not args.no_hash)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"data directory  {stats['data_dir']}  (device {stats['device_id'] or '?'})")
    print(f"events {stats['events']}  segments {stats['segments']}  log bytes {stats['log_bytes']}")
    for device_id, d in stats["devices"].items():
        mark = " (local)" if d["local"] else ""
        print(
            f"  {device_id}{mark}: {d['events']} events, {d['segments']} segments ({d['sealed']} sealed), {d['bytes']} bytes"
        )
    print(f"checkpoints {len(stats['checkpoints'])}  ({stats['checkpoints_bytes']} bytes)")
    for c in stats["checkpoints"]:
        print(f"  #{c['id']} at position {c['position']}: {c['blocks']} blocks, {c['bytes']} bytes")
    print(f"view bytes {stats['view_bytes']}")
    if "state_hash" in stats:
        print(
            f"state hash {stats['state_hash']}  position {stats['position']}  blocks {stats['blocks']}  conflicts {stats['conflicts']}"
        )
    return 0
