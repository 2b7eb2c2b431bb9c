"""``oplog conflicts``: the operations replay skipped or bent (a concurrent edit removed their target), and why."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

from oplog.checkpoint import ConflictRecord
from oplog.eventlog import EventLog
from oplog.scan import scan, total_events
from oplog.tools.dump import iso_time, reading
from oplog.tools.progress import progress_bar, wanted

__all__ = ["register", "run", "conflict_records"]


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
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


def _positions(
    logs: Mapping[str, EventLog], wanted: set[tuple[str, int]], show_progress: bool
) -> dict[tuple[str, int], tuple[int, int]]:
    """(device, seq) -> (merged position, time_ms) for the events in ``wanted``, by one streaming scan."""
    found: dict[tuple[str, int], tuple[int, int]] = {}
    with progress_bar(show_progress, min_total=20_000) as bar:
        progress = None
        if bar is not None:
            bar.set_total(total_events(logs))
            progress = bar.update_to
        for position, event, _ in scan(logs, progress=progress):
            key = (event.device_id, event.device_seq)
            if key in wanted:
                found[key] = (position, event.time_ms)
                if len(found) == len(wanted):
                    break
    return found


def conflict_records(
    conflicts: Sequence[ConflictRecord], logs: Mapping[str, EventLog], *, show_progress: bool = False
) -> list[dict[str, Any]]:
    """The conflicts as JSON objects, each with its event's merged position and time."""
    where = (
        _positions(logs, {(c.device_id, c.device_seq) for c in conflicts}, show_progress) if conflicts else {}
    )
    out = []
    for c in conflicts:
        position, time_ms = where.get((c.device_id, c.device_seq), (None, None))
        out.append(
            {
                "position": position,
                "device": c.device_id,
                "seq": c.device_seq,
                "time": iso_time(time_ms) if time_ms is not None else None,
                "op_index": c.op_index,
                "action": c.action,
                "block_id": c.block_id,
                "reason": c.reason,
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    """Print the conflicts of the current state."""
    from oplog.datadir import replay_data_dir

    show = wanted(args)
    with progress_bar(show) as bar:
        result = replay_data_dir(args.data, progress=bar)
    with reading(args.data) as logs:
        records = conflict_records(result.conflicts, logs, show_progress=show)
    if args.json:
        print(json.dumps({"position": result.position, "conflicts": records}, indent=2, ensure_ascii=False))
        return 0
    if not records:
        print(f"no conflicts (position {result.position})")
        return 0
    for r in records:
        print(
            f"{r['position'] if r['position'] is not None else '?':>9}  {r['time'] or '?'}  "
            f"{r['device']}#{r['seq']} op {r['op_index']}  {r['action']} {r['block_id']}: {r['reason']}"
        )
    print(f"{len(records)} conflicts (position {result.position})")
    return 0
