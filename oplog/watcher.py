"""The auto-sync daemon as a library: :class:`Watcher` watches, classifies, and syncs on change.

``oplog watch`` (``tools/watch.py``) only parses flags, wires the edges in and
prints what this module reports. The daemon watches this device's log folder
``<data>/devices/<id>/`` (new commits) and the cloud folder ``<remote>/<cloud>/``
(other devices' manifests and ``EPOCH``) and syncs after a debounce window; when
to sync is the pure schedule of ``oplog/autosync.py``.

Everything with a side the tests must control comes in from the caller, as
watchfiles fakes its own Rust core in its tests:

* the **change source** (default ``watchfiles.watch``, see ``oplog/watchchanges.py``,
  which also holds the fingerprints and the classification of changes): an
  iterator of batches of ``(change, path)``; its first batch (empty or not)
  means it is watching;
* the **sync function**: one sync for a :class:`SyncRequest` (locally or through
  the server it names), returning a :class:`SyncReport` or raising; :class:`LocalSync`
  is the local one, the edge adds the one through a server;
* the **server finder**: the live ``oplog serve`` holding the data directory, if any
  (it reads ``<data>/SERVER``, an edge file);
* the **clocks**: a monotonic one for the schedule and a wall :class:`~oplog.clock.Clock`
  for the log's time stamps — this module never reads a clock itself;
* the **observer**: every batch, sync start, sync end and status line as a
  :data:`WatchEvent` (the CLI prints them; tests wait on them instead of sleeping).

A remote that is not a folder (``s3://``, ``webdav(s)://``) cannot be watched:
a poller thread asks it every ``poll_s`` seconds for the versions of ``EPOCH``
and the other devices' manifests (``watchchanges.poll_fingerprint``, no
contents); the local folder is still watched, so a commit syncs at once.

The daemon's own writes do not start syncs: changes under this device's folder
on the remote are never looked at; a local change seen while the daemon's sync
runs is checked when that sync ends, and one seen later only counts when the
local log differs from how that sync left it (:attr:`SyncReport.quiet`); a remote
change only counts when another device's manifest or ``EPOCH`` differs from what
it was just before the last sync started. So a sync that changes nothing
triggers no other.

Failures are retried with back-off, except permanent ones (:func:`is_permanent`:
a refused token, an invalid argument, a remote path that cannot be used):
retrying cannot fix those, so :meth:`Watcher.run` ends with that error. One
daemon per data directory: :class:`DaemonLock` (flock on ``<data>/WATCH.LOCK``,
separate from the writer's lock, which a sync takes only while it writes).

Stopping: :meth:`Watcher.request_stop` (the CLI calls it from its signal
handlers) stops watching and starting syncs; a sync in flight gets
``stop_wait_s`` to end (its retry waits are cut short). If it still runs after
that, :meth:`Watcher.run` returns anyway with :attr:`Watcher.abandoned` set and
the thread left running — a sync is crash-safe, so the caller may end the
process there (the CLI does, rather than let interpreter shutdown race the
thread); this module never ends a process.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from oplog.autosync import AutoSync, Schedule
from oplog.clock import Clock
from oplog.errors import (
    CloudKeyError,
    DataDirLocked,
    InvalidArgument,
    NotADataDir,
    OplogError,
    ReadOnlyStore,
    RemoteError,
    StorageError,
    SyncAbandoned,
)
from oplog.lockfile import DataDirLock
from oplog.remote import PollableRemote
from oplog.remoteurl import display_remote, open_remote, remote_kind
from oplog.syncsummary import SyncSummary
from oplog.watchchanges import (
    ChangeSource,
    Fingerprint,
    PollFingerprint,
    classify,
    local_fingerprint,
    poll_fingerprint,
    remote_fingerprint,
    watchfiles_source,
)

__all__ = [
    "ServerRef",
    "ServerFinder",
    "SyncRequest",
    "SyncReport",
    "SyncFunction",
    "LocalSync",
    "SyncOutcome",
    "Status",
    "Batch",
    "SyncStarted",
    "SyncEnded",
    "WatchEvent",
    "is_permanent",
    "DaemonLock",
    "DAEMON_LOCK_FILE",
    "WatchConfig",
    "Watcher",
]

#: The daemon's lock file under the data directory (the writer's is ``LOCK``).
DAEMON_LOCK_FILE = "WATCH.LOCK"
#: The main loop re-checks at least this often (stop requests, the stop deadline).
_LOOP_TICK_S = 1.0

# ---- the edges the daemon is given (the change source: oplog/watchchanges.py) ----


class ServerRef(Protocol):
    """A running server as the daemon needs to know it (``tools/discover.ServerInfo`` is one)."""

    @property
    def address(self) -> str:
        """Where it listens."""
        ...

    @property
    def remote(self) -> str:
        """Its remote folder ("" if unknown)."""
        ...

    def other_remote(self, remote: str | os.PathLike[str]) -> bool:
        """Whether ``remote`` is a folder other than the server's remote."""
        ...


