"""The one exception tree of oplog's core.

    OplogError
    ├── InvalidArgument            malformed input              -> INVALID_ARGUMENT
    │   ├── InvalidTransaction     a transaction that cannot be applied as sent
    │   │   └── UnsupportedAction  an unknown or not yet built action
    │   └── InvalidSyncArgument    bad performSync parameters
    ├── BlockNotFound              a block or anchor that does not exist -> NOT_FOUND
    ├── StructureError             an impossible structure (cycle, fold a document) -> FAILED_PRECONDITION
    ├── StorageError               the data directory cannot be used
    │   ├── CorruptSegment         a bad checksum or frame inside the log (file, offset)
    │   ├── DataDirLocked          another process holds the writer's lock
    │   └── NotADataDir            the path is not an oplog data directory
    ├── RemoteError                the sync remote failed
    │   └── TransientRemoteError   worth retrying with back-off
    ├── SyncInProgress             a sync is running             -> ABORTED
    │   └── BootSyncInProgress     the boot sync is running      -> ABORTED
    ├── QueryRefused               SQL that is not a read         -> INVALID_ARGUMENT
    ├── QueryTimeout               SQL past its time budget       -> DEADLINE_EXCEEDED
    ├── QueryOverLimit             SQL past a size or memory limit, or too many at once -> RESOURCE_EXHAUSTED
    ├── SubscriberTooSlow          a change-feed reader fell behind -> RESOURCE_EXHAUSTED
    ├── ChangeFeedRewritten        sync renumbered the change feed  -> ABORTED
    └── ReadOnlyStore              a write on a read-only store   -> PERMISSION_DENIED

The server maps these to gRPC status codes in one place; the CLI prints
``str(error)`` on one line.
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
    "SyncInProgress",
    "BootSyncInProgress",
    "QueryRefused",
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


class StorageError(OplogError):
    """The data directory or its files cannot be used."""


class CorruptSegment(StorageError):
    """Damage inside the log: a bad checksum or frame before the tail."""

    def __init__(self, message: str, *, path: str, offset: int) -> None:
        self.path = path
        self.offset = offset
        super().__init__(f"{message} in {path} at offset {offset}")


class DataDirLocked(StorageError):
    """Another process holds the data directory's writer lock."""


class NotADataDir(StorageError):
    """The given path is not an oplog data directory."""


class RemoteError(OplogError):
    """The sync remote failed."""


class TransientRemoteError(RemoteError):
    """A remote failure worth retrying."""


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
