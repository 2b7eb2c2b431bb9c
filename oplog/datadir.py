"""A data directory as a library: its layout, the rule for what one is, and the read-only porcelain.

This is the layer the ``oplog`` commands stand on, as dulwich's ``porcelain``
stands under its CLI: ``oplog.tools`` parses arguments, calls one function
here and prints what it returns; tests call these functions directly. Each
function takes a path, opens what it needs read-only and closes it again:

- ``check_data_dir`` — the one rule for what a data directory is (a folder
  holding a ``DEVICE`` file, ``oplog.identity``), shared with ``Store.open``;
- ``open_logs_readonly`` / ``opened_readonly`` — every device log, never the
  writer's lock, so all of this works beside a running server and on
  read-only media (SQLite files are opened through ``sqlite_readonly``);
- ``replay_data_dir``, ``write_view``, ``query_data_dir``, ``collect_stats``,
  ``conflicts_data_dir``, ``diff_data_dir``, ``compare_data_dirs``, ``events``
  (dump) and ``block_history`` (history), both streaming in constant memory.

Nothing here writes inside the data directory. Progress is reported to an
optional ``Progress`` object (the CLI's is a tqdm bar), so the library stays
free of terminals.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from oplog.archive import ARCHIVE_DIR
from oplog.blockhistory import BlockTracker, ExactTracker, HistoryEntry, state_of
from oplog.checkpoint import CHECKPOINTS_FILE, CheckpointStore, ConflictRecord
from oplog.errors import BlockNotFound, InvalidArgument, NotADataDir, StorageError
from oplog.eventlog import EventLog
from oplog.identity import DEVICE_FILE, DEVICES_DIR, check_data_dir
from oplog.journal import JOURNAL_FILE
from oplog.lockfile import LOCK_FILE
from oplog.replay import ReplayResult, replay, rewind
from oplog.scan import EventFilter, Item, scan, total_events
from oplog.sqlquery import QueryResult, run_query
from oplog.sqlview import VIEW_FILE
from oplog.statediff import (
    LogComparison,
    PositionDiff,
    StateDiff,
    check_positions,
    compare_logs,
    diff_positions,
    diff_workspaces,
)
from oplog.syncstate import describe_snapshot_check, load_state

__all__ = [
    "DEVICE_FILE",
    "DEVICES_DIR",
    "LOCK_FILE",
    "CHECKPOINTS_FILE",
    "JOURNAL_FILE",
    "VIEW_FILE",
    "ARCHIVE_DIR",
    "SERVER_FILE",
    "Layout",
    "Progress",
    "check_data_dir",
    "local_device_id",
    "open_logs_readonly",
    "opened_readonly",
    "replay_data_dir",
    "write_view",
    "query_data_dir",
    "collect_stats",
    "PlacedConflict",
    "ConflictList",
    "conflicts_data_dir",
    "DataDirDiff",
    "diff_data_dir",
    "DataDirComparison",
    "compare_data_dirs",
    "events",
    "block_history",
]

#: Written by ``oplog serve`` while it holds the directory (``oplog.tools.discover``).
SERVER_FILE = "SERVER"


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each part of the data directory ``root`` lives."""

    root: Path

    @property
    def device_file(self) -> Path:
        """This device's id."""
        return self.root / DEVICE_FILE

    @property
    def devices(self) -> Path:
        """One log folder per device."""
        return self.root / DEVICES_DIR

    @property
    def lock(self) -> Path:
        """The writer's lock (pid of the holder)."""
        return self.root / LOCK_FILE

    @property
    def checkpoints(self) -> Path:
        """The checkpoints file (SQLite)."""
        return self.root / CHECKPOINTS_FILE

    @property
    def journal(self) -> Path:
        """The change feed's order of events."""
        return self.root / JOURNAL_FILE

    @property
    def view(self) -> Path:
        """SiYuan's blocks table, kept current by the writer (SQLite)."""
        return self.root / VIEW_FILE

    @property
    def sync_state(self) -> Path:
        """What this device knows about its cloud folder."""
        from oplog.syncstate import SYNC_FILE

        return self.root / SYNC_FILE

    @property
    def archive(self) -> Path:
        """Events that left the shared history."""
        return self.root / ARCHIVE_DIR

    @property
    def server(self) -> Path:
        """Where a running ``oplog serve`` listens."""
        return self.root / SERVER_FILE


