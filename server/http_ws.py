"""SiYuan's broadcast WebSocket ``/ws?app=…&id=…&type=…``: who is connected, and pushing to them.

The kernel keeps its WebSocket sessions by app and session id and pushes
``{"cmd", "reqId", "app", "sid", "pushMode", "callback", "code", "msg", "data"}``
messages to them. Events here come from worker threads (a request applied on
the HTTP thread pool, a sync on the sync runner's thread), while the sockets
belong to the server's event loop: :meth:`Hub.publish` hands each message to
every connection's queue with ``call_soon_threadsafe``, never blocking the
caller. A connection that does not keep up (its queue full) is closed rather
than buffering without bound, as a too-slow gRPC subscriber is ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["Hub", "push_message", "QUEUE_LIMIT"]

log = logging.getLogger("oplog.server.http")

#: Messages buffered for one connection before it is closed as too slow.
QUEUE_LIMIT = 10_000


def push_message(
    cmd: str,
    *,
    code: int = 0,
    msg: str = "",
    data: Any = None,
    app: str = "",
    sid: str = "",
    push_mode: int = 0,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A message in the kernel's ``util.Result`` shape."""
    out: dict[str, Any] = {
        "cmd": cmd,
        "reqId": 0,
        "app": app,
        "sid": sid,
        "pushMode": push_mode,
        "callback": "",
        "code": code,
        "msg": msg,
        "data": data,
    }
    if context:
        out["context"] = context
    return out


@dataclass(eq=False)
class _Conn:
    app: str
    id: str
    type: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))


class Hub:
    """The open ``/ws`` connections and a thread-safe way to push to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def count(self) -> int:
        """Connections open now."""
        with self._lock:
            return len(self._conns)

    def publish(self, message: dict[str, Any], *, type_: str | None = None, exclude_sid: str = "") -> None:
        """Push ``message`` to every connection (of ``type_`` if given, except session ``exclude_sid``)."""
        with self._lock:
            loop = self._loop
            targets = [
                c
                for c in self._conns
                if (type_ is None or c.type == type_) and not (exclude_sid and c.id == exclude_sid)
            ]
        if loop is None or not targets:
            return
        for conn in targets:
            try:
                loop.call_soon_threadsafe(self._offer, conn, message)
            except RuntimeError:
                return  # the loop is closed: the server is stopping

    def _offer(self, conn: _Conn, message: dict[str, Any] | None) -> None:
        try:
            conn.queue.put_nowait(message)
        except asyncio.QueueFull:
            # Drop everything queued and tell the writer to close this connection.
            while not conn.queue.empty():
                conn.queue.get_nowait()
            conn.queue.put_nowait(None)

    def close_all(self) -> None:
        """End every connection (server shutdown)."""
        with self._lock:
            loop = self._loop
            conns = list(self._conns)
        if loop is None:
            return
        for conn in conns:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._offer, conn, None)

    async def serve(self, websocket: WebSocket, app: str, id_: str, type_: str) -> None:
        """Accept ``websocket`` and push messages to it until either side closes."""
        await websocket.accept()
        conn = _Conn(app, id_, type_)
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._conns.add(conn)
        reader = asyncio.ensure_future(self._drain(websocket))
        try:
            while True:
                getter = asyncio.ensure_future(conn.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    getter.cancel()
                    break
                message = getter.result()
                if message is None:
                    await websocket.close(code=1001)
                    break
                await websocket.send_json(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            reader.cancel()
            with self._lock:
                self._conns.discard(conn)

    @staticmethod
    async def _drain(websocket: WebSocket) -> None:
        # The kernel's frontend sends pings and commands here; oplog reads them only to see the close.
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        except (WebSocketDisconnect, RuntimeError):
            return
