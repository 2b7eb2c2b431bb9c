"""Deterministic replay: fold every device's events in the merged order into a workspace.

The merged order is ``(hlc, device_id, device_seq)`` (``oplog.merge``); the
fold streams through a k-way merge, so memory grows with the state and the
number of devices, never with the number of events. ``replay`` starts from
nothing or from a *base* — a loaded checkpoint or an earlier result — and reads
each device's log from just after the base's head. ``rewind`` is start-up and
the sync path for late events: the newest checkpoint that is still a prefix of
the merged order, plus the events after it.

A base is still a prefix of the merged order when every device's log still
holds the event the base names as its head (same hlc) and every event after a
head sorts after the base's last event. Otherwise ``StaleBase`` is raised
before anything is folded, and ``rewind`` tries an older checkpoint. That check
(``prime``) and the ``Base`` protocol live in ``oplog.replaybase``, below both
this module and the reader process (``oplog.replayreader``) that also primes.
"""

from __future__ import annotations

import heapq
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice, takewhile
from typing import Any, cast

from oplog.checkpoint import Checkpoint, CheckpointInfo, CheckpointStore, ConflictRecord, DamagedCheckpoint
from oplog.collector import collector_paused
from oplog.engine import replay_operations
from oplog.errors import InvalidArgument, StaleBase
from oplog.eventlog import EventLog
from oplog.hlc import COUNTER_BITS
from oplog.replaybase import Base, Key, Keyed, prime
from oplog.replayreader import read_merged
from oplog.statehash import StateHash
from oplog.tree import UndoJournal, Workspace
from oplog.v1 import oplog_pb2 as pb

__all__ = [
    "ReplayResult",
    "Base",
    "StaleBase",
    "replay",
    "replay_uses_reader",
    "rewind",
    "base_fits",
    "Sources",
    "READER_MIN_EVENTS",
]

Sources = Mapping[str, EventLog] | Iterable[EventLog | Iterable[pb.Event]]

#: How often (in events) the progress callback is called (a power of two: the fold tests a mask).
PROGRESS_EVERY = 4096
_PROGRESS_MASK = PROGRESS_EVERY - 1


@dataclass
class ReplayResult:
    """The folded state and where in the merged order it stands."""

    ws: Workspace
    state_hash: StateHash
    position: int
    heads: dict[str, int]
    conflicts: list[ConflictRecord]
    head_hlcs: dict[str, int] = field(default_factory=dict)
    last_key: Key | None = None
    #: Events folded by this call (not counting the base).
    applied: int = 0
    #: The checkpoint this result started from, if any.
    checkpoint: CheckpointInfo | None = None
    #: With a base: ids the folded events touched / removed (feed them to ``BlocksView.apply``).
    touched: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    #: Conflicts of the events folded by this call only.
    new_conflicts: list[ConflictRecord] = field(default_factory=list)

    @property
    def max_hlc(self) -> int:
        """The largest hlc folded in (0 when empty): the store's hybrid clock starts after it."""
        return self.last_key[0] if self.last_key else 0


def _keyed(events: Iterable[pb.Event]) -> Iterator[Keyed]:
    for event in events:
        yield event.hlc, event.device_id, event.device_seq, event, b""


def _streams(sources: Sources, base: Base | None, bounds: Mapping[str, int]) -> list[Iterator[Keyed]]:
    """One iterator per device, starting at the base's head event (kept for the check) or at seq 1."""
    heads = base.heads if base is not None else {}
    items: Iterable[Any] = sources.values() if isinstance(sources, Mapping) else sources
    streams: list[Iterator[Keyed]] = []
    for item in items:
        if isinstance(item, EventLog):
            device = item.log.device_id
            streams.append(item.records(max(heads.get(device, 0), 1), bounds.get(device)))
        else:
            streams.append(_keyed(item))
    return streams


