"""``oplog watch``: the auto-sync daemon.

It watches, with watchfiles, this device's log folder ``<data>/devices/<id>/``
(new commits) and the cloud folder ``<remote>/<cloud>/`` (other devices'
manifests and ``EPOCH``), and syncs after a debounce window: at most one sync at
a time, exponential back-off after failures, a periodic sync as a safety net.
When to sync is decided by the pure schedule in ``oplog/autosync.py``; this
module is the edge around it: the clock, the watcher thread, the sync worker
thread, signals and the log.

Each sync goes through ``oplog serve`` when one holds the data directory
(``PerformSync``, ``tools/server_sync.py``), else it opens the data directory
itself — taking the writer's lock only for that sync (a bounded wait), so
``oplog apply`` works beside the daemon.

The daemon's own writes do not start syncs: changes under this device's folder
on the remote are never looked at; a local change seen during a sync run by the
daemon is checked when that sync ends, and one seen later only counts when the
local log differs from how that sync left it (its files' names, sizes, times —
or, through a server, ``GetSyncInfo``'s pending events); a remote change only
counts when another device's manifest or ``EPOCH`` differs from what it was just
before the last sync started. So a sync that changes nothing triggers no other.

SIGTERM/SIGINT: stop watching, start no new sync, let one in flight finish
(its retry waits are cut short, which abandons it at a safe point: a sync is
crash-safe, see docs/sync.md) for up to ``--stop-wait`` seconds, exit 0.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from oplog.autosync import AutoSync, Schedule
from oplog.errors import InvalidArgument, OplogError, SyncAbandoned

__all__ = [
    "register",
    "run",
    "WatchConfig",
    "Watcher",
    "SyncOutcome",
    "local_fingerprint",
    "remote_fingerprint",
]

DEFAULT_REMOTE = "./oplog-remote"
DEFAULT_DEBOUNCE_S = 1.0
DEFAULT_INTERVAL_S = 300.0
DEFAULT_MAX_BACKOFF_S = 300.0
DEFAULT_LOCK_WAIT_S = 10.0
DEFAULT_STOP_WAIT_S = 30.0
#: watchfiles hands over a batch after this much quiet ...
_WATCH_STEP_MS = 15
#: ... or after grouping this long, whichever comes first (keeps the added latency under 100 ms).
_WATCH_GROUP_MS = 60
#: watchfiles wakes up this often when nothing happens; its first wake-up means it is watching.
_WATCH_TICK_MS = 500
#: The main loop re-checks at least this often (signals, stop deadline).
_LOOP_TICK_S = 1.0


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Add the ``watch`` subcommand."""
    p = subparsers.add_parser(
        "watch",
        parents=[parent],
        help="the auto-sync daemon: sync when the local log or the remote changes",
        description=(
            "Watch this device's log and the remote folder and sync after --debounce seconds of quiet "
            "(at most one sync at a time, back-off after failures, a periodic sync every --interval "
            "seconds). Through the running oplog serve of --data when there is one, else locally, "
            "holding the writer's lock only while a sync runs. One line per sync on stdout "
            "(--json: JSON lines). SIGTERM/SIGINT stop it; exit code 0."
        ),
    )
    p.add_argument(
        "--remote",
        default=DEFAULT_REMOTE,
        help=f"remote folder (default {DEFAULT_REMOTE}); beside a server it must be the server's --remote",
    )
    p.add_argument(
        "--cloud-name",
        default=None,
        help="folder under the remote (default: the data directory's current one, or main)",
    )
    p.add_argument(
        "--debounce",
        type=float,
        default=DEFAULT_DEBOUNCE_S,
        metavar="SECONDS",
        help=f"quiet time after a change before syncing (default {DEFAULT_DEBOUNCE_S:g})",
    )
    p.add_argument(
        "--max-delay",
        type=float,
        default=None,
        metavar="SECONDS",
        help="sync at most this long after a change even if changes keep coming (default 10 x --debounce)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help=f"periodic sync after this long without one; 0 turns it off (default {DEFAULT_INTERVAL_S:g})",
    )
    p.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="wait after a first failure, doubled after each further one (default 1)",
    )
    p.add_argument(
        "--max-backoff",
        type=float,
        default=DEFAULT_MAX_BACKOFF_S,
        metavar="SECONDS",
        help=f"longest wait between failed attempts (default {DEFAULT_MAX_BACKOFF_S:g})",
    )
    p.add_argument(
        "--lock-wait",
        type=float,
        default=DEFAULT_LOCK_WAIT_S,
        metavar="SECONDS",
        help=f"how long a sync waits for another local writer (default {DEFAULT_LOCK_WAIT_S:g})",
    )
    p.add_argument(
        "--stop-wait",
        type=float,
        default=DEFAULT_STOP_WAIT_S,
        metavar="SECONDS",
        help=f"on SIGTERM/SIGINT, how long a sync in flight may take to end (default {DEFAULT_STOP_WAIT_S:g})",
    )
    p.add_argument("--token", help="API token for the server (default $OPLOG_TOKEN)")
    p.add_argument("--app", default="oplog-watch", help="the app id sent with each sync")
    p.add_argument(
        "--poll",
        action="store_true",
        help="poll the folders instead of using file-system notifications (network file systems)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also log a line when each sync starts")
    p.set_defaults(func=run)


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """Everything the daemon needs, checked."""

    data: Path
    remote: Path
    cloud_name: str | None
    schedule: Schedule
    lock_wait_s: float = DEFAULT_LOCK_WAIT_S
    stop_wait_s: float = DEFAULT_STOP_WAIT_S
    token: str | None = None
    app: str = "oplog-watch"
    json: bool = False
    verbose: bool = False
    poll: bool = False


