"""The one exception tree of oplog: every error any part of it raises on purpose.

    OplogError
    ├── InvalidArgument            malformed input                                   -> INVALID_ARGUMENT
    │   ├── InvalidTransaction     a transaction that cannot be applied as sent
    │   │   └── UnsupportedAction  an unknown or not yet built action
    │   ├── InvalidSyncArgument    bad performSync parameters
    │   └── QueryRefused           SQL that is not a single read
    ├── BlockNotFound              a block or anchor that does not exist             -> NOT_FOUND
    ├── StructureError             an impossible structure (cycle, fold a document)  -> FAILED_PRECONDITION
    ├── InconsistentTree           a block tree that breaks its own invariants       -> DATA_LOSS
    ├── StorageError               the data directory cannot be used                 -> UNAVAILABLE
    │   ├── CorruptSegment         a bad checksum or frame inside the log            -> DATA_LOSS
    │   ├── DamagedCheckpoint      a checkpoint that cannot be trusted               -> DATA_LOSS
    │   ├── StaleBase              a checkpoint no longer a prefix of the logs' merged order
    │   ├── DataDirLocked          another process holds the writer's lock
    │   └── NotADataDir            the path is not an oplog data directory
    ├── RemoteError                the sync remote failed                            -> UNAVAILABLE
    │   ├── TransientRemoteError   worth retrying with back-off
    │   └── DamagedRemoteObject    an encrypted object that does not open            -> DATA_LOSS
    ├── CloudKeyError              no, a wrong or an unneeded passphrase for a cloud -> FAILED_PRECONDITION
    ├── RemoteCallError            a server status no other class stands for         -> UNKNOWN
    ├── Cancelled                  the caller stopped the work or stopped waiting    -> CANCELLED
    │   ├── SyncNotFollowed        ``oplog sync`` stopped following a server's sync
    │   └── SyncAbandoned          a daemon's sync stopped while waiting to retry
    ├── SyncInProgress             a sync is running                                 -> ABORTED
    │   └── BootSyncInProgress     the boot sync is running
    ├── QueryTimeout               SQL past its time budget                          -> DEADLINE_EXCEEDED
    ├── QueryOverLimit             SQL past a size or memory limit, or no query slot -> RESOURCE_EXHAUSTED
    ├── SubscriberTooSlow          a change-feed reader fell behind                  -> RESOURCE_EXHAUSTED
    ├── ChangeFeedRewritten        sync renumbered the change feed                   -> ABORTED
    └── ReadOnlyStore              a write on a read-only store                      -> PERMISSION_DENIED

The codes are the gRPC status each class becomes (a class without one takes its
parent's); the server maps them in one place (``oplog.server.status``), and the
CLI prints ``str(error)`` on one line. Every class lives here — also those
only one part raises (``StaleBase`` in replay, ``RemoteCallError`` on the
client side, ``SyncAbandoned`` in the daemon) — so ``except OplogError``
catches everything oplog means to raise and anything else is a bug;
``tests/test_errors_tree.py`` holds this drawing, ``__all__`` and the status
table to the classes.
"""

from __future__ import annotations

__all__ = [
    "OplogError",
    "InvalidArgument",
    "InvalidTransaction",
    "UnsupportedAction",
    "InvalidSyncArgument",
    "BlockNotFound",
    "StructureError",
    "StorageError",
    "CorruptSegment",
    "DataDirLocked",
    "NotADataDir",
    "RemoteError",
    "TransientRemoteError",
    "DamagedRemoteObject",
    "CloudKeyError",
    "SyncInProgress",
    "BootSyncInProgress",
    "QueryRefused",
    "InconsistentTree",
    "DamagedCheckpoint",
    "StaleBase",
    "RemoteCallError",
    "Cancelled",
    "SyncNotFollowed",
    "SyncAbandoned",
    "QueryTimeout",
    "QueryOverLimit",
    "SubscriberTooSlow",
    "ChangeFeedRewritten",
    "ReadOnlyStore",
]


class OplogError(Exception):
    """Base of every error oplog raises on purpose.

    ``location`` names where in a request the problem is, for example
    ``transactions[0].doOperations[2]``; it is prefixed to the message.
    """

    def __init__(self, message: str, *, location: str = "") -> None:
        self.reason = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)

    def at(self, location: str) -> OplogError:
        """Return a copy of this error located at ``location`` (kept if already set)."""
        if self.location:
            return self
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        OplogError.__init__(clone, self.reason, location=location)
        return clone

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take keyword-only arguments (path=, offset=...), so the default
        # reduce (cls(*args)) cannot rebuild them; an error crossing a process boundary
        # (the replay reader process) comes back with its class, message and attributes.
        return (_rebuild_error, (type(self), self.args, self.__dict__))


