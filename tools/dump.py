"""``oplog dump``: the events of a data directory in merged order, filtered, as JSON lines or one line each."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oplog.errors import InvalidArgument
from oplog.eventlog import EventLog
from oplog.scan import EventFilter, scan, total_events
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import operation_to_json

__all__ = [
    "register",
    "run",
    "event_record",
    "event_line",
    "iso_time",
    "reading",
    "progress_bar",
    "parse_time",
    "emit",
    "filter_from_args",
]


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Add the ``dump`` subcommand."""
    cmd = subparsers.add_parser(
        "dump",
        parents=[parent],
        help="events in merged order, filtered (JSON lines with --json)",
        description=(
            "Print the events of every device log in merged order (hlc, device, seq), one per line, with "
            "their positions (the event at position N is the Nth of the merged order). Streams in constant "
            "memory; read-only (works while a server runs). Filters combine with AND."
        ),
    )
    cmd.add_argument("--device", action="append", metavar="ID", help="only this device's events (repeatable)")
    cmd.add_argument("--from", dest="from_pos", type=int, default=0, metavar="POS", help="events after POS")
    cmd.add_argument("--to", dest="to_pos", type=int, metavar="POS", help="events up to and including POS")
    cmd.add_argument(
        "--since", metavar="ISO", help="events stamped at or after this time (UTC without offset)"
    )
    cmd.add_argument("--until", metavar="ISO", help="events stamped at or before this time")
    cmd.add_argument("--block", metavar="ID", help="events whose operations name this block")
    cmd.add_argument("--action", action="append", metavar="NAME", help="events with this action (repeatable)")
    cmd.add_argument("--undo", action="store_true", help="include each transaction's undo operations")
    cmd.set_defaults(func=run)


# ---------------------------------------------------------------- shared by the inspection commands


def parse_time(text: str, option: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 time (UTC when it has no offset); names ``option`` if bad."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument(f"{option}: not an ISO 8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def iso_time(ms: int) -> str:
    """An epoch-milliseconds time as ISO 8601 UTC with milliseconds (``…T12:00:00.123Z``)."""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def reading(data: str | Path) -> Iterator[dict[str, EventLog]]:
    """The data directory's device logs opened read-only (never the writer's lock), closed afterwards."""
    from oplog.tools.replay import check_data_dir, one_line_warnings, open_logs_readonly

    one_line_warnings()
    logs = open_logs_readonly(check_data_dir(data))
    try:
        yield logs
    finally:
        for log in logs.values():
            log.close()


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on stderr fed with positions (``None`` when disabled or the work is short)."""
    if not enabled or total < 20_000:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, unit="ev", unit_scale=True, file=sys.stderr, leave=False)
    seen = [0]

    def update(done: int) -> None:
        bar.update(min(done, total) - seen[0])
        seen[0] = min(done, total)

    try:
        yield update
    finally:
        bar.close()


# ---------------------------------------------------------------- records


def event_record(position: int, event: pb.Event, *, undo: bool = False) -> dict[str, Any]:
    """One event as the JSON object ``dump --json`` prints."""
    tx = event.transaction
    record: dict[str, Any] = {
        "position": position,
        "device": event.device_id,
        "seq": event.device_seq,
        "hlc": event.hlc,
        "time": iso_time(event.time_ms),
        "time_ms": event.time_ms,
        "req_id": event.req_id,
        "app": event.app,
        "session": event.session,
        "tx_index": event.tx_index,
        "tx_count": event.tx_count,
        "operations": [operation_to_json(op, resolved=True) for op in tx.do_operations],
    }
    if undo:
        record["undo_operations"] = [operation_to_json(op, resolved=True) for op in tx.undo_operations]
    return record


def event_line(position: int, event: pb.Event) -> str:
    """One event as a short human line: position, time, device#seq, each operation's action and target."""
    ops = event.transaction.do_operations
    parts = []
    for op in ops[:4]:
        target = op.id or op.parent_id or op.previous_id or op.next_id
        parts.append(f"{op.action} {target}".rstrip())
    if len(ops) > 4:
        parts.append(f"… {len(ops) - 4} more")
    return f"{position:>9}  {iso_time(event.time_ms)}  {event.device_id}#{event.device_seq}  " + "; ".join(
        parts
    )


def emit(lines: Iterator[str]) -> None:
    """Write lines to stdout in chunks; stop quietly when the reader goes away (``oplog dump | head``)."""
    out = sys.stdout
    chunk: list[str] = []
    try:
        for line in lines:
            chunk.append(line)
            if len(chunk) >= 512:
                out.write("\n".join(chunk) + "\n")
                chunk.clear()
        if chunk:
            out.write("\n".join(chunk) + "\n")
        out.flush()
    except BrokenPipeError:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())


def filter_from_args(args: argparse.Namespace) -> EventFilter:
    """The ``EventFilter`` the command-line options describe."""
    return EventFilter(
        after=args.from_pos,
        through=args.to_pos,
        devices=frozenset(args.device) if args.device else None,
        since_ms=parse_time(args.since, "--since") if args.since else None,
        until_ms=parse_time(args.until, "--until") if args.until else None,
        block_id=args.block,
        actions=frozenset(args.action) if args.action else None,
    )


def run(args: argparse.Namespace) -> int:
    """Print the events that pass the filters."""
    flt = filter_from_args(args)
    with reading(args.data) as logs:
        flt.check_against(logs)
        total = flt.through if flt.through is not None else total_events(logs)
        with progress_bar(total, sys.stderr.isatty()) as progress:
            items = scan(logs, flt, progress=progress)
            if args.json:
                dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
                undo = args.undo
                lines = (dumps(event_record(p, e, undo=undo)) for p, e, _ in items)
            else:
                lines = (event_line(p, e) for p, e, _ in items)
            emit(lines)
    return 0