#: The live server holding a data directory, or None.
ServerFinder = Callable[[Path], "ServerRef | None"]


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """One sync the daemon asks for."""

    trigger: str
    #: the server to sync through, or None to sync locally
    server: str | None
    cloud_name: str
    #: set when the daemon stops: a sync following a server stops following it
    cancel: threading.Event

    def sleep(self, seconds: float) -> None:
        """A retry wait that a stop cuts short by raising (pass it to the sync as its sleeper)."""
        if self.cancel.wait(seconds):
            raise SyncAbandoned()


@dataclass
class SyncReport:
    """What one sync did, as the daemon logs it."""

    pushed_segments: int = 0
    pulled_segments: int = 0
    #: None through a server (its events do not carry it)
    pulled_events: int | None = 0
    archived_segments: int = 0
    #: one line per refused segment
    refused: list[str] = field(default_factory=list)
    #: True while the local log holds nothing this sync has not seen (None: unknown, count any change)
    quiet: Callable[[], bool] | None = None

    @classmethod
    def of(cls, summary: SyncSummary, quiet: Callable[[], bool] | None) -> SyncReport:
        """The report of a sync that returned ``summary`` (local or through a server)."""
        return cls(
            pushed_segments=summary.pushed_segments,
            pulled_segments=summary.pulled_segments,
            pulled_events=summary.pulled_events,
            archived_segments=summary.archived_segments,
            refused=list(summary.refused),
            quiet=quiet,
        )


#: Run one sync; raise (an ``OplogError`` for expected failures) when it fails.
SyncFunction = Callable[[SyncRequest], SyncReport]


class LocalSync:
    """The local sync function: open the data directory for this sync only, sync, close."""

    def __init__(
        self,
        data: Path,
        remote: Path | str,
        clock: Clock,
        *,
        lock_wait_s: float,
        app: str,
        keyring: Any = None,
    ) -> None:
        """Sync ``data`` with ``remote`` (a folder or a URL; sealed under ``keyring``, an ``oplog.sealed.Keyring``)."""
        self.keyring = keyring
        self.data = data
        self.remote = remote
        self.clock = clock
        self.lock_wait_s = lock_wait_s
        self.app = app

    def __call__(self, request: SyncRequest) -> SyncReport:
        """One sync; the report's ``quiet`` compares the local log with how the sync left it."""
        from oplog.identity import DEVICES_DIR
        from oplog.remoteurl import open_remote
        from oplog.sealed import guard_remote
        from oplog.store import Store, StoreOptions
        from oplog.syncrunner import run_sync

        store = Store.open(self.data, options=StoreOptions(lock_timeout_s=self.lock_wait_s), clock=self.clock)
        try:
            result = run_sync(
                store,
                guard_remote(open_remote(str(self.remote)), self.keyring),
                self.clock,
                self.app,
                cloud_name=request.cloud_name,
                sleeper=request.sleep,
            )
            # Still holding the writer's lock: nobody else has written since.
            folder = self.data / DEVICES_DIR / store.device_id
            after = local_fingerprint(folder)
        finally:
            store.close()
        return SyncReport.of(result, lambda: local_fingerprint(folder) == after)


# ---- what the daemon reports ----


@dataclass
class SyncOutcome:
    """How one sync of the daemon went (one log line)."""

    trigger: str
    #: ``local`` or ``server ADDRESS``
    via: str
    #: wall time of the start, seconds since the Unix epoch
    started: float
    duration_s: float = 0.0
    #: ok, refused (done, some segments refused), failed, abandoned (stopped mid-way)
    result: str = "ok"
    pushed_segments: int = 0
    pulled_segments: int = 0
    pulled_events: int | None = 0
    archived_segments: int = 0
    refused: int = 0
    error: str = ""
    #: a failure that retrying cannot fix: the daemon stops after it
    permanent: bool = False
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Whether the sync completed (refused segments included: retrying cannot fix those)."""
        return self.result in ("ok", "refused")


@dataclass(frozen=True, slots=True)
class Status:
    """A status line (watching, stopping, a warning)."""

    message: str


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch of changes from the change source: which sources it touched, which counted as news."""

    seen: frozenset[str]
    counted: frozenset[str]
    #: local changes seen while the daemon's own sync ran: decided when it ends
    deferred: bool = False


