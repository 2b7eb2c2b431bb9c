"""``oplog apply --server ADDR``: send a performTransactions body to a running server over gRPC.

``tools/apply.py`` parses the body and calls :func:`apply_remote` when
``--server`` is given; failures come back as the matching core error (one
line, status code included) so the CLI reports them like local ones.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from oplog import wire
from oplog.errors import InvalidTransaction
from oplog.server.client import Client, token_from_env
from oplog.server.status import error_from_rpc
from oplog.v1 import oplog_pb2 as pb

__all__ = ["RemoteApplyResult", "apply_remote", "apply_json_remote", "read_body", "result_to_json"]

DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class RemoteApplyResult:
    """The server's reply and its ``server-timing`` milliseconds (None when absent)."""

    response: pb.ApplyResponse
    server_ms: float | None


def _server_ms(trailing: Any) -> float | None:
    for key, value in trailing or ():
        if key == "server-timing":
            for part in str(value).split(";"):
                if part.startswith("dur="):
                    try:
                        return float(part[4:])
                    except ValueError:
                        return None
    return None


def apply_remote(
    request: pb.ApplyRequest, *, server: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> RemoteApplyResult:
    """Send ``request`` to ``server`` (token default ``$OPLOG_TOKEN``); raises the core error a failure maps to."""
    token = token if token is not None else token_from_env()
    with Client(server, token) as client:
        try:
            response, call = client.stub.Apply.with_call(request, timeout=timeout, wait_for_ready=False)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, server=server) from None
        return RemoteApplyResult(response, _server_ms(call.trailing_metadata()))


def read_body(path: str) -> Any:
    """Read a JSON body from ``path`` (``-`` for stdin); raises ``InvalidTransaction`` unless it is UTF-8 JSON."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise InvalidTransaction(f"{path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTransaction(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "a performTransactions body is UTF-8 JSON"
        ) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidTransaction(f"{path}: not JSON: {exc}") from exc


def result_to_json(result: RemoteApplyResult) -> dict[str, Any]:
    """The reply as JSON: processed transactions in SiYuan's shape, log positions, server time."""
    return {
        "transactions": [wire.transaction_to_json(tx) for tx in result.response.transactions],
        "positions": [
            {"deviceId": p.device_id, "deviceSeq": p.device_seq, "hlc": p.hlc}
            for p in result.response.positions
        ],
        "serverMs": result.server_ms,
    }


def apply_json_remote(
    body: Any, *, server: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> dict[str, Any]:
    """Check a performTransactions JSON body, send it to ``server`` and return the reply as JSON."""
    request = wire.request_from_json(body)
    return result_to_json(apply_remote(request, server=server, token=token, timeout=timeout))
