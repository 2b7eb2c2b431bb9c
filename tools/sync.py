"""``oplog sync``: one sync of the data directory with a remote folder, with a progress bar."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from oplog.clock import SystemClock
from oplog.remote import LocalDirRemote
from oplog.store import Store, StoreOptions
from oplog.syncrunner import SyncRunner

__all__ = ["register", "run"]


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Add the ``sync`` subcommand."""
    cmd = subparsers.add_parser("sync", parents=[parent], help="one sync with a remote folder")
    cmd.add_argument("--remote", required=True, help="remote folder")
    cmd.add_argument(
        "--cloud-name", default=None, help="folder under the remote (default: the current one, or main)"
    )
    cmd.add_argument("--push-mode", default="", help="'' (both ways), force-push or force-pull")
    cmd.add_argument("--force", action="store_true", help="re-list and re-verify the remote")
    cmd.add_argument("--app", default="oplog-cli", help="the app id sent with the sync")
    cmd.add_argument("--lock-timeout", type=float, default=10.0, help="seconds to wait for the writer lock")
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run one sync; print a summary (or JSON)."""
    from oplog.sync import parse_sync_params

    parse_sync_params(args.app, push_mode=args.push_mode, cloud_name=args.cloud_name)
    clock = SystemClock()
    store = Store.open(args.data, options=StoreOptions(lock_timeout_s=args.lock_timeout), clock=clock)
    try:
        runner = SyncRunner(store, lambda: LocalDirRemote(args.remote), clock)
        bar = None
        if sys.stderr.isatty() and not args.json:
            from tqdm import tqdm

            bar = tqdm(total=5, desc="sync", leave=False)

            def show(event: dict[str, Any]) -> None:
                if event["cmd"] == "syncProgress" and bar is not None:
                    bar.total = max(bar.total or 0, event["progress"]["total"])
                    bar.n = event["progress"]["current"]
                    bar.set_postfix_str(event["message"][:40])
                elif event["cmd"] == "syncRetry" and bar is not None:
                    bar.write(f"retrying: {event['message']}")

            runner.add_listener(show)
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
        "refused": result.refused,
        "last_sync_time": info["last_sync_time"],
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(
            f"synced with {args.remote}/{result.cloud_name}: pushed {result.pushed_segments}, "
            f"pulled {result.pulled_segments} segment(s) ({result.pulled_events} events)"
            + (f", archived {result.archived_segments}" if result.archived_segments else "")
        )
        for line in result.refused:
            print(f"refused: {line}", file=sys.stderr)
    return 0 if not result.refused else 3
