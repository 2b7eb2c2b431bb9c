"""``/api/sync/performSync``, ``/api/sync/getSyncInfo``, and sync events on ``/ws``.

``performSync`` follows the seed page (shared/seeds): ``app`` is required,
``force``, ``pushMode``, ``pushOnly`` (the old spelling of
``pushMode: "force-push"``) and ``cloudName`` are optional; the reply is the
initial progress at once and the sync runs on the shared
:class:`~oplog.syncrunner.SyncRunner`, so HTTP, gRPC and the boot sync take
turns on one runner and a second request gets SiYuan's verbatim
"Sync is in progress…" / "Boot sync is in progress…".

Every runner event is pushed on ``/ws`` twice over: once as the seed names it
(``cmd`` ``syncBegin``/``syncProgress``/``syncRetry``/``syncFail``/``syncEnd``/
``syncLog``, ``data`` the progress), and once as SiYuan's own frontend expects
it (``syncing`` with code 0 start, 1 done, 2 failed, and ``statusbar`` text).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oplog.errors import InvalidArgument
from oplog.server.http_envelope import arg, opt
from oplog.server.http_ws import Hub, push_message
from oplog.syncrunner import SyncEventDict, SyncRunner

__all__ = ["perform_sync", "get_sync_info", "bridge_sync_events", "SYNCING_MSG"]

#: The kernel's "syncing" start text (Conf.Language(81) in English).
SYNCING_MSG = "Syncing data with the cloud..."
_SYNCING_CODE = {"syncBegin": 0, "syncEnd": 1, "syncFail": 2}


def _runner(sync: SyncRunner | None) -> SyncRunner:
    if sync is None:
        raise InvalidArgument("sync is not configured: start the server with --remote")
    return sync


def perform_sync(sync: SyncRunner | None, body: dict[str, Any]) -> dict[str, Any]:
    """Start one sync in the background; the initial progress ``{current, total, info, msg}``."""
    runner = _runner(sync)
    app = arg(body, "app", str)
    cloud_name = opt(body, "cloudName", str, "")
    # A bad pushMode or cloud name is InvalidSyncArgument, refused before anything starts.
    return runner.perform(
        app,
        force=opt(body, "force", bool, False),
        push_mode=opt(body, "pushMode", str, ""),
        push_only=opt(body, "pushOnly", bool, False),
        cloud_name=cloud_name if cloud_name != "" else None,
    )


def get_sync_info(sync: SyncRunner | None, body: dict[str, Any]) -> dict[str, Any]:
    """The kernel's ``{synced, stat, kernels, kernel}`` plus oplog's own sync state."""
    runner = _runner(sync)
    info = runner.info()
    return {
        "synced": info["last_sync_time"],
        "stat": info["status"],
        "kernels": [],
        "kernel": info["device_id"],
        "lastSyncTime": info["last_sync_time"],
        "inProgress": info["in_progress"],
        "cloudName": info["cloud_name"],
        "epoch": info["epoch"],
        "deviceID": info["device_id"],
        "pendingLocalEvents": info["pending_local_events"],
        "deviceCursors": info["device_cursors"],
        "lastError": info["last_error"],
        "snapshotCheck": info["snapshot_check"],
    }


def sync_frames(event: SyncEventDict) -> list[dict[str, Any]]:
    """The ``/ws`` messages one runner event becomes."""
    cmd = event["cmd"]
    frames = [
        push_message(
            cmd,
            code=-1 if cmd == "syncFail" else 0,
            msg=event["message"],
            data=dict(event["progress"]),
        )
    ]
    code = _SYNCING_CODE.get(cmd)
    if code is not None:
        text = SYNCING_MSG if code == 0 else event["message"]
        frames.append(push_message("syncing", code=code, msg=text))
    if cmd in ("syncProgress", "syncRetry", "syncEnd", "syncFail"):
        frames.append(push_message("statusbar", msg=event["message"]))
    return frames


def bridge_sync_events(sync: SyncRunner | None, hub: Hub) -> Callable[[], None]:
    """Push every sync event of ``sync`` to ``hub``; returns the function that stops it."""
    if sync is None:
        return lambda: None

    def on_event(event: SyncEventDict) -> None:
        for frame in sync_frames(event):
            hub.publish(frame)

    return sync.add_listener(on_event)
