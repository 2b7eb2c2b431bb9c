"""Hybrid logical clock: monotonic under a bad wall clock, merges remote stamps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oplog.clock import FakeClock
from oplog.hlc import HybridClock, hlc_counter, hlc_ms, make_hlc

START = 1_721_527_400_000


def test_layout() -> None:
    h = make_hlc(START, 5)
    assert h == START << 16 | 5 and hlc_ms(h) == START and hlc_counter(h) == 5


def test_tick_uses_wall_clock_and_counter() -> None:
    clock = FakeClock(START)
    hlc = HybridClock(clock)
    assert hlc.tick() == make_hlc(START, 0)
    assert hlc.tick() == make_hlc(START, 1)
    clock.advance(3)
    assert hlc.tick() == make_hlc(START + 3, 0)


def test_clock_going_backwards_stays_monotonic() -> None:
    clock = FakeClock(START)
    hlc = HybridClock(clock)
    first = hlc.tick()
    clock.ms -= 60_000
    second = hlc.tick()
    assert second == first + 1 and hlc_ms(second) == START


def test_observe_merges_remote_stamps() -> None:
    clock = FakeClock(START)
    hlc = HybridClock(clock)
    remote = make_hlc(START + 5_000, 7)
    hlc.observe(remote)
    assert hlc.tick() == remote + 1
    hlc.observe(make_hlc(START - 1))  # older stamps change nothing
    assert hlc.tick() == remote + 2


def test_restart_continues_after_last() -> None:
    last = make_hlc(START + 10, 3)
    assert HybridClock(FakeClock(START), last=last).tick() == last + 1


def test_counter_overflow_carries_into_milliseconds() -> None:
    hlc = HybridClock(FakeClock(START), last=make_hlc(START, 0xFFFF))
    h = hlc.tick()
    assert hlc_ms(h) == START + 1 and hlc_counter(h) == 0


@given(
    st.lists(
        st.one_of(
            st.integers(-5_000, 5_000).map(lambda d: ("move", d)),
            st.integers(-5_000, 5_000).map(lambda d: ("observe", d)),
        ),
        max_size=60,
    )
)
def test_strictly_increasing_whatever_happens(steps: list[tuple[str, int]]) -> None:
    clock = FakeClock(START)
    hlc = HybridClock(clock)
    seen = hlc.tick()
    for kind, delta in steps:
        if kind == "move":
            clock.ms += delta
        else:
            remote = make_hlc(START + delta, abs(delta) % 100)
            hlc.observe(remote)
            seen = max(seen, remote)
        stamp = hlc.tick()
        assert stamp > seen
        seen = stamp
