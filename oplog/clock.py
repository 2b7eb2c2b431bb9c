"""Seams for time and randomness: the core never reads either directly.

The edge (server, CLI) passes a ``SystemClock`` and a ``RandomIds`` seeded from
the OS; tests pass ``FakeClock`` and a seeded ``RandomIds``. Whatever they
produce is written into the event, so replay never needs them.
"""

from __future__ import annotations

import random
import time
from typing import Protocol

from oplog.model import stamp_from_ms

__all__ = ["Clock", "IdSource", "SystemClock", "FakeClock", "RandomIds"]

_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class Clock(Protocol):
    """Where wall time comes from."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class IdSource(Protocol):
    """Where new block ids and device ids come from."""

    def new_block_id(self, time_ms: int) -> str:
        """A fresh SiYuan block id stamped with ``time_ms``."""
        ...

    def token(self, nbytes: int) -> str:
        """A random hex token of ``nbytes`` bytes."""
        ...


class SystemClock:
    """The real wall clock (edge only)."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, from the system clock."""
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock for tests: starts at ``start_ms`` and moves only when told."""

    def __init__(self, start_ms: int = 1_721_527_400_000, step_ms: int = 0) -> None:
        self.ms = start_ms
        self.step_ms = step_ms

    def now_ms(self) -> int:
        """The current fake time; advances by ``step_ms`` after each read."""
        value = self.ms
        self.ms += self.step_ms
        return value

    def advance(self, ms: int) -> None:
        """Move the clock forward by ``ms``."""
        self.ms += ms


class RandomIds:
    """Block ids and tokens from a ``random.Random``; seed it for determinism."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def new_block_id(self, time_ms: int) -> str:
        """A new id: the creation time, a dash and seven random characters."""
        suffix = "".join(self._rng.choice(_ID_ALPHABET) for _ in range(7))
        return f"{stamp_from_ms(time_ms)}-{suffix}"

    def token(self, nbytes: int) -> str:
        """``nbytes`` random bytes as hex."""
        return self._rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()
