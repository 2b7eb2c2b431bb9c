"""The store: one data directory, opened by its single writer.

It ties the parts together: the writer lock, the device id, every device's
log, the block tree (rebuilt by replay at open), the hybrid logical clock, the
journal, the change feed (``oplog.changefeed``), the window of recent requests
(``oplog.dedupe``) and the request path — validate and resolve (engine),
write the events to the log, fold them into the state, wait for the fsync
(group commit), publish to change-feed subscribers.

A request becomes visible only after its events were written to the log:
a write that fails (a full disk) rolls the request back, so a failed request
is never seen, not even until a restart. While the log cannot be written the
store reports itself unwritable (the server's health turns NOT_SERVING); the
next request, or a probe every ``PROBE_INTERVAL_S``, tries again and clears it
once the disk has room. A failed fsync is final: the store refuses writes
until it is reopened (see docs/reliability.md).

Layout of a data directory::

    DEVICE                 this device's id
    LOCK                   the writer lock
    journal.json           storage order of pulled events (see journal.py)
    devices/<device_id>/   one log per device, the local one included
    checkpoints.db         saved states with the position they cover (checkpoint.py)
    blocks.db              SiYuan's blocks table, kept current (sqlview.py)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from oplog.changefeed import ChangeFeed, Subscription
from oplog.checkpoint import (
    CHECKPOINTS_FILE,
    Checkpoint,
    CheckpointInfo,
    CheckpointStore,
    ConflictRecord,
    DamagedCheckpoint,
    Snapshot,
    capture,
    capture_base,
)
from oplog.clock import Clock, IdSource, RandomIds, SystemClock
from oplog.dedupe import RequestWindow, Seen, reply_of, request_digest
from oplog.engine import Engine, apply_event
from oplog.errors import (
    BlockNotFound,
    NotADataDir,
    ReadOnlyStore,
    StaleBase,
    StorageError,
)
from oplog.eventlog import EventLog
from oplog.foldbeside import fold_ahead, fold_beside, fold_prefix, fold_tail, switching_often
from oplog.hlc import HybridClock
from oplog.identity import DEVICES_DIR, check_data_dir, load_or_create_device_id
from oplog.journal import JOURNAL_FILE, Journal, Run
from oplog.kramdown import plain_text, render_markdown
from oplog.lockfile import DataDirLock
from oplog.merge import merge_events, order_key
from oplog.model import CONTAINER_TYPES
from oplog.replay import ReplayResult, rewind
from oplog.sqlquery import QueryResult, QueryRunner, run_query
from oplog.sqlview import VIEW_FILE, BlocksView
from oplog.statehash import StateHash
from oplog.tree import Node, Workspace, iter_blocks
from oplog.v1 import oplog_pb2 as pb

__all__ = ["Store", "StoreOptions", "Subscription", "DEVICES_DIR", "open_device_logs"]


log = logging.getLogger("oplog.store")

#: While the log cannot be written, how often a probe checks whether the disk has room again.
PROBE_INTERVAL_S = 1.0
#: What the probe writes (and removes): a request that fits in this much will most likely fit in the log.
_PROBE_BYTES = 64 << 10
_PROBE_FILE = ".oplog-space-probe"
#: Pulled events that sort after the state are folded on top under the write lock up to this many
#: (a few ms); more, or any that sort inside the history, are folded beside it (``fold_pulled``).
FOLD_ON_TOP_MAX = 256
#: ``fold_pulled`` folds requests applied meanwhile outside the lock until at most this many remain.
CATCH_UP_MAX = 64
#: Blocks of the view a swap changed, written per hold of the write lock after the swap, while
#: requests are coming in (≈ 1 ms a hold: 64 made a 200k-event pull's Apply p99 3.6-3.8x its no-sync
#: value, 16 2.5-3.0x; bench/sync_latency.py) ...
VIEW_SLICE = 16
#: ... and while none came during the last ``QUIET_SLICES`` slices (a sync on its own: written faster).
VIEW_SLICE_IDLE = 256
QUIET_SLICES = 32
#: Pause between two slices of the view (not a clock read: it only hands the lock over).
SLICE_PAUSE_S = 0.0005


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How a store is opened."""

    durability: str = "always"
    interval_ms: int = 50
    readonly: bool = False
    lock_timeout_s: float = 0.0
    segment_bytes: int = 64 << 20
    #: Events between periodic checkpoints (one is also written on close).
    checkpoint_every: int = 50_000


def open_device_log(folder: Path, device_id: str, *, writable: bool, options: StoreOptions) -> EventLog:
    """Open one device's log; only the local (writable) one uses the store's durability mode."""
    return EventLog.open(
        folder,
        device_id,
        writable=writable,
        durability=options.durability if writable else "always",
        interval_ms=options.interval_ms,
        segment_bytes=options.segment_bytes,
    )


def open_device_logs(
    data_dir: Path, *, writable_id: str | None, options: StoreOptions
) -> dict[str, EventLog]:
    """Open every device log under ``devices/``; only ``writable_id``'s is opened for writing."""
    logs: dict[str, EventLog] = {}
    root = data_dir / DEVICES_DIR
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if writable_id is not None and writable_id not in names:
        names.append(writable_id)
    try:
        for name in names:
            logs[name] = open_device_log(root / name, name, writable=name == writable_id, options=options)
    except BaseException:
        for log in logs.values():
            log.close()
        raise
    return logs