@dataclass(frozen=True, slots=True)
class SyncStarted:
    """A sync starts."""

    outcome: SyncOutcome


@dataclass(frozen=True, slots=True)
class SyncEnded:
    """A sync ended; what is pending for the next one and when a retry is due."""

    outcome: SyncOutcome
    retry_in_s: float | None
    pending: frozenset[str]


WatchEvent = Status | Batch | SyncStarted | SyncEnded

#: gRPC status names (``error.code.name`` on errors from ``server/status.error_from_rpc``) no retry can fix.
_PERMANENT_CODES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_ARGUMENT", "UNIMPLEMENTED"})
#: Why a remote folder cannot be used, as opposed to a disk that may recover (ENOSPC, EIO...).
_PERMANENT_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP}
)


def is_permanent(exc: BaseException) -> bool:
    """Whether a failed sync cannot succeed by retrying: the daemon stops instead of backing off."""
    code = getattr(exc, "code", None)
    if code is not None and getattr(code, "name", None) in _PERMANENT_CODES:
        return True
    if isinstance(exc, (InvalidArgument, NotADataDir, ReadOnlyStore, CloudKeyError)):
        return True
    if isinstance(exc, RemoteError) and str(exc).startswith("invalid remote path"):
        return True
    cause = exc.__cause__
    return isinstance(exc, RemoteError) and isinstance(cause, OSError) and cause.errno in _PERMANENT_ERRNOS


class DaemonLock(DataDirLock):
    """One daemon per data directory: ``flock`` on ``<data>/WATCH.LOCK``, held while the daemon runs."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """``path`` is the data directory."""
        super().__init__(path)
        self.path = os.path.join(self.data_dir, DAEMON_LOCK_FILE)

    def acquire(self, timeout_s: float = 0) -> None:
        """Take it; ``DataDirLocked`` naming the other daemon's process if one runs."""
        try:
            super().acquire(timeout_s)
        except DataDirLocked:
            try:
                holder = Path(self.path).read_text().strip()
            except OSError:
                holder = ""
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise DataDirLocked(
                f"oplog watch is already running on {self.data_dir} ({who}); one daemon per data directory"
            ) from None


# ---- the daemon ----


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """Everything the daemon needs, checked."""

    data: Path
    #: a folder (watched), or the URL of a remote that is polled (``s3://``, ``webdav(s)://``)
    remote: Path | str
    cloud_name: str | None
    schedule: Schedule
    lock_wait_s: float = 10.0
    stop_wait_s: float = 30.0
    #: watch the folders by polling them (watchfiles' ``force_polling``; network file systems)
    poll: bool = False
    #: how often a remote that cannot be watched is polled
    poll_s: float = 30.0
    #: events between remote snapshots a local sync uploads (``oplog.syncsnap``; 0: none)
    snapshot_every: int = 10_000


