"""Fold pulled history beside the live state, so a big pull never freezes the write path.

Folding a large pull (or rewinding for pulled events that sort inside the
local history) takes seconds; done under the store's write lock it stalls
every ``Apply`` for as long. Instead the store (``Store.fold_pulled``) builds
the new state here, from the newest usable checkpoint plus every event, in a
private workspace nobody else sees, while requests keep being applied to the
live state and logged. The local log is read only up to the seq it had when
the pull was recorded (``local_last``): the requests applied later are the
*tail*, kept in memory by the store and folded on top with ``fold_tail``.

Why the tail may go on top: when the pull is recorded the store's hybrid clock
observes the newest pulled hlc under the same lock, so every later local event
sorts after every event the beside fold covers. Folding the tail in seq order
after the replay is therefore exactly the merged order, and the result equals
a fresh replay of all the logs (the tests assert the hashes).

Nothing here touches the live state, the journal, the change feed or the
blocks view: the store swaps the result in under its lock.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from oplog.checkpoint import Checkpoint, CheckpointInfo, CheckpointStore, ConflictRecord, DamagedCheckpoint
from oplog.engine import apply_event
from oplog.errors import StaleBase
from oplog.eventlog import EventLog
from oplog.merge import order_key
from oplog.replay import ReplayResult, base_fits, replay
from oplog.v1 import oplog_pb2 as pb

__all__ = ["fold_ahead", "fold_beside", "fold_prefix", "fold_tail", "switching_often"]

#: The interpreter's thread switch interval while a sync or a fold runs beside requests (default 5 ms).
SWITCH_INTERVAL_S = 0.0001


@contextmanager
def switching_often() -> Iterator[None]:
    """Let the interpreter switch threads every ``SWITCH_INTERVAL_S`` while a sync or fold runs beside requests.

    The sync's checks and the fold are pure Python and hold the GIL; a request
    gives it up at every system call (log write, fsync, each SQLite statement)
    and waits up to the switch interval to get it back each time. During a
    200k-event pull, measured in process: at the default 5 ms Applies reached
    26-101 ms while the segments were checked; 1 ms brought p99 to 18 ms,
    0.2 ms to 12.6 ms, and the fold took the same time at each (1.66 s vs
    1.67 s). 0.1 ms with small view slices: docs/benchmarks-sync.md section 5.
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _sources(
    logs: Mapping[str, EventLog], local_id: str, local_last: int
) -> list[EventLog | Iterable[pb.Event]]:
    """Every foreign log whole, and the local one (read up to ``local_last``: see ``_bounds``)."""
    sources: list[EventLog | Iterable[pb.Event]] = [log for d, log in logs.items() if d != local_id]
    local = logs.get(local_id)
    if local is not None and local_last:
        sources.append(local)
    return sources


def _bounds(local_id: str, local_last: int) -> dict[str, int]:
    """The local log keeps growing meanwhile: a fold here reads it only up to the seq it had.

    Those records are on disk (``Store.after_pull`` syncs the log before it
    records ``local_last``), so a reader process may read them too: a big fold
    beside the state reads its logs in a child (``oplog.replayreader``), as a
    replay does, which also leaves the server's own process more time for requests.
    """
    return {local_id: local_last}