class Store:
    """A data directory opened by its writer; see docs/store-api.md."""

    def __init__(
        self,
        data_dir: Path,
        *,
        lock: DataDirLock | None,
        device_id: str,
        logs: dict[str, EventLog],
        options: StoreOptions,
        clock: Clock,
        ids: IdSource,
    ) -> None:
        """Use ``Store.open``."""
        self.data_dir = data_dir
        self.device_id = device_id
        self.options = options
        self._lock = lock
        self._logs = logs
        self._local = logs[device_id]
        self._clock = clock
        self._ids = ids
        self._write_lock = threading.Lock()
        self._checkpoint_lock = threading.Lock()
        self._journal = Journal(data_dir / JOURNAL_FILE, device_id)
        if not options.readonly:
            self._journal_unrecorded()
        self._feed = ChangeFeed(self._read_journal, self._journal.length(self._local.last_seq))
        self._requests = RequestWindow.from_log(self._local)
        self._failed: str | None = None
        # Why the log cannot be written right now (a full disk), or None; cleared by the next good write.
        self._unwritable: str | None = None
        self._health_listeners: list[Callable[[str | None], None]] = []
        self._probe_stop = threading.Event()
        self._prober: threading.Thread | None = None
        self._closed = False
        # While a pull is folded beside the live state: the local log's seq when it was recorded, and
        # the events of the requests applied since (``fold_pulled`` folds them on top of the new state).
        self._tail: list[pb.Event] | None = None
        self._tail_from = 0
        # Remote snapshots the next fold beside may start from, and the one the last fold did start from.
        self._offered: list[Checkpoint] = []
        self._adopted: CheckpointInfo | None = None
        # Requests that took the write lock so far (the view's slices shrink while they come in).
        self._requests_served = 0
        # The view groups a ``fold_ahead`` swap left for ``drain_view``.
        self._deferred_groups: list[list[str]] = []
        # Blocks a swap changed that the blocks view does not show yet (written in slices after it).
        self._backlog_touched: set[str] = set()
        self._backlog_removed: set[str] = set()
        self.ws = Workspace()
        self.position = 0
        self.heads: dict[str, int] = {}
        self.state_hash = StateHash()
        self._head_hlcs: dict[str, int] = {}
        self._last_key: tuple[int, str, int] | None = None
        self._conflicts: list[ConflictRecord] = []
        self._max_hlc = 0
        self._since_checkpoint = 0
        self._checkpoints = CheckpointStore(data_dir / CHECKPOINTS_FILE, keep=3, readonly=options.readonly)
        # A read-only store writes nothing in the directory (it may be read-only media, or another
        # process's): its view of the state it opened lives in a private temporary file.
        self._view_dir = tempfile.TemporaryDirectory(prefix="oplog-view-") if options.readonly else None
        self._view = BlocksView(
            Path(self._view_dir.name) / VIEW_FILE if self._view_dir else data_dir / VIEW_FILE
        )
        self._rebuild()
        self._hlc = HybridClock(clock, last=self._max_hlc)
        self._engine = Engine(self.ws, clock, ids)

    def _journal_unrecorded(self) -> None:
        """Give change-feed positions to pulled events a crash left out of the journal.

        Sync stores pulled segments first and records their runs in the journal
        after; a crash in between leaves events in the logs (and in the state)
        that no ``Subscribe`` position names. They are recorded now, after every
        recorded event, device by device in id order (they were never published,
        so no reader has seen another order).
        """
        missing = []
        for device, events in sorted(self._logs.items()):
            stored = self._journal.stored_seq(device)
            if device != self.device_id and events.last_seq > stored:
                missing.append(Run(device, stored + 1, events.last_seq))
        if missing:
            log.warning(
                "journal.json lacked %d pulled events (a sync was cut short); they follow its last position",
                sum(run.count for run in missing),
            )
            self._journal.record(missing, self._local.last_seq)

    # ---- opening and closing ----

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        options: StoreOptions | None = None,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        create: bool = True,
    ) -> Store:
        """Open (creating it if asked) the data directory for writing, taking the writer lock; read-only: neither."""
        options = options or StoreOptions()
        path = Path(data_dir)
        if not create or options.readonly:
            check_data_dir(path)
        if path.exists() and not path.is_dir():
            raise NotADataDir(f"{path} is not a directory")
        clock = clock or SystemClock()
        ids = ids or RandomIds(int.from_bytes(os.urandom(8), "big"))
        if options.readonly:
            return cls._open_readonly(path, options=options, clock=clock, ids=ids)
        lock = DataDirLock(path)
        lock.acquire(options.lock_timeout_s)
        try:
            device_id = load_or_create_device_id(path, ids)
            logs = open_device_logs(path, writable_id=device_id, options=options)
            try:
                return cls(
                    path, lock=lock, device_id=device_id, logs=logs, options=options, clock=clock, ids=ids
                )
            except BaseException:
                for log in logs.values():
                    log.close()
                raise
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_readonly(cls, path: Path, *, options: StoreOptions, clock: Clock, ids: IdSource) -> Store:
        """The state of ``path`` as it is now, without the writer's lock, writing nothing there."""
        device_id = load_or_create_device_id(path, ids)  # exists: check_data_dir saw the DEVICE file
        logs = open_device_logs(path, writable_id=None, options=options)
        try:
            if device_id not in logs:  # this device never wrote: an empty log, nothing created
                logs[device_id] = open_device_log(
                    path / DEVICES_DIR / device_id, device_id, writable=False, options=options
                )
            return cls(path, lock=None, device_id=device_id, logs=logs, options=options, clock=clock, ids=ids)
        except BaseException:
            for log in logs.values():
                log.close()
            raise

    def close(self) -> None:
        """Close every log and release the writer lock."""
        if self._closed:
            return
        self._closed = True
        self._probe_stop.set()
        if self._prober is not None:
            self._prober.join()
        self._feed.close()
        try:
            if self._failed is None and not self.options.readonly:
                # Both are derived and rebuilt at the next open if missing: a full disk here is a warning.
                try:
                    with self._write_lock:
                        self._flush_view(backlog=True)
                except (sqlite3.Error, StorageError) as exc:
                    log.warning(
                        "%s was not brought up to date (%s); the next open rebuilds it", VIEW_FILE, exc
                    )
                if self._since_checkpoint:
                    self._try_checkpoint()
        finally:
            self._view.close()
            if self._view_dir is not None:
                self._view_dir.cleanup()
            self._checkpoints.close()
            for device_log in self._logs.values():
                device_log.close()
            if self._lock is not None:
                self._lock.release()

    @property
    def clock(self) -> Clock:
        """The clock the store reads (its injected seam; tests advance a fake one)."""
        return self._clock

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- state ----

    def _rebuild(self) -> None:
        """Rebuild the state from the newest usable checkpoint plus the events after it.

        A damaged checkpoint falls back to an older one or to a full replay
        (with a warning); the blocks view is rebuilt when it does not reflect
        the result.
        """
        result = rewind(self._logs, self._checkpoints, warn_missing=False)
        self._adopt(result)
        self._since_checkpoint = result.applied
        digest = self.state_hash.hexdigest()
        try:
            edited = self._view.edited()
            if edited is not None:
                log.warning(
                    "%s was changed outside oplog (table %s); rebuilding it from the log", VIEW_FILE, edited
                )
            if edited is not None or not self._view.is_current(self.position, digest):
                self._view.rebuild(
                    self.ws, conflicts=self._conflicts, position=self.position, state_hash=digest
                )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot bring {self.data_dir / VIEW_FILE} up to date: {exc}") from exc

    def _adopt(self, result: ReplayResult) -> None:
        """Take a replay result as the live state."""
        self.ws = result.ws
        if hasattr(self, "_engine"):
            self._engine = Engine(self.ws, self._clock, self._ids)
        self.state_hash = result.state_hash
        self.position = result.position
        self.heads = dict(result.heads)
        self._head_hlcs = dict(result.head_hlcs)
        self._last_key = result.last_key
        self._conflicts = list(result.conflicts)
        self._max_hlc = result.max_hlc

    def _folded(
        self,
        events: list[pb.Event],
        touched: set[str],
        removed: set[str],
        conflicts: Sequence[ConflictRecord] = (),
        *,
        defer_view: bool = False,
    ) -> int:
        """Account for events just folded into ``ws`` at the tip: hash, heads, position, view.

        With ``defer_view`` the blocks view is only told what changed; the
        returned ticket goes to ``_write_view`` before the request is
        acknowledged. Otherwise the view is written now.
        """
        self.state_hash.update(self.ws, touched, removed)
        for event in events:
            self.heads[event.device_id] = event.device_seq
            self._head_hlcs[event.device_id] = event.hlc
            self._max_hlc = max(self._max_hlc, event.hlc)
        self._last_key = order_key(events[-1])
        self.position += len(events)
        self._since_checkpoint += len(events)
        self._conflicts.extend(conflicts)
        ticket = self._view.defer(touched, removed, conflicts)
        if not defer_view:
            self._flush_view()
        return ticket

    def _flush_view(self, *, backlog: bool = False) -> None:
        """Write the blocks view's deferred changes as of the state now (holding the write lock).

        With ``backlog`` also every block a swap left unwritten (queries and
        close want the whole state; a request only its own change).
        """
        if backlog and (self._backlog_touched or self._backlog_removed):
            self._view.defer(self._backlog_touched, self._backlog_removed)
            self._backlog_touched, self._backlog_removed = set(), set()
        if not self._view.pending:
            return
        if self._backlog_touched or self._backlog_removed:
            # Not current yet: the view keeps its old position and hash, so a crash now rebuilds it.
            self._view.flush(self.ws)
        else:
            self._view.flush(self.ws, position=self.position, state_hash=self.state_hash.hexdigest())

    def _write_view(self, ticket: int) -> None:
        """Make the blocks view show the change with ``ticket``, before its request is acknowledged.

        Whoever comes first writes everything folded so far, so requests that
        share a group commit mostly share one view write (one SQLite
        transaction; a block touched by several of them computed once). A
        failure is logged, not raised: the request is durable and applied, and
        the changes stay deferred for the next write or query to retry.
        """
        with self._write_lock:
            self._write_view_locked(ticket)

    def _write_view_locked(self, ticket: int) -> None:
        """``_write_view`` for a caller holding the write lock."""
        if self._view.written(ticket):
            return
        try:
            self._flush_view()
        except (sqlite3.Error, StorageError) as exc:
            # One line, no traceback: on a full disk this repeats for every request.
            log.warning("the blocks view could not be updated (%s); the next write or query retries", exc)
        except Exception:
            log.exception("the blocks view could not be updated; the next write or query retries")

    # ---- the write path ----

    def apply(self, request: pb.ApplyRequest) -> pb.ApplyResponse:
        """Validate, resolve, append and apply one request; returns once it is on disk and in the blocks view.

        A retry of a request in the dedupe window (same app, session, reqId
        and body) is answered with the original reply and logs nothing.
        """
        if self.options.readonly:
            raise ReadOnlyStore("this store is read-only")
        self._check_usable()
        digest = request_digest(request)
        seen: Seen | None = None
        events: list[pb.Event] = []
        with self._write_lock:
            self._requests_served += 1
            self._check_usable()
            seen = self._requests.find(request, digest)
            if seen is None:
                applied = self._engine.apply_request(request)
                count = len(applied.transactions)
                seq = self._local.last_seq
                for index, tx in enumerate(applied.transactions):
                    seq += 1
                    events.append(
                        pb.Event(
                            device_id=self.device_id,
                            device_seq=seq,
                            hlc=self._hlc.tick(),
                            req_id=request.req_id,
                            app=request.app,
                            session=request.session,
                            tx_index=index,
                            tx_count=count,
                            time_ms=applied.time_ms,
                            transaction=tx,
                            request_digest=digest if index == 0 else b"",
                        )
                    )
                if events:
                    try:
                        # Written (handed to the OS) before the state changes: a failed write is never seen.
                        last = self._local.append_written(events)
                    except BaseException as exc:
                        applied.rollback()
                        if isinstance(exc, StorageError):
                            raise self._write_failed(exc) from exc
                        raise
                    if self._unwritable is not None:
                        self._set_writable(None)
                    self._requests.add(
                        request.app, request.session, request.req_id, digest, events[0].device_seq, last
                    )
                    ticket = self._folded(events, applied.touched, applied.removed, defer_view=True)
                    self._feed.appended(events)
                    if self._tail is not None:
                        self._tail.extend(events)
        if seen is not None:
            return self._repeat(seen)
        if events:
            self._await_durable(last)
            if not self._view.written(ticket):
                self._write_view(ticket)
            self._feed.acknowledged(max(self._local.log.durable_seq, last))
            if self._since_checkpoint >= self.options.checkpoint_every:
                self._try_checkpoint()
        response = pb.ApplyResponse()
        response.transactions.extend(applied.transactions)
        for event in events:
            response.positions.add(device_id=event.device_id, device_seq=event.device_seq, hlc=event.hlc)
        return response

    def _await_durable(self, last: int) -> None:
        """Wait for the fsync of ``last``; a failure is final (the state holds what the disk may not)."""
        try:
            self._local.wait_durable(last)
        except BaseException as exc:
            self._failed = (
                f"the log could not be made durable ({exc}); restart the server or command: "
                "reopening recovers from what is on disk"
            )
            self._notify_health(self._failed)
            raise StorageError(self._failed) from exc

    def _repeat(self, seen: Seen) -> pb.ApplyResponse:
        """The original reply to a retried request, once its events are durable."""
        self._await_durable(seen.last_seq)
        return reply_of(list(self._local.read(seen.first_seq, seen.last_seq)))

    def _try_checkpoint(self) -> None:
        """A checkpoint that may fail (a full disk) without failing the request that triggered it."""
        try:
            self.checkpoint()
        except (sqlite3.Error, OSError, StorageError) as exc:
            log.warning(
                "checkpoint not written (%s); the next one is tried %d events later",
                exc,
                self.options.checkpoint_every,
            )

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")
        if self._failed:
            raise StorageError(self._failed)

    # ---- health: is the log writable ----

    def _write_failed(self, exc: StorageError) -> StorageError:
        """Record that the log could not be written; the error the caller gets says what to do."""
        if self._local.log.writable and self._local.log.failed is not None:
            why = (
                f"{exc}; the log is unusable until reopened: restart the server or command "
                "(reopening cuts the torn end and recovers)"
            )
            self._failed = why
            self._notify_health(why)
            return StorageError(why)
        why = (
            f"{exc}; the request was not applied. Writes resume by themselves once "
            f"{self.data_dir} has room again (the next request or a probe every {PROBE_INTERVAL_S:g} s retries)"
        )
        self._set_writable(why)
        return StorageError(why)

    def _set_writable(self, why: str | None) -> None:
        """Enter or leave the unwritable state, telling health listeners; start the probe on entry."""
        changed = (why is None) != (self._unwritable is None)
        self._unwritable = why
        if why is not None and (self._prober is None or not self._prober.is_alive()) and not self._closed:
            self._prober = threading.Thread(target=self._probe_loop, name="oplog-space-probe", daemon=True)
            self._prober.start()
        if changed:
            if why is None:
                log.warning("the log is writable again")
            else:
                log.warning("%s", why)
            self._notify_health(why)

    def _notify_health(self, why: str | None) -> None:
        for listener in list(self._health_listeners):
            try:
                listener(why)
            except Exception:
                log.exception("a health listener failed")

    def watch_health(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(reason)`` when the store stops accepting writes, ``listener(None)`` when it recovers."""
        self._health_listeners.append(listener)
        problem = self.health()
        if problem is not None:
            listener(problem)

    def health(self) -> str | None:
        """Why writes are refused right now (full disk, failed fsync), or None when the store is writable."""
        if self._failed:
            return self._failed
        return self._unwritable

    def _probe_loop(self) -> None:
        # Event.wait is a sleep, not a clock read: the core still never reads wall time.
        while not self._probe_stop.wait(PROBE_INTERVAL_S):
            if self._unwritable is None or self._failed is not None:
                return
            if self._probe():
                with self._write_lock:
                    if self._unwritable is not None:
                        self._set_writable(None)
                return

    def _probe(self) -> bool:
        """Whether a small file can be written and synced in the data directory now (it is removed again)."""
        path = self.data_dir / _PROBE_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                data = memoryview(bytes(_PROBE_BYTES))
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        except OSError:
            return False
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass

    # ---- the change feed ----

    def journal_length(self) -> int:
        """How many events the journal holds (the newest change-feed position)."""
        return self._feed.length()

    def subscribe(self, from_position: int = 0, *, buffer: int = 10_000) -> Subscription:
        """A change-feed subscription starting after ``from_position``."""
        self._check_usable()
        return self._feed.subscribe(from_position, buffer=buffer)

    def _read_journal(self, after: int, until: int) -> Iterator[pb.CommittedEvent]:
        """Events at journal positions ``after+1 .. until``, read from the logs."""
        if after >= until:
            return
        current: tuple[str, Iterator[pb.Event]] | None = None
        for position, run, seq in self._journal.entries(after, self._local.last_seq):
            if position > until:
                return
            if current is None or current[0] != run.device_id:
                current = (run.device_id, self._logs[run.device_id].read(seq))
            event = next(current[1])
            yield pb.CommittedEvent(position=position, event=event)

    # ---- checkpoints ----

    def checkpoint(self) -> None:
        """Save the state as a checkpoint (captured under the write lock, written outside it)."""
        with self._write_lock:
            if self._last_key is None:
                return
            snap = capture(
                self.ws,
                self.state_hash,
                position=self.position,
                heads=self.heads,
                head_hlcs=self._head_hlcs,
                last_key=self._last_key,
                conflicts=self._conflicts,
            )
            self._since_checkpoint = 0
        with self._checkpoint_lock:
            self._checkpoints.save(snap)

    # ---- reads ----

    def state(self) -> pb.GetStateResponse:
        """The state hash, block count, per-device heads and merged position."""
        with self._write_lock:
            return pb.GetStateResponse(
                state_hash=self.state_hash.hexdigest(),
                block_count=len(self.ws.blocks),
                device_heads=dict(self.heads),
                position=self.position,
            )

    def query(
        self,
        sql: str,
        args: Sequence[object] = (),
        *,
        max_rows: int = 1000,
        time_budget_s: float = 5.0,
        runner: QueryRunner = run_query,
    ) -> QueryResult:
        """Read-only SQL over the blocks view (see oplog.sqlquery for what is refused); ``runner`` runs it."""
        self._check_usable()
        if self._view.pending or self._backlog_touched or self._backlog_removed:
            try:
                with self._write_lock:
                    self._flush_view(backlog=True)
            except sqlite3.Error as exc:
                raise StorageError(f"the blocks view could not be updated: {exc}") from exc
        return runner(self._view.path, sql, args, max_rows=max_rows, time_budget_s=time_budget_s)

    def conflicts(self) -> list[ConflictRecord]:
        """Operations replay skipped, with why, in merged order."""
        return list(self._conflicts)

    def get_block(self, block_id: str) -> pb.Block:
        """One block as the wire shows it; ``BlockNotFound`` if absent."""
        node = self.ws.get(block_id)
        if node is None:
            raise BlockNotFound(f"block {block_id} not found")
        return block_message(node)

    def get_document(self, doc_id: str) -> list[pb.Block]:
        """A document and its blocks in document order."""
        doc = self.ws.docs.get(doc_id)
        if doc is None:
            raise BlockNotFound(f"document {doc_id} not found")
        return [block_message(node) for node in iter_blocks(doc)]

    # ---- sync support ----
    # Used by oplog.sync. The caller holds ``sync_lock()`` around every method
    # here that changes files or state, so no request is applied meanwhile.

    @contextmanager
    def sync_lock(self) -> Iterator[None]:
        """Hold the write path's lock while sync changes logs and state.

        On the way out (the lock released), a checkpoint is written when the
        state has moved ``checkpoint_every`` events past the last one, as after
        a request: a rebuild from a base that pulled events made stale leaves
        a fresh base for the next one, not the old base or none.
        """
        with self._write_lock:
            yield
        if not self._closed and self._since_checkpoint >= self.options.checkpoint_every:
            self.checkpoint()

    def seal_local(self) -> bool:
        """Seal this device's open segment (sync seals before pushing); True if one was sealed."""
        self._check_usable()
        return self._local.log.seal()

    def new_token(self) -> str:
        """A fresh random token from the store's injected id source (epochs, archive ids)."""
        return self._ids.token(8)

    def device_log(self, device_id: str) -> EventLog | None:
        """The open log of ``device_id`` (the local one included), or None."""
        return self._logs.get(device_id)

    def device_ids(self) -> list[str]:
        """Every device with a log in this data directory."""
        return sorted(self._logs)

    def device_dir(self, device_id: str) -> Path:
        """The folder of ``device_id``'s log."""
        return self.data_dir / DEVICES_DIR / device_id

    def reopen_device_log(self, device_id: str) -> EventLog:
        """Close and reopen one device's log after sync changed its files (holding ``sync_lock``)."""
        old = self._logs.pop(device_id, None)
        if old is not None:
            old.close()
        writable = device_id == self.device_id
        log = open_device_log(self.device_dir(device_id), device_id, writable=writable, options=self.options)
        self._logs[device_id] = log
        if writable:
            self._local = log
        return log

    def refresh_device_log(self, device_id: str) -> EventLog:
        """Take in sealed segments sync added after a foreign log's known ones, reading only those (holding ``sync_lock``)."""
        log = self._logs.get(device_id)
        if log is None or device_id == self.device_id:
            return self.reopen_device_log(device_id)
        try:
            log.log.refresh()
        except StorageError:
            return self.reopen_device_log(device_id)
        return log

    def forget_device_log(self, device_id: str) -> None:
        """Close and drop a foreign device's log whose segments were all archived (holding ``sync_lock``)."""
        if device_id == self.device_id:
            raise StorageError("the local log cannot be forgotten")
        log = self._logs.pop(device_id, None)
        if log is not None:
            log.close()

    def append_rebased(self, originals: list[pb.Event]) -> list[pb.Event]:
        """Re-apply events as new local events (new seq and hlc, same transaction); holding ``sync_lock``."""
        events: list[pb.Event] = []
        seq = self._local.last_seq
        for original in originals:
            seq += 1
            event = pb.Event()
            event.CopyFrom(original)
            event.device_id = self.device_id
            event.device_seq = seq
            event.hlc = self._hlc.tick()
            events.append(event)
        if events:
            last = self._local.append(events)
            self._local.wait_durable(last)
            # The rebased copies carry their requests' digests: retries of them are recognised.
            self._requests = RequestWindow.from_log(self._local)
        return events

    def after_pull(
        self, pulled: list[tuple[str, int, int]], events: list[pb.Event], *, folded: bool = False
    ) -> bool:
        """Record pulled runs in the journal, fold their events into the state, hand them to subscribers.

        ``events`` are the runs' events in the runs' order. Holding ``sync_lock``.
        A few events that sort after the state are folded now; otherwise this
        returns True and the caller, once it released ``sync_lock``, calls
        ``fold_pulled`` (the state lags the logs until then). ``folded``: the state
        already holds them (``fold_ahead``): only the journal, clock and feed learn of them.
        """
        if not events:
            return False
        self._local.log.sync()
        # Local events already acknowledged but not yet published take their places before the pulled ones.
        self._feed.acknowledged(self._local.last_seq)
        self._journal.record([Run(d, a, b) for d, a, b in pulled], self._local.last_seq)
        oldest, newest = _hlc_range(pulled, events)
        beside = False
        if folded:
            pass
        elif self._tail is not None:
            beside = True  # a fold beside is already due: it reads these from the logs too
        elif not self._offered and len(events) <= FOLD_ON_TOP_MAX and oldest > self._hlc.last:
            # Every pulled event sorts after everything applied: fold them on top.
            ordered = list(merge_events([[e] for e in events]))
            touched: set[str] = set()
            removed: set[str] = set()
            conflicts: list[ConflictRecord] = []
            for event in ordered:
                result = apply_event(self.ws, event)
                touched |= result.touched
                removed |= result.removed
                conflicts.extend(
                    ConflictRecord(
                        event.device_id, event.device_seq, c.op_index, c.action, c.block_id, c.reason
                    )
                    for c in result.conflicts
                )
            self._folded(ordered, touched, {i for i in removed if i not in self.ws.blocks}, conflicts)
        else:
            beside = True
            self._tail = []
            self._tail_from = self._local.last_seq
        # Under the same lock as the tail's start: every request applied from now on sorts after
        # every pulled event, which is what lets fold_pulled put the tail on top.
        self._hlc.observe(newest)
        self._feed.pulled(events, self._journal.length(self._local.last_seq))
        return beside

    def fold_pulled(self) -> None:
        """Fold what ``after_pull`` left beside the live state and swap it in (see ``_fold_pulled``)."""
        with switching_often():
            self._fold_pulled()

    def _fold_pulled(self, build: Callable[[dict[str, EventLog], int], ReplayResult] | None = None) -> bool:
        """Fold what ``after_pull`` left beside the live state and swap it in; NOT holding ``sync_lock``.

        The heavy part (a checkpoint plus every event, in a new workspace) runs
        without the write lock, so requests keep being applied meanwhile; they
        are collected as the tail and folded on top of the new state, outside
        the lock until few remain, then under it just before the swap. Any
        failure falls back to a rebuild under the lock (the old way).

        ``build(logs, local_last)`` replaces the fold from the logs (``fold_ahead``);
        then a failure swaps nothing and rebuilds nothing (False), and the blocks
        view is left for ``drain_view``. True when a state was swapped in.
        """
        with self._write_lock:
            if self._tail is None:
                return False
            logs = dict(self._logs)
            local_last = self._tail_from
            offered, self._offered = self._offered, []
        groups: list[list[str]] = []
        snap: Snapshot | None = None
        try:
            if build is not None:
                result = build(logs, local_last)
            else:
                result = fold_beside(
                    logs, self.device_id, local_last, self._checkpoints, self._checkpoint_lock, offered
                )
            # Computed while the new state is private: the view is written in slices of whole
            # top-level subtrees, so a container is rendered once, not once per slice.
            groups = list(_subtrees(result.ws))
            done = 0
            while len(self._tail or ()) - done > CATCH_UP_MAX:
                # Only appended to (under the write lock): a slice up to a length read now is stable.
                tail = self._tail or []
                upto = len(tail)
                fold_tail(result, tail[done:upto])
                done = upto
            if result.applied >= self.options.checkpoint_every and build is None:
                # Captured now, while the new state is private: not under the lock like checkpoint().
                # (Not for a state ahead of its logs: a checkpoint must name what the logs hold.)
                snap = capture_base(result)
        except (StaleBase, StorageError) as exc:
            log.warning("the pulled events could not be folded beside the state (%s); rebuilding", exc)
            result = None
        with self._write_lock:
            try:
                if result is not None:
                    try:
                        fold_tail(result, (self._tail or [])[done:])
                    except StaleBase as exc:
                        log.warning(
                            "the pulled events could not be folded beside the state (%s); rebuilding", exc
                        )
                        result = None
                if result is None:
                    if build is not None:
                        return False  # nothing changed: the caller stores the pull and folds it as usual
                    self._sync_rebuild()
                    snap = None
                else:
                    self._swap(result)
                    base = result.checkpoint
                    self._adopted = base if base is not None and base.source else None
                    if snap is not None:
                        self._since_checkpoint = self.position - snap.position
            finally:
                self._tail = None
        if snap is not None and not self._closed:
            with self._checkpoint_lock:
                self._checkpoints.save(snap)
        if build is not None:
            self._deferred_groups = groups
            return True
        self._drain_view_backlog(groups)
        if not self._closed and self._since_checkpoint >= self.options.checkpoint_every:
            self.checkpoint()
        return True

    def fold_ahead(self, base: Checkpoint, pulled: Mapping[str, Sequence[pb.Event]], newest_hlc: int) -> bool:
        """Swap in ``base`` (a remote snapshot) plus pulled events not stored yet: usable before the history is.

        A new device's first sync (``oplog.syncsnap``): ``pulled`` holds, per
        foreign device, its events from the snapshot's head on, downloaded and
        checked but not stored. The state then runs ahead of the logs until the
        caller has stored every pulled segment and recorded them with
        ``after_pull(..., folded=True)``; a crash in between leaves the logs as
        they were (the next open folds them, the next sync pulls again). Requests
        go on meanwhile and sort after every pulled event (the clock observes
        ``newest_hlc`` first). False, with nothing changed, when ``base`` is not a
        prefix of the merged order here. The blocks view waits for ``drain_view``.
        """
        with self._write_lock:
            if self._tail is not None:
                return False
            self._local.log.flush()  # the fold reads the local log up to here from its files
            self._tail = []
            self._tail_from = self._local.last_seq
            self._hlc.observe(newest_hlc)
        with switching_often():
            return self._fold_pulled(
                lambda logs, local_last: fold_ahead(base, pulled, logs, self.device_id, local_last)
            )

    def drain_view(self) -> None:
        """Write what a ``fold_ahead`` swap changed into the blocks view (in slices, requests in between)."""
        groups, self._deferred_groups = self._deferred_groups, []
        with switching_often():
            self._drain_view_backlog(groups)
        if not self._closed and self._since_checkpoint >= self.options.checkpoint_every:
            self.checkpoint()

    # ---- remote snapshots (oplog.remotesnap) ----

    def offer_bases(self, bases: Sequence[Checkpoint]) -> None:
        """Remote snapshots the next pull's fold may start from (it folds beside even a small pull then)."""
        with self._write_lock:
            self._offered = list(bases)

    def take_adopted(self) -> CheckpointInfo | None:
        """The remote snapshot the last fold beside started from, once; None if it started from this device's own."""
        with self._write_lock:
            adopted, self._adopted = self._adopted, None
            return adopted

    def newest_checkpoint(self) -> Snapshot | None:
        """The newest checkpoint as saved (state bytes and where it stands), not rebuilt; None if there is none."""
        with self._checkpoint_lock:
            for info in self._checkpoints.list():
                try:
                    return self._checkpoints.saved(info)
                except DamagedCheckpoint:
                    continue
        return None

    def fold_prefix(self, position: int, progress: Callable[[int], None] | None = None) -> ReplayResult:
        """A fresh fold, from nothing, of the first ``position`` events of the merged order (requests go on).

        This device's own check of a remote snapshot it started from: what the
        logs alone say the state at that position is.
        """
        with self._write_lock:
            logs = dict(self._logs)
            # In the files up to here: a big fold reads them from another process (oplog.replayreader).
            self._local.log.flush()
            local_last = self._local.last_seq
        with switching_often():
            return fold_prefix(logs, self.device_id, local_last, position, progress)

    def refold_own(self, from_position: int) -> None:
        """Forget every checkpoint at or past ``from_position`` and fold the whole history beside, then swap.

        What a device does when a remote snapshot it started from turns out not
        to match its own fold: everything built on that snapshot goes.
        """
        with self._checkpoint_lock:
            self._checkpoints.drop_from(from_position)
        with self._write_lock:
            if self._tail is None:
                self._local.log.flush()  # the fold reads the local log up to here from its files
                self._tail = []
                self._tail_from = self._local.last_seq
        self.fold_pulled()

    def _drain_view_backlog(self, groups: list[list[str]]) -> None:
        """Write the blocks a swap changed into the view, ``VIEW_SLICE`` per hold of the write lock.

        Requests in between write only their own changes; queries and close
        write whatever is left first (they replace the backlog, only this
        thread shrinks it in place). The view claims the new position only
        once nothing is left. A slice holds whole groups (``_subtrees``): the
        longest hold is about what one edit of the largest top-level block costs.
        """
        next_group = 0
        seen = -1
        quiet = 0
        while True:
            with self._write_lock:
                if self._closed or not (self._backlog_touched or self._backlog_removed):
                    return
                # Small slices while requests come in (each waits for one at most), big ones once none
                # came during the last QUIET_SLICES small ones (≈ 50 ms: a sync on its own).
                quiet = quiet + 1 if self._requests_served == seen else 0
                size = VIEW_SLICE_IDLE if quiet > QUIET_SLICES else VIEW_SLICE
                backlog = self._backlog_touched
                touched: set[str] = set()
                while next_group < len(groups) and len(touched) < size:
                    touched.update(i for i in groups[next_group] if i in backlog)
                    next_group += 1
                if next_group >= len(groups):
                    touched |= backlog  # anything the groups do not name (added after they were taken)
                backlog -= touched
                removed = set(islice(self._backlog_removed, size))
                self._backlog_removed -= removed
                self._view.defer(touched, removed)
                try:
                    self._flush_view()
                except (sqlite3.Error, StorageError) as exc:
                    # Left deferred: the next request, query or close writes it.
                    log.warning(
                        "the blocks view could not be updated (%s); the next write or query retries", exc
                    )
                    self._flush_view_later()
                    return
                seen = self._requests_served
            self._between_slices()

    def _between_slices(self) -> None:
        """Step aside: a released lock is usually taken straight back by the thread that released it."""
        time.sleep(SLICE_PAUSE_S)

    def _flush_view_later(self) -> None:
        """Hand the whole backlog to the view's deferred changes (holding the write lock)."""
        self._view.defer(self._backlog_touched, self._backlog_removed)
        self._backlog_touched, self._backlog_removed = set(), set()

    def _swap(self, result: ReplayResult) -> None:
        """Take a state folded beside the live one; the blocks view gets the blocks that differ (holding the lock)."""
        changed, removed = self.state_hash.differing(result.state_hash)
        same_boxes = self.ws.notebooks == result.ws.notebooks
        old = self._conflicts
        prefix = result.conflicts[: len(old)] == old
        self._adopt(result)
        self._since_checkpoint = result.applied
        digest = self.state_hash.hexdigest()
        if same_boxes and prefix:
            # Written after the swap in slices (_drain_view_backlog), not all under this hold.
            self._backlog_touched |= changed
            self._backlog_removed |= removed
            added = result.conflicts[len(old) :]
            if added:
                self._view.defer((), (), added)
            return
        try:
            # Closed notebooks hide blocks, and conflicts are rows in order: rewrite the view.
            self._view.rebuild(self.ws, conflicts=self._conflicts, position=self.position, state_hash=digest)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot bring {self.data_dir / VIEW_FILE} up to date: {exc}") from exc

    def _sync_rebuild(self) -> None:
        """Rewind after sync changed the logs; the engine is pointed at the new workspace."""
        self._rebuild()

    def after_drop(self, dropped: dict[str, int] | None = None) -> None:
        """Clip the journal to what the logs still hold, rebuild, and tell subscribers (holding ``sync_lock``).

        ``dropped`` maps each device whose segments were archived to the first
        seq that left its log. A subscriber that was handed a position whose
        event changed is ended with ``ChangeFeedRewritten`` (it resubscribes);
        the others get the journal's new events.
        """
        self._local.log.sync()
        unchanged = self._unchanged_positions(dropped or {})
        self._journal.clip({d: log.last_seq for d, log in self._logs.items()})
        self._sync_rebuild()
        self._hlc.observe(self._max_hlc)
        self._requests = RequestWindow.from_log(self._local)
        self._feed.renumbered(self._journal.length(self._local.last_seq), unchanged)

    def _unchanged_positions(self, dropped: dict[str, int]) -> int:
        """How many journal positions still hold the same events once ``dropped`` left the logs."""
        position = 0
        for run in self._journal.runs:
            first_gone = dropped.get(run.device_id)
            if first_gone is not None and first_gone <= run.last_seq:
                return position + max(0, first_gone - run.first_seq)
            position += run.count
        first_gone = dropped.get(self.device_id)
        if first_gone is None:
            return self._feed.length()  # nothing numbered so far changed
        # The local events after the recorded runs are the journal's implied tail.
        return position + max(0, first_gone - self._journal.stored_seq(self.device_id) - 1)


def _hlc_range(pulled: list[tuple[str, int, int]], events: list[pb.Event]) -> tuple[int, int]:
    """The smallest and largest hlc of pulled ``events``, from each run's ends (a device's hlcs only grow)."""
    ends: list[int] = []
    offset = 0
    for _device, first, last in pulled:
        count = last - first + 1
        if count > 0 and offset + count <= len(events):
            ends += (events[offset].hlc, events[offset + count - 1].hlc)
        offset += count
    if offset != len(events) or not ends:  # not runs as described: look at every event
        ends = [e.hlc for e in events]
    return min(ends), max(ends)


def _subtrees(ws: Workspace) -> Iterator[list[str]]:
    """The ids of ``ws`` grouped by document and top-level block (each group in document order)."""
    for doc_id in sorted(ws.docs):
        doc = ws.docs[doc_id]
        yield [doc.id]
        for child in doc.children:
            yield [node.id for node in iter_blocks(child)]


def block_message(node: Node) -> pb.Block:
    """The wire form of one block."""
    root = node.root or node
    if node.type == "d":
        markdown, content = "", node.attrs.get("title", "")
    else:
        markdown = render_markdown([node]) if node.type in CONTAINER_TYPES else node.markdown
        content = plain_text(markdown)
    block = pb.Block(
        id=node.id,
        parent_id=node.parent.id if node.parent is not None else "",
        root_id=root.id,
        box=root.box,
        path=root.path,
        type=node.type,
        subtype=node.subtype,
        markdown=markdown,
        content=content,
        child_ids=[child.id for child in node.children],
    )
    for name in sorted(node.attrs):
        block.attrs.add(name=name, value=node.attrs[name])
    return block
