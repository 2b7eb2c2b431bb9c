"""``oplog apply FILE|-``: apply a performTransactions JSON body locally or through a server."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from oplog import wire
from oplog.store import Store, StoreOptions
from oplog.tools.options import add_lock_wait, add_server, add_token
from oplog.v1 import oplog_pb2 as pb

__all__ = ["register", "run", "apply_local"]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``apply`` subcommand."""
    cmd = subparsers.add_parser(
        "apply",
        parents=[parent],
        help="apply a performTransactions JSON body",
        description="Validate, log durably and apply a SiYuan performTransactions body; prints the reply as JSON.",
    )
    cmd.add_argument("file", help="the JSON body, or - for standard input")
    add_server(
        cmd,
        help="send it to this oplog server (host:port); by default a server running on --data is used when there is one",
    )
    add_token(cmd, help="API token for --server (default $OPLOG_TOKEN)")
    add_lock_wait(cmd)
    cmd.set_defaults(func=run)


def apply_local(request: pb.ApplyRequest, data: str, *, lock_wait_s: float) -> dict[str, Any]:
    """Apply ``request`` to the data directory ``data`` and return the reply as JSON."""
    with Store.open(data, options=StoreOptions(lock_timeout_s=lock_wait_s)) as store:
        # From here the request may commit: Ctrl-C waits for the reply, so a committed request
        # is never reported as "interrupted" (the lock wait above stays interruptible).
        with _sigint_deferred():
            response = store.apply(request)
            store.close()
    return {
        "transactions": [wire.transaction_to_json(tx) for tx in response.transactions],
        "positions": [
            {"deviceId": p.device_id, "deviceSeq": p.device_seq, "hlc": p.hlc} for p in response.positions
        ],
    }


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold SIGINT back (in the main thread) until the block ends; one that came is then acted on."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        print("oplog: interrupt received after the request was committed; its reply follows", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Apply the body; print the reply."""
    from oplog.tools.discover import find_server
    from oplog.tools.remote_apply import apply_json_remote, read_body

    body = read_body(args.file)
    server = args.server
    if not server:
        running = find_server(args.data)
        server = running.address if running is not None else None
    if server:
        reply = apply_json_remote(body, server=server, token=args.token)
    else:
        reply = apply_local(wire.request_from_json(body), args.data, lock_wait_s=args.lock_wait)
    print(json.dumps(reply, ensure_ascii=False, indent=None if args.json else 2))
    return 0
