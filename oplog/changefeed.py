"""The change feed: numbering stored events and handing them to ``Subscribe`` readers.

Every event the data directory stores gets a journal position (1, 2, 3…, see
``oplog.journal``). A subscriber first reads the positions it missed from the
logs (catch-up), then takes live events from a bounded queue. The feed owns
its lock, its subscriber list and the local events waiting for their request
to be acknowledged; the store only tells it what happened (local events
appended, acknowledged, events pulled, events archived) and hands it a reader
of journal positions. Registration and the catch-up bound are taken under the
same lock as publication, so a reader misses nothing and sees nothing twice.

Writers never wait for a reader: a subscriber whose queue overflows is ended
with ``SubscriberTooSlow`` naming the position to resume from.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence

from oplog.errors import ChangeFeedRewritten, InvalidArgument, OplogError, SubscriberTooSlow
from oplog.v1 import oplog_pb2 as pb

__all__ = ["ChangeFeed", "Subscription", "JournalReader"]

#: Reads journal positions ``after+1 .. until`` from the logs (the store's catch-up source).
JournalReader = Callable[[int, int], Iterator[pb.CommittedEvent]]


class Subscription:
    """A change-feed reader: catch-up from the journal, then live events; no gap, no duplicate."""

    def __init__(self, feed: ChangeFeed, from_position: int, buffer: int, catchup_end: int) -> None:
        """Use ``ChangeFeed.subscribe``."""
        self._feed = feed
        self._queue: queue.Queue[pb.CommittedEvent | None] = queue.Queue(maxsize=buffer)
        self._overflowed = False
        self._closed = False
        self._error: OplogError | None = None
        self._catchup_end = catchup_end
        self._iterator: Iterator[pb.CommittedEvent] | None = None
        self.position = from_position

    def offer(self, item: pb.CommittedEvent) -> None:
        """Queue one live event (called by the feed under its lock); overflow ends the subscription."""
        if self._overflowed or self._closed or self._error is not None:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._overflowed = True
            self._wake()

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass

    def end(self, error: OplogError) -> None:
        """End the subscription with ``error`` (the feed has already dropped it); a blocked iterator wakes."""
        self._error = error
        self._wake()

    def close(self) -> None:
        """Stop the subscription; a blocked iterator wakes and ends."""
        self._closed = True
        self._feed.unsubscribe(self)
        self._wake()

    def __iter__(self) -> Iterator[pb.CommittedEvent]:
        return self._events()

    def __next__(self) -> pb.CommittedEvent:
        """The next event (the subscription is its own iterator, as a stream handler expects)."""
        if self._iterator is None:
            self._iterator = self._events()
        return next(self._iterator)

    def _events(self) -> Iterator[pb.CommittedEvent]:
        for item in self._feed.read(self.position, self._catchup_end):
            if self._error is not None:
                raise self._error
            if self._closed:
                return
            self.position = item.position
            yield item
        while not self._closed:
            if self._error is not None:
                raise self._error
            if self._overflowed and self._queue.empty():
                raise SubscriberTooSlow(
                    f"subscriber fell more than {self._queue.maxsize} events behind; resume from position {self.position}"
                )
            got = self._queue.get()
            if got is None:
                if (self._overflowed or self._error is not None) and not self._closed:
                    continue
                return
            if got.position <= self.position:
                continue
            self.position = got.position
            yield got


class ChangeFeed:
    """Journal positions and their live readers; thread-safe."""

    def __init__(self, read: JournalReader, published: int) -> None:
        """``read`` serves catch-up reads; ``published`` is the journal's length at open."""
        self.read = read
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._pending: list[pb.Event] = []
        self._published = published

    def length(self) -> int:
        """How many events the journal holds as far as readers are told (the newest position)."""
        with self._lock:
            return self._published

    def subscribe(self, from_position: int = 0, *, buffer: int = 10_000) -> Subscription:
        """A subscription starting after ``from_position``."""
        if from_position < 0:
            raise InvalidArgument("from_position must not be negative")
        with self._lock:
            sub = Subscription(self, from_position, buffer, self._published)
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub`` (it closes itself)."""
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def close(self) -> None:
        """Close every subscription (the store is closing)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.close()

    def appended(self, events: Sequence[pb.Event]) -> None:
        """Local events were appended; they are published once acknowledged (``acknowledged``)."""
        with self._lock:
            self._pending.extend(events)

    def acknowledged(self, seq: int) -> None:
        """Publish the local events up to ``seq`` (what the writer has told its callers is committed)."""
        with self._lock:
            pending = self._pending
            if not pending or pending[0].device_seq > seq:
                return
            if pending[-1].device_seq <= seq:
                ready, self._pending = pending, []
            else:
                ready = [e for e in pending if e.device_seq <= seq]
                self._pending = [e for e in pending if e.device_seq > seq]
            if not self._subscribers:
                # Nobody listens: only the position moves (a CommittedEvent copies the event).
                self._published += len(ready)
                return
            for event in ready:
                self._published += 1
                item = pb.CommittedEvent(position=self._published, event=event)
                for sub in self._subscribers:
                    sub.offer(item)

    def pulled(self, events: Sequence[pb.Event], length: int) -> None:
        """Sync stored ``events`` after every published position; the journal now holds ``length``."""
        with self._lock:
            before = self._published
            self._published = length
            if not self._subscribers:
                return
            for position, event in enumerate(events, start=before + 1):
                item = pb.CommittedEvent(position=position, event=event)
                for sub in self._subscribers:
                    sub.offer(item)

    def renumbered(self, length: int, unchanged: int) -> None:
        """Sync archived events: the journal holds ``length``, its first ``unchanged`` positions as before.

        A subscriber that was handed a position whose event changed is ended
        with ``ChangeFeedRewritten`` (it resubscribes); the others get the
        journal's new events.
        """
        with self._lock:
            told = self._published
            self._published = length
            self._pending = []
            if unchanged < told:
                error = ChangeFeedRewritten(
                    f"sync archived events the change feed had numbered after position {unchanged}; "
                    f"resubscribe from position {unchanged}",
                    resume_from=unchanged,
                )
                for sub in self._subscribers:
                    sub.end(error)
                self._subscribers = []
            elif self._subscribers:
                for item in self.read(told, length):
                    for sub in self._subscribers:
                        sub.offer(item)
