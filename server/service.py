"""The ``oplog.v1.OpLog`` servicer: a thin layer from protobuf requests to ``Store`` calls.

Every handler does three things: check the request's shape, call the store,
and turn the result into the reply. Core errors become status codes in
:mod:`oplog.server.status`; who may call what is decided before a handler runs,
in :mod:`oplog.server.auth`.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

import grpc
from google.protobuf import struct_pb2

from oplog import wire
from oplog.errors import InvalidArgument, SubscriberTooSlow
from oplog.model import is_block_id
from oplog.server.querypool import DEFAULT_QUERY_MEMORY, DEFAULT_QUERY_WORKERS, QueryPool
from oplog.server.status import abort, abort_with
from oplog.sqlquery import QueryRunner
from oplog.syncrunner import SyncRunner, event_message
from oplog.v1 import oplog_pb2 as pb
from oplog.v1 import oplog_pb2_grpc as pb_grpc

__all__ = ["Limits", "StoreLike", "SubscriptionLike", "OpLogService", "server_timing"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class SubscriptionLike(Protocol):
    """What ``Store.subscribe`` returns: an iterator of committed events that can be closed."""

    def __iter__(self) -> Iterator[pb.CommittedEvent]: ...

    def close(self) -> None: ...


class QueryResultLike(Protocol):
    """What ``Store.query`` returns (read-only: ``QueryResult`` is a frozen dataclass)."""

    @property
    def columns(self) -> Sequence[str]: ...

    @property
    def rows(self) -> Sequence[Sequence[Any]]: ...

    @property
    def truncated(self) -> bool: ...


class StoreLike(Protocol):
    """The part of ``oplog.store.Store`` the service uses (see docs/store-api.md)."""

    def apply(self, request: pb.ApplyRequest) -> pb.ApplyResponse: ...

    def get_block(self, block_id: str) -> pb.Block: ...

    def get_document(self, doc_id: str) -> list[pb.Block]: ...

    def state(self) -> pb.GetStateResponse: ...

    def subscribe(self, from_position: int, *, buffer: int = ...) -> SubscriptionLike: ...

    def journal_length(self) -> int: ...

    def query(
        self, sql: str, args: Sequence[Any], *, max_rows: int, time_budget_s: float, runner: QueryRunner
    ) -> QueryResultLike: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits the service enforces (defaults documented in docs/server.md)."""

    #: Largest request message accepted, in bytes (gRPC's ``max_receive_message_length``).
    max_request_bytes: int = 16 * 1024 * 1024
    #: Rows a query returns at most; more rows set ``truncated``.
    query_max_rows: int = 10_000
    #: Bytes of rows a query reply carries at most; more set ``truncated``.
    query_max_reply_bytes: int = 8 * 1024 * 1024
    #: Seconds a query may run (less when the caller's deadline is nearer), waiting for a slot included.
    query_time_budget_s: float = 2.0
    #: Queries run at once, each in its own worker process; more wait within their budget.
    max_queries: int = DEFAULT_QUERY_WORKERS
    #: Bytes of SQLite heap one query worker process may use.
    query_memory_bytes: int = DEFAULT_QUERY_MEMORY
    #: Committed events buffered per subscriber before it is ended as too slow.
    subscriber_buffer: int = 10_000
    #: Subscriptions served at once (each holds a worker thread).
    max_subscribers: int = 16


def server_timing(started: float) -> tuple[tuple[str, str]]:
    """The ``server-timing`` trailing metadata for a call that started at ``started`` (perf_counter)."""
    return (("server-timing", f"total;dur={(time.perf_counter() - started) * 1000:.3f}"),)


