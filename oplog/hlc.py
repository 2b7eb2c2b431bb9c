"""Hybrid logical clock: ``hlc = physical_ms << 16 | counter``.

A stamp is a 64-bit integer that orders like a (milliseconds, counter) pair.
``tick`` stamps a local event strictly after every stamp seen so far, even when
the wall clock stalls or goes backwards; ``observe`` merges a stamp pulled from
another device. The core never reads the wall clock itself: time comes from the
``Clock`` passed in. Across restarts the store passes the largest stamp found in
the logs as ``last``, so no separate file is needed.

Counter overflow: when more than 65,535 events are stamped within one
millisecond (or while the wall clock lags behind ``last``), the counter carries
into the millisecond field, so the clock runs slightly ahead of wall time
instead of going backwards or repeating; it falls back in step once wall time
catches up. There is no bound on how far a remote stamp may drag the clock
ahead: a device with a clock far in the future moves everybody's stamps forward.
"""

from __future__ import annotations

import threading

from oplog.clock import Clock

__all__ = ["HybridClock", "hlc_ms", "hlc_counter", "make_hlc", "COUNTER_BITS"]

COUNTER_BITS = 16
_COUNTER_MASK = (1 << COUNTER_BITS) - 1
_MAX_HLC = (1 << 64) - 1


def make_hlc(ms: int, counter: int = 0) -> int:
    """Build a stamp from milliseconds and a counter."""
    return (ms << COUNTER_BITS) | (counter & _COUNTER_MASK)


def hlc_ms(h: int) -> int:
    """The physical milliseconds of a stamp."""
    return h >> COUNTER_BITS


def hlc_counter(h: int) -> int:
    """The logical counter of a stamp."""
    return h & _COUNTER_MASK


class HybridClock:
    """A thread-safe hybrid logical clock over an injected ``Clock``."""

    def __init__(self, clock: Clock, last: int = 0) -> None:
        """Start after ``last`` (the largest stamp already issued or seen)."""
        self._clock = clock
        self._last = last
        self._lock = threading.Lock()

    @property
    def last(self) -> int:
        """The largest stamp issued or observed so far."""
        return self._last

    def tick(self) -> int:
        """A stamp for a local event, strictly greater than any stamp issued or observed."""
        physical = make_hlc(self._clock.now_ms())
        with self._lock:
            # Adding 1 to the whole stamp lets a full counter carry into the milliseconds.
            stamp = physical if physical > self._last else self._last + 1
            if stamp > _MAX_HLC:
                raise OverflowError("hybrid logical clock exhausted 64 bits")
            self._last = stamp
            return stamp

    def observe(self, remote_hlc: int) -> None:
        """Merge a stamp from another device so later ticks sort after it."""
        with self._lock:
            if remote_hlc > self._last:
                self._last = remote_hlc
