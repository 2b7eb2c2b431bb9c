"""The change feed on its own: catch-up then live with no gap or duplicate, overflow, renumbering."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from oplog.changefeed import ChangeFeed
from oplog.errors import ChangeFeedRewritten, InvalidArgument, SubscriberTooSlow
from oplog.v1 import oplog_pb2 as pb

DEVICE = "c0ffee0000000001"


class Journal:
    """The journal the feed reads catch-up from: a list of events, position = index + 1."""

    def __init__(self) -> None:
        self.events: list[pb.Event] = []

    def read(self, after: int, until: int) -> Iterator[pb.CommittedEvent]:
        for position in range(after + 1, until + 1):
            yield pb.CommittedEvent(position=position, event=self.events[position - 1])

    def append(self, count: int) -> list[pb.Event]:
        start = len(self.events)
        new = [pb.Event(device_id=DEVICE, device_seq=start + i + 1) for i in range(count)]
        self.events.extend(new)
        return new


def test_catch_up_then_live_without_gap_or_duplicate() -> None:
    journal = Journal()
    feed = ChangeFeed(journal.read, 0)
    feed.acknowledged(0)
    first = journal.append(3)
    feed.appended(first)
    feed.acknowledged(3)
    sub = feed.subscribe(1)
    more = journal.append(2)
    feed.appended(more)
    feed.acknowledged(4)  # only seq 4 is acknowledged so far
    got = [next(sub).position for _ in range(3)]
    assert got == [2, 3, 4]
    feed.acknowledged(5)
    assert next(sub).position == 5
    assert feed.length() == 5
    sub.close()
    assert list(sub) == []


def test_a_reader_too_slow_is_told_where_to_resume() -> None:
    journal = Journal()
    feed = ChangeFeed(journal.read, 0)
    sub = feed.subscribe(0, buffer=2)
    feed.appended(journal.append(5))
    feed.acknowledged(5)
    seen = []
    with pytest.raises(SubscriberTooSlow, match="resume from position 2"):
        for item in sub:
            seen.append(item.position)
    assert seen == [1, 2]


def test_renumbering_ends_readers_that_saw_a_changed_position() -> None:
    journal = Journal()
    feed = ChangeFeed(journal.read, 0)
    feed.appended(journal.append(4))
    feed.acknowledged(4)
    sub = feed.subscribe(0)
    assert [next(sub).position for _ in range(4)] == [1, 2, 3, 4]
    del journal.events[2:]
    feed.renumbered(2, unchanged=2)
    with pytest.raises(ChangeFeedRewritten) as info:
        next(sub)
    assert info.value.resume_from == 2


def test_a_blocked_reader_wakes_on_close() -> None:
    feed = ChangeFeed(Journal().read, 0)
    sub = feed.subscribe(0)
    ended = threading.Event()

    def read() -> None:
        assert list(sub) == []
        ended.set()

    reader = threading.Thread(target=read)
    reader.start()
    sub.close()
    reader.join(timeout=30)
    assert ended.is_set()


def test_negative_position_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        ChangeFeed(Journal().read, 0).subscribe(-1)