def _cell_value(cell: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    if cell is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(cell, bool):
        value.bool_value = cell
    elif isinstance(cell, int):
        # A double holds integers exactly only up to 2**53; larger ones travel as decimal text.
        if abs(cell) <= 2**53:
            value.number_value = cell
        else:
            value.string_value = str(cell)
    elif isinstance(cell, float):
        value.number_value = cell
    elif isinstance(cell, bytes | bytearray | memoryview):
        value.string_value = base64.b64encode(bytes(cell)).decode("ascii")
    else:
        value.string_value = str(cell)
    return value


def _query_arg(value: struct_pb2.Value, index: int) -> Any:
    kind = value.WhichOneof("kind")
    if kind in ("list_value", "struct_value"):
        raise InvalidArgument(f"args[{index}]: a query argument must be a string, number, bool or null")
    return wire.from_value(value)


class OpLogService(pb_grpc.OpLogServicer):
    """Serves ``oplog.v1.OpLog`` from one open store."""

    def __init__(
        self, store: StoreLike, limits: Limits | None = None, sync: SyncRunner | None = None
    ) -> None:
        self.store = store
        self.sync = sync
        self.limits = limits or Limits()
        self._subscriber_slots = threading.BoundedSemaphore(self.limits.max_subscribers)
        # Worker processes start on the first query, so a server nobody queries runs none.
        self.queries = QueryPool(
            self.limits.max_queries,
            memory_bytes=self.limits.query_memory_bytes,
            max_bytes=self.limits.query_max_reply_bytes,
        )
        self._subscriptions: set[SubscriptionLike] = set()
        self._watch_stops: set[threading.Event] = set()
        self._lock = threading.Lock()
        self._closing = False

    # ---- helpers ----

    @staticmethod
    def _call(
        context: grpc.ServicerContext, method: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """Call ``method`` (a bound store method), ending the call with the mapped status if it raises."""
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            abort_with(context, exc)

    @staticmethod
    def _require_id(context: grpc.ServicerContext, block_id: str) -> None:
        if not block_id:
            abort_with(context, InvalidArgument("id is required"))
        if not is_block_id(block_id):
            # A lookup would only say NOT_FOUND; the caller's id is malformed, not missing.
            abort_with(
                context,
                InvalidArgument(f"id {block_id[:64]!r} is not a block id (YYYYMMDDHHMMSS-xxxxxxx)"),
            )

    def begin_shutdown(self) -> None:
        """Refuse new subscriptions and end the open ones (they resume elsewhere or later)."""
        with self._lock:
            self._closing = True
            open_now = list(self._subscriptions)
            watches = list(self._watch_stops)
        for subscription in open_now:
            subscription.close()
        for stop in watches:
            stop.set()

    def close(self) -> None:
        """Stop the query worker processes (after the server has stopped)."""
        self.queries.close()

    @property
    def subscriber_count(self) -> int:
        """Subscriptions being served now."""
        with self._lock:
            return len(self._subscriptions)

    # ---- writes ----

    def Apply(self, request: pb.ApplyRequest, context: grpc.ServicerContext) -> pb.ApplyResponse:
        """Apply a performTransactions request; reply with the processed transactions and log positions."""
        started = time.perf_counter()
        if not request.transactions:
            context.set_trailing_metadata(server_timing(started))
            abort_with(context, InvalidArgument("transactions: at least one transaction is required"))
        try:
            response: pb.ApplyResponse = self.store.apply(request)
        except Exception as exc:
            context.set_trailing_metadata(server_timing(started))
            abort_with(context, exc)
        context.set_trailing_metadata(server_timing(started))
        return response

    # ---- sync ----

    def _runner(self, context: grpc.ServicerContext) -> SyncRunner:
        if self.sync is None:
            abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "sync is not configured: start the server with --remote",
            )
        return self.sync

    def PerformSync(self, request: pb.PerformSyncRequest, context: grpc.ServicerContext) -> pb.SyncProgress:
        """Start one sync in the background; reply at once with the initial progress."""
        runner = self._runner(context)
        try:
            return runner.perform_request(request)
        except Exception as exc:
            abort_with(context, exc)

    def GetSyncInfo(self, request: pb.GetSyncInfoRequest, context: grpc.ServicerContext) -> pb.SyncInfo:
        """Last sync time, status, cursors and last error."""
        return self._runner(context).info_message()

    def WatchSync(
        self, request: pb.WatchSyncRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.SyncEvent]:
        """Stream sync events until the client goes away or the server stops."""
        runner = self._runner(context)
        stop = threading.Event()
        context.add_callback(stop.set)
        with self._lock:
            if self._closing:
                abort(context, grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
            self._watch_stops.add(stop)
        try:
            # A first syncLog tells a new watcher where things stand, even when no sync runs.
            status = runner.info_message().status
            yield pb.SyncEvent(cmd="syncLog", message=f"status: {status}")
            for event in runner.watch(stop):
                yield event_message(event)
        finally:
            with self._lock:
                self._watch_stops.discard(stop)

    # ---- change feed ----

    def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.CommittedEvent]:
        """Stream committed events from ``from_position`` on, then live ones, until the caller leaves."""
        if not self._subscriber_slots.acquire(blocking=False):
            abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many subscribers (limit {self.limits.max_subscribers}); try again later",
            )
        subscription: SubscriptionLike | None = None
        try:
            with self._lock:
                closing = self._closing
            if closing:
                abort(context, grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
            end = self._call(context, self.store.journal_length)
            if request.from_position > end:
                # Subscribing there would silently skip the events numbered up to from_position.
                abort(
                    context,
                    grpc.StatusCode.OUT_OF_RANGE,
                    f"from_position {request.from_position} is beyond the end of the change feed: "
                    f"the current end is position {end}",
                )
            subscription = self._call(
                context, self.store.subscribe, request.from_position, buffer=self.limits.subscriber_buffer
            )
            with self._lock:
                self._subscriptions.add(subscription)
            # Cancellation, a deadline or the end of the call wakes a reader blocked waiting for events.
            if not context.add_callback(subscription.close):
                subscription.close()
            last = request.from_position
            iterator = iter(subscription)
            while True:
                try:
                    event = next(iterator)
                except StopIteration:
                    break
                except SubscriberTooSlow as exc:
                    hint = "" if "resume" in str(exc) else f"resume with from_position={last}"
                    abort_with(context, exc, hint=hint)
                except Exception as exc:
                    abort_with(context, exc)
                last = event.position
                yield event
            if context.is_active():
                # The feed ended without the caller leaving: the server is shutting down.
                abort(
                    context,
                    grpc.StatusCode.UNAVAILABLE,
                    f"the server is shutting down; resume with from_position={last}",
                )
        finally:
            if subscription is not None:
                with self._lock:
                    self._subscriptions.discard(subscription)
                subscription.close()
            self._subscriber_slots.release()

    # ---- reads ----

    def GetBlock(self, request: pb.GetBlockRequest, context: grpc.ServicerContext) -> pb.Block:
        """One block by id."""
        self._require_id(context, request.id)
        return self._call(context, self.store.get_block, request.id)

    def GetDocument(
        self, request: pb.GetDocumentRequest, context: grpc.ServicerContext
    ) -> pb.GetDocumentResponse:
        """A document's blocks: the document first, then depth first."""
        self._require_id(context, request.id)
        blocks = self._call(context, self.store.get_document, request.id)
        return pb.GetDocumentResponse(blocks=blocks)

    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> pb.QueryResponse:
        """Read-only SQL over the ``blocks`` table, within the row, byte and time limits."""
        if not request.sql.strip():
            abort_with(context, InvalidArgument("sql is required"))
        try:
            args = [_query_arg(v, i) for i, v in enumerate(request.args)]
        except InvalidArgument as exc:
            abort_with(context, exc)
        budget = self.limits.query_time_budget_s
        remaining = context.time_remaining()
        if remaining is not None:
            budget = max(0.001, min(budget, remaining - 0.01))
        result = self._call(
            context,
            self.store.query,
            request.sql,
            args,
            max_rows=self.limits.query_max_rows,
            time_budget_s=budget,
            runner=self.queries.run,
        )
        response = pb.QueryResponse(columns=list(result.columns), truncated=bool(result.truncated))
        size = 0
        for row in result.rows:
            values = struct_pb2.ListValue(values=[_cell_value(cell) for cell in row])
            size += values.ByteSize()
            if size > self.limits.query_max_reply_bytes:
                response.truncated = True
                break
            response.rows.append(values)
        return response

    def GetState(self, request: pb.GetStateRequest, context: grpc.ServicerContext) -> pb.GetStateResponse:
        """State hash, block count, per-device heads and position."""
        return self._call(context, self.store.state)
