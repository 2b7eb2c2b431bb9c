"""One sync through a running ``oplog serve``: ``PerformSync``, then follow ``WatchSync`` to the end.

Used by ``oplog sync`` and ``oplog watch`` when a server holds the data directory
(``tools/discover.find_server``): the server is the only writer then, so the sync
must run inside it. :func:`sync_through_server` subscribes to ``WatchSync`` first
(so the end of the sync cannot be missed), starts the sync with ``PerformSync``
and waits for ``syncEnd`` or ``syncFail``. When another sync is already running on
the server (its boot sync, another client), it waits for that one to end and
starts its own. As a safety net against a lost stream it asks ``GetSyncInfo``
whenever the stream has been quiet for a second.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import grpc

from oplog.errors import OplogError, RemoteError, SyncInProgress, SyncNotFollowed
from oplog.server.client import Client, token_from_env
from oplog.server.status import error_from_rpc
from oplog.syncsummary import SyncSummary
from oplog.v1 import oplog_pb2 as pb

__all__ = [
    "ServerSyncResult",
    "SyncNotFollowed",
    "sync_through_server",
    "server_sync_info",
    "DEFAULT_SERVER_SYNC_TIMEOUT_S",
]

#: How long a sync through the server may take, waiting for a running one included.
DEFAULT_SERVER_SYNC_TIMEOUT_S = 600.0
#: Silence on the event stream after which ``GetSyncInfo`` is asked whether the sync still runs.
_QUIET_S = 1.0
#: What a sync run by a server did: the one summary type, under the name callers know.
ServerSyncResult = SyncSummary


class _Stream:
    """``WatchSync`` read on a thread into a queue, so the caller can wait with a timeout."""

    _END = object()

    def __init__(self, client: Client, timeout: float) -> None:
        self.call = client.stub.WatchSync(pb.WatchSyncRequest(), timeout=timeout)
        self.items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._read, name="oplog-watchsync", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.items.put(event)
        except grpc.RpcError as exc:
            self.items.put(exc)
        self.items.put(self._END)

    def get(self, timeout: float) -> pb.SyncEvent | grpc.RpcError | None:
        """The next event, the error that ended the stream, or None after ``timeout`` of silence."""
        try:
            item = self.items.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is self._END:
            self.items.put(self._END)  # stay ended for later calls
            raise OplogError("the server ended the sync event stream")
        return item  # type: ignore[no-any-return]

    def drain(self) -> None:
        """Drop the events received so far (they belong to earlier syncs)."""
        while True:
            try:
                item = self.items.get_nowait()
            except queue.Empty:
                return
            if item is self._END or isinstance(item, grpc.RpcError):
                self.items.put(item)
                return

    def close(self) -> None:
        """Cancel the stream."""
        self.call.cancel()


def _deadline_left(deadline: float, now: Callable[[], float]) -> float:
    left = deadline - now()
    if left <= 0:
        raise OplogError("timed out waiting for the server's sync")
    return left


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise SyncNotFollowed("stopped following the server's sync (the server carries on with it)")


def _wait_until_idle(
    client: Client,
    stream: _Stream,
    deadline: float,
    now: Callable[[], float],
    server: str,
    cancel: threading.Event | None,
) -> None:
    """Wait for the sync the server is running (not ours) to end."""
    while True:
        item = stream.get(min(_QUIET_S, _deadline_left(deadline, now)))
        _check_cancel(cancel)
        if isinstance(item, grpc.RpcError):
            raise error_from_rpc(item, server=server)
        if item is not None and item.cmd in ("syncEnd", "syncFail"):
            return
        if item is None and not _info(client, server).in_progress:
            return


def _info(client: Client, server: str) -> pb.SyncInfo:
    try:
        return client.stub.GetSyncInfo(pb.GetSyncInfoRequest(), timeout=30)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc, server=server) from None


def server_sync_info(server: str, *, token: str | None = None) -> pb.SyncInfo:
    """The server's ``GetSyncInfo`` (its current cloud name, epoch, whether a sync runs)."""
    token = token if token is not None else token_from_env()
    with Client(server, token) as client:
        return _info(client, server)


