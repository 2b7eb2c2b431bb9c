"""The HTTP endpoint table: each path, the gRPC method whose auth rule it shares, and its handler.

Handlers are plain synchronous functions ``handler(ctx, body) -> data``: they
run on a worker thread (the store blocks on fsync), raise
an ``OplogError`` to refuse (``InvalidArgument`` with the kernel's words),
and return the ``data`` of SiYuan's envelope. Binding each endpoint to a gRPC
method (a block write is an ``Apply``, ``query/sql`` a ``Query``) is what makes
HTTP and gRPC take the same auth decisions (see :mod:`.http_auth`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from oplog.server.http_auth import OPEN
from oplog.server.http_ws import Hub
from oplog.server.service import Limits, StoreLike
from oplog.syncrunner import SyncRunner

__all__ = [
    "OPEN",
    "WRITE",
    "READ",
    "QUERY",
    "SYNC",
    "SYNC_INFO",
    "HttpContext",
    "Handler",
    "Endpoint",
    "ENDPOINTS",
    "endpoint",
]

_SVC = "/oplog.v1.OpLog/"
WRITE = _SVC + "Apply"
READ = _SVC + "GetBlock"
QUERY = _SVC + "Query"
SYNC = _SVC + "PerformSync"
SYNC_INFO = _SVC + "GetSyncInfo"


def _wall_ms() -> int:
    # The server edge may read the clock (system/currentTime); the core never does.
    return int(time.time() * 1000)


@dataclass
class HttpContext:
    """What a handler may use: the shared store, sync runner, WebSocket hub, limits and query runner."""

    store: StoreLike
    sync: SyncRunner | None
    hub: Hub
    limits: Limits
    query_runner: Any
    readonly: bool = False
    clock_ms: Callable[[], int] = field(default=_wall_ms)
    ids: Callable[[], str] = field(default=lambda: "")
    #: A new block id (YYYYMMDDHHMMSS-xxxxxxx) for endpoints that must name blocks before creating them.
    new_id: Callable[[], str] = field(default=lambda: "")
    #: Waits until the ``/ws`` message for journal position N is queued (the feed bridge's; no-op alone).
    published: Callable[[int], object] = field(default=lambda position: True)


Handler = Callable[[HttpContext, dict[str, Any]], Any]


@dataclass(frozen=True)
class Endpoint:
    """One API endpoint: the gRPC method whose auth rule it shares, and its handler."""

    method: str
    handler: Handler
    #: The envelope code a refusal of this endpoint carries (the kernel's ``query/sql`` uses 1).
    error_code: int = -1


#: ``/api/<group>/<name>`` -> endpoint; filled by the modules that define handlers.
ENDPOINTS: dict[str, Endpoint] = {}


def endpoint(path: str, method: str, *, error_code: int = -1) -> Callable[[Handler], Handler]:
    """Register ``handler`` at ``/api/<path>`` under the auth rule of gRPC ``method``."""

    def register(handler: Handler) -> Handler:
        ENDPOINTS["/api/" + path] = Endpoint(method, handler, error_code)
        return handler

    return register
