"""``oplog history BLOCK_ID``: every event that touched a block, oldest first, with its content before and after."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from oplog.blockhistory import BlockState, HistoryEntry
from oplog.datadir import block_history
from oplog.isotime import iso_time
from oplog.tools.dump import emit
from oplog.tools.progress import progress_bar

__all__ = ["register", "run", "entry_record"]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``history`` subcommand."""
    cmd = subparsers.add_parser(
        "history",
        parents=[parent],
        help="every event that touched a block, with its content before and after",
        description=(
            "List, oldest first, every event whose operations name BLOCK_ID (target, anchor, placed block, "
            "or removed with an ancestor), with position, device, time, actions and the block's Markdown and "
            "attributes before and after. Streams in constant memory at about the cost of reading the logs; "
            "--exact folds every event through the engine instead (replay's cost) and also lists changes "
            "made without naming the block. Read-only (works while a server runs). See docs/inspect.md."
        ),
    )
    cmd.add_argument("block_id", metavar="BLOCK_ID")
    cmd.add_argument("--from", dest="from_pos", type=int, default=0, metavar="POS", help="events after POS")
    cmd.add_argument("--to", dest="to_pos", type=int, metavar="POS", help="events up to and including POS")
    cmd.add_argument("--exact", action="store_true", help="fold every event through the engine (slow, exact)")
    cmd.set_defaults(func=run)


def _state_json(state: BlockState | None) -> dict[str, Any] | None:
    return state.to_json() if state is not None else None


def entry_record(entry: HistoryEntry) -> dict[str, Any]:
    """One history entry as the JSON object ``history --json`` prints."""
    event = entry.event
    return {
        "position": entry.position,
        "device": event.device_id,
        "seq": event.device_seq,
        "hlc": event.hlc,
        "time": iso_time(event.time_ms),
        "time_ms": event.time_ms,
        "actions": entry.actions,
        "roles": entry.roles,
        "exact": entry.exact,
        "before": _state_json(entry.before),
        "after": _state_json(entry.after),
    }


def _describe(state: BlockState | None) -> str:
    if state is None:
        return "(absent)"
    kind = state.type + (f"/{state.subtype}" if state.subtype else "")
    attrs = " ".join(f"{k}={v!r}" for k, v in sorted(state.attrs.items()))
    return f"{kind} {state.markdown!r}" + (f"  {{{attrs}}}" if attrs else "")


def entry_lines(entry: HistoryEntry) -> Iterator[str]:
    """One history entry as human lines: a header, then before/after (one line when unchanged)."""
    event = entry.event
    mark = "" if entry.exact else "  (approximate)"
    yield (
        f"{entry.position:>9}  {iso_time(event.time_ms)}  {event.device_id}#{event.device_seq}  "
        f"{', '.join(entry.actions)}  [{'; '.join(entry.roles)}]{mark}"
    )
    if entry.before == entry.after:
        yield f"           unchanged: {_describe(entry.after)}"
    else:
        yield f"           before:    {_describe(entry.before)}"
        yield f"           after:     {_describe(entry.after)}"


def run(args: argparse.Namespace) -> int:
    """Print the block's history."""
    show = sys.stderr.isatty()
    with progress_bar(show) as base_bar, progress_bar(show, min_total=20_000) as bar:
        entries = block_history(
            args.data,
            args.block_id,
            after=args.from_pos,
            through=args.to_pos,
            exact=args.exact,
            progress=bar,
            base_progress=base_bar,
        )
        if args.json:
            dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
            emit(dumps(entry_record(entry)) for entry in entries)
        else:
            emit("\n".join(entry_lines(entry)) for entry in entries)
    return 0