def sync_through_server(
    server: str,
    *,
    token: str | None = None,
    app: str = "oplog-cli",
    force: bool = False,
    push_mode: str = "",
    cloud_name: str | None = None,
    on_event: Callable[[pb.SyncEvent], None] | None = None,
    timeout: float = DEFAULT_SERVER_SYNC_TIMEOUT_S,
    monotonic: Callable[[], float] | None = None,
    cancel: threading.Event | None = None,
) -> SyncSummary:
    """Have the server at ``server`` run one sync and wait for it; raises the core error a failure maps to.

    ``token`` defaults to ``$OPLOG_TOKEN``; ``on_event`` sees every event of the
    sync (progress bars); ``monotonic`` is the clock the timeout is measured on;
    setting ``cancel`` makes it stop waiting within a second (``SyncNotFollowed``).
    """
    import time

    now = monotonic or time.monotonic
    deadline = now() + timeout
    token = token if token is not None else token_from_env()
    request = pb.PerformSyncRequest(app=app, force=force, push_mode=push_mode, cloud_name=cloud_name or "")
    lines: dict[str, list[str]] = {"refused": [], "repaired": []}
    with Client(server, token) as client:
        try:
            stream = _Stream(client, timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, server=server) from None
        try:
            # The stream's first message (a status line) means the server is watching for us.
            first = stream.get(_deadline_left(deadline, now))
            if isinstance(first, grpc.RpcError):
                raise error_from_rpc(first, server=server)
            while True:
                stream.drain()
                try:
                    client.stub.PerformSync(request, timeout=30)
                    break
                except grpc.RpcError as exc:
                    error = error_from_rpc(exc, server=server)
                    if not isinstance(error, SyncInProgress):
                        raise error from None
                _wait_until_idle(client, stream, deadline, now, server, cancel)
            message = _follow(client, stream, deadline, now, server, lines, on_event, cancel)
        finally:
            stream.close()
        info = _info(client, server)
    result = SyncSummary.from_end_message(message, server=server)
    result.refused = lines["refused"]
    result.repaired = lines["repaired"]
    # Without a cloud name the server synced its current one, which GetSyncInfo names.
    result.cloud_name = cloud_name or info.cloud_name
    result.epoch = info.epoch
    result.last_sync_time = info.last_sync_time
    return result


def _follow(
    client: Client,
    stream: _Stream,
    deadline: float,
    now: Callable[[], float],
    server: str,
    lines: dict[str, list[str]],
    on_event: Callable[[pb.SyncEvent], None] | None,
    cancel: threading.Event | None,
) -> str:
    """Read events until our sync ends; its ``syncEnd`` message, or raise on ``syncFail``.

    An end seen before our ``syncBegin`` belongs to an earlier sync and is skipped.
    """
    begun = False
    while True:
        item = stream.get(min(_QUIET_S, _deadline_left(deadline, now)))
        _check_cancel(cancel)
        if isinstance(item, grpc.RpcError):
            raise error_from_rpc(item, server=server)
        if item is None:
            info = _info(client, server)
            if info.in_progress:
                continue
            # The stream missed the end (it cannot, normally): the server's status says how it went.
            if info.status.startswith("sync failed"):
                raise RemoteError(f"server {server}: {info.status}")
            return info.status
        if item.cmd == "syncBegin":
            begun = True
        if not begun:
            continue
        if on_event is not None:
            on_event(item)
        if item.cmd == "syncLog" and item.message.startswith(("refused ", "repaired ")):
            kind, _, line = item.message.partition(" ")
            lines[kind].append(line)
        elif item.cmd == "syncFail":
            raise RemoteError(f"server {server}: sync failed: {item.message}")
        elif item.cmd == "syncEnd":
            return item.message
