"""``oplog replay``: rebuild the state from the logs (read-only), print its hash, optionally write a view.

Parse, call ``oplog.datadir.replay_data_dir`` / ``write_view``, print.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from oplog.datadir import open_logs_readonly, replay_data_dir, write_view
from oplog.replay import ReplayResult
from oplog.tools.options import parse_time_ms
from oplog.tools.progress import progress_bar, wanted

# replay_data_dir and open_logs_readonly are re-exported for callers written before oplog.datadir.
__all__ = ["register", "run", "summary", "replay_data_dir", "open_logs_readonly"]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``replay`` subcommand."""
    cmd = subparsers.add_parser(
        "replay",
        parents=[parent],
        help="rebuild the state from the logs and print its hash",
        description=(
            "Fold every event of every device log in merged order (hlc, device, seq) and print the state hash. "
            "Reads the data directory read-only (works while a server runs); starts from the newest usable "
            "checkpoint unless --full."
        ),
    )
    until = cmd.add_mutually_exclusive_group()
    until.add_argument(
        "--until", type=int, metavar="POS", help="stop after the first POS events of the merged order"
    )
    until.add_argument(
        "--until-time",
        metavar="ISO",
        help="stop after the last event stamped at or before this time (ISO 8601; UTC when no offset is given)",
    )
    cmd.add_argument("--out", metavar="FILE", help="write the blocks view (SQLite) of the result into FILE")
    cmd.add_argument(
        "--full", action="store_true", help="ignore checkpoints: replay every event from the start"
    )
    cmd.set_defaults(func=run)


def summary(result: ReplayResult, seconds: float) -> dict[str, Any]:
    """The JSON summary of a replay."""
    return {
        "state_hash": result.state_hash.hexdigest(),
        "position": result.position,
        "blocks": len(result.ws.blocks),
        "documents": len(result.ws.docs),
        "attribute_views": len(result.ws.avs),
        "device_heads": dict(sorted(result.heads.items())),
        "conflicts": len(result.conflicts),
        "from_checkpoint": result.checkpoint.position if result.checkpoint is not None else None,
        "events_replayed": result.applied,
        "seconds": round(seconds, 3),
    }


def run(args: argparse.Namespace) -> int:
    """Replay, print the hash and counts, write ``--out``."""
    until_time = parse_time_ms(args.until_time) if args.until_time else None
    started = time.perf_counter()
    with progress_bar(wanted(args)) as bar:
        result = replay_data_dir(
            args.data, until=args.until, until_time_ms=until_time, full=args.full, progress=bar
        )
    info = summary(result, time.perf_counter() - started)
    if args.out:
        info["out"] = str(write_view(result, args.out, data_dir=args.data))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(info["state_hash"])
        print(
            f"position {info['position']}  blocks {info['blocks']}  documents {info['documents']}  "
            f"devices {len(info['device_heads'])}  conflicts {info['conflicts']}  ({info['seconds']}s)"
        )
        if args.out:
            print(f"blocks view written to {info['out']}")
    return 0