def replay(
    sources: Sources,
    *,
    base: Base | None = None,
    until_position: int | None = None,
    until_time_ms: int | None = None,
    progress: Callable[[int], None] | None = None,
    reader: bool | None = None,
    bounds: Mapping[str, int] | None = None,
) -> ReplayResult:
    """Fold every event in merged order (from ``base`` if given) and return the state, hash and heads.

    ``sources``: device ``EventLog``s (a mapping or a list) or per-device
    iterables of events in device order. ``until_position`` stops after the
    first N events of the merged order; ``until_time_ms`` after the last event
    whose hlc physical time is at most t. ``progress(n)`` is called every few
    thousand events with the number folded so far. The base's workspace and
    hash are updated in place (the base is consumed). ``StaleBase`` if the base
    is not a prefix of these logs' merged order.

    ``reader``: read the logs in a child process (``oplog.replayreader``) while
    this one folds — True, False, or None to decide by size (``READER_MIN_EVENTS``
    events to fold from ``EventLog``s, and more than one CPU). Same result either way.

    ``bounds``: device -> the last seq of its log to read (a log still being
    appended to, read only up to where it was: ``oplog.foldbeside``).
    """
    bounds = bounds or {}
    if until_position is not None and until_position < 0:
        raise InvalidArgument("until position must not be negative")
    start = base.position if base is not None else 0
    if base is not None and until_position is not None and until_position < start:
        raise StaleBase(f"the base is at position {start}, past {until_position}")
    ws = base.ws if base is not None else Workspace()
    heads = dict(base.heads) if base is not None else {}
    hlcs = dict(base.head_hlcs) if base is not None else {}
    conflicts = list(base.conflicts) if base is not None else []
    last_key: Key | None = base.last_key if base is not None else None
    track = base is not None
    limit = None if until_position is None else until_position - start
    time_limit = None if until_time_ms is None else ((until_time_ms + 1) << COUNTER_BITS)

    merged: Iterator[Any]
    if _use_reader(reader, sources, base, limit, bounds):
        merged = read_merged(cast("Mapping[str, EventLog] | list[EventLog]", sources), base, bounds)
        events = False
    else:
        streams = prime(_streams(sources, base, bounds), base)
        # Keyed tuples merge without a key function (plain tuple comparison), and give the fold
        # the device, seq and hlc without reading them from the event again.
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        events = True
    if limit is not None:
        merged = islice(merged, limit)
    # One journal for the whole fold: touched/removed ids accumulate (the same union as per-event
    # results, without allocating one per event); conflicts are drained after each event.
    journal = UndoJournal(False)
    if time_limit is not None:
        merged = takewhile(lambda item: item[0] < time_limit, merged)
    with collector_paused():
        count, last = _fold(ws, merged, events, journal, conflicts, heads, hlcs, track, progress)
    if last is not None:
        last_key = last[:3]  # type: ignore[assignment]
    if progress is not None and count % PROGRESS_EVERY:
        progress(count)
    touched = journal.touched if track else set()
    removed = journal.removed if track else set()

    if base is None:
        state_hash = StateHash.of(ws)
    elif len(touched) + len(removed) > len(ws.blocks) // 2:
        state_hash = StateHash.of(ws)
    else:
        state_hash = base.state_hash
        state_hash.update(ws, touched, removed)
    return ReplayResult(
        ws=ws,
        state_hash=state_hash,
        position=start + count,
        heads=heads,
        conflicts=conflicts,
        head_hlcs=hlcs,
        last_key=last_key,
        applied=count,
        checkpoint=getattr(base, "info", None),
        touched=touched,
        removed={i for i in removed if i not in ws.blocks},
        new_conflicts=conflicts[len(base.conflicts) if base is not None else 0 :],
    )


def _fold(
    ws: Workspace,
    merged: Iterator[Any],
    events: bool,
    journal: UndoJournal,
    conflicts: list[ConflictRecord],
    heads: dict[str, int],
    hlcs: dict[str, int],
    track: bool,
    progress: Callable[[int], None] | None,
) -> tuple[int, Keyed | None]:
    """Apply each merged item in turn; return how many were folded and the last one.

    Items are ``(hlc, device_id, seq, event, ...)`` (``events``) or, from the
    reader process, ``(hlc, device_id, seq, operations)``.
    """
    pending = journal.conflicts
    # The newest item per device; heads and hlcs are set from them once, after the loop.
    lasts: dict[str, Any] = {}
    count = 0
    item: Any = None
    for item in merged:
        ops = item[3]
        if events:
            ops = ops.transaction.do_operations
        replay_operations(ws, ops, journal)
        if pending:
            device, seq = item[1], item[2]
            for c in pending:
                conflicts.append(ConflictRecord(device, seq, c.op_index, c.action, c.block_id, c.reason))
            pending.clear()
        lasts[item[1]] = item
        count += 1
        if not count & _PROGRESS_MASK:
            if progress is not None:
                progress(count)
            if not track:
                # Nobody reads them after a full replay: keep memory flat.
                journal.touched.clear()
                journal.removed.clear()
    for device, last in lasts.items():
        heads[device] = last[2]
        hlcs[device] = last[0]
    return count, item