class Watcher:
    """The auto-sync daemon: ``run()`` until ``request_stop()`` or a permanent error."""

    def __init__(
        self,
        config: WatchConfig,
        *,
        sync: SyncFunction,
        find_server: ServerFinder,
        monotonic: Callable[[], float],
        clock: Clock,
        changes: ChangeSource = watchfiles_source,
        observe: Callable[[WatchEvent], None] | None = None,
    ) -> None:
        """Prepare (nothing runs until ``run``)."""
        self.config = config
        self._sync_fn = sync
        self._find_server = find_server
        self._mono = monotonic
        self._clock = clock
        self._changes = changes
        self._observe = observe if observe is not None else _ignore
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._watch_stop = threading.Event()
        self._abandon = threading.Event()
        self._ready = threading.Event()
        self._watch_error: str | None = None
        self._fatal: OplogError | None = None
        self._stop_signal: int | None = None
        self._stop_requests = 0
        #: a sync was still running when ``run`` returned (its thread is left behind)
        self.abandoned = False
        self.device_id = ""
        self.local_dir = Path()
        self.cloud_name = ""
        self.cloud_dir = Path()
        #: the remote polled instead of watched (None: a folder, watched)
        self.polled: PollableRemote | None = None
        self._poll_failing = False
        # What the daemon knows about its own last sync (main loop only).
        self._running = False
        self._remote_before: Fingerprint | PollFingerprint | None = None
        self._warned_remote = False
        self._local_quiet: Callable[[], bool] | None = None
        self._local_seen_while_running = False

    # ---- start and stop ----

    @property
    def stop_signal(self) -> int | None:
        """The signal number ``request_stop`` was given (0 without one), None before any request."""
        return self._stop_signal

    def request_stop(self, signum: int | None = None) -> None:
        """Stop soon; a second request stops at once (safe in a signal handler: the queue's put is reentrant)."""
        if self._stop_signal is None:
            self._stop_signal = signum if signum is not None else 0
        self._stop_requests += 1
        self._events.put(("stop",))

    def _prepare(self) -> None:
        """Find (or create) the device id and the two folders to watch."""
        from oplog.identity import DEVICE_FILE, DEVICES_DIR
        from oplog.syncformat import DEFAULT_CLOUD
        from oplog.syncstate import load_state

        data = self.config.data
        explicit_cloud = self._explicit_cloud()
        device_file = data / DEVICE_FILE
        if not device_file.is_file():
            if self._find_server(data) is not None:
                raise NotADataDir(f"{data} has a server but no {DEVICE_FILE} file")
            from oplog.store import Store, StoreOptions

            # First use: create the data directory (and its device id) as any writer would.
            Store.open(
                data, options=StoreOptions(lock_timeout_s=self.config.lock_wait_s), clock=self._clock
            ).close()
        try:
            self.device_id = device_file.read_text().strip()
        except OSError as exc:
            raise StorageError(f"cannot read {device_file}: {exc.strerror or exc}") from None
        self.cloud_name = explicit_cloud or load_state(data).cloud_name or DEFAULT_CLOUD
        local_dir = data / DEVICES_DIR / self.device_id
        polled = remote_kind(str(self.config.remote)) != "folder"
        cloud_dir = Path(self.config.remote) / self.cloud_name
        try:
            local_dir.mkdir(parents=True, exist_ok=True)
            if not polled:
                cloud_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {exc.filename}: {exc.strerror or exc}") from None
        # watchfiles reports absolute, resolved paths.
        self.local_dir = local_dir.resolve()
        if polled:
            remote = open_remote(str(self.config.remote))
            if not isinstance(remote, PollableRemote):
                raise InvalidArgument(f"remote {display_remote(str(self.config.remote))} cannot be polled")
            self.polled = remote
        else:
            self.cloud_dir = cloud_dir.resolve()

    def _explicit_cloud(self) -> str | None:
        """The ``cloud_name`` asked for, checked (``InvalidArgument``), or None."""
        from oplog.syncformat import check_cloud_name

        return check_cloud_name(self.config.cloud_name) if self.config.cloud_name else None

    def _watch(self) -> None:
        """The watcher thread: hand batches of relevant changes to the main loop."""
        folders = [self.local_dir] if self.polled is not None else [self.local_dir, self.cloud_dir]
        try:
            for changes in self._changes(folders, self._watch_stop, self.config.poll):
                self._ready.set()
                if changes:
                    if self.polled is not None:
                        seen = {"local"} if any(_under(p, self.local_dir) for _c, p in changes) else set()
                    else:
                        seen = classify(changes, self.local_dir, self.cloud_dir, self.device_id)
                    self._events.put(("change", frozenset(seen)))
                if self._watch_stop.is_set():
                    return
            if not self._watch_stop.is_set():
                self._watch_failed("the change source ended")
        except Exception as exc:  # noqa: BLE001 - reported by the main loop, never lost in a thread
            self._watch_failed(f"{type(exc).__name__}: {exc}")
        finally:
            self._ready.set()

    def _poll(self) -> None:
        """The poller thread (remotes that cannot be watched): one poll every ``poll_s``, news to the main loop.

        A poll that sees what the last sync saw (or what was already reported) sends
        nothing. A failed poll is reported once per streak and otherwise ignored: the
        periodic sync is what reports and retries remote trouble.
        """
        assert self.polled is not None
        last_sent: PollFingerprint | None = None
        while not self._watch_stop.wait(self.config.poll_s):
            try:
                seen = poll_fingerprint(self.polled, self.cloud_name, self.device_id)
            except OplogError as exc:
                if not self._poll_failing:
                    self._poll_failing = True
                    self._events.put(("poll-error", str(exc)))
                continue
            self._poll_failing = False
            if seen != self._remote_before and seen != last_sent:
                last_sent = seen
                self._events.put(("polled", seen))

    def _watch_failed(self, message: str) -> None:
        self._watch_error = message
        self._events.put(("watch-error", message))

    def run(self) -> int:
        """Watch and sync until stopped (0); a permanent sync failure or a lost watch raises ``OplogError``."""
        data = self.config.data
        # Refused before the daemon lock creates anything.
        if data.exists() and not data.is_dir():
            raise NotADataDir(f"{data} is not a directory")
        self._explicit_cloud()
        lock = DaemonLock(data)
        lock.acquire()
        try:
            return self._run()
        finally:
            self._watch_stop.set()
            self._abandon.set()
            lock.release()

    def _run(self) -> int:
        self._prepare()
        watcher = threading.Thread(target=self._watch, name="oplog-watch-changes", daemon=True)
        watcher.start()
        if self.polled is not None:
            threading.Thread(target=self._poll, name="oplog-watch-poll", daemon=True).start()
        while not self._ready.wait(0.1):
            if self._stop_signal is not None:
                return 0
        where = self._where()
        if self._watch_error is not None and not watcher.is_alive():
            raise OplogError(f"cannot watch {where}: {self._watch_error}")
        cfg = self.config
        self._status(
            f"watching {where} (debounce {cfg.schedule.debounce_s:g}s, interval {cfg.schedule.interval_s:g}s)"
        )
        machine = AutoSync(cfg.schedule, self._mono(), sync_at_start=True)
        stop_deadline: float | None = None
        worker: threading.Thread | None = None
        while True:
            now = self._mono()
            if self._stop_signal is not None and not machine.stopping:
                machine.stop()
                self._watch_stop.set()
                self._abandon.set()
                stop_deadline = now + cfg.stop_wait_s
            decision = machine.next(now)
            if decision.action == "stop":
                break
            if stop_deadline is not None and self._stop_requests > 1:
                stop_deadline = now  # asked twice: do not wait for the sync in flight
            if decision.action == "sync":
                trigger = machine.started(now)
                worker = self._start_sync(trigger)
                continue
            timeout = _LOOP_TICK_S if decision.at is None else min(max(decision.at - now, 0.0), _LOOP_TICK_S)
            if stop_deadline is not None:
                if now >= stop_deadline:
                    self._status(
                        "abandoning the sync in flight (it is crash-safe; the next sync completes it)"
                    )
                    self.abandoned = True
                    return self._end()
                timeout = min(timeout, stop_deadline - now)
            try:
                item = self._events.get(timeout=timeout)
            except queue.Empty:
                continue
            self._handle(item, machine)
        if worker is not None:
            worker.join(timeout=1.0)
        return self._end()

    def _where(self) -> str:
        if self.polled is None:
            return f"{self.local_dir} and {self.cloud_dir}"
        remote = display_remote(str(self.config.remote))
        return f"{self.local_dir}, polling {remote} ({self.cloud_name}) every {self.config.poll_s:g}s"

    def _end(self) -> int:
        """0 after a stop that was asked for; the fatal error if that is what stopped the daemon."""
        if self._fatal is not None:
            raise self._fatal
        self._status(f"stopped on {_signal_name(self._stop_signal)}")
        return 0

    # ---- events ----

    def _handle(self, item: tuple[Any, ...], machine: AutoSync) -> None:
        kind = item[0]
        if kind == "change":
            seen: frozenset[str] = item[1]
            counted: set[str] = set()
            deferred = False
            for source in sorted(seen):
                if source == "local" and self._running and source not in machine.pending:
                    # Decided when the sync ends: it may be the sync's own writes.
                    self._local_seen_while_running = deferred = True
                # Already known to be news: only the debounce window moves (no checks to repeat).
                elif source in machine.pending or self._counts(source):
                    machine.change(self._mono(), source)
                    counted.add(source)
            self._observe(Batch(seen=seen, counted=frozenset(counted), deferred=deferred))
        elif kind == "done":
            outcome: SyncOutcome = item[1]
            quiet: Callable[[], bool] | None = item[2]
            self._running = False
            self._local_quiet = quiet if outcome.ok else None
            machine.finished(self._mono(), ok=outcome.ok)
            if self._local_seen_while_running:
                self._local_seen_while_running = False
                if not outcome.ok or quiet is None or not quiet():
                    machine.change(self._mono(), "local")
            retry_in = None
            if not outcome.ok and not machine.stopping and not outcome.permanent:
                due = machine.due()
                retry_in = None if due is None else max(due - self._mono(), 0.0)
            self._observe(SyncEnded(outcome, retry_in, machine.pending))
            if outcome.permanent:
                raise OplogError(
                    f"sync failed and will not be retried: {outcome.error}"
                ) from outcome.exception
        elif kind == "polled":
            news = self._remote_before is None or item[1] != self._remote_before
            if news:
                machine.change(self._mono(), "remote")
            self._observe(
                Batch(
                    seen=frozenset({"remote"}),
                    counted=frozenset({"remote"} if news else ()),
                    deferred=False,
                )
            )
        elif kind == "poll-error":
            self._status(f"polling the remote failed ({item[1]}); the next sync reports it if it lasts")
        elif kind == "watch-error" and self._fatal is None:
            # Stop as on a request (a sync in flight may end), then raise this.
            self._fatal = OplogError(f"watching stopped: {item[1]}")
            if self._running:
                self._status(f"{self._fatal}; stopping once the sync in flight ends")
            self.request_stop()
        # "stop": the loop sees the flag.

    def _counts(self, source: str) -> bool:
        """Whether a change is someone else's (not the daemon's own sync)."""
        if source == "remote":
            return (
                self._remote_before is None
                or remote_fingerprint(self.cloud_dir, self.device_id) != self._remote_before
            )
        return self._local_quiet is None or not self._local_quiet()

    # ---- one sync ----

    def _start_sync(self, trigger: str) -> threading.Thread:
        running = self._find_server(self.config.data)
        if running is not None and running.other_remote(self.config.remote) and not self._warned_remote:
            self._warned_remote = True
            self._status(
                f"the server at {running.address} syncs with {running.remote}, not {display_remote(str(self.config.remote))}; "
                "changes in the server's remote are only seen by the periodic sync"
            )
        server = running.address if running is not None else None
        via = f"server {server}" if server is not None else "local"
        self._running = True
        self._local_seen_while_running = False
        # Taken before the sync reads the remote: a later difference is news (a polled remote: in the
        # sync's thread, as it costs requests).
        if self.polled is None:
            self._remote_before = remote_fingerprint(self.cloud_dir, self.device_id)
        outcome = SyncOutcome(trigger=trigger, via=via, started=self._clock.now_ms() / 1000)
        self._observe(SyncStarted(outcome))
        request = SyncRequest(
            trigger=trigger, server=server, cloud_name=self.cloud_name, cancel=self._abandon
        )
        worker = threading.Thread(
            target=self._sync, args=(request, outcome), name="oplog-watch-sync", daemon=True
        )
        worker.start()
        return worker

    def _sync(self, request: SyncRequest, outcome: SyncOutcome) -> None:
        """The worker thread: run one sync, fill ``outcome``, hand it back."""
        began = self._mono()
        report: SyncReport | None = None
        try:
            if self.polled is not None:
                try:
                    self._remote_before = poll_fingerprint(self.polled, self.cloud_name, self.device_id)
                except OplogError:
                    self._remote_before = None  # the sync itself says what is wrong
            report = self._sync_fn(request)
        except Exception as exc:  # noqa: BLE001 - a failed sync is logged and retried, never lost in a thread
            outcome.exception = exc
            outcome.error = str(exc) if isinstance(exc, OplogError) else f"{type(exc).__name__}: {exc}"
            if self._abandon.is_set() and isinstance(exc, OplogError):
                outcome.result = "abandoned"
            else:
                outcome.result = "failed"
                outcome.permanent = is_permanent(exc)
        if report is not None:
            outcome.pushed_segments = report.pushed_segments
            outcome.pulled_segments = report.pulled_segments
            outcome.pulled_events = report.pulled_events
            outcome.archived_segments = report.archived_segments
            outcome.refused = len(report.refused)
            if report.refused:
                outcome.result = "refused"
                outcome.error = "; ".join(report.refused)
        outcome.duration_s = self._mono() - began
        self._events.put(("done", outcome, report.quiet if report is not None else None))

    def _status(self, message: str) -> None:
        self._observe(Status(message))


def _under(path: str, folder: Path) -> bool:
    return path.startswith(str(folder) + os.sep)


def _signal_name(signum: int | None) -> str:
    if not signum:
        return "request"
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _ignore(_event: WatchEvent) -> None:
    """The default observer: nobody listens."""
