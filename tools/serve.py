"""``oplog serve``: open the data directory and serve ``oplog.v1.OpLog`` over gRPC until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from oplog.errors import InvalidArgument
from oplog.tools import passphrase
from oplog.tools.options import (
    DEFAULT_REMOTE,
    add_cloud_name,
    add_lock_wait,
    add_remote,
    add_snapshot_every,
    add_token,
    listen_address,
)

if TYPE_CHECKING:
    from oplog.server.auth import AuthConfig
    from oplog.server.service import Limits

__all__ = ["register", "serve", "auth_from_args", "limits_from_args"]

#: The cloud folder when neither --cloud-name nor the data directory's sync state names one.
DEFAULT_CLOUD_NAME = "main"
DEFAULT_GRACE_S = 10.0


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``serve`` subcommand."""
    from oplog.server.app import DEFAULT_LISTEN, DEFAULT_WORKERS
    from oplog.server.service import Limits

    defaults = Limits()
    p = subparsers.add_parser(
        "serve",
        parents=[parent],
        help="run the gRPC server",
        description=(
            "Serve oplog.v1.OpLog (plus gRPC health and reflection) from the data directory. "
            "Prints one line with the address it listens on. SIGTERM or SIGINT stops it cleanly: "
            "health turns NOT_SERVING, new calls are refused, in-flight calls get --grace seconds, "
            "then the store is checkpointed and closed and the exit code is 0."
        ),
    )
    p.add_argument(
        "--listen",
        default=os.environ.get("OPLOG_LISTEN", DEFAULT_LISTEN),
        help=f"host:port to listen on; port 0 picks a free one (default {DEFAULT_LISTEN}, env OPLOG_LISTEN). "
        "Without a token only loopback addresses are allowed",
    )
    p.add_argument(
        "--http",
        default=os.environ.get("OPLOG_HTTP"),
        metavar="ADDR",
        help="host:port for SiYuan's HTTP API and /ws (default 127.0.0.1:6806, SiYuan's port, or 127.0.0.1:0 "
        "when --listen asks for port 0; env OPLOG_HTTP); 'off' serves gRPC only. See docs/http.md",
    )
    auth = p.add_mutually_exclusive_group()
    add_token(
        auth,
        default=os.environ.get("OPLOG_TOKEN") or None,
        help="one admin token; callers send metadata 'authorization: Token <token>' (env OPLOG_TOKEN)",
    )
    auth.add_argument(
        "--auth-file",
        help="TOML (or .json) file of tokens and roles (admin, editor, reader); see docs/server.md",
    )
    p.add_argument(
        "--readonly", action="store_true", help="refuse Apply and PerformSync; open the store read-only"
    )
    p.add_argument(
        "--durability",
        choices=("always", "interval"),
        default="always",
        help="always: fsync before every reply, concurrent requests sharing an fsync (default); "
        "interval: every request is written to the OS before its reply, so a crash of this process "
        "loses nothing, and fsynced every 50 ms: a power loss or OS crash can lose the requests "
        "acknowledged in the last 50 ms (plus the time one fsync takes)",
    )
    add_remote(p, help=f"sync remote folder (default {DEFAULT_REMOTE})")
    passphrase.add_passphrase_option(p)
    add_snapshot_every(p)
    add_cloud_name(
        p,
        default=None,
        help=f"folder under the remote (default: the data directory's current one, or {DEFAULT_CLOUD_NAME})",
    )
    boot = p.add_mutually_exclusive_group()
    boot.add_argument(
        "--boot-sync",
        dest="boot_sync",
        action="store_true",
        default=True,
        help="sync once with the remote at start (the default); PerformSync is refused until it ends",
    )
    boot.add_argument(
        "--no-boot-sync",
        dest="boot_sync",
        action="store_false",
        help="do not sync at start",
    )
    p.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help=f"worker threads (default {DEFAULT_WORKERS})"
    )
    p.add_argument(
        "--max-request-mb",
        type=float,
        default=defaults.max_request_bytes / (1024 * 1024),
        help=f"largest request accepted, MiB (default {defaults.max_request_bytes // (1024 * 1024)})",
    )
    p.add_argument(
        "--query-max-rows",
        type=int,
        default=defaults.query_max_rows,
        help=f"rows a Query returns at most (default {defaults.query_max_rows})",
    )
    p.add_argument(
        "--query-timeout",
        type=float,
        default=defaults.query_time_budget_s,
        help=f"seconds a Query may run (default {defaults.query_time_budget_s})",
    )
    p.add_argument(
        "--max-queries",
        type=int,
        default=defaults.max_queries,
        help=f"Queries run at once, each in a worker process; more wait within their budget (default {defaults.max_queries})",
    )
    p.add_argument(
        "--query-memory-mb",
        type=float,
        default=defaults.query_memory_bytes / (1024 * 1024),
        help=f"SQLite heap one query worker may use, MiB (default {defaults.query_memory_bytes // (1024 * 1024)})",
    )
    p.add_argument(
        "--max-subscribers",
        type=int,
        default=defaults.max_subscribers,
        help=f"Subscribe streams served at once (default {defaults.max_subscribers})",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        help=f"seconds in-flight calls get to finish on shutdown (default {DEFAULT_GRACE_S:g})",
    )
    add_lock_wait(p, what="another local writer (an oplog apply, sync or watch)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=serve)


def auth_from_args(args: argparse.Namespace) -> AuthConfig:
    """The ``AuthConfig`` that ``--token`` / ``--auth-file`` describe."""
    from oplog.server.auth import AuthConfig, load_auth_file

    if args.auth_file:
        return load_auth_file(args.auth_file)
    if args.token:
        return AuthConfig.single_token(args.token)
    return AuthConfig.none()


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The service ``Limits`` the flags describe."""
    from oplog.server.service import Limits

    if (
        args.max_request_mb <= 0
        or args.query_max_rows <= 0
        or args.query_timeout <= 0
        or args.max_subscribers <= 0
        or args.max_queries <= 0
        or args.query_memory_mb <= 0
    ):
        raise InvalidArgument(
            "--max-request-mb, --query-max-rows, --query-timeout, --max-subscribers, --max-queries and "
            "--query-memory-mb must be positive"
        )
    return Limits(
        max_request_bytes=int(args.max_request_mb * 1024 * 1024),
        query_max_rows=args.query_max_rows,
        query_time_budget_s=args.query_timeout,
        max_subscribers=args.max_subscribers,
        max_queries=args.max_queries,
        query_memory_bytes=int(args.query_memory_mb * 1024 * 1024),
    )


def serve(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM or SIGINT; 0 after a clean stop."""
    from oplog.clock import SystemClock
    from oplog.server.app import start_server, tune_gc
    from oplog.server.auth import check_listen_address
    from oplog.store import Store, StoreOptions

    logging.basicConfig(
        level=args.log_level.upper(), format="oplog serve: %(levelname)s %(name)s: %(message)s"
    )
    auth = auth_from_args(args)
    limits = limits_from_args(args)
    # Refuse a bad --listen before touching the data directory.
    check_listen_address(listen_address(args.listen), auth)
    if args.cloud_name is not None:
        from oplog.syncformat import check_cloud_name

        args.cloud_name = check_cloud_name(args.cloud_name)
    if args.http is None:
        # Port 0 asks for free ports (tests, several servers at once): 6806 would collide.
        args.http = "127.0.0.1:0" if args.listen.endswith(":0") else "127.0.0.1:6806"
    if args.http != "off":
        check_listen_address(listen_address(args.http), auth)
    keyring = passphrase.keyring_from(args)

    from oplog.tools.testseams import store_seams

    store_clock, store_ids, seam_warning = store_seams()
    if seam_warning:
        print(f"oplog serve: {seam_warning}", file=sys.stderr, flush=True)

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        store = Store.open(
            args.data,
            options=StoreOptions(
                durability=args.durability, readonly=args.readonly, lock_timeout_s=args.lock_wait
            ),
            clock=store_clock,
            ids=store_ids,
        )
        from oplog.remoteurl import open_remote
        from oplog.syncrunner import SyncRunner
        from oplog.tools.passphrase import remote_for

        clock = SystemClock()
        remote_path = args.remote
        runner = SyncRunner(
            store,
            lambda: remote_for(open_remote(remote_path), keyring),
            clock,
            cloud_name=args.cloud_name,
            snapshot_every=args.snapshot_every,
        )
        try:
            running = start_server(
                store,
                listen=args.listen,
                auth=auth,
                readonly=args.readonly,
                limits=limits,
                workers=args.workers,
                sync=runner,
            )
        except BaseException:
            runner.close()
            store.close()
            raise
        http = None
        if args.http != "off":
            from oplog.server.http_app import start_http

            try:
                http = start_http(
                    store,
                    listen=args.http,
                    auth=auth,
                    readonly=args.readonly,
                    limits=limits,
                    sync=runner,
                    query_runner=running.service.queries.run,
                )
            except BaseException:
                running.stop(grace=0)
                runner.close()
                store.close()
                raise
        if args.boot_sync and not args.readonly:
            runner.boot_sync()
        tune_gc()
        from oplog.tools.discover import remove_server_file, write_server_file

        if not args.readonly:  # a read-only server writes nothing there and holds no lock
            write_server_file(args.data, running.address, args.remote)
        info = {
            "listening": running.address,
            "data": str(args.data),
            "device_id": getattr(store, "device_id", ""),
            "auth": "tokens" if auth.enabled else "off (loopback only)",
            "readonly": bool(args.readonly),
            "durability": args.durability,
            "http": http.address if http is not None else "off",
        }
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(
                f"oplog serve: listening on {running.address} (data {args.data}, auth {info['auth']}, "
                f"{'read-only' if args.readonly else 'read-write'}, durability {args.durability}, "
                f"http {info['http']})",
                flush=True,
            )
        try:
            while not stop.wait(0.5):
                pass
        finally:
            remove_server_file(args.data)
            if http is not None:
                http.stop(grace=args.grace)
            running.stop(grace=args.grace)
            runner.close()
            store.close()
        name = signal.Signals(received[0]).name if received else "stop"
        print(f"oplog serve: stopped on {name}", file=sys.stderr, flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