#: Events to fold from which ``replay`` reads the logs in a child process (when there is a second CPU):
#: below this, starting the child (≈ 0.2 s) costs more than it saves.
READER_MIN_EVENTS = 200_000


def replay_uses_reader(sources: Sources, base: Base | None = None, until_position: int | None = None) -> bool:
    """Whether ``replay`` with ``reader=None`` would read these logs in a child process."""
    start = base.position if base is not None else 0
    limit = None if until_position is None else until_position - start
    return _use_reader(None, sources, base, limit, {})


def _use_reader(
    reader: bool | None, sources: Sources, base: Base | None, limit: int | None, bounds: Mapping[str, int]
) -> bool:
    items: Iterable[Any] = sources.values() if isinstance(sources, Mapping) else sources
    logs = list(items) if isinstance(sources, Mapping | list) else []
    if not logs or not all(isinstance(log, EventLog) for log in logs):
        return False  # in-memory event streams: nothing to read
    if reader is not None:
        return reader
    if (os.cpu_count() or 1) < 2 or not sys.executable:
        return False  # nothing to overlap with, or no interpreter to start
    heads = base.heads if base is not None else {}
    pending = sum(
        max(0, bounds.get(log.log.device_id, log.last_seq) - heads.get(log.log.device_id, 0)) for log in logs
    )
    return min(pending, limit if limit is not None else pending) >= READER_MIN_EVENTS


def base_fits(info: CheckpointInfo, logs: Mapping[str, EventLog]) -> bool:
    """Cheap pre-check before loading a checkpoint: every head it names is within its device's log."""
    for device, head in info.heads.items():
        if head and (device not in logs or logs[device].last_seq < head):
            return False
    return True


def rewind(
    logs: Mapping[str, EventLog],
    checkpoints: CheckpointStore | None,
    *,
    at_or_before: int | None = None,
    until_position: int | None = None,
    until_time_ms: int | None = None,
    progress: Callable[[int], None] | None = None,
    warn_missing: bool = True,
) -> ReplayResult:
    """Rebuild from the newest usable checkpoint (at or before ``at_or_before``) plus the events after it.

    Start-up calls it with no position; sync calls it after pulling events that
    sort before events already applied. Checkpoints that are damaged or no
    longer a prefix of the merged order are skipped (damage with a warning);
    with none left it is a full replay.
    """
    limit = at_or_before
    if until_position is not None:
        limit = until_position if limit is None else min(limit, until_position)
    missing = checkpoints is not None and not checkpoints.path.exists()
    infos = checkpoints.list() if checkpoints is not None else []
    for info in infos:
        if limit is not None and info.position > limit:
            continue
        if (
            until_time_ms is not None
            and info.last_key is not None
            and (info.last_key[0] >> COUNTER_BITS) > until_time_ms
        ):
            continue
        if not base_fits(info, logs):
            continue
        assert checkpoints is not None
        try:
            checkpoint: Checkpoint = checkpoints.load(info)
        except DamagedCheckpoint as exc:
            warnings.warn(
                f"checkpoint {info.id} (position {info.position}) in {checkpoints.path} is damaged: {exc}; "
                "trying an older one",
                stacklevel=2,
            )
            continue
        try:
            return replay(
                logs,
                base=checkpoint,
                until_position=until_position,
                until_time_ms=until_time_ms,
                progress=progress,
            )
        except StaleBase:
            continue
    if missing and warn_missing and _has_events(logs):
        assert checkpoints is not None
        warnings.warn(f"no checkpoint file at {checkpoints.path}; replaying every event", stacklevel=2)
    return replay(logs, until_position=until_position, until_time_ms=until_time_ms, progress=progress)


def _has_events(logs: Mapping[str, EventLog]) -> bool:
    return any(log.last_seq for log in logs.values())
