"""Test seams at the edge: ``OPLOG_TEST_CLOCK_MS`` and ``OPLOG_TEST_SEED`` fix the clock and ids ``oplog serve`` gives its store.

Why: a store stamps ``updated`` from its clock where a request does not say,
and names blocks a request leaves unnamed (a blockquote's paragraph, say)
from its clock and random source; so two servers fed the same requests
differ in those stamps and ids — and a test that the same bodies give the
same state hash over HTTP and over gRPC (tests/test_http_examples.py) needs
two servers that agree on both. ``OPLOG_TEST_CLOCK_MS=START`` or
``START+STEP`` makes the store's clock an :class:`oplog.clock.FakeClock`
starting at ``START`` ms and moving ``STEP`` ms per read;
``OPLOG_TEST_SEED=N`` seeds its :class:`oplog.clock.RandomIds`. Only the
store's: the sync runner's back-off, the HTTP edge's ``system/currentTime``
and the ids it makes itself keep real time and randomness. Neither is meant
for real data (every stamp would be the same few times, ids predictable), so
``oplog serve`` says so on stderr whenever one is set. The core is untouched:
it reads whatever clock and id source the edge hands it, as always.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from oplog.clock import Clock, FakeClock, IdSource, RandomIds, SystemClock
from oplog.errors import InvalidArgument

__all__ = ["TEST_CLOCK_ENV", "TEST_SEED_ENV", "store_seams"]

TEST_CLOCK_ENV = "OPLOG_TEST_CLOCK_MS"
TEST_SEED_ENV = "OPLOG_TEST_SEED"


def _clock(spec: str) -> tuple[Clock, str]:
    if not spec:
        return SystemClock(), ""
    start, _, step = spec.partition("+")
    if not start.isdigit() or (step and not step.isdigit()):
        raise InvalidArgument(f"{TEST_CLOCK_ENV}={spec!r}: expected START_MS or START_MS+STEP_MS (digits)")
    note = (
        f"{TEST_CLOCK_ENV} is set: the store's clock starts at {start} ms and moves {step or 0} ms per read"
    )
    return FakeClock(int(start), int(step or 0)), note


def _ids(spec: str) -> tuple[IdSource, str]:
    if not spec:
        return RandomIds(), ""
    if not spec.isdigit():
        raise InvalidArgument(f"{TEST_SEED_ENV}={spec!r}: expected a non-negative integer")
    return RandomIds(int(spec)), f"{TEST_SEED_ENV} is set: the store's new ids come from seed {spec}"


def store_seams(environ: Mapping[str, str] = os.environ) -> tuple[Clock, IdSource, str]:
    """The store's clock and id source, and a warning to print (empty when neither seam is set)."""
    clock, clock_note = _clock(environ.get(TEST_CLOCK_ENV, "").strip())
    ids, ids_note = _ids(environ.get(TEST_SEED_ENV, "").strip())
    notes = [note for note in (clock_note, ids_note) if note]
    warning = "; ".join(notes) + " (test seams; never for real data)" if notes else ""
    return clock, ids, warning
