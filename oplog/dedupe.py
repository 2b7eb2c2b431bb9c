"""Retried requests: recognise a request already logged and answer it again instead of applying it twice.

A client that timed out, or a user re-running an ``oplog apply`` whose reply
was lost, sends the same request again: same ``app``, ``session``, ``reqId``
and body. The store keeps a window of the requests it logged, keyed by
``(app, session, req_id)`` with a digest of the whole request; a request that
matches one in the window is answered with the original reply (read back
from the log) and logs nothing. Same key with a different body is a new
request (SiYuan's ``reqId`` is a millisecond timestamp, so two edits can share
one) and is applied. A request with ``reqId`` 0 is never deduplicated.

The window is the requests whose first event is among the last
``WINDOW_EVENTS`` events of this device's log. It needs no file of its own:
the digest travels in the request's first event (``Event.request_digest``),
so at open the window is rebuilt by reading the log's tail, and a retry after
a crash or restart is recognised exactly like one a moment later.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass

from oplog.eventlog import EventLog
from oplog.v1 import oplog_pb2 as pb

__all__ = ["WINDOW_EVENTS", "Seen", "RequestWindow", "request_digest", "reply_of"]

#: How many of the newest local events the window spans (≈ 20-40 ms to read back at open).
WINDOW_EVENTS = 10_000

_Key = tuple[str, str, int]


def request_digest(request: pb.ApplyRequest) -> bytes:
    """A digest of the request as received (deterministic serialization); empty for ``req_id`` 0."""
    if not request.req_id:
        return b""
    return hashlib.blake2b(request.SerializeToString(deterministic=True), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Seen:
    """A logged request: its digest and the local seqs of its events."""

    digest: bytes
    first_seq: int
    last_seq: int


class RequestWindow:
    """The recently logged requests, by ``(app, session, req_id)``; not thread-safe (the store's write lock)."""

    def __init__(self, span: int = WINDOW_EVENTS) -> None:
        """An empty window over the newest ``span`` local events."""
        self.span = span
        self._by_key: dict[_Key, Seen] = {}
        self._order: deque[tuple[_Key, int]] = deque()

    def __len__(self) -> int:
        return len(self._by_key)

    def find(self, request: pb.ApplyRequest, digest: bytes) -> Seen | None:
        """The logged request this one repeats, or None."""
        if not digest:
            return None
        seen = self._by_key.get((request.app, request.session, request.req_id))
        return seen if seen is not None and seen.digest == digest else None

    def add(self, app: str, session: str, req_id: int, digest: bytes, first_seq: int, last_seq: int) -> None:
        """Remember a request just logged as events ``first_seq..last_seq``."""
        if not digest:
            return
        key = (app, session, req_id)
        self._by_key[key] = Seen(digest, first_seq, last_seq)
        self._order.append((key, first_seq))
        oldest = last_seq - self.span
        order = self._order
        while order and order[0][1] <= oldest:
            gone, first = order.popleft()
            seen = self._by_key.get(gone)
            if seen is not None and seen.first_seq == first:
                del self._by_key[gone]

    @classmethod
    def from_log(cls, log: EventLog, span: int = WINDOW_EVENTS) -> RequestWindow:
        """The window as the log's newest ``span`` events describe it (a request cut by the edge is left out)."""
        window = cls(span)
        last = log.last_seq
        start: pb.Event | None = None
        for event in log.read(max(1, last - span + 1)):
            if event.tx_index == 0:
                start = event if event.request_digest else None
            if start is not None and event.tx_index + 1 >= event.tx_count:
                window.add(
                    start.app,
                    start.session,
                    start.req_id,
                    start.request_digest,
                    start.device_seq,
                    event.device_seq,
                )
                start = None
        return window


def reply_of(events: list[pb.Event]) -> pb.ApplyResponse:
    """The reply a request's logged events stand for: its resolved transactions and their positions."""
    response = pb.ApplyResponse()
    for event in events:
        response.transactions.append(event.transaction)
        response.positions.add(device_id=event.device_id, device_seq=event.device_seq, hlc=event.hlc)
    return response
