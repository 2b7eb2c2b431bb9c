"""When the sync daemon syncs: a pure, deterministic schedule driven by the caller's clock.

The daemon (``oplog/watcher.py``, run by ``oplog watch``) tells an :class:`AutoSync`
what happens — a change seen in the local log or in the remote, a sync starting
or ending, a stop request — each with the current time from the monotonic clock
it was given, and asks
:meth:`AutoSync.next` what to do: sync now, wait until a given time (or for the
next event), or stop. This module never reads a clock, sleeps, or starts a
thread, so tests drive it with plain numbers.

The rules (times in seconds on the caller's clock):

* **debounce**: a change makes a sync due ``debounce_s`` after the *last* change,
  but no later than ``max_delay_s`` after the *first* change not yet synced, so a
  steady stream of edits still syncs;
* **one at a time**: nothing starts while a sync runs; changes seen meanwhile are
  coalesced into one follow-up sync, due by the same rule;
* **back-off**: after the n-th failure in a row the next attempt (a retry, whether
  or not anything changed) waits ``min(backoff_s * 2**(n-1), max_backoff_s)``
  from the end of the failed sync; changes do not shorten that wait; a success
  resets it;
* **periodic**: ``interval_s`` after the end of the last sync a sync runs even when
  nothing was seen (a safety net for missed notifications); 0 turns it off;
* **start**: optionally one sync as soon as the daemon starts;
* **stop**: no new sync starts; a running one is waited for, then ``next`` says stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from oplog.errors import InvalidArgument

__all__ = ["Schedule", "Decision", "AutoSync", "REASONS"]

#: Why a sync runs, in the order a trigger names them ("periodic" only when nothing else is pending).
REASONS = ("start", "retry", "local", "remote", "periodic")

#: 2**60 seconds of back-off is already beyond any cap; larger exponents would overflow a float.
_MAX_EXPONENT = 60


@dataclass(frozen=True, slots=True)
class Schedule:
    """The daemon's timings, in seconds."""

    debounce_s: float = 1.0
    #: a change is synced at most this long after it was seen, however busy the log (at least ``debounce_s``)
    max_delay_s: float = 10.0
    #: periodic safety-net sync after this long without one; 0 disables it
    interval_s: float = 300.0
    backoff_s: float = 1.0
    max_backoff_s: float = 300.0

    def __post_init__(self) -> None:
        """Refuse negative or inconsistent timings."""
        for name in ("debounce_s", "max_delay_s", "interval_s", "backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if not value >= 0:  # also refuses NaN
                raise InvalidArgument(
                    f"{name.removesuffix('_s').replace('_', '-')} must be >= 0, got {value}"
                )
        if self.max_backoff_s < self.backoff_s:
            raise InvalidArgument(
                f"max-backoff ({self.max_backoff_s:g}) must be >= the first back-off ({self.backoff_s:g})"
            )

    def backoff_after(self, failures: int) -> float:
        """The wait before the next attempt after ``failures`` failures in a row."""
        if failures <= 0:
            return 0.0
        return min(self.backoff_s * 2 ** min(failures - 1, _MAX_EXPONENT), self.max_backoff_s)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the daemon should do now."""

    action: Literal["sync", "wait", "stop"]
    #: for ``wait``: the time to ask again; None means only after the next event
    at: float | None = None
    #: for ``sync``: why (e.g. ``"local"``, ``"local+remote"``, ``"retry"``, ``"periodic"``)
    trigger: str = ""


class AutoSync:
    """The daemon's scheduling state: feed it events with the current time, ask it what to do."""

    def __init__(self, schedule: Schedule, now: float, *, sync_at_start: bool = True) -> None:
        """Start at time ``now``; with ``sync_at_start`` the first decision is a sync."""
        self.schedule = schedule
        self._pending: set[str] = {"start"} if sync_at_start else set()
        self._first_change: float | None = None
        self._last_change: float | None = None
        self._running = False
        self._running_since: float | None = None
        self._failures = 0
        self._retry_at: float | None = None
        self._last_end = now
        self._stopping = False
        self.syncs_started = 0

    # ---- what the daemon reports ----

    def change(self, now: float, source: str) -> None:
        """A change was seen (``source`` is ``"local"`` or ``"remote"``)."""
        if source not in ("local", "remote"):
            raise ValueError(f"unknown change source {source!r}")
        self._pending.add(source)
        if self._first_change is None:
            self._first_change = now
        self._last_change = now if self._last_change is None else max(self._last_change, now)

    def started(self, now: float) -> str:
        """A sync starts now (after ``next`` said so); returns its trigger. Pending changes go with it."""
        if self._running:
            raise RuntimeError("a sync is already running")
        if self._stopping:
            raise RuntimeError("stopping: no new sync may start")
        trigger = "+".join(r for r in REASONS if r in self._pending) or "periodic"
        self._pending.clear()
        self._first_change = self._last_change = None
        self._running = True
        self._running_since = now
        self.syncs_started += 1
        return trigger

    def finished(self, now: float, *, ok: bool) -> None:
        """The running sync ended at ``now``; ``ok`` is False when it failed (back-off follows)."""
        if not self._running:
            raise RuntimeError("no sync is running")
        self._running = False
        self._running_since = None
        self._last_end = now
        if ok:
            self._failures = 0
            self._retry_at = None
            self._pending.discard("retry")
        else:
            self._failures += 1
            self._retry_at = now + self.schedule.backoff_after(self._failures)
            self._pending.add("retry")

    def stop(self) -> None:
        """Stop: start nothing new; ``next`` says stop once no sync runs."""
        self._stopping = True

    # ---- what the daemon asks ----

    @property
    def running(self) -> bool:
        """Whether a sync is running."""
        return self._running

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stopping

    @property
    def failures(self) -> int:
        """Failed syncs in a row (0 after a success)."""
        return self._failures

    @property
    def pending(self) -> frozenset[str]:
        """Reasons waiting for the next sync."""
        return frozenset(self._pending)

    def due(self) -> float | None:
        """When the next sync is due (None: nothing is, not even a periodic one), ignoring running/stopping."""
        s = self.schedule
        candidates: list[float] = []
        if "start" in self._pending:
            candidates.append(self._last_end)
        if self._first_change is not None and self._last_change is not None:
            candidates.append(
                min(self._last_change + s.debounce_s, self._first_change + max(s.max_delay_s, s.debounce_s))
            )
        if "retry" in self._pending and self._retry_at is not None:
            candidates.append(self._retry_at)
        if s.interval_s > 0:
            candidates.append(self._last_end + s.interval_s)
        if not candidates:
            return None
        due = min(candidates)
        if self._retry_at is not None and self._failures:
            # Back-off: whatever is pending waits for the retry time.
            due = max(due, self._retry_at)
        return due

    def next(self, now: float) -> Decision:
        """What to do at ``now``: sync, wait (until ``at``, or for an event), or stop."""
        if self._stopping:
            return Decision("wait") if self._running else Decision("stop")
        if self._running:
            return Decision("wait")
        due = self.due()
        if due is None:
            return Decision("wait")
        if due <= now:
            trigger = "+".join(r for r in REASONS if r in self._pending) or "periodic"
            return Decision("sync", trigger=trigger)
        return Decision("wait", at=due)
