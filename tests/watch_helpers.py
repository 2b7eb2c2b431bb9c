"""What the daemon's tests share: its reports collected as they come, waited for without sleeps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from oplog.watcher import Batch, SyncEnded, WatchEvent

#: How long a test waits for a report it expects.
TIMEOUT_S = 60.0


class Events:
    """The watcher's reports (pass it as ``observe``), collected; ``wait`` returns the first match from an index on."""

    def __init__(self) -> None:
        self.items: list[WatchEvent] = []
        self._cv = threading.Condition()

    def __call__(self, event: WatchEvent) -> None:
        with self._cv:
            self.items.append(event)
            self._cv.notify_all()

    def wait(self, pred: Callable[[WatchEvent], bool], start: int = 0) -> tuple[int, Any]:
        """The index and report of the first from ``start`` on for which ``pred`` holds (fails after ``TIMEOUT_S``)."""
        deadline = time.monotonic() + TIMEOUT_S
        with self._cv:
            while True:
                for i in range(start, len(self.items)):
                    if pred(self.items[i]):
                        return i, self.items[i]
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no matching watcher event; got {self.items}")
                self._cv.wait(left)

    def batch(self, start: int) -> tuple[int, Batch]:
        """The next batch report from ``start`` on."""
        return self.wait(lambda e: isinstance(e, Batch), start)

    def ended(self, start: int = 0) -> tuple[int, SyncEnded]:
        """The next sync end from ``start`` on."""
        return self.wait(lambda e: isinstance(e, SyncEnded), start)

    def ends(self) -> list[SyncEnded]:
        """Every sync end so far."""
        with self._cv:
            return [e for e in self.items if isinstance(e, SyncEnded)]

    def __len__(self) -> int:
        with self._cv:
            return len(self.items)
