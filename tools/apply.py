"""``oplog apply FILE|-``: apply a performTransactions JSON body locally or through a server."""

from __future__ import annotations

import argparse
import json
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
        response = store.apply(request)
    return {
        "transactions": [wire.transaction_to_json(tx) for tx in response.transactions],
        "positions": [
            {"deviceId": p.device_id, "deviceSeq": p.device_seq, "hlc": p.hlc} for p in response.positions
        ],
    }


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
