"""Core errors ⇄ gRPC status codes: the one place the mapping lives.

Server side, :func:`status_for` turns an :class:`~oplog.errors.OplogError`
(or anything else a handler raised) into a status code and a one-line
message. Client side, :func:`error_from_rpc` turns a failed call back into
the matching core error, so command-line tools print one line and exit
non-zero the same way for local and remote work.

=========================================  ======================  =======================================
core error                                 status                  why
=========================================  ======================  =======================================
InvalidArgument, InvalidTransaction,       INVALID_ARGUMENT        malformed input; the message names
UnsupportedAction, InvalidSyncArgument,                            ``transactions[i].doOperations[j]``
QueryRefused
BlockNotFound                              NOT_FOUND
StructureError                             FAILED_PRECONDITION     the tree forbids it in its current state
SyncInProgress, BootSyncInProgress         ABORTED                 message verbatim (SiYuan's text)
QueryTimeout                               DEADLINE_EXCEEDED
QueryOverLimit                             RESOURCE_EXHAUSTED      a value or memory limit, or every query
                                                                   slot busy; a smaller query, or later
SubscriberTooSlow                          RESOURCE_EXHAUSTED      resume from the last position seen
ChangeFeedRewritten                        ABORTED                 retry at a higher level: resubscribe from
                                                                   the position the message names
ReadOnlyStore                              PERMISSION_DENIED
CorruptSegment, DamagedCheckpoint,         DATA_LOSS               damage in the log or a checkpoint;
InconsistentTree, DamagedRemoteObject                              run ``oplog verify``
CloudKeyError                              FAILED_PRECONDITION     the passphrase does not fit the cloud
DataDirLocked, other StorageError,         UNAVAILABLE             the disk or the remote may recover;
RemoteError, TransientRemoteError                                  retrying later is reasonable
RemoteCallError                            UNKNOWN                 another server's status with no class
Cancelled, SyncNotFollowed, SyncAbandoned  CANCELLED               the caller stopped waiting
any other OplogError                       INTERNAL
anything else (a bug)                      INTERNAL                generic message; details in the log
=========================================  ======================  =======================================
"""

from __future__ import annotations

import logging
import re
from typing import NoReturn

import grpc

from oplog import errors

__all__ = ["status_for", "abort", "abort_with", "error_from_rpc", "STATUS_TABLE"]

log = logging.getLogger("oplog.server")

#: Most specific first: the first class the error is an instance of wins.
STATUS_TABLE: tuple[tuple[type[errors.OplogError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.QueryRefused, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.BlockNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.StructureError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.InconsistentTree, grpc.StatusCode.DATA_LOSS),
    (errors.SyncInProgress, grpc.StatusCode.ABORTED),
    (errors.QueryTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.QueryOverLimit, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.SubscriberTooSlow, grpc.StatusCode.RESOURCE_EXHAUSTED),
    # Sync archived events the feed had numbered: the client must resubscribe (gRPC's ABORTED).
    (errors.ChangeFeedRewritten, grpc.StatusCode.ABORTED),
    (errors.ReadOnlyStore, grpc.StatusCode.PERMISSION_DENIED),
    (errors.CorruptSegment, grpc.StatusCode.DATA_LOSS),
    (errors.DamagedCheckpoint, grpc.StatusCode.DATA_LOSS),
    (errors.DamagedRemoteObject, grpc.StatusCode.DATA_LOSS),
    # The server's passphrase does not fit its cloud folder: its configuration must change first.
    (errors.CloudKeyError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.StorageError, grpc.StatusCode.UNAVAILABLE),
    (errors.RemoteError, grpc.StatusCode.UNAVAILABLE),
    # Another server's status this one has no class for: gRPC's UNKNOWN is meant for exactly that.
    (errors.RemoteCallError, grpc.StatusCode.UNKNOWN),
    (errors.Cancelled, grpc.StatusCode.CANCELLED),
)

#: Client side: the core error a status code stands for (others become ``RemoteCallError``:
#: RESOURCE_EXHAUSTED and PERMISSION_DENIED have more than one cause).
_ERROR_FOR_CODE: dict[grpc.StatusCode, type[errors.OplogError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.BlockNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.StructureError,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.QueryTimeout,
    grpc.StatusCode.DATA_LOSS: errors.StorageError,
    grpc.StatusCode.UNAVAILABLE: errors.StorageError,
}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and one-line message a handler's exception becomes."""
    if isinstance(exc, errors.OplogError):
        for cls, code in STATUS_TABLE:
            if isinstance(exc, cls):
                return code, str(exc)
        return grpc.StatusCode.INTERNAL, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__} (details in the server log)"


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with ``code`` and ``message`` (``context.abort``, typed as never returning)."""
    context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def abort_with(context: grpc.ServicerContext, exc: BaseException, *, hint: str = "") -> NoReturn:
    """End the call with the status ``exc`` maps to, ``hint`` appended (unexpected errors are logged)."""
    code, message = status_for(exc)
    if hint:
        message = f"{message}; {hint}"
    if not isinstance(exc, errors.OplogError):
        log.error("unexpected error in a handler", exc_info=exc)
    abort(context, code, message)


#: How a ``ChangeFeedRewritten`` message names the position to resubscribe from.
_RESUBSCRIBE_RE = re.compile(r"resubscribe from position (\d+)")


def error_from_rpc(exc: grpc.RpcError, *, server: str = "") -> errors.OplogError:
    """The core error a failed call stands for, its message prefixed with the status (and server)."""
    code: grpc.StatusCode = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details: str = (exc.details() if hasattr(exc, "details") else "") or ""
    where = f"server {server}: " if server else ""
    message = f"{where}{code.name}: {details}" if details else f"{where}{code.name}"
    if code == grpc.StatusCode.ABORTED:
        if details.startswith("Boot sync"):
            return errors.BootSyncInProgress(details)
        rewritten = _RESUBSCRIBE_RE.search(details)
        if rewritten is not None:
            return errors.ChangeFeedRewritten(message, resume_from=int(rewritten.group(1)))
        return errors.SyncInProgress(details or errors.SyncInProgress().reason)
    cls = _ERROR_FOR_CODE.get(code)
    if cls is None:
        error: errors.OplogError = errors.RemoteCallError(code, message)
    else:
        error = cls(message)
    error.code = code  # type: ignore[attr-defined]
    return error
