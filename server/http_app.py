"""SiYuan's kernel HTTP API and ``/ws`` inside ``oplog serve``: the Starlette app and its uvicorn server.

Why Starlette on uvicorn: both are small, maintained, typed ASGI pieces with
WebSocket support built in (aiohttp would do too, but brings its own client
and server stack); uvicorn runs in a thread of the ``oplog serve`` process
beside grpcio's server, so the two share the open :class:`~oplog.store.Store`,
the auth table, the limits, the query worker pool and the sync runner — no
second process and no second writer.

Every endpoint is ``POST /api/<group>/<name>`` (``system/version`` answers GET
too, as the kernel's does). A call goes: auth (:mod:`.http_auth`, the gRPC
decisions) → body (:mod:`.http_envelope`, JSON whatever the Content-Type,
empty = ``{}``) → the handler on a worker thread (the store is synchronous and
blocks on fsync; the event loop must not) → ``{code, msg, data}``. Handlers
live in :mod:`.http_api` (transactions, sync, system, notification),
:mod:`.http_blocks` (kernel endpoints over the store) and
:mod:`.http_notebooks` (notebooks, moving documents), registered in the table
of :mod:`.http_routes`; this module holds the app and the server's life cycle.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import uvicorn
from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from oplog.errors import InvalidArgument

# Importing the handler modules fills ENDPOINTS.
from oplog.server import http_api, http_blocks, http_notebooks  # noqa: F401
from oplog.server.auth import AuthConfig, check_listen_address
from oplog.server.http_auth import HttpAuth
from oplog.server.http_envelope import Refusal, error_body, error_for, ok_body, parse_body
from oplog.server.http_feed import FeedBridge
from oplog.server.http_routes import ENDPOINTS, READ, HttpContext
from oplog.server.http_sync import bridge_sync_events
from oplog.server.http_ws import Hub
from oplog.server.service import Limits, StoreLike
from oplog.syncrunner import SyncRunner

__all__ = ["DEFAULT_HTTP", "build_app", "HttpServer", "start_http"]

log = logging.getLogger("oplog.server.http")

DEFAULT_HTTP = "127.0.0.1:6806"

# ---- the app ----


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _refusal(refusal: Refusal) -> Response:
    if refusal.status == 401:
        # The kernel's 401 body has no data field.
        return _json({"code": refusal.code, "msg": refusal.msg}, 401)
    return _json(error_body(refusal.code, refusal.msg, refusal.data), refusal.status)


def build_app(ctx: HttpContext, auth: HttpAuth) -> Starlette:
    """The ASGI app serving ``ENDPOINTS`` and ``/ws`` over ``ctx``."""

    max_bytes = ctx.limits.max_request_bytes

    async def api(request: Request) -> Response:
        started = time.perf_counter()
        path = request.url.path
        found = ENDPOINTS.get(path)
        if found is None or (request.method == "GET" and path != "/api/system/version"):
            return _json(error_body(-1, f"unsupported endpoint {request.method} {path}"), 404)
        refused = auth.check(found.method, request.headers, request.query_params)
        if refused is not None:
            return _refusal(refused)
        raw = await request.body()
        if len(raw) > max_bytes:
            return _refusal(
                Refusal(f"request body of {len(raw)} bytes is over the limit of {max_bytes}", status=413)
            )
        try:
            body = parse_body(raw, path)
        except InvalidArgument as exc:
            return _refusal(error_for(exc))
        try:
            data = await to_thread.run_sync(found.handler, ctx, body)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an envelope
            return _refusal(error_for(exc, code=found.error_code))
        elapsed_ms = (time.perf_counter() - started) * 1000
        return _json(ok_body(data), headers={"Server-Timing": f"total;dur={elapsed_ms:.3f}"})

    async def not_found(request: Request) -> Response:
        return _json(error_body(-1, f"unsupported endpoint {request.method} {request.url.path}"), 404)

    async def ws(websocket: WebSocket) -> None:
        query = websocket.query_params
        refused = auth.check(READ, websocket.headers, query)
        if refused is not None:
            # Refused before the upgrade, as an HTTP answer (403 for any WebSocket refusal in ASGI).
            await websocket.close(code=1008, reason=refused.msg)
            return
        await ctx.hub.serve(websocket, query.get("app", ""), query.get("id", ""), query.get("type", "main"))

    routes = [
        Route("/api/{rest:path}", api, methods=["GET", "POST"]),
        WebSocketRoute("/ws", ws),
    ]
    app = Starlette(routes=routes)
    app.add_route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    return app


# ---- the server ----

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def _new_block_id() -> str:
    # The edge may read the clock and randomness; the id travels in the logged op, so replay never does.
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime())
    return stamp + "-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(7))


def _split(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InvalidArgument(f"--http {listen!r}: expected host:port, for example {DEFAULT_HTTP}, or 'off'")
    number = int(port)
    if number > 65535:
        raise InvalidArgument(f"--http {listen!r}: port {number} is out of range (0-65535)")
    return host.strip("[]"), number


class HttpServer:
    """uvicorn serving the app on a thread of this process; ``stop`` ends it."""

    def __init__(self, app: Starlette, sock: socket.socket, hub: Hub, unbridge: Callable[[], None]) -> None:
        self.hub = hub
        self._unbridge = unbridge
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.port: int = port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", access_log=False, ws="websockets-sansio"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="oplog-http", daemon=True)

    def _run(self) -> None:
        # Server.run picks the event loop the config names (uvloop when installed); off the main
        # thread it installs no signal handlers, so SIGTERM stays with oplog serve.
        self._server.run(sockets=[self._sock])

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise InvalidArgument(f"the HTTP server on {self.address} did not start")
            time.sleep(0.01)

    def stop(self, grace: float | None = 10.0) -> None:
        """Close WebSockets, let in-flight requests finish (up to ``grace``), stop."""
        self._unbridge()
        self.hub.close_all()
        self._server.should_exit = True
        self._thread.join(grace)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5.0)
        self._sock.close()


def start_http(
    store: StoreLike,
    *,
    listen: str = DEFAULT_HTTP,
    auth: AuthConfig | None = None,
    readonly: bool = False,
    limits: Limits | None = None,
    sync: SyncRunner | None = None,
    query_runner: Any = None,
    ids: Callable[[], str] | None = None,
) -> HttpServer:
    """Serve SiYuan's HTTP API for ``store`` on ``listen`` (port 0 picks one); raises ``InvalidArgument``."""
    auth = auth or AuthConfig.none()
    limits = limits or Limits()
    check_listen_address(listen, auth)
    host, port = _split(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on each accepted connection (it checks the
    # proto); with proto 0 a keep-alive reply's body waited for the client's delayed ACK, 40 ms a call.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidArgument(f"cannot listen on {listen} (--http): {exc.strerror or exc}") from exc
    sock.listen(1024)
    sock.set_inheritable(True)
    if query_runner is None:
        from oplog.sqlquery import run_query

        query_runner = run_query
    hub = Hub()
    feed = FeedBridge(store, hub)
    ctx = HttpContext(
        store,
        sync,
        hub,
        limits,
        query_runner,
        readonly=readonly,
        ids=ids or (lambda: secrets.token_hex(4)[:7]),
        new_id=_new_block_id,
        published=feed.wait_published,
    )
    app = build_app(ctx, HttpAuth(auth, readonly=readonly))
    unbridge_sync = bridge_sync_events(sync, hub)

    def unbridge() -> None:
        unbridge_sync()
        feed.stop()

    server = HttpServer(app, sock, hub, unbridge)
    feed.start()
    server.start()
    return server
