"""A test seam at the edge: ``OPLOG_TEST_CLOCK_MS`` fixes the clock ``oplog serve`` gives its store.

Why: a store stamps ``updated`` (and picks fresh ids' time part) from its
clock where a request does not say, so two servers fed the same requests
differ only in those stamps — and a test that the same bodies give the same
state hash over HTTP and over gRPC (tests/test_http_examples.py) needs two
servers whose clocks agree. ``OPLOG_TEST_CLOCK_MS=START`` or ``START+STEP``
makes the store's clock an :class:`oplog.clock.FakeClock` starting at
``START`` ms and moving ``STEP`` ms per read. Only the store's clock: the sync
runner's back-off and the HTTP edge's ``system/currentTime`` keep real time.
It is never meant for real data (every stamp would be the same time), so
``oplog serve`` says so on stderr whenever it is set. The core is untouched:
it reads whatever clock the edge hands it, as always.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from oplog.clock import Clock, FakeClock, SystemClock
from oplog.errors import InvalidArgument

__all__ = ["TEST_CLOCK_ENV", "store_clock"]

TEST_CLOCK_ENV = "OPLOG_TEST_CLOCK_MS"


def store_clock(environ: Mapping[str, str] = os.environ) -> tuple[Clock, str]:
    """The store's clock and a warning to print (empty for the real clock); ``InvalidArgument`` if malformed."""
    spec = environ.get(TEST_CLOCK_ENV, "").strip()
    if not spec:
        return SystemClock(), ""
    start, _, step = spec.partition("+")
    if not start.isdigit() or (step and not step.isdigit()):
        raise InvalidArgument(f"{TEST_CLOCK_ENV}={spec!r}: expected START_MS or START_MS+STEP_MS (digits)")
    warning = (
        f"{TEST_CLOCK_ENV} is set: the store's clock starts at {start} ms and moves {step or 0} ms per read "
        "(a test seam; never for real data)"
    )
    return FakeClock(int(start), int(step or 0)), warning