class InvalidArgument(OplogError):
    """Malformed input."""


class InvalidTransaction(InvalidArgument):
    """A transaction or operation that cannot be applied as sent."""


class UnsupportedAction(InvalidTransaction):
    """An action oplog does not know or does not support yet."""


class InvalidSyncArgument(InvalidArgument):
    """performSync parameters that are not acceptable."""


class BlockNotFound(OplogError):
    """A block (or an anchor block) that does not exist."""


class StructureError(OplogError):
    """An operation that would make an impossible tree."""


class InconsistentTree(OplogError):
    """A block tree that breaks its own invariants (``tree.check_invariants``): damage, or a bug."""


class StorageError(OplogError):
    """The data directory or its files cannot be used."""


class CorruptSegment(StorageError):
    """Damage inside the log: a bad checksum or frame before the tail."""

    def __init__(self, message: str, *, path: str, offset: int) -> None:
        self.path = path
        self.offset = offset
        super().__init__(f"{message} in {path} at offset {offset}")


class DamagedCheckpoint(StorageError):
    """A checkpoint that cannot be trusted; loading falls back to an older one, ``oplog verify`` reports it."""


class StaleBase(StorageError):
    """The base (checkpoint) is no longer a prefix of the merged order of these logs; replay tries an older one."""


class DataDirLocked(StorageError):
    """Another process holds the data directory's writer lock."""


class NotADataDir(StorageError):
    """The given path is not an oplog data directory."""


class RemoteError(OplogError):
    """The sync remote failed."""


class TransientRemoteError(RemoteError):
    """A remote failure worth retrying."""


class DamagedRemoteObject(RemoteError):
    """An object of an encrypted cloud folder that does not open (tampered, damaged, moved, or a newer format)."""


class CloudKeyError(OplogError):
    """A cloud folder's key cannot be used with what was given.

    No passphrase for an encrypted cloud, a wrong passphrase, a passphrase for a
    cloud that already holds plain data, or a damaged ``KEY``; never retried.
    """


class RemoteCallError(OplogError):
    """A call to an oplog server failed with a status no other class stands for; ``code`` is that status."""

    def __init__(self, code: object, message: str) -> None:
        # ``code`` is a grpc.StatusCode; the core does not import grpc, so it is typed loosely here.
        self.code = code
        super().__init__(message)


class Cancelled(OplogError):
    """The caller stopped the work, or stopped waiting for it."""


class SyncNotFollowed(Cancelled):
    """The caller stopped waiting for a server's sync (``cancel`` was set); the server's sync goes on."""


class SyncAbandoned(Cancelled):
    """A daemon's sync stopped while it waited to retry, because the daemon is stopping."""

    def __init__(self, message: str = "stopped while waiting to retry") -> None:
        super().__init__(message)


class SyncInProgress(OplogError):
    """A sync is already running."""

    def __init__(self, message: str = "Sync is in progress, please try again later") -> None:
        super().__init__(message)


class BootSyncInProgress(SyncInProgress):
    """The boot sync is still running."""

    def __init__(self, message: str = "Boot sync is in progress, please try again later") -> None:
        super().__init__(message)


class QueryRefused(InvalidArgument):
    """SQL that is not a single read-only statement."""


class QueryTimeout(OplogError):
    """SQL that ran past its time budget."""


class QueryOverLimit(OplogError):
    """SQL that needed more than a value-size or memory limit allows, or found every query slot taken."""


class SubscriberTooSlow(OplogError):
    """A change-feed subscriber fell behind its bounded buffer; it may resume from its last position."""


class ChangeFeedRewritten(OplogError):
    """Sync archived events the change feed had already numbered; resubscribe from the position given."""

    def __init__(self, message: str, *, resume_from: int) -> None:
        self.resume_from = resume_from
        super().__init__(message)


class ReadOnlyStore(OplogError):
    """A write was attempted on a store opened read-only."""


def _rebuild_error(cls: type[OplogError], args: tuple[object, ...], state: dict[str, object]) -> OplogError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