def fold_beside(
    logs: Mapping[str, EventLog],
    local_id: str,
    local_last: int,
    checkpoints: CheckpointStore,
    checkpoint_lock: threading.Lock,
    offered: Sequence[Checkpoint] = (),
) -> ReplayResult:
    """A new state of every event in ``logs`` (the local log's up to ``local_last``), in a fresh workspace.

    Starts from the newest base that is still a prefix of the merged order (as
    ``replay.rewind``): this device's checkpoints, and ``offered`` ones (remote
    snapshots, ``oplog.remotesnap``), newest position first. ``checkpoint_lock``
    guards the checkpoint file, which requests may write to meanwhile.
    """
    with checkpoint_lock:
        infos = checkpoints.list()
    candidates: list[tuple[int, int, CheckpointInfo | Checkpoint]] = [
        (info.position, 1, info) for info in infos
    ]
    # At the same position this device's own checkpoint goes first (kind 1 sorts first, reversed).
    candidates += [(c.position, 0, c) for c in offered]
    candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)
    for _position, _kind, item in candidates:
        info = item.info if isinstance(item, Checkpoint) else item
        if info is None or info.heads.get(local_id, 0) > local_last or not base_fits(info, logs):
            continue
        if isinstance(item, Checkpoint):
            checkpoint = item
        else:
            try:
                with checkpoint_lock:
                    checkpoint = checkpoints.load(item)
            except DamagedCheckpoint as exc:
                warnings.warn(
                    f"checkpoint {item.id} (position {item.position}) is damaged: {exc}; trying an older one",
                    stacklevel=2,
                )
                continue
        sources = _sources(logs, local_id, local_last)
        try:
            return replay(sources, base=checkpoint, bounds=_bounds(local_id, local_last))
        except StaleBase:
            continue
    return replay(_sources(logs, local_id, local_last), bounds=_bounds(local_id, local_last))


def fold_ahead(
    base: Checkpoint,
    pulled: Mapping[str, Sequence[pb.Event]],
    logs: Mapping[str, EventLog],
    local_id: str,
    local_last: int,
) -> ReplayResult:
    """``base`` plus ``pulled`` (per device, events not stored yet, from the base's head on) plus the logs.

    No other base is tried: ``pulled`` holds only what comes after ``base``, so
    without it the result would be wrong. ``StaleBase`` when it is not a prefix.
    """
    sources: list[EventLog | Iterable[pb.Event]] = [list(events) for events in pulled.values()]
    for item in _sources(logs, local_id, local_last):
        if isinstance(item, EventLog) and (item.log.device_id in pulled or not item.last_seq):
            continue  # nothing stored yet for a pulled device
        sources.append(item)
    return replay(sources, base=base, reader=False, bounds=_bounds(local_id, local_last))


def fold_prefix(
    logs: Mapping[str, EventLog],
    local_id: str,
    local_last: int,
    position: int,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """A fold from nothing of the first ``position`` events of the merged order (the local log up to ``local_last``).

    Requests appended later sort after every event present now, so they never
    fall inside the prefix: bounding the local log only keeps the read off a
    file being written.
    """
    return replay(
        _sources(logs, local_id, local_last),
        until_position=position,
        progress=progress,
        bounds=_bounds(local_id, local_last),
    )


def fold_tail(result: ReplayResult, events: Sequence[pb.Event]) -> None:
    """Fold events that sort after everything in ``result`` on top of it, updating hash, heads and position."""
    if not events:
        return
    touched: set[str] = set()
    removed: set[str] = set()
    ws = result.ws
    for event in _in_order(events, result):
        applied = apply_event(ws, event)
        touched |= applied.touched
        removed |= applied.removed
        for c in applied.conflicts:
            record = ConflictRecord(
                event.device_id, event.device_seq, c.op_index, c.action, c.block_id, c.reason
            )
            result.conflicts.append(record)
            result.new_conflicts.append(record)
        result.heads[event.device_id] = event.device_seq
        result.head_hlcs[event.device_id] = event.hlc
    result.state_hash.update(ws, touched, {i for i in removed if i not in ws.blocks})
    result.last_key = order_key(events[-1])
    result.position += len(events)
    result.applied += len(events)


def _in_order(events: Sequence[pb.Event], result: ReplayResult) -> Iterator[pb.Event]:
    """The events, checked to sort after the result and after each other (else the fold would be wrong)."""
    last = result.last_key
    for event in events:
        key = order_key(event)
        if last is not None and key <= last:
            raise StaleBase(
                f"event {event.device_id}#{event.device_seq} sorts before the state it would go on"
            )
        last = key
        yield event
