"""``oplog stats``: segments, events per device, sizes, checkpoints, state hash, conflicts.

Parse, call ``oplog.datadir.collect_stats``, print.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from oplog.datadir import collect_stats

# ``collect`` is the name callers used before oplog.datadir.
collect = collect_stats

__all__ = ["register", "run", "collect"]


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Add the ``stats`` subcommand."""
    cmd = subparsers.add_parser(
        "stats",
        parents=[parent],
        help="segments, events, devices, sizes, checkpoints, state hash",
        description="Summarise a data directory (read-only; works while a server runs and on read-only media).",
    )
    cmd.add_argument("--no-hash", action="store_true", help="skip the replay that computes the state hash")
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the statistics."""
    stats = collect_stats(args.data, with_hash=not args.no_hash)
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
    if stats.get("snapshot_check"):
        print(f"remote snapshot {stats['snapshot_check']}")
    if "state_hash" in stats:
        print(
            f"state hash {stats['state_hash']}  position {stats['position']}  blocks {stats['blocks']}  conflicts {stats['conflicts']}"
        )
    return 0
