"""``oplog watch``: the auto-sync daemon's command line.

Parse the flags, wire the edges into the library's :class:`oplog.watcher.Watcher`
(the change source is watchfiles; a sync goes through ``oplog serve`` when one
holds the data directory — ``PerformSync``, ``tools/server_sync.py`` — else
locally, taking the writer's lock only for that sync), turn SIGTERM/SIGINT into
``request_stop`` and print what the watcher reports: one line per sync on stdout
(``--json``: JSON lines), status lines on stderr.

Exit codes: 0 after a stop; 1 with one line when a sync fails permanently (a
refused token, an invalid argument, an unusable remote), when another
``oplog watch`` runs on the data directory, or for a bad flag. When the stop
deadline passes with a sync still in flight, the process ends at once after
flushing its output (``os._exit``), as a crash would — a sync is crash-safe —
rather than let interpreter shutdown race the sync's thread.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from oplog.autosync import Schedule
from oplog.errors import InvalidArgument, OplogError
from oplog.tools.options import (
    DEFAULT_REMOTE,
    add_cloud_name,
    add_lock_wait,
    add_remote,
    add_snapshot_every,
    add_token,
)
from oplog.tools.passphrase import add_passphrase_option, keyring_from
from oplog.watchchanges import local_fingerprint
from oplog.watcher import (
    Batch,
    Status,
    SyncEnded,
    SyncOutcome,
    SyncReport,
    SyncRequest,
    SyncStarted,
    WatchConfig,
    Watcher,
    WatchEvent,
)

if TYPE_CHECKING:
    from oplog.sealed import Keyring
    from oplog.store import Store

__all__ = ["register", "run", "config_from_args", "Printer", "sync_function"]

DEFAULT_DEBOUNCE_S = 1.0
DEFAULT_INTERVAL_S = 300.0
DEFAULT_MAX_BACKOFF_S = 300.0
DEFAULT_LOCK_WAIT_S = 10.0
DEFAULT_STOP_WAIT_S = 30.0
DEFAULT_POLL_S = 30.0


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``watch`` subcommand."""
    p = subparsers.add_parser(
        "watch",
        parents=[parent],
        help="the auto-sync daemon: sync when the local log or the remote changes",
        description=(
            "Watch this device's log and the remote folder (an s3:// or webdav(s):// remote is polled every "
            "--poll seconds) and sync after --debounce seconds of quiet "
            "(at most one sync at a time, back-off after failures, a periodic sync every --interval "
            "seconds). Through the running oplog serve of --data when there is one, else locally, "
            "holding the writer's lock only while a sync runs. One line per sync on stdout "
            "(--json: JSON lines). SIGTERM/SIGINT stop it (exit code 0). A failure retrying cannot fix "
            "(a refused token, an invalid argument, an unusable remote) stops it with one line and exit "
            "code 1; so does a second oplog watch on the same data directory."
        ),
    )
    add_remote(
        p,
        help=(
            f"remote folder, s3:// or webdav(s):// URL (default {DEFAULT_REMOTE}); beside a server it must be "
            "the server's --remote"
        ),
    )
    add_cloud_name(
        p, default=None, help="folder under the remote (default: the data directory's current one, or main)"
    )
    add_snapshot_every(p)
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
    add_lock_wait(p, what="another local writer (a sync waits)")
    p.add_argument(
        "--stop-wait",
        type=float,
        default=DEFAULT_STOP_WAIT_S,
        metavar="SECONDS",
        help=f"on SIGTERM/SIGINT, how long a sync in flight may take to end (default {DEFAULT_STOP_WAIT_S:g})",
    )
    add_token(p)
    p.add_argument("--app", default="oplog-watch", help="the app id sent with each sync")
    add_passphrase_option(p)
    p.add_argument(
        "--poll",
        type=float,
        default=DEFAULT_POLL_S,
        metavar="SECONDS",
        help=(
            "how often to poll a remote that cannot be watched (s3://, webdav(s)://): one listing and one "
            f"HEAD per other device, never contents (default {DEFAULT_POLL_S:g})"
        ),
    )
    p.add_argument(
        "--force-polling",
        action="store_true",
        help="scan the folders instead of using file-system notifications (network file systems)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also log sync starts and the changes that were its own writes",
    )
    p.set_defaults(func=run)