@dataclass
class SyncOutcome:
    """How one sync of the daemon went (one log line)."""

    trigger: str
    via: str
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
    #: how the local log looked when the sync let go of it (local syncs)
    local_after: tuple[tuple[str, int, int, int], ...] | None = None

    @property
    def ok(self) -> bool:
        """Whether the sync completed (refused segments included: retrying cannot fix those)."""
        return self.result in ("ok", "refused")


# ---- fingerprints: did anything change since the daemon last looked? ----


def local_fingerprint(folder: Path) -> tuple[tuple[str, int, int, int], ...]:
    """The files of a log folder: name, size, modification time, inode."""
    out: list[tuple[str, int, int, int]] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return ()
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        out.append((entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(out))


def remote_fingerprint(cloud_dir: Path, device_id: str) -> tuple[tuple[str, int, int, int], ...]:
    """Other devices' ``MANIFEST`` files and ``EPOCH`` under a cloud folder: path, size, time, inode.

    ``EPOCH`` counts only when another device wrote it (its ``device_id``; a force-push):
    the initial epoch (no writer) that any device's first sync creates, or one this
    device wrote, is no news.
    """
    paths = [
        Path(e.path) / "MANIFEST"
        for e in _scandir(cloud_dir / "devices")
        if e.name != device_id and e.is_dir(follow_symlinks=False)
    ]
    epoch = cloud_dir / "EPOCH"
    try:
        writer = json.loads(epoch.read_bytes()).get("device_id")
    except (OSError, ValueError, AttributeError):
        writer = None
    if writer and writer != device_id:
        paths.append(epoch)
    out: list[tuple[str, int, int, int]] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path.relative_to(cloud_dir)), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(out))


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


# ---- the daemon ----