class Progress(Protocol):
    """Where long reads report how far they are (events, or bytes for verify)."""

    def set_total(self, total: int) -> None:
        """The amount of work, known before it starts."""

    def update_to(self, done: int) -> None:
        """How much of it is done so far."""


def local_device_id(data_dir: str | os.PathLike[str]) -> str:
    """This directory's device id as stored in ``DEVICE`` (``""`` when it cannot be read)."""
    try:
        return (Path(data_dir) / DEVICE_FILE).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def open_logs_readonly(data_dir: str | os.PathLike[str]) -> dict[str, EventLog]:
    """Every device log of the data directory, opened read-only (never the writer's lock)."""
    root = Path(data_dir) / DEVICES_DIR
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
def opened_readonly(data_dir: str | os.PathLike[str]) -> Iterator[dict[str, EventLog]]:
    """Every device log of ``data_dir`` opened read-only (``open_logs_readonly``), closed afterwards."""
    logs = open_logs_readonly(data_dir)
    try:
        yield logs
    finally:
        for log in logs.values():
            log.close()


def replay_data_dir(
    data: str | os.PathLike[str],
    *,
    until: int | None = None,
    until_time_ms: int | None = None,
    full: bool = False,
    progress: Progress | None = None,
) -> ReplayResult:
    """Replay a data directory read-only (from its newest usable checkpoint unless ``full``).

    ``until`` past the end of the merged order is an ``InvalidArgument`` naming
    the end (as ``dump --to`` is), not a silent clamp.
    """
    data_dir = check_data_dir(data)
    if until is not None and until < 0:
        raise InvalidArgument(f"--until {until}: positions are not negative")
    with opened_readonly(data_dir) as logs:
        total = total_events(logs)
        if until is not None and until > total:
            raise InvalidArgument(f"--until {until} is past the end of the history ({total} events)")
        update = None
        if progress is not None:
            progress.set_total(total if until is None else until)
            update = progress.update_to
        if full:
            return replay(logs, until_position=until, until_time_ms=until_time_ms, progress=update)
        with CheckpointStore(data_dir / CHECKPOINTS_FILE, readonly=True) as checkpoints:
            return rewind(
                logs,
                checkpoints,
                until_position=until,
                until_time_ms=until_time_ms,
                progress=update,
                warn_missing=False,
            )