class Printer:
    """Prints what the watcher reports: sync lines on ``out`` (text or JSON), status lines on ``err``."""

    def __init__(self, out: TextIO, err: TextIO, *, as_json: bool, verbose: bool) -> None:
        """``verbose`` also prints sync starts and the batches of changes that were not news."""
        self.out = out
        self.err = err
        self.as_json = as_json
        self.verbose = verbose

    def __call__(self, event: WatchEvent) -> None:
        """Print one event (nothing for those ``verbose`` alone shows, without it)."""
        if isinstance(event, Status):
            self._line(self.err, f"oplog watch: {event.message}")
        elif isinstance(event, SyncStarted) and self.verbose:
            self._log_start(event.outcome)
        elif isinstance(event, SyncEnded):
            self._log_sync(event.outcome, event.retry_in_s)
        elif isinstance(event, Batch) and self.verbose and event.seen - event.counted and not event.deferred:
            ignored = sorted(event.seen - event.counted)
            record = {"event": "ignored", "sources": ignored}
            self._emit(record, f"ignored a change in {', '.join(ignored)}: the daemon's own writes")

    @staticmethod
    def _line(stream: TextIO, text: str) -> None:
        try:
            print(text, file=stream, flush=True)
        except (BrokenPipeError, ValueError):
            pass  # nobody reads the log any more; keep syncing

    def _emit(self, record: dict[str, Any], text: str) -> None:
        self._line(self.out, json.dumps(record, sort_keys=True) if self.as_json else text)

    @staticmethod
    def _stamp(wall: float) -> str:
        return datetime.fromtimestamp(wall).isoformat(timespec="milliseconds")

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
        if outcome.permanent:
            record["permanent"] = True
        if retry_in is not None:
            record["retry_in_s"] = round(retry_in, 3)
        events = "" if outcome.pulled_events is None else f" ({outcome.pulled_events} events)"
        text = (
            f"{record['time']} sync ({outcome.trigger}) {outcome.result}: pushed {outcome.pushed_segments}, "
            f"pulled {outcome.pulled_segments} segment(s){events}"
            + (f", archived {outcome.archived_segments}" if outcome.archived_segments else "")
            + f" in {outcome.duration_s:.3f}s via {outcome.via}"
            + (f"; {outcome.error}" if outcome.error else "")
            + ("; not retried" if outcome.permanent else "")
            + (f"; retry in {retry_in:.1f}s" if retry_in is not None else "")
        )
        self._emit(record, text)


def sync_function(
    config: WatchConfig, *, token: str | None, app: str, keyring: Keyring | None = None
) -> Callable[[SyncRequest], SyncReport]:
    """One sync through ``tools/syncroute.sync_data_dir``: the server the request names, else locally.

    A local sync seals the remote under ``keyring`` (``--passphrase-file``/``$OPLOG_PASSPHRASE``).
    """
    from oplog.tools.syncroute import sync_data_dir

    def sync(request: SyncRequest) -> SyncReport:
        quiet: list[Callable[[], bool]] = []

        def fingerprint(store: Store) -> None:
            # Still holding the writer's lock: nobody else has written since.
            folder = store.device_dir(store.device_id)
            after = local_fingerprint(folder)
            quiet.append(lambda: local_fingerprint(folder) == after)

        result = sync_data_dir(
            config.data,
            remote=config.remote,
            cloud_name=request.cloud_name,
            server=request.server,
            token=token,
            app=app,
            lock_wait_s=config.lock_wait_s,
            sleeper=request.sleep,
            cancel=request.cancel,
            monotonic=time.monotonic,
            while_locked=fingerprint,
            keyring=keyring,
            snapshot_every=config.snapshot_every,
        )
        address = result.server
        return SyncReport.of(result, quiet[0] if quiet else lambda: _server_idle(address, token))

    return sync


def _server_idle(address: str, token: str | None) -> bool:
    """True when the server has no local event left to push and no sync running."""
    import grpc

    from oplog.server.client import Client, token_from_env
    from oplog.v1 import oplog_pb2 as pb

    token = token if token is not None else token_from_env()
    try:
        with Client(address, token) as client:
            info = client.stub.GetSyncInfo(pb.GetSyncInfoRequest(), timeout=5)
    except grpc.RpcError:
        return False
    return not info.in_progress and info.pending_local_events == 0


def config_from_args(args: argparse.Namespace) -> WatchConfig:
    """The daemon's configuration from the command line; ``InvalidArgument`` for bad values."""
    if args.lock_wait < 0 or args.stop_wait < 0:
        raise InvalidArgument("--lock-wait and --stop-wait must be >= 0")
    if not args.poll > 0:
        raise InvalidArgument("--poll must be > 0 seconds")
    from oplog.remoteurl import remote_kind

    # A URL stays a string (Path would fold its "//"); a folder is a path.
    remote: Path | str = Path(args.remote) if remote_kind(args.remote) == "folder" else args.remote
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
        remote=remote,
        cloud_name=args.cloud_name,
        schedule=schedule,
        lock_wait_s=args.lock_wait,
        stop_wait_s=args.stop_wait,
        poll=args.force_polling,
        poll_s=args.poll,
        snapshot_every=args.snapshot_every,
    )


def run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT (0) or a permanent error (``OplogError``: one line, exit 1)."""
    from oplog.clock import SystemClock
    from oplog.tools.discover import find_server

    config = config_from_args(args)
    printer = Printer(sys.stdout, sys.stderr, as_json=args.json, verbose=args.verbose)
    watcher = Watcher(
        config,
        sync=sync_function(config, token=args.token, app=args.app, keyring=keyring_from(args)),
        find_server=find_server,
        monotonic=time.monotonic,
        clock=SystemClock(),
        observe=printer,
    )
    # Signal handlers can only be set from the main thread (a caller may run this on another one).
    in_main = threading.current_thread() is threading.main_thread()
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: watcher.request_stop(signum))
        for sig in ((signal.SIGTERM, signal.SIGINT) if in_main else ())
    }
    try:
        code = watcher.run()
    except OplogError as exc:
        if not watcher.abandoned:
            raise
        print(f"oplog: error: {exc}", file=sys.stderr)  # as the command line would, before os._exit
        code = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if watcher.abandoned:
        # The sync's thread may be inside a write: end here, as a crash would (a sync is crash-safe).
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (BrokenPipeError, ValueError):
                pass
        os._exit(code)
    return code