class Watcher:
    """The ``oplog watch`` daemon: ``run()`` until ``request_stop()`` (or a signal)."""

    def __init__(
        self,
        config: WatchConfig,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """Prepare (nothing runs until ``run``); ``out`` gets sync lines, ``err`` status lines."""
        self.config = config
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._mono = monotonic
        self._wall = wall
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._watch_stop = threading.Event()
        self._abandon = threading.Event()
        self._ready = threading.Event()
        self._stop_signal: int | None = None
        self._stop_requests = 0
        self.device_id = ""
        self.local_dir = Path()
        self.cloud_name = ""
        self.cloud_dir = Path()
        # What the daemon knows about its own last sync (main thread only).
        self._running_via = ""
        self._remote_before: tuple[tuple[str, int, int, int], ...] | None = None
        self._warned_remote = False
        self._local_quiet: Callable[[], bool] | None = None
        self._local_seen_while_running = False

    # ---- start and stop ----

    def request_stop(self, signum: int | None = None) -> None:
        """Stop soon; a second request stops at once (safe in a signal handler: the queue's put is reentrant)."""
        if self._stop_signal is None:
            self._stop_signal = signum if signum is not None else 0
        self._stop_requests += 1
        self._events.put(("stop",))

    def _prepare(self) -> None:
        """Find (or create) the device id and the two folders to watch."""
        from oplog.identity import DEVICE_FILE
        from oplog.sync import DEFAULT_CLOUD, check_cloud_name, load_state
        from oplog.tools.discover import find_server

        data = self.config.data
        explicit_cloud = check_cloud_name(self.config.cloud_name) if self.config.cloud_name else None
        if data.exists() and not data.is_dir():
            raise InvalidArgument(f"{data} is not a directory")
        device_file = data / DEVICE_FILE
        if not device_file.is_file():
            if find_server(data) is not None:
                raise OplogError(f"{data} has a server but no {DEVICE_FILE} file")
            from oplog.store import Store, StoreOptions

            # First use: create the data directory (and its device id) as any writer would.
            Store.open(data, options=StoreOptions(lock_timeout_s=self.config.lock_wait_s)).close()
        try:
            self.device_id = device_file.read_text().strip()
        except OSError as exc:
            raise OplogError(f"cannot read {device_file}: {exc.strerror or exc}") from None
        self.cloud_name = explicit_cloud or load_state(data).cloud_name or DEFAULT_CLOUD
        local_dir = data / "devices" / self.device_id
        cloud_dir = self.config.remote / self.cloud_name
        try:
            local_dir.mkdir(parents=True, exist_ok=True)
            cloud_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OplogError(f"cannot create {exc.filename}: {exc.strerror or exc}") from None
        # watchfiles reports absolute, resolved paths.
        self.local_dir = local_dir.resolve()
        self.cloud_dir = cloud_dir.resolve()

    def _classify(self, changes: set[tuple[Any, str]]) -> set[str]:
        """Which sources a batch of watchfiles changes touches, the daemon's own remote folder left out."""
        sources: set[str] = set()
        local = str(self.local_dir) + os.sep
        cloud = str(self.cloud_dir) + os.sep
        for _change, path in changes:
            if path.startswith(local):
                sources.add("local")
            elif path.startswith(cloud):
                parts = path[len(cloud) :].split(os.sep)
                if parts == ["EPOCH"] or (
                    len(parts) == 3
                    and parts[0] == "devices"
                    and parts[2] == "MANIFEST"
                    and parts[1] != self.device_id
                ):
                    sources.add("remote")
        return sources

    def _watch(self) -> None:
        """The watcher thread: hand batches of relevant changes to the main loop."""
        import watchfiles

        try:
            for changes in watchfiles.watch(
                self.local_dir,
                self.cloud_dir,
                watch_filter=None,
                debounce=_WATCH_GROUP_MS,
                step=_WATCH_STEP_MS,
                stop_event=self._watch_stop,
                rust_timeout=_WATCH_TICK_MS,
                yield_on_timeout=True,
                raise_interrupt=False,
                force_polling=True if self.config.poll else None,
                poll_delay_ms=100,
            ):
                self._ready.set()
                if changes:
                    sources = self._classify(changes)
                    if sources:
                        self._events.put(("change", sources))
        except Exception as exc:  # noqa: BLE001 - reported by the main loop, never lost in a thread
            self._events.put(("watch-error", f"{type(exc).__name__}: {exc}"))
        finally:
            self._ready.set()

    def run(self) -> int:
        """Watch and sync until stopped; 0 after a clean stop."""
        in_main = threading.current_thread() is threading.main_thread()
        previous: dict[signal.Signals, Any] = {}
        if in_main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda signum, _frame: self.request_stop(signum))
        try:
            return self._run()
        finally:
            self._watch_stop.set()
            self._abandon.set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        self._prepare()
        watcher = threading.Thread(target=self._watch, name="oplog-watchfiles", daemon=True)
        watcher.start()
        while not self._ready.wait(0.1):
            if self._stop_signal is not None:
                return 0
        if not watcher.is_alive():
            _, message = self._events.get()
            raise OplogError(f"cannot watch {self.local_dir} and {self.cloud_dir}: {message}")
        cfg = self.config
        self._status(
            f"watching {self.local_dir} and {self.cloud_dir} (debounce {cfg.schedule.debounce_s:g}s, "
            f"interval {cfg.schedule.interval_s:g}s)"
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
                    self._stopped()
                    # The worker may be inside a write: end the process here, as a crash would
                    # (a sync is crash-safe), rather than let interpreter shutdown race the thread.
                    self.out.flush()
                    self.err.flush()
                    os._exit(0)
                timeout = min(timeout, stop_deadline - now)
            try:
                item = self._events.get(timeout=timeout)
            except queue.Empty:
                continue
            self._handle(item, machine)
        if worker is not None:
            worker.join(timeout=1.0)
        self._stopped()
        return 0

    def _stopped(self) -> None:
        name = signal.Signals(self._stop_signal).name if self._stop_signal else "request"
        self._status(f"stopped on {name}")

    # ---- events ----

    def _handle(self, item: tuple[Any, ...], machine: AutoSync) -> None:
        kind = item[0]
        if kind == "change":
            for source in sorted(item[1]):
                # Already known to be news: only the debounce window moves (no checks to repeat).
                if source in machine.pending or self._counts(source):
                    machine.change(self._mono(), source)
        elif kind == "done":
            outcome: SyncOutcome = item[1]
            self._after_sync(outcome)
            machine.finished(self._mono(), ok=outcome.ok)
            if self._local_seen_while_running:
                self._local_seen_while_running = False
                if not outcome.ok or self._local_quiet is None or not self._local_quiet():
                    machine.change(self._mono(), "local")
            retry_in = None
            if not outcome.ok and not machine.stopping:
                due = machine.due()
                retry_in = None if due is None else max(due - self._mono(), 0.0)
            self._log_sync(outcome, retry_in)
        elif kind == "watch-error":
            raise OplogError(f"watching stopped: {item[1]}")
        # "stop": the loop sees the flag.

    def _counts(self, source: str) -> bool:
        """Whether a change is someone else's (not the daemon's own sync)."""
        if source == "remote":
            return (
                self._remote_before is None
                or remote_fingerprint(self.cloud_dir, self.device_id) != self._remote_before
            )
        if self._running_via:
            # Decided when the sync ends: it may be the sync's own writes.
            self._local_seen_while_running = True
            return False
        return self._local_quiet is None or not self._local_quiet()

    def _after_sync(self, outcome: SyncOutcome) -> None:
        """Remember how the sync left the local log, to tell its own writes from new commits."""
        self._running_via = ""
        if not outcome.ok:
            self._local_quiet = None
        elif outcome.local_after is not None:
            after = outcome.local_after
            folder = self.local_dir
            self._local_quiet = lambda: local_fingerprint(folder) == after
        elif outcome.via.startswith("server "):
            address = outcome.via.removeprefix("server ")
            self._local_quiet = lambda: self._server_idle(address)
        else:
            self._local_quiet = None

    def _server_idle(self, address: str) -> bool:
        """True when the server has no local event left to push and no sync running."""
        import grpc

        from oplog.server.client import Client, token_from_env
        from oplog.v1 import oplog_pb2 as pb

        token = self.config.token if self.config.token is not None else token_from_env()
        try:
            with Client(address, token) as client:
                info = client.stub.GetSyncInfo(pb.GetSyncInfoRequest(), timeout=5)
        except grpc.RpcError:
            return False
        return not info.in_progress and info.pending_local_events == 0

    # ---- one sync ----

    def _start_sync(self, trigger: str) -> threading.Thread:
        from oplog.tools.discover import find_server

        running = find_server(self.config.data)
        if running is not None and running.other_remote(self.config.remote) and not self._warned_remote:
            self._warned_remote = True
            self._status(
                f"the server at {running.address} syncs with {running.remote}, not {self.config.remote}; "
                "changes in the server's remote are only seen by the periodic sync"
            )
        via = f"server {running.address}" if running is not None else "local"
        self._running_via = via
        self._local_seen_while_running = False
        # Taken before the sync reads the remote: a later difference is news.
        self._remote_before = remote_fingerprint(self.cloud_dir, self.device_id)
        outcome = SyncOutcome(trigger=trigger, via=via, started=self._wall())
        if self.config.verbose:
            self._log_start(outcome)
        worker = threading.Thread(target=self._sync, args=(outcome,), name="oplog-watch-sync", daemon=True)
        worker.start()
        return worker

    def _sync(self, outcome: SyncOutcome) -> None:
        """The worker thread: run one sync, fill ``outcome``, hand it back."""
        began = self._mono()
        try:
            if outcome.via == "local":
                self._sync_local(outcome)
            else:
                self._sync_server(outcome, outcome.via.removeprefix("server "))
        except SyncAbandoned:
            outcome.result = "abandoned"
            outcome.error = "stopped while waiting to retry"
        except OplogError as exc:
            outcome.result = "abandoned" if self._abandon.is_set() else "failed"
            outcome.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a failed sync is logged and retried, never lost in a thread
            outcome.result = "failed"
            outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.duration_s = self._mono() - began
        self._events.put(("done", outcome))

    def _sleep_or_abandon(self, seconds: float) -> None:
        if self._abandon.wait(seconds):
            raise SyncAbandoned()

    def _sync_local(self, outcome: SyncOutcome) -> None:
        from oplog.clock import SystemClock
        from oplog.remote import LocalDirRemote
        from oplog.store import Store, StoreOptions
        from oplog.syncrunner import run_sync

        clock = SystemClock()
        store = Store.open(
            self.config.data, options=StoreOptions(lock_timeout_s=self.config.lock_wait_s), clock=clock
        )
        try:
            result = run_sync(
                store,
                LocalDirRemote(self.config.remote),
                clock,
                self.config.app,
                cloud_name=self.cloud_name,
                sleeper=self._sleep_or_abandon,
            )
            # Still holding the lock: nobody else has written since.
            outcome.local_after = local_fingerprint(self.local_dir)
        finally:
            store.close()
        outcome.pushed_segments = result.pushed_segments
        outcome.pulled_segments = result.pulled_segments
        outcome.pulled_events = result.pulled_events
        outcome.archived_segments = result.archived_segments
        outcome.refused = len(result.refused)
        if result.refused:
            outcome.result = "refused"
            outcome.error = "; ".join(result.refused)

    def _sync_server(self, outcome: SyncOutcome, address: str) -> None:
        from oplog.tools.server_sync import sync_through_server

        result = sync_through_server(
            address,
            token=self.config.token,
            app=self.config.app,
            cloud_name=self.cloud_name,
            monotonic=self._mono,
            cancel=self._abandon,
        )
        outcome.pushed_segments = result.pushed_segments
        outcome.pulled_segments = result.pulled_segments
        outcome.pulled_events = None
        outcome.archived_segments = result.archived_segments
        outcome.refused = len(result.refused)
        if result.refused:
            outcome.result = "refused"
            outcome.error = "; ".join(result.refused)

    # ---- output ----

    def _stamp(self, wall: float) -> str:
        return datetime.fromtimestamp(wall).isoformat(timespec="milliseconds")

    def _emit(self, record: dict[str, Any], text: str) -> None:
        line = json.dumps(record, sort_keys=True) if self.config.json else text
        try:
            print(line, file=self.out, flush=True)
        except (BrokenPipeError, ValueError):
            pass  # nobody reads the log any more; keep syncing

    def _log_start(self, outcome: SyncOutcome) -> None:
        record = {
            "event": "start",
            "time": self._stamp(outcome.started),
            "ts": outcome.started,
            "trigger": outcome.trigger,
            "via": outcome.via,
        }
        self._emit(record, f"{record['time']} sync start ({outcome.trigger}) via {outcome.via}")

    def _log_sync(self, outcome: SyncOutcome, retry_in: float | None) -> None:
        record: dict[str, Any] = {
            "event": "sync",
            "time": self._stamp(outcome.started),
            "ts": outcome.started,
            "trigger": outcome.trigger,
            "via": outcome.via,
            "result": outcome.result,
            "pushed_segments": outcome.pushed_segments,
            "pulled_segments": outcome.pulled_segments,
            "pulled_events": outcome.pulled_events,
            "archived_segments": outcome.archived_segments,
            "refused": outcome.refused,
            "duration_s": round(outcome.duration_s, 4),
        }
        if outcome.error:
            record["error"] = outcome.error
        if retry_in is not None:
            record["retry_in_s"] = round(retry_in, 3)
        events = "" if outcome.pulled_events is None else f" ({outcome.pulled_events} events)"
        text = (
            f"{record['time']} sync ({outcome.trigger}) {outcome.result}: pushed {outcome.pushed_segments}, "
            f"pulled {outcome.pulled_segments} segment(s){events}"
            + (f", archived {outcome.archived_segments}" if outcome.archived_segments else "")
            + f" in {outcome.duration_s:.3f}s via {outcome.via}"
            + (f"; {outcome.error}" if outcome.error else "")
            + (f"; retry in {retry_in:.1f}s" if retry_in is not None else "")
        )
        self._emit(record, text)

    def _status(self, message: str) -> None:
        try:
            print(f"oplog watch: {message}", file=self.err, flush=True)
        except (BrokenPipeError, ValueError):
            pass


def config_from_args(args: argparse.Namespace) -> WatchConfig:
    """The daemon's configuration from the command line; ``InvalidArgument`` for bad values."""
    if args.lock_wait < 0 or args.stop_wait < 0:
        raise InvalidArgument("--lock-wait and --stop-wait must be >= 0")
    max_delay = args.max_delay if args.max_delay is not None else 10 * args.debounce
    schedule = Schedule(
        debounce_s=args.debounce,
        max_delay_s=max_delay,
        interval_s=args.interval,
        backoff_s=args.backoff,
        max_backoff_s=args.max_backoff,
    )
    return WatchConfig(
        data=Path(args.data),
        remote=Path(args.remote),
        cloud_name=args.cloud_name,
        schedule=schedule,
        lock_wait_s=args.lock_wait,
        stop_wait_s=args.stop_wait,
        token=args.token,
        app=args.app,
        json=args.json,
        verbose=args.verbose,
        poll=args.poll,
    )


def run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    return Watcher(config_from_args(args)).run()
