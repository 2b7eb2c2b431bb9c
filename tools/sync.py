"""``oplog sync``: one sync of the data directory with a remote folder, with a progress bar.

When ``oplog serve`` holds the data directory (``tools/discover.find_server``), or
with ``--server``, the sync runs inside that server (``PerformSync`` + ``WatchSync``,
see ``tools/server_sync.py``) with the server's own remote; otherwise it opens the
data directory itself, waiting up to ``--lock-timeout`` for another local writer.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from oplog.clock import SystemClock
from oplog.errors import InvalidArgument
from oplog.remote import LocalDirRemote
from oplog.store import Store, StoreOptions
from oplog.syncrunner import SyncRunner
from oplog.tools.passphrase import add_passphrase_option, keyring_from, remote_for

__all__ = ["register", "run", "DEFAULT_REMOTE"]

#: The remote folder when none is given (the same as ``oplog serve`` and ``oplog watch``).
DEFAULT_REMOTE = "./oplog-remote"


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``sync`` subcommand."""
    cmd = subparsers.add_parser("sync", parents=[parent], help="one sync with a remote folder")
    cmd.add_argument(
        "--remote",
        default=None,
        help=(
            f"remote folder (default {DEFAULT_REMOTE}); through a server, the server's own --remote is used "
            "and a different one given here is refused"
        ),
    )
    cmd.add_argument(
        "--cloud-name", default=None, help="folder under the remote (default: the current one, or main)"
    )
    cmd.add_argument("--push-mode", default="", help="'' (both ways), force-push or force-pull")
    cmd.add_argument("--force", action="store_true", help="re-list and re-verify the remote")
    cmd.add_argument("--app", default="oplog-cli", help="the app id sent with the sync")
    cmd.add_argument("--lock-timeout", type=float, default=10.0, help="seconds to wait for the writer lock")
    cmd.add_argument(
        "--server",
        metavar="ADDR",
        help="run the sync in this oplog server (host:port); by default a server running on --data is used",
    )
    cmd.add_argument("--token", help="API token for the server (default $OPLOG_TOKEN)")
    add_passphrase_option(cmd)
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run one sync; print a summary (or JSON)."""
    from oplog.sync import parse_sync_params
    from oplog.tools.discover import find_server

    parse_sync_params(args.app, push_mode=args.push_mode, cloud_name=args.cloud_name)
    server = args.server
    if not server:
        running = find_server(args.data)
        if running is not None and args.remote is not None and running.other_remote(args.remote):
            raise InvalidArgument(
                f"the server at {running.address} holds {args.data} and syncs with {running.remote}, "
                f"not {args.remote}; leave out --remote or stop the server"
            )
        server = running.address if running is not None else None
    if server:
        return _run_through_server(args, server)
    args.remote = args.remote or DEFAULT_REMOTE
    keyring = keyring_from(args)  # read before the store opens: a bad --passphrase-file changes nothing
    clock = SystemClock()
    store = Store.open(args.data, options=StoreOptions(lock_timeout_s=args.lock_timeout), clock=clock)
    try:
        runner = SyncRunner(store, lambda: remote_for(LocalDirRemote(args.remote), keyring), clock)
        bar = _ProgressBar.for_args(args)
        if bar is not None:
            runner.add_listener(bar.show_dict)
        try:
            result = runner.run_sync(
                args.app, force=args.force, push_mode=args.push_mode, cloud_name=args.cloud_name
            )
        finally:
            if bar is not None:
                bar.close()
        info = runner.info()
    finally:
        store.close()
    out = {
        "cloud_name": result.cloud_name,
        "epoch": result.epoch,
        "pushed_segments": result.pushed_segments,
        "pulled_segments": result.pulled_segments,
        "pulled_events": result.pulled_events,
        "archived_segments": result.archived_segments,
        "rebased_events": result.rebased_events,
        "swept_temporaries": result.swept_temporaries,
        "refused": result.refused,
        "last_sync_time": info["last_sync_time"],
    }
    return _report(
        args,
        out,
        f"synced with {args.remote}/{result.cloud_name}: pushed {result.pushed_segments}, "
        f"pulled {result.pulled_segments} segment(s) ({result.pulled_events} events)",
    )


class _ProgressBar:
    """A tqdm bar on stderr for sync progress events (only on a terminal, never with --json)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=5, desc="sync", leave=False)

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> _ProgressBar | None:
        return cls() if sys.stderr.isatty() and not args.json else None

    def show(self, cmd: str, current: int, total: int, message: str) -> None:
        if cmd == "syncProgress":
            self.bar.total = max(self.bar.total or 0, total)
            self.bar.n = current
            self.bar.set_postfix_str(message[:40])
        elif cmd == "syncRetry":
            self.bar.write(f"retrying: {message}")

    def show_dict(self, event: dict[str, Any]) -> None:
        """A ``SyncRunner`` listener event."""
        self.show(event["cmd"], event["progress"]["current"], event["progress"]["total"], event["message"])

    def show_message(self, event: Any) -> None:
        """A ``WatchSync`` ``SyncEvent`` message."""
        self.show(event.cmd, event.progress.current, event.progress.total, event.message)

    def close(self) -> None:
        self.bar.close()


def _report(args: argparse.Namespace, out: dict[str, Any], headline: str) -> int:
    """Print a sync's summary (JSON, or a line plus refused segments on stderr); 3 if any was refused."""
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        archived = out["archived_segments"]
        print(headline + (f", archived {archived}" if archived else ""))
        for line in out["refused"]:
            print(f"refused: {line}", file=sys.stderr)
    return 0 if not out["refused"] else 3


def _run_through_server(args: argparse.Namespace, server: str) -> int:
    """The sync run by the server at ``server``; the same summary as a local sync."""
    from oplog.tools.server_sync import sync_through_server

    bar = _ProgressBar.for_args(args)
    try:
        result = sync_through_server(
            server,
            token=args.token,
            app=args.app,
            force=args.force,
            push_mode=args.push_mode,
            cloud_name=args.cloud_name,
            on_event=bar.show_message if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    out = {
        "cloud_name": result.cloud_name,
        "epoch": result.epoch,
        "pushed_segments": result.pushed_segments,
        "pulled_segments": result.pulled_segments,
        # The server's events do not carry these counts.
        "pulled_events": None,
        "archived_segments": result.archived_segments,
        "rebased_events": None,
        "swept_temporaries": None,
        "refused": result.refused,
        "last_sync_time": result.last_sync_time,
        "server": server,
    }
    return _report(
        args,
        out,
        f"synced through server {server} ({result.cloud_name}): pushed {result.pushed_segments}, "
        f"pulled {result.pulled_segments} segment(s)",
    )
