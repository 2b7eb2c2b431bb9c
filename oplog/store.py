"""The store: one data directory, opened by its single writer.

It ties the parts together: the writer lock, the device id, every device's
log, the block tree (rebuilt by replay at open), the hybrid logical clock, the
journal, and the request path — validate and resolve (engine), append
(group commit), publish to change-feed subscribers once on disk.

Layout of a data directory::

    DEVICE                 this device's id
    LOCK                   the writer lock
    journal.json           storage order of pulled events (see journal.py)
    devices/<device_id>/   one log per device, the local one included
    checkpoints.db         saved states with the position they cover (checkpoint.py)
    blocks.db              SiYuan's blocks table, kept current (sqlview.py)
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from oplog.checkpoint import CHECKPOINTS_FILE, CheckpointStore, ConflictRecord, capture
from oplog.clock import Clock, IdSource, RandomIds, SystemClock
from oplog.engine import Engine, apply_event
from oplog.errors import (
    BlockNotFound,
    ChangeFeedRewritten,
    NotADataDir,
    OplogError,
    ReadOnlyStore,
    StorageError,
    SubscriberTooSlow,
)
from oplog.eventlog import EventLog
from oplog.hlc import HybridClock
from oplog.identity import DEVICES_DIR, check_data_dir, load_or_create_device_id
from oplog.journal import JOURNAL_FILE, Journal
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


class Subscription:
    """A change-feed reader: catch-up from the journal, then live events; no gap, no duplicate."""

    def __init__(self, store: Store, from_position: int, buffer: int) -> None:
        self._store = store
        self._queue: queue.Queue[pb.CommittedEvent | None] = queue.Queue(maxsize=buffer)
        self._overflowed = False
        self._closed = False
        self._error: OplogError | None = None
        self.position = from_position
        # Registration and the catch-up bound are taken together, so nothing
        # published after the bound is missed and nothing before it repeated.
        with store._publish_lock:
            store._subscribers.append(self)
            self._catchup_end = store._published

    def _offer(self, item: pb.CommittedEvent) -> None:
        if self._overflowed or self._closed or self._error is not None:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._overflowed = True
            self._wake()

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass

    def _end(self, error: OplogError) -> None:
        """End the subscription with ``error`` (the store has already dropped it); a blocked iterator wakes."""
        self._error = error
        self._wake()

    def close(self) -> None:
        """Stop the subscription; a blocked iterator wakes and ends."""
        self._closed = True
        self._store._unsubscribe(self)
        self._wake()

    def __iter__(self) -> Iterator[pb.CommittedEvent]:
        for item in self._store._read_journal(self.position, self._catchup_end):
            if self._error is not None:
                raise self._error
            if self._closed:
                return
            self.position = item.position
            yield item
        while not self._closed:
            if self._error is not None:
                raise self._error
            if self._overflowed and self._queue.empty():
                raise SubscriberTooSlow(
                    f"subscriber fell more than {self._queue.maxsize} events behind; resume from position {self.position}"
                )
            got = self._queue.get()
            if got is None:
                if (self._overflowed or self._error is not None) and not self._closed:
                    continue
                return
            if got.position <= self.position:
                continue
            self.position = got.position
            yield got


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
        self._publish_lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._pending: list[pb.Event] = []
        self._journal = Journal(data_dir / JOURNAL_FILE, device_id)
        if not options.readonly:
            self._journal_unrecorded()
        self._published = self._journal.length(self._local.last_seq)
        self._failed: str | None = None
        self._closed = False
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
        from oplog.journal import Run

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
        with self._publish_lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.close()
        try:
            if self._failed is None and not self.options.readonly:
                with self._write_lock:
                    self._flush_view()
                if self._since_checkpoint:
                    self.checkpoint()
        finally:
            self._view.close()
            if self._view_dir is not None:
                self._view_dir.cleanup()
            self._checkpoints.close()
            for log in self._logs.values():
                log.close()
            if self._lock is not None:
                self._lock.release()

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
        if not self._view.is_current(self.position, digest):
            self._view.rebuild(self.ws, conflicts=self._conflicts, position=self.position, state_hash=digest)

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

    def _flush_view(self) -> None:
        """Write the blocks view's deferred changes as of the state now (holding the write lock)."""
        if self._view.pending:
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
            if self._view.written(ticket):
                return
            try:
                self._flush_view()
            except Exception:
                log.exception("the blocks view could not be updated; the next write or query retries")

    # ---- the write path ----

    def apply(self, request: pb.ApplyRequest) -> pb.ApplyResponse:
        """Validate, resolve, append and apply one request; returns once it is on disk and in the blocks view."""
        if self.options.readonly:
            raise ReadOnlyStore("this store is read-only")
        self._check_usable()
        with self._write_lock:
            self._check_usable()
            applied = self._engine.apply_request(request)
            count = len(applied.transactions)
            events: list[pb.Event] = []
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
                    )
                )
            if events:
                try:
                    last = self._local.append(events)
                except BaseException:
                    applied.rollback()
                    raise
                ticket = self._folded(events, applied.touched, applied.removed, defer_view=True)
                with self._publish_lock:
                    self._pending.extend(events)
        if events:
            try:
                self._local.wait_durable(last)
            except BaseException as exc:
                # The state holds what the disk may not: nothing more can be trusted.
                self._failed = f"the log could not be made durable: {exc}"
                raise StorageError(self._failed) from exc
            if not self._view.written(ticket):
                self._write_view(ticket)
            self._publish(last)
            if self._since_checkpoint >= self.options.checkpoint_every:
                self.checkpoint()
        response = pb.ApplyResponse()
        response.transactions.extend(applied.transactions)
        for event in events:
            response.positions.add(device_id=event.device_id, device_seq=event.device_seq, hlc=event.hlc)
        return response

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")
        if self._failed:
            raise StorageError(self._failed)

    def _publish(self, acknowledged: int) -> None:
        """Hand acknowledged events to subscribers, in journal order.

        With ``always`` durability everything up to ``acknowledged`` is on
        disk; with ``interval`` it is what the caller is told is committed.
        """
        durable = max(self._local.log.durable_seq, acknowledged)
        with self._publish_lock:
            pending = self._pending
            if not pending or pending[0].device_seq > durable:
                return
            if pending[-1].device_seq <= durable:
                ready, self._pending = pending, []
            else:
                ready = [e for e in pending if e.device_seq <= durable]
                self._pending = [e for e in pending if e.device_seq > durable]
            if not self._subscribers:
                # Nobody listens: only the journal position moves (a CommittedEvent copies the event).
                self._published += len(ready)
                return
            for event in ready:
                self._published += 1
                item = pb.CommittedEvent(position=self._published, event=event)
                for sub in self._subscribers:
                    sub._offer(item)

    # ---- the change feed ----

    def journal_length(self) -> int:
        """How many events the journal holds (the newest change-feed position)."""
        with self._publish_lock:
            return self._published

    def subscribe(self, from_position: int = 0, *, buffer: int = 10_000) -> Subscription:
        """A change-feed subscription starting after ``from_position``."""
        self._check_usable()
        if from_position < 0:
            from oplog.errors import InvalidArgument

            raise InvalidArgument("from_position must not be negative")
        return Subscription(self, from_position, buffer)

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._publish_lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

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
        if self._view.pending:
            try:
                with self._write_lock:
                    self._flush_view()
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
        return events

    def after_pull(self, pulled: list[tuple[str, int, int]], events: list[pb.Event]) -> None:
        """Record pulled runs in the journal, fold their events into the state, hand them to subscribers.

        ``events`` are the runs' events in the runs' order. Holding ``sync_lock``.
        """
        if not events:
            return
        from oplog.journal import Run

        self._local.log.sync()
        # Local events already acknowledged but not yet published take their places before the pulled ones.
        self._publish(self._local.last_seq)
        before = self._journal.length(self._local.last_seq)
        self._journal.record([Run(d, a, b) for d, a, b in pulled], self._local.last_seq)
        newest = max(e.hlc for e in events)
        if min(e.hlc for e in events) > self._hlc.last:
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
            self._sync_rebuild()
        self._hlc.observe(newest)
        with self._publish_lock:
            self._published = self._journal.length(self._local.last_seq)
            for position, event in enumerate(events, start=before + 1):
                if not self._subscribers:
                    break
                item = pb.CommittedEvent(position=position, event=event)
                for sub in self._subscribers:
                    sub._offer(item)

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
        from oplog.fsutil import atomic_write
        from oplog.journal import Run

        self._local.log.sync()
        unchanged = self._unchanged_positions(dropped or {})
        heads = {d: log.last_seq for d, log in self._logs.items()}
        runs: list[Run] = []
        for run in self._journal.runs:
            last = min(run.last_seq, heads.get(run.device_id, 0))
            if last >= run.first_seq:
                runs.append(Run(run.device_id, run.first_seq, last))
        body = json.dumps({"runs": [[r.device_id, r.first_seq, r.last_seq] for r in runs]})
        atomic_write(self.data_dir / JOURNAL_FILE, body.encode("utf-8"))
        self._journal = Journal(self.data_dir / JOURNAL_FILE, self.device_id)
        self._sync_rebuild()
        self._hlc.observe(self._max_hlc)
        with self._publish_lock:
            told = self._published
            self._published = self._journal.length(self._local.last_seq)
            self._pending = []
            if unchanged < told:
                error = ChangeFeedRewritten(
                    f"sync archived events the change feed had numbered after position {unchanged}; "
                    f"resubscribe from position {unchanged}",
                    resume_from=unchanged,
                )
                for sub in self._subscribers:
                    sub._end(error)
                self._subscribers = []
            elif self._subscribers:
                for item in self._read_journal(told, self._published):
                    for sub in self._subscribers:
                        sub._offer(item)

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
            return self._published  # nothing numbered so far changed
        # The local events after the recorded runs are the journal's implied tail.
        return position + max(0, first_gone - self._journal.stored_seq(self.device_id) - 1)


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
