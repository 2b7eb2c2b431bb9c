"""``oplog sync``: one sync of the data directory with a remote folder, with a progress bar.

Parse, call ``tools/syncroute.sync_data_dir``, print. When ``oplog serve`` holds the
data directory (``tools/discover.find_server``), or with ``--server``, the sync runs
inside that server (``PerformSync`` + ``WatchSync``, see ``tools/server_sync.py``)
with the server's own remote and cloud; otherwise it opens the data directory
itself, waiting up to ``--lock-wait`` for another local writer.
"""

from __future__ import annotations

import argparse
import json
import sys

from oplog.syncsummary import SyncSummary
from oplog.tools.options import (
    DEFAULT_REMOTE,
    add_cloud_name,
    add_lock_wait,
    add_remote,
    add_server,
    add_snapshot_every,
    add_token,
)
from oplog.tools.passphrase import add_passphrase_option, keyring_from

__all__ = ["register", "run", "DEFAULT_REMOTE"]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``sync`` subcommand."""
    cmd = subparsers.add_parser("sync", parents=[parent], help="one sync with a remote folder")
    add_remote(
        cmd,
        default=None,
        help=(
            f"remote folder (default {DEFAULT_REMOTE}); through a server, the server's own --remote is used "
            "and a different one given here is refused"
        ),
    )
    add_cloud_name(cmd, default=None, help="folder under the remote (default: the current one, or main)")
    cmd.add_argument("--push-mode", default="", help="'' (both ways), force-push or force-pull")
    cmd.add_argument("--force", action="store_true", help="re-list and re-verify the remote")
    cmd.add_argument("--app", default="oplog-cli", help="the app id sent with the sync")
    add_lock_wait(cmd)
    add_server(
        cmd,
        help="run the sync in this oplog server (host:port); by default a server running on --data is used",
    )
    add_token(cmd)
    add_passphrase_option(cmd)
    add_snapshot_every(cmd)
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run one sync (through the data directory's server when one runs); print a summary (or JSON)."""
    from oplog.tools.syncroute import sync_data_dir

    keyring = keyring_from(args)  # read before anything opens: a bad --passphrase-file changes nothing
    bar = _ProgressBar.for_args(args)
    try:
        result = sync_data_dir(
            args.data,
            remote=args.remote,
            cloud_name=args.cloud_name,
            server=args.server,
            token=args.token,
            app=args.app,
            force=args.force,
            push_mode=args.push_mode,
            lock_wait_s=args.lock_wait,
            on_event=bar.show if bar is not None else None,
            keyring=keyring,
            snapshot_every=args.snapshot_every,
        )
    finally:
        if bar is not None:
            bar.close()
    if result.server:
        where = f"through server {result.server} ({result.cloud_name})"
    else:
        where = f"with {args.remote or DEFAULT_REMOTE}/{result.cloud_name}"
    events = f" ({result.pulled_events} events)" if result.pulled_events is not None else ""
    return _report(
        args,
        result,
        f"synced {where}: pushed {result.pushed_segments}, pulled {result.pulled_segments} segment(s){events}",
    )


class _ProgressBar:
    """A tqdm bar on stderr for sync progress events (only on a terminal, never with --json)."""

    def __init__(self) -> None:
        from oplog.tools.progress import ProgressBar

        self.bar = ProgressBar(desc="sync")

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> _ProgressBar | None:
        return cls() if sys.stderr.isatty() and not args.json else None

    def show(self, cmd: str, current: int, total: int, message: str) -> None:
        if cmd == "syncProgress":
            self.bar.step(current, max(total, 5), message)
        elif cmd == "syncRetry":
            self.bar.write(f"retrying: {message}")

    def close(self) -> None:
        self.bar.close()


def _report(args: argparse.Namespace, result: SyncSummary, headline: str) -> int:
    """Print a sync's summary (JSON, or a line plus refused and repaired segments on stderr); 3 if any was refused."""
    if args.json:
        print(json.dumps(result.to_json(), sort_keys=True))
    else:
        print(
            headline
            + (f", archived {result.archived_segments}" if result.archived_segments else "")
            + (f", rebased {result.rebased_events} event(s)" if result.rebased_events else "")
        )
        if result.snapshot:
            check = f" (own check: {result.snapshot_check})" if result.snapshot_check else ""
            print(f"started from remote snapshot {result.snapshot}{check}")
        for line in result.repaired:
            print(f"repaired: {line}", file=sys.stderr)
        for line in result.refused:
            print(f"refused: {line}", file=sys.stderr)
    return 0 if not result.refused else 3