def write_view(
    result: ReplayResult, out: str | os.PathLike[str], *, data_dir: str | os.PathLike[str]
) -> Path:
    """Write the blocks view (SQLite) of ``result`` into the file ``out``, replacing it; returns its path.

    Refused: the data directory's own ``blocks.db`` (its writer keeps it), a
    directory, a folder that does not exist; a file that cannot be written is a
    ``StorageError`` naming it.
    """
    from oplog.sqlview import BlocksView

    path = Path(out)
    if path.resolve() == (Path(data_dir) / VIEW_FILE).resolve():
        raise InvalidArgument("--out must not be the data directory's own blocks.db (the server keeps it)")
    if path.is_dir():
        raise InvalidArgument(f"--out {path} is a directory; name a file to write the view into")
    if not path.parent.is_dir():
        raise InvalidArgument(f"--out {path}: no such directory {path.parent}")
    try:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        with BlocksView(path) as view:
            view.rebuild(
                result.ws,
                conflicts=result.conflicts,
                position=result.position,
                state_hash=result.state_hash.hexdigest(),
            )
    except (OSError, sqlite3.Error, StorageError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StorageError(f"cannot write the view to {path}: {reason}") from None
    return path


def query_data_dir(
    data: str | os.PathLike[str], sql: str, args: list[Any], *, max_rows: int, time_budget_s: float
) -> QueryResult:
    """Run read-only SQL over the directory's view, or over a temporary one replayed from the logs when it has none."""
    data_dir = check_data_dir(data)
    view = data_dir / VIEW_FILE
    if view.is_file():
        return run_query(view, sql, args, max_rows=max_rows, time_budget_s=time_budget_s)
    result = replay_data_dir(data_dir)
    with tempfile.TemporaryDirectory(prefix="oplog-query-") as tmp:
        path = write_view(result, Path(tmp) / VIEW_FILE, data_dir=data_dir)
        return run_query(path, sql, args, max_rows=max_rows, time_budget_s=time_budget_s)


def _size(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.path.getsize(str(path) + suffix)
        except OSError:
            pass
    return total


def collect_stats(data: str | os.PathLike[str], *, with_hash: bool = True) -> dict[str, Any]:
    """The statistics of a data directory as a JSON-ready dict (devices, segments, checkpoints, sizes, hash)."""
    data_dir = check_data_dir(data)
    layout = Layout(data_dir)
    local = local_device_id(data_dir)
    devices: dict[str, Any] = {}
    with opened_readonly(data_dir) as logs:
        for device_id, log in sorted(logs.items()):
            segments = log.log.segments()
            devices[device_id] = {
                "events": log.last_seq,
                "segments": len(segments),
                "sealed": sum(1 for s in segments if s.sealed),
                "bytes": sum(s.size for s in segments),
                "local": device_id == local,
            }
    with CheckpointStore(layout.checkpoints, readonly=True) as store:
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
        "checkpoints_bytes": _size(layout.checkpoints),
        "view_bytes": _size(layout.view),
        "snapshot_check": describe_snapshot_check(load_state(data_dir).snapshot_check),
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


# ---------------------------------------------------------------- conflicts


@dataclass(frozen=True, slots=True)
class PlacedConflict:
    """A conflict with its event's merged position and time (``None`` when the logs no longer hold the event)."""

    conflict: ConflictRecord
    position: int | None
    time_ms: int | None


@dataclass(frozen=True, slots=True)
class ConflictList:
    """The conflicts of a data directory's current state, in merged order."""

    position: int
    conflicts: list[PlacedConflict]


def _place(
    logs: Mapping[str, EventLog], wanted: set[tuple[str, int]], progress: Progress | None
) -> dict[tuple[str, int], tuple[int, int]]:
    """(device, seq) -> (merged position, time_ms) for the events in ``wanted``, by one streaming scan."""
    found: dict[tuple[str, int], tuple[int, int]] = {}
    update = None
    if progress is not None:
        progress.set_total(total_events(logs))
        update = progress.update_to
    for position, event, _ in scan(logs, progress=update):
        key = (event.device_id, event.device_seq)
        if key in wanted:
            found[key] = (position, event.time_ms)
            if len(found) == len(wanted):
                break
    return found


def conflicts_data_dir(
    data: str | os.PathLike[str], *, progress: Progress | None = None, scan_progress: Progress | None = None
) -> ConflictList:
    """Replay the directory and place every conflict of the result (``progress``: the replay; ``scan_progress``: the scan)."""
    result = replay_data_dir(data, progress=progress)
    conflicts = result.conflicts
    with opened_readonly(check_data_dir(data)) as logs:
        wanted = {(c.device_id, c.device_seq) for c in conflicts}
        where = _place(logs, wanted, scan_progress) if conflicts else {}
    placed = []
    for c in conflicts:
        position, time_ms = where.get((c.device_id, c.device_seq), (None, None))
        placed.append(PlacedConflict(c, position, time_ms))
    return ConflictList(result.position, placed)


# ---------------------------------------------------------------- diff


class _Cumulative:
    """One ``Progress`` fed by several replay calls that each count from zero."""

    def __init__(self, progress: Progress, total: int) -> None:
        progress.set_total(total)
        self._progress = progress
        self._base = 0
        self._last = 0

    def __call__(self, done: int) -> None:
        if done < self._last:  # a smaller count than the last one: the next replay call started
            self._base += self._last
        self._last = done
        self._progress.update_to(self._base + done)


@dataclass(frozen=True, slots=True)
class DataDirDiff:
    """The state difference between two positions of one data directory (``end``: its number of events)."""

    result: PositionDiff
    end: int


def diff_data_dir(
    data: str | os.PathLike[str],
    start: int | None = None,
    stop: int | None = None,
    *,
    full: bool = False,
    progress: Progress | None = None,
) -> DataDirDiff:
    """Compare the states at positions ``start`` (default 0) and ``stop`` (default the end); ``InvalidArgument`` for bad ones."""
    data_dir = check_data_dir(data)
    with opened_readonly(data_dir) as logs, ExitStack() as stack:
        total = total_events(logs)
        first = 0 if start is None else start
        last = total if stop is None else stop
        check_positions(first, last, total)
        checkpoints = (
            None if full else stack.enter_context(CheckpointStore(data_dir / CHECKPOINTS_FILE, readonly=True))
        )
        update = _Cumulative(progress, last) if progress is not None else None
        return DataDirDiff(diff_positions(logs, checkpoints, first, last, progress=update), total)


@dataclass(frozen=True, slots=True)
class DataDirComparison:
    """Two data directories compared: the events each lacks and the block differences from ours to theirs."""

    ours: Path
    theirs: Path
    logs: LogComparison
    blocks: StateDiff
    ours_hash: str
    theirs_hash: str

    @property
    def identical(self) -> bool:
        """The same events and the same state."""
        return self.logs.same_events and self.ours_hash == self.theirs_hash


def compare_data_dirs(
    ours: str | os.PathLike[str],
    theirs: str | os.PathLike[str],
    *,
    full: bool = False,
    progress: Progress | None = None,
) -> DataDirComparison:
    """Compare ``ours`` with ``theirs`` (``InvalidArgument``/``NotADataDir`` naming ``--other`` when unusable)."""
    ours_dir = check_data_dir(ours)
    try:
        theirs_dir = check_data_dir(theirs)
    except NotADataDir as exc:
        raise NotADataDir(f"--other: {exc}") from None
    if theirs_dir.resolve() == ours_dir.resolve():
        raise InvalidArgument("--other names the same data directory as --data")
    with ExitStack() as stack:
        a_logs = stack.enter_context(opened_readonly(ours_dir))
        b_logs = stack.enter_context(opened_readonly(theirs_dir))
        both = total_events(a_logs) + total_events(b_logs)
        update = _Cumulative(progress, both) if progress is not None else None
        cmp = compare_logs(a_logs, b_logs, progress=update)
        states = []
        update = _Cumulative(progress, both) if progress is not None else None
        for logs, folder in ((a_logs, ours_dir), (b_logs, theirs_dir)):
            checkpoints = (
                None
                if full
                else stack.enter_context(CheckpointStore(folder / CHECKPOINTS_FILE, readonly=True))
            )
            states.append(rewind(logs, checkpoints, progress=update, warn_missing=False))
    a, b = states
    return DataDirComparison(
        ours_dir,
        theirs_dir,
        cmp,
        diff_workspaces(a.ws, b.ws),
        a.state_hash.hexdigest(),
        b.state_hash.hexdigest(),
    )


# ---------------------------------------------------------------- events and a block's history


def events(
    data: str | os.PathLike[str], flt: EventFilter | None = None, *, progress: Progress | None = None
) -> Iterator[Item]:
    """Stream ``(position, event, raw)`` in merged order through ``flt``; its checks run at the first step.

    The logs stay open while the iterator runs and close when it ends or is closed.
    """
    flt = flt or EventFilter()
    with opened_readonly(check_data_dir(data)) as logs:
        flt.check_against(logs)
        update = None
        if progress is not None:
            progress.set_total(flt.through if flt.through is not None else total_events(logs))
            update = progress.update_to
        yield from scan(logs, flt, progress=update)


def block_history(
    data: str | os.PathLike[str],
    block_id: str,
    *,
    after: int = 0,
    through: int | None = None,
    exact: bool = False,
    progress: Progress | None = None,
    base_progress: Progress | None = None,
) -> Iterator[HistoryEntry]:
    """Stream every event that touched ``block_id`` (after position ``after``, through ``through``), oldest first.

    ``exact`` folds every event through the engine (replay's cost) instead of
    reading only the events that name the block. A block no event names is
    ``BlockNotFound`` once the scan ends. ``base_progress`` reports the replay
    up to ``after``, ``progress`` the scan.
    """
    block_id = block_id.strip()
    if not block_id:
        raise InvalidArgument("BLOCK_ID must not be empty")
    data_dir = check_data_dir(data)
    flt = EventFilter(after=after, through=through)
    with opened_readonly(data_dir) as logs:
        flt.check_against(logs)
        start = None
        initial = None
        ws = None
        if flt.after:
            base = replay_data_dir(data_dir, until=flt.after, progress=base_progress)
            start = (base.position, base.heads)
            initial, ws = state_of(base.ws.blocks.get(block_id)), base.ws
        tracker: BlockTracker | ExactTracker = (
            ExactTracker(block_id, ws) if exact else BlockTracker(block_id, initial)
        )
        total = flt.through if flt.through is not None else total_events(logs)
        update = None
        if progress is not None:
            progress.set_total(total - flt.after)
            update = progress.update_to
        feed = tracker.feed
        count = 0
        for position, event, raw in scan(
            logs, EventFilter(through=flt.through), progress=update, start=start
        ):
            entry = feed(position, event, raw)
            if entry is not None:
                count += 1
                yield entry
        if not count and not tracker.seen:
            where = f" in positions {flt.after}..{total}" if flt.after or flt.through else ""
            raise BlockNotFound(f"block {block_id} not found: no event names it{where}")
