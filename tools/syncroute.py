"""One sync of a data directory, through its running ``oplog serve`` or locally: the choice in one place.

``oplog sync`` and ``oplog watch`` both call :func:`sync_data_dir`. When a server
holds the data directory (``tools/discover.find_server``), or one is named, the
server is the only writer, so the sync must run inside it (``PerformSync``,
``tools/server_sync.py``) with the server's own remote; a different remote asked
for is refused, and so is a cloud name that the server and the directory do not
agree on. Otherwise the data directory is opened here (waiting up to
``lock_wait_s`` for another local writer), repairing damaged copies of other
devices' segments that keep it from opening (``oplog.syncrepair``), and synced
on the calling thread. Either way the answer is one ``SyncSummary``.

It lives with the tools, not in the core, because the server route needs the
gRPC client (``oplog.server.client``), which the core never imports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from oplog.clock import SystemClock
from oplog.errors import InvalidArgument, StorageError
from oplog.remote import Remote
from oplog.remoteurl import open_remote
from oplog.sealed import Keyring, guard_remote
from oplog.store import Store, StoreOptions
from oplog.sync import parse_sync_params
from oplog.syncformat import DEFAULT_CLOUD
from oplog.syncrepair import open_for_sync
from oplog.syncrunner import run_sync
from oplog.syncsnap import DEFAULT_SNAPSHOT_EVERY
from oplog.syncstate import error_text, load_state
from oplog.syncsummary import SyncSummary
from oplog.tools.options import DEFAULT_REMOTE

__all__ = ["DEFAULT_REMOTE", "SyncEventSink", "sync_data_dir", "check_server_cloud"]


#: ``(cmd, current, total, message)`` for every sync event, whichever route the sync takes.
SyncEventSink = Callable[[str, int, int, str], None]


def check_server_cloud(server: str, data: str | Path, cloud_name: str | None, *, token: str | None) -> None:
    """Refuse (one line) a sync through ``server`` that would use another cloud than the directory's current one.

    With ``cloud_name`` given it is sent with the sync, so both sides use it.
    Without, the server would use its own current cloud (its ``--cloud-name``, else
    the directory's), which must be the one the directory last synced with.
    """
    if cloud_name:
        return
    from oplog.tools.server_sync import server_sync_info

    ours = load_state(Path(data)).cloud_name or DEFAULT_CLOUD
    theirs = server_sync_info(server, token=token).cloud_name or DEFAULT_CLOUD
    if ours != theirs:
        raise InvalidArgument(
            f"the server at {server} syncs cloud {theirs!r} but {data} last synced with cloud {ours!r}; "
            f"pass --cloud-name {theirs} or --cloud-name {ours}, or restart the server with --cloud-name {ours}"
        )


def sync_data_dir(
    data: str | Path,
    *,
    remote: str | Path | None = None,
    cloud_name: str | None = None,
    server: str | None = None,
    token: str | None = None,
    app: str = "oplog-cli",
    force: bool = False,
    push_mode: str = "",
    lock_wait_s: float = 10.0,
    on_event: SyncEventSink | None = None,
    sleeper: Callable[[float], object] | None = None,
    cancel: threading.Event | None = None,
    monotonic: Callable[[], float] | None = None,
    while_locked: Callable[[Store], object] | None = None,
    keyring: Keyring | None = None,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
) -> SyncSummary:
    """One sync of ``data``: through ``server`` or the server running on ``data``, else locally with ``remote``.

    A local sync seals the remote under ``keyring`` (an encrypted remote), or without one
    refuses an encrypted cloud (``oplog.sealed.guard_remote``); a server uses its own passphrase.

    ``remote`` None means the server's own remote, or ``DEFAULT_REMOTE`` locally;
    ``cloud_name`` None the directory's current cloud. Parameters are checked
    (``InvalidSyncArgument``) before anything starts. ``on_event`` sees progress
    on both routes; ``sleeper`` waits out retry back-offs of a local sync (raise
    from it to abandon); ``cancel`` stops following a server's sync
    (``SyncNotFollowed``); ``while_locked(store)`` runs after a local sync, still
    holding the writer's lock (the daemon fingerprints the log it left).
    ``snapshot_every`` applies to a local sync (a server uses its own ``--snapshot-every``).
    """
    from oplog.tools.discover import find_server

    params = parse_sync_params(app, force=force, push_mode=push_mode, cloud_name=cloud_name)
    running = find_server(data)
    if not server and running is not None:
        if remote is not None and running.other_remote(remote):
            raise InvalidArgument(
                f"the server at {running.address} holds {data} and syncs with {running.remote}, "
                f"not {remote}; leave out --remote or stop the server"
            )
        server = running.address
    if server:
        from oplog.tools.server_sync import sync_through_server

        if running is not None and running.address == server:
            check_server_cloud(server, data, params.cloud_name, token=token)
        return sync_through_server(
            server,
            token=token,
            app=params.app,
            force=params.force,
            push_mode=params.push_mode,
            cloud_name=params.cloud_name,
            on_event=(lambda e: on_event(e.cmd, e.progress.current, e.progress.total, e.message))
            if on_event is not None
            else None,
            monotonic=monotonic,
            cancel=cancel,
        )
    return _sync_locally(
        Path(data),
        guard_remote(open_remote(str(remote) if remote is not None else DEFAULT_REMOTE), keyring),
        params.app,
        force=params.force,
        push_mode=params.push_mode,
        cloud_name=params.cloud_name,
        lock_wait_s=lock_wait_s,
        on_event=on_event,
        sleeper=sleeper,
        while_locked=while_locked,
        snapshot_every=snapshot_every,
    )


def _sync_locally(
    data: Path,
    remote: Remote,
    app: str,
    *,
    force: bool,
    push_mode: str,
    cloud_name: str | None,
    lock_wait_s: float,
    on_event: SyncEventSink | None,
    sleeper: Callable[[float], object] | None,
    while_locked: Callable[[Store], object] | None,
    snapshot_every: int,
) -> SyncSummary:
    clock = SystemClock()
    store: Store
    store, repaired = open_for_sync(
        data, remote, cloud_name, options=StoreOptions(lock_timeout_s=lock_wait_s), clock=clock
    )
    try:
        try:
            result = run_sync(
                store,
                remote,
                clock,
                app,
                force=force,
                push_mode=push_mode,
                cloud_name=cloud_name,
                emit=on_event,
                sleeper=sleeper,
                snapshot_every=snapshot_every,
            )
        except OSError as exc:
            # The session has recorded it in sync.json; the user gets one line, not a traceback.
            raise StorageError(error_text(exc)) from exc
        if while_locked is not None:
            while_locked(store)
    finally:
        store.close()
    result.repaired[:0] = repaired
    return result
