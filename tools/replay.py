"""``oplog replay``: rebuild the state from the logs (read-only), print its hash, optionally write a view."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oplog.checkpoint import CHECKPOINTS_FILE, CheckpointStore
from oplog.errors import InvalidArgument, NotADataDir
from oplog.eventlog import EventLog
from oplog.identity import DEVICE_FILE, DEVICES_DIR
from oplog.replay import ReplayResult, replay, rewind
from oplog.scan import total_events

__all__ = [
    "register",
    "run",
    "open_logs_readonly",
    "opened_readonly",
    "check_data_dir",
    "replay_data_dir",
    "parse_time_ms",
    "progress_bar",
    "one_line_warnings",
]


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


def check_data_dir(data: str | Path) -> Path:
    """The data directory as a Path; ``NotADataDir`` unless it holds a ``DEVICE`` file or a ``devices/`` folder."""
    path = Path(data)
    if not path.is_dir():
        raise NotADataDir(f"{path} is not an oplog data directory (no such directory)")
    if not (path / DEVICE_FILE).is_file() and not (path / DEVICES_DIR).is_dir():
        raise NotADataDir(f"{path} is not an oplog data directory (no DEVICE file, no devices/ folder)")
    return path


def open_logs_readonly(data_dir: Path) -> dict[str, EventLog]:
    """Every device log of the data directory, opened read-only (never the writer's lock)."""
    root = data_dir / DEVICES_DIR
    logs: dict[str, EventLog] = {}
    if not root.is_dir():
        return logs
    try:
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            logs[folder.name] = EventLog.open(folder, folder.name, writable=False)
    except BaseException:
        for log in logs.values():
            log.close()
        raise
    return logs


@contextmanager
def opened_readonly(data_dir: Path) -> Iterator[dict[str, EventLog]]:
    """Every device log of ``data_dir`` opened read-only (``open_logs_readonly``), closed afterwards."""
    logs = open_logs_readonly(data_dir)
    try:
        yield logs
    finally:
        for log in logs.values():
            log.close()


def parse_time_ms(text: str, option: str = "--until-time") -> int:
    """Milliseconds since the epoch of an ISO 8601 time (UTC when it has no offset); names ``option`` if bad."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument(f"{option}: not an ISO 8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


@contextmanager
def progress_bar(
    total: int, enabled: bool, *, min_total: int = 10_000, desc: str | None = None
) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on stderr fed with counts of events done (``None`` when disabled or under ``min_total``)."""
    if not enabled or total < min_total:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, unit="ev", unit_scale=True, file=sys.stderr, leave=False, desc=desc)
    seen = [0]

    def update(done: int) -> None:
        done = min(done, total)
        bar.update(done - seen[0])
        seen[0] = done

    try:
        yield update
    finally:
        bar.close()


def replay_data_dir(
    data: str | Path,
    *,
    until: int | None = None,
    until_time_ms: int | None = None,
    full: bool = False,
    show_progress: bool = False,
) -> ReplayResult:
    """Replay a data directory read-only (from its newest usable checkpoint unless ``full``)."""
    data_dir = check_data_dir(data)
    with opened_readonly(data_dir) as logs:
        total = total_events(logs)
        with progress_bar(total if until is None else min(total, until), show_progress) as progress:
            if full:
                return replay(logs, until_position=until, until_time_ms=until_time_ms, progress=progress)
            with CheckpointStore(data_dir / CHECKPOINTS_FILE, readonly=True) as checkpoints:
                return rewind(
                    logs,
                    checkpoints,
                    until_position=until,
                    until_time_ms=until_time_ms,
                    progress=progress,
                    warn_missing=False,
                )


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


def one_line_warnings() -> None:
    """Show warnings (a damaged checkpoint, a cut tail) as one ``oplog: warning:`` line each."""
    import warnings

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: Any = None,
    ) -> None:
        print(f"oplog: warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def run(args: argparse.Namespace) -> int:
    """Replay, print the hash and counts, write ``--out``."""
    one_line_warnings()
    if args.until is not None and args.until < 0:
        raise InvalidArgument("--until must not be negative")
    until_time = parse_time_ms(args.until_time) if args.until_time else None
    started = time.perf_counter()
    result = replay_data_dir(
        args.data,
        until=args.until,
        until_time_ms=until_time,
        full=args.full,
        show_progress=sys.stderr.isatty() and not args.json,
    )
    info = summary(result, time.perf_counter() - started)
    if args.out:
        from oplog.sqlview import BlocksView

        out = Path(args.out)
        if out.resolve() == (Path(args.data) / "blocks.db").resolve():
            raise InvalidArgument(
                "--out must not be the data directory's own blocks.db (the server keeps it)"
            )
        for suffix in ("", "-wal", "-shm"):
            Path(str(out) + suffix).unlink(missing_ok=True)
        with BlocksView(out) as view:
            view.rebuild(
                result.ws, conflicts=result.conflicts, position=result.position, state_hash=info["state_hash"]
            )
        info["out"] = str(out)
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
