"""Asynchronous sync as SiYuan's performSync does it: start in the background, report by events.

The server wires its RPCs here:

* ``PerformSync`` -> ``runner.perform_request(request)`` (returns ``pb.SyncProgress`` at once;
  raises ``SyncInProgress``/``BootSyncInProgress``/``InvalidSyncArgument``);
* ``GetSyncInfo`` -> ``runner.info_message()``;
* ``WatchSync`` -> ``for event in runner.watch(stop): yield event_message(event)``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from oplog.clock import Clock
from oplog.errors import BootSyncInProgress, SyncInProgress
from oplog.remote import Remote
from oplog.snapcheck import check_pending
from oplog.store import Store
from oplog.sync import (
    DEFAULT_RETRY,
    FUTURE_BOUND_MS,
    Emit,
    RetryPolicy,
    SyncParams,
    SyncSession,
    parse_sync_params,
)
from oplog.syncformat import DEFAULT_CLOUD, check_cloud_name
from oplog.syncsnap import DEFAULT_SNAPSHOT_EVERY
from oplog.syncstate import describe_snapshot_check, error_text, load_state, record_error
from oplog.syncsummary import SyncSummary
from oplog.v1 import oplog_pb2 as pb

__all__ = ["SyncRunner", "SyncEventDict", "event_message", "run_sync", "SYNC_COMMANDS"]

SyncEventDict = dict[str, Any]
SYNC_COMMANDS = ("syncBegin", "syncProgress", "syncRetry", "syncFail", "syncEnd", "syncLog")
PREPARING = "准备同步中..."


def event_message(event: SyncEventDict) -> pb.SyncEvent:
    """The wire form of a sync event dict."""
    p = event["progress"]
    return pb.SyncEvent(
        cmd=event["cmd"],
        progress=pb.SyncProgress(current=p["current"], total=p["total"], info=p["info"], msg=p["msg"]),
        message=event["message"],
        time_ms=event["time_ms"],
    )


class SyncRunner:
    """Runs at most one sync at a time on a background thread and tells listeners about it."""

    def __init__(
        self,
        store: Store,
        remote_factory: Callable[[], Remote],
        clock: Clock,
        *,
        cloud_name: str | None = None,
        sleeper: Callable[[float], object] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        future_bound_ms: int = FUTURE_BOUND_MS,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    ) -> None:
        """``remote_factory`` makes the remote for each sync; ``sleeper`` waits out back-offs."""
        self.store = store
        self.remote_factory = remote_factory
        self.clock = clock
        #: the cloud a sync without a cloud name uses (None: the data directory's current one, or main)
        self.cloud_name = check_cloud_name(cloud_name) if cloud_name else None
        self._stop = threading.Event()
        self.sleeper = sleeper or self._stop.wait
        self.retry = retry
        self.future_bound_ms = future_bound_ms
        self.snapshot_every = snapshot_every
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._boot = False
        self._listeners: list[Callable[[SyncEventDict], None]] = []
        self._status = "idle"
        self._last_error = ""
        self._last_result: SyncSummary | None = None
        self._done = threading.Event()
        self._done.set()

    # ---- listeners ----

    def add_listener(self, listener: Callable[[SyncEventDict], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every sync event; returns a function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def watch(self, stop: threading.Event | None = None, *, poll_s: float = 0.5) -> Iterator[SyncEventDict]:
        """Yield sync events as they happen until ``stop`` is set (for ``WatchSync``)."""
        q: queue.Queue[SyncEventDict] = queue.Queue(maxsize=10_000)

        def put(event: SyncEventDict) -> None:
            try:
                q.put_nowait(event)
            except queue.Full:
                pass

        remove = self.add_listener(put)
        try:
            while stop is None or not stop.is_set():
                try:
                    yield q.get(timeout=poll_s)
                except queue.Empty:
                    continue
        finally:
            remove()

    def _emit(self, cmd: str, current: int, total: int, msg: str) -> None:
        if cmd in ("syncProgress", "syncBegin"):
            self._status = msg
        event: SyncEventDict = {
            "cmd": cmd,
            "progress": {"current": current, "total": total, "info": msg, "msg": msg},
            "message": msg,
            "time_ms": self.clock.now_ms(),
        }
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must not break the sync
                pass

    # ---- starting ----

    def perform(
        self,
        app: str,
        *,
        force: bool = False,
        push_mode: str = "",
        push_only: bool = False,
        cloud_name: str | None = None,
    ) -> dict[str, Any]:
        """Start a sync in the background; return the initial progress ``{current,total,info,msg}``."""
        params = parse_sync_params(
            app, force=force, push_mode=push_mode, push_only=push_only, cloud_name=cloud_name
        )
        self._start(params, boot=False)
        return {"current": 0, "total": 0, "info": PREPARING, "msg": ""}

    def perform_request(self, request: pb.PerformSyncRequest) -> pb.SyncProgress:
        """``perform`` for the ``PerformSync`` RPC."""
        progress = self.perform(
            request.app,
            force=request.force,
            push_mode=request.push_mode,
            push_only=request.push_only,
            cloud_name=request.cloud_name or None,
        )
        return pb.SyncProgress(**progress)

    def boot_sync(self, app: str = "oplog-boot") -> None:
        """Start the boot sync; until it ends other syncs get ``BootSyncInProgress``."""
        self._start(parse_sync_params(app, cloud_name=self.cloud_name), boot=True)

    def _start(self, params: SyncParams, *, boot: bool) -> None:
        if params.cloud_name is None and self.cloud_name is not None:
            params = SyncParams(params.app, params.force, params.push_mode, self.cloud_name)
        with self._lock:
            if self._thread is not None:
                raise BootSyncInProgress() if self._boot else SyncInProgress()
            self._boot = boot
            self._done.clear()
            self._thread = threading.Thread(target=self._run, args=(params,), name="oplog-sync", daemon=True)
            self._thread.start()

    def _run(self, params: SyncParams) -> None:
        try:
            self._sync(params)
        finally:
            with self._lock:
                self._thread = None
                self._boot = False
            self._done.set()

    def _sync(self, params: SyncParams) -> SyncSummary | None:
        self._emit("syncBegin", 0, 0, PREPARING)
        session: SyncSession | None = None
        try:
            session = SyncSession(
                self.store,
                self.remote_factory(),
                params,
                self.clock,
                emit=self._emit,
                sleeper=self.sleeper,
                retry=self.retry,
                future_bound_ms=self.future_bound_ms,
                snapshot_every=self.snapshot_every,
            )
            result = session.run()
        except Exception as exc:  # noqa: BLE001 - reported as syncFail, never lost in a thread
            if session is None:
                # A session keeps its own failure in sync.json; one that never started cannot.
                record_error(self.store.data_dir, error_text(exc))
            self._failed(error_text(exc))
            return None
        self._last_result = result
        self._last_error = "; ".join(result.refused)
        self._status = "synced" if not result.refused else f"synced; refused: {self._last_error}"
        self._emit("syncEnd", 1, 1, result.end_message())
        # The state is usable now; a snapshot it started from is checked after (still this sync's thread).
        self._check_snapshot(result)
        return result

    def _check_snapshot(self, result: SyncSummary) -> None:
        try:
            result.snapshot_check = check_pending(self.store, lambda m: self._emit("syncLog", 1, 1, m))
        except Exception as exc:  # noqa: BLE001 - the sync itself is done; a failed check stays pending
            self._emit(
                "syncLog", 1, 1, f"snapshot check did not finish, it runs again next sync: {error_text(exc)}"
            )

    def _failed(self, message: str) -> None:
        self._last_error = message
        self._status = f"sync failed: {message}"
        self._emit("syncFail", 0, 0, message)

    # ---- waiting and asking ----

    @property
    def in_progress(self) -> bool:
        """True while a sync runs."""
        return self._thread is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running sync (if any) to end; False on timeout."""
        return self._done.wait(timeout)

    @property
    def last_result(self) -> SyncSummary | None:
        """What the last successful sync did."""
        return self._last_result

    def run_sync(
        self,
        app: str = "oplog",
        *,
        force: bool = False,
        push_mode: str = "",
        push_only: bool = False,
        cloud_name: str | None = None,
    ) -> SyncSummary:
        """Run one sync on the calling thread; raises what the sync raised (for the CLI and tests)."""
        params = parse_sync_params(
            app, force=force, push_mode=push_mode, push_only=push_only, cloud_name=cloud_name
        )
        if params.cloud_name is None and self.cloud_name is not None:
            params = SyncParams(params.app, params.force, params.push_mode, self.cloud_name)
        with self._lock:
            if self._thread is not None:
                raise BootSyncInProgress() if self._boot else SyncInProgress()
            self._thread = threading.current_thread()
            self._done.clear()
        errors: list[str] = []
        remove = self.add_listener(lambda e: errors.append(e["message"]) if e["cmd"] == "syncFail" else None)
        try:
            result = self._sync(params)
        finally:
            remove()
            with self._lock:
                self._thread = None
            self._done.set()
        if result is None:
            from oplog.errors import RemoteError

            raise RemoteError(errors[-1] if errors else "sync failed")
        return result

    def info(self) -> dict[str, Any]:
        """getSyncInfo: last sync time, status, in progress, cloud, epoch, device, pending, cursors, last error."""
        state = load_state(self.store.data_dir)
        local = self.store.device_log(self.store.device_id)
        last = local.last_seq if local is not None else 0
        return {
            "last_sync_time": state.last_sync_time,
            "status": self._status,
            "in_progress": self.in_progress,
            "cloud_name": self.current_cloud(),
            "epoch": state.epoch or "",
            "device_id": self.store.device_id,
            "pending_local_events": max(0, last - state.pushed_seq),
            "device_cursors": dict(state.cursors),
            "last_error": self._last_error or state.last_error,
            "snapshot_check": describe_snapshot_check(state.snapshot_check),
        }

    def current_cloud(self) -> str:
        """The cloud a sync without a cloud name uses: the server's own, else the data directory's, else main."""
        return self.cloud_name or load_state(self.store.data_dir).cloud_name or DEFAULT_CLOUD

    def info_message(self) -> pb.SyncInfo:
        """``info()`` for the ``GetSyncInfo`` RPC."""
        return pb.SyncInfo(**self.info())

    def close(self, timeout: float | None = 30.0) -> None:
        """Cut back-off waits short and wait for a running sync to end."""
        self._stop.set()
        self.wait(timeout)


def run_sync(
    store: Store,
    remote: Remote,
    clock: Clock,
    app: str = "oplog",
    *,
    force: bool = False,
    push_mode: str = "",
    push_only: bool = False,
    cloud_name: str | None = None,
    sleeper: Callable[[float], object] | None = None,
    emit: Emit | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    future_bound_ms: int = FUTURE_BOUND_MS,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
) -> SyncSummary:
    """One synchronous sync of ``store`` with ``remote`` (tests, CLI), then the check of a snapshot it started from."""
    params = parse_sync_params(
        app, force=force, push_mode=push_mode, push_only=push_only, cloud_name=cloud_name
    )
    result = SyncSession(
        store,
        remote,
        params,
        clock,
        emit=emit,
        sleeper=sleeper,
        retry=retry,
        future_bound_ms=future_bound_ms,
        snapshot_every=snapshot_every,
    ).run()
    say = (lambda m: emit("syncLog", 1, 1, m)) if emit is not None else None
    result.snapshot_check = check_pending(store, say)
    return result
