"""The daemon's schedule (oplog/autosync.py), driven by plain numbers: no clock, no sleep."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oplog.autosync import AutoSync, Decision, Schedule
from oplog.errors import InvalidArgument

S = Schedule(debounce_s=1.0, max_delay_s=5.0, interval_s=300.0, backoff_s=2.0, max_backoff_s=20.0)


def idle(t: float = 0.0, schedule: Schedule = S) -> AutoSync:
    """A schedule whose start sync already ran and ended at ``t``."""
    m = AutoSync(schedule, t, sync_at_start=False)
    return m


def test_start_sync_runs_at_once() -> None:
    m = AutoSync(S, 100.0)
    assert m.next(100.0) == Decision("sync", trigger="start")
    assert m.started(100.0) == "start"
    assert m.next(100.5) == Decision("wait")
    m.finished(101.0, ok=True)
    # Nothing pending: the next thing is the periodic sync.
    assert m.next(101.0) == Decision("wait", at=401.0)


def test_change_waits_for_the_debounce_window() -> None:
    m = idle()
    m.change(10.0, "local")
    assert m.next(10.0) == Decision("wait", at=11.0)
    assert m.next(10.999).action == "wait"
    assert m.next(11.0) == Decision("sync", trigger="local")


def test_each_change_restarts_the_window_up_to_the_max_delay() -> None:
    m = idle()
    m.change(10.0, "local")
    # A change every 0.5 s: never 1 s of quiet, yet the sync is due 5 s after the first change.
    for i in range(1, 10):
        t = 10.0 + 0.5 * i
        m.change(t, "local")
        assert m.next(t).action == "wait"
    assert m.next(15.0) == Decision("sync", trigger="local")


def test_sources_are_named_in_the_trigger() -> None:
    m = idle()
    m.change(1.0, "remote")
    m.change(1.2, "local")
    assert m.next(2.2) == Decision("sync", trigger="local+remote")
    assert m.started(2.2) == "local+remote"
    assert m.pending == frozenset()


def test_changes_during_a_sync_make_one_follow_up() -> None:
    m = idle()
    m.change(1.0, "local")
    m.started(2.0)
    for i in range(10):
        m.change(2.1 + i * 0.01, "local" if i % 2 else "remote")
        assert m.next(2.1 + i * 0.01) == Decision("wait")  # one at a time
    m.finished(10.0, ok=True)
    # The last change was long ago: the follow-up starts right away, once.
    assert m.next(10.0) == Decision("sync", trigger="local+remote")
    m.started(10.0)
    m.finished(11.0, ok=True)
    assert m.next(11.0) == Decision("wait", at=311.0)
    assert m.syncs_started == 2


def test_follow_up_still_debounced_when_the_change_was_late() -> None:
    m = idle()
    m.started(0.0)
    m.change(4.8, "local")
    m.finished(5.0, ok=True)
    assert m.next(5.0) == Decision("wait", at=5.8)
    assert m.next(5.8).action == "sync"


def test_a_sync_with_nothing_new_is_not_followed_by_another() -> None:
    m = idle()
    m.change(0.0, "local")
    m.started(1.0)
    m.finished(1.5, ok=True)
    assert m.next(1.5) == Decision("wait", at=301.5)
    assert m.next(301.0).action == "wait"


def test_failures_back_off_exponentially_with_a_cap() -> None:
    m = idle()
    m.change(0.0, "local")
    t = 1.0
    waits = []
    for _ in range(6):
        assert m.next(t).action == "sync"
        m.started(t)
        t += 0.5
        m.finished(t, ok=False)
        d = m.next(t)
        assert d.action == "wait" and d.at is not None
        waits.append(d.at - t)
        assert m.next(d.at - 0.001).action == "wait"
        t = d.at
        assert m.next(t) == Decision("sync", trigger="retry")
    assert waits == [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    assert m.failures == 6


def test_changes_do_not_shorten_a_back_off_and_success_resets_it() -> None:
    m = idle()
    m.started(0.0)
    m.finished(1.0, ok=False)
    m.started(3.0)
    m.finished(3.0, ok=False)  # second failure: 4 s
    m.change(3.1, "remote")
    assert m.next(4.1) == Decision("wait", at=7.0)
    assert m.next(7.0) == Decision("sync", trigger="retry+remote")
    m.started(7.0)
    m.finished(7.5, ok=True)
    assert m.failures == 0
    m.change(8.0, "local")
    assert m.next(8.0) == Decision("wait", at=9.0)


def test_periodic_sync_after_the_interval() -> None:
    m = idle(0.0, Schedule(debounce_s=1.0, interval_s=60.0))
    assert m.next(59.9) == Decision("wait", at=60.0)
    assert m.next(60.0) == Decision("sync", trigger="periodic")
    m.started(60.0)
    m.finished(61.0, ok=True)
    assert m.next(61.0) == Decision("wait", at=121.0)


def test_interval_zero_turns_the_safety_net_off() -> None:
    m = idle(0.0, Schedule(interval_s=0.0))
    assert m.next(1e9) == Decision("wait")
    assert m.due() is None


def test_stop_waits_for_the_running_sync_then_stops() -> None:
    m = idle()
    m.change(0.0, "local")
    m.started(1.0)
    m.stop()
    m.change(1.1, "remote")
    assert m.next(100.0) == Decision("wait")
    m.finished(100.0, ok=True)
    assert m.next(100.0) == Decision("stop")
    with pytest.raises(RuntimeError):
        m.started(100.0)


def test_stop_when_idle_stops_at_once_even_with_changes_pending() -> None:
    m = idle()
    m.change(0.0, "local")
    m.stop()
    assert m.next(0.0) == Decision("stop")


def test_misuse_is_refused() -> None:
    m = idle()
    with pytest.raises(RuntimeError):
        m.finished(0.0, ok=True)
    m.started(0.0)
    with pytest.raises(RuntimeError):
        m.started(0.0)
    with pytest.raises(ValueError):
        m.change(0.0, "elsewhere")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"debounce_s": -1.0},
        {"interval_s": float("nan")},
        {"backoff_s": 10.0, "max_backoff_s": 5.0},
    ],
)
def test_bad_timings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidArgument):
        Schedule(**kwargs)


def test_huge_failure_counts_do_not_overflow() -> None:
    assert Schedule(backoff_s=1.0, max_backoff_s=30.0).backoff_after(5000) == 30.0
    assert Schedule().backoff_after(0) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_random_runs_keep_the_invariants(seed: int) -> None:
    """A random stream of changes, syncs and failures: one sync at a time, nothing early, nothing lost."""
    rng = random.Random(seed)
    sched = Schedule(debounce_s=0.5, max_delay_s=3.0, interval_s=50.0, backoff_s=1.0, max_backoff_s=8.0)
    m = AutoSync(sched, 0.0, sync_at_start=rng.random() < 0.5)
    now = 0.0
    running_until: float | None = None
    running_ok = True
    unsynced_since: float | None = None  # first change no started sync has covered yet
    last_change: float | None = None
    last_end = 0.0
    for _ in range(200):
        now += rng.choice([0.0, 0.01, 0.1, 0.3, 0.7, 2.0, 10.0])
        if running_until is not None and now >= running_until:
            m.finished(now, ok=running_ok)
            running_until = None
            last_end = now
        if rng.random() < 0.4:
            m.change(now, rng.choice(["local", "remote"]))
            unsynced_since = now if unsynced_since is None else unsynced_since
            last_change = now
        d = m.next(now)
        if running_until is not None:
            assert d == Decision("wait")  # one at a time
            continue
        if d.action == "sync":
            # Never before the debounce window of the last change, unless the max delay or a timer says so.
            timers_due = "start" in m.pending or m.failures or now >= last_end + sched.interval_s
            if unsynced_since is not None and last_change is not None and not timers_due:
                assert now >= min(last_change + sched.debounce_s, unsynced_since + sched.max_delay_s) - 1e-9
            m.started(now)
            unsynced_since = last_change = None
            running_until = now + rng.choice([0.0, 0.05, 0.5, 2.0])
            running_ok = rng.random() < 0.7
        else:
            assert d.action == "wait"
            # A change is never left without a wake-up time, and the wait is bounded.
            if unsynced_since is not None:
                assert d.at is not None
                assert d.at <= max(unsynced_since + sched.max_delay_s, last_end + sched.max_backoff_s) + 1e-9
            if d.at is not None:
                assert d.at > now
