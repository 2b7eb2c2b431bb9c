"""``oplog conflicts``: the operations replay skipped or bent (a concurrent edit removed their target), and why.

Parse, call ``oplog.datadir.conflicts_data_dir``, print.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from oplog.datadir import PlacedConflict, conflicts_data_dir
from oplog.isotime import iso_time
from oplog.tools.progress import progress_bar, wanted

__all__ = ["register", "run", "conflict_json"]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``conflicts`` subcommand."""
    cmd = subparsers.add_parser(
        "conflicts",
        parents=[parent],
        help="operations replay skipped, with why",
        description=(
            "Rebuild the state (newest usable checkpoint + the events after it) and list every operation "
            "the deterministic conflict rule applied to: its event's position, device and seq, the "
            "operation's index and action, the block it named, and the reason. Read-only."
        ),
    )
    cmd.set_defaults(func=run)


def conflict_json(placed: PlacedConflict) -> dict[str, Any]:
    """One conflict as the JSON object ``conflicts --json`` prints."""
    c = placed.conflict
    return {
        "position": placed.position,
        "device": c.device_id,
        "seq": c.device_seq,
        "time": iso_time(placed.time_ms) if placed.time_ms is not None else None,
        "op_index": c.op_index,
        "action": c.action,
        "block_id": c.block_id,
        "reason": c.reason,
    }


def run(args: argparse.Namespace) -> int:
    """Print the conflicts of the current state."""
    show = wanted(args)
    with progress_bar(show) as bar, progress_bar(show, min_total=20_000) as scan_bar:
        found = conflicts_data_dir(args.data, progress=bar, scan_progress=scan_bar)
    records = [conflict_json(c) for c in found.conflicts]
    if args.json:
        print(json.dumps({"position": found.position, "conflicts": records}, indent=2, ensure_ascii=False))
        return 0
    if not records:
        print(f"no conflicts (position {found.position})")
        return 0
    for r in records:
        print(
            f"{r['position'] if r['position'] is not None else '?':>9}  {r['time'] or '?'}  "
            f"{r['device']}#{r['seq']} op {r['op_index']}  {r['action']} {r['block_id']}: {r['reason']}"
        )
    print(f"{len(records)} conflicts (position {found.position})")
    return 0
