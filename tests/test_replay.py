"""Replay: every path to the same events gives the same state — live, full, from a checkpoint, any log order."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oplog.checkpoint import CheckpointStore, capture_base
from oplog.engine import apply_event
from oplog.hlc import hlc_ms
from oplog.merge import merge_events
from oplog.replay import ReplayResult, StaleBase, replay, rewind
from oplog.statehash import StateHash
from oplog.tree import Workspace, check_invariants, snapshot
from tests.workload import open_logs, simulate, write_logs


def _save(store: CheckpointStore, r: ReplayResult) -> None:
    store.save(capture_base(r))


def _live(streams: dict) -> tuple[Workspace, StateHash]:
    ws = Workspace()
    live = StateHash.of(ws)
    for event in merge_events(streams.values()):
        result = apply_event(ws, event)
        live.update(ws, result.touched, result.removed)
    return ws, live


def _close(logs: dict) -> None:
    for log in logs.values():
        log.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_all_paths_agree(tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
    print(f"seed={seed}")
    data = tmp_path_factory.mktemp("data")
    streams = simulate(seed, devices=3, rounds=5, per_round=10)
    write_logs(data, streams, segment_bytes=4096)
    logs = open_logs(data)
    try:
        full = replay(logs)
        check_invariants(full.ws)
        ws, live = _live(streams)
        assert live == full.state_hash and snapshot(ws) == snapshot(full.ws)
        total = sum(len(v) for v in streams.values())
        assert full.position == total
        assert full.heads == {d: len(v) for d, v in streams.items()}
        # Any order of the logs, logs or raw event lists.
        for order in itertools.islice(itertools.permutations(list(logs.values())), 3):
            assert replay(list(order)).state_hash == full.state_hash
        assert (
            replay([list(reversed_) for reversed_ in reversed(list(streams.values()))]).state_hash
            == full.state_hash
        )
        # A checkpoint somewhere in the middle, then the tail.
        middle = random.Random(seed).randint(0, total)
        store = CheckpointStore(data / "checkpoints.db")
        _save(store, replay(logs, until_position=middle))
        resumed = rewind(logs, store)
        assert resumed.checkpoint is not None and resumed.checkpoint.position == middle
        assert resumed.applied == total - middle
        assert resumed.state_hash == full.state_hash and snapshot(resumed.ws) == snapshot(full.ws)
        assert resumed.conflicts == full.conflicts
        store.close()
    finally:
        _close(logs)


def test_until_position_is_exactly_the_prefix(tmp_path: Path) -> None:
    streams = simulate(5, devices=3, rounds=5, per_round=10)
    write_logs(tmp_path, streams)
    logs = open_logs(tmp_path)
    try:
        merged = list(merge_events(streams.values()))
        for n in (0, 1, len(merged) // 3, len(merged) - 1, len(merged), len(merged) + 5):
            ws = Workspace()
            for event in merged[:n]:
                apply_event(ws, event)
            result = replay(logs, until_position=n)
            assert result.position == min(n, len(merged))
            assert result.state_hash == StateHash.of(ws), f"until {n}"
            assert snapshot(result.ws) == snapshot(ws)
    finally:
        _close(logs)


def test_until_time(tmp_path: Path) -> None:
    streams = simulate(6, devices=2, rounds=4, per_round=10)
    merged = list(merge_events(streams.values()))
    cut = hlc_ms(merged[len(merged) // 2].hlc)
    expected = [e for e in merged if hlc_ms(e.hlc) <= cut]
    result = replay(list(streams.values()), until_time_ms=cut)
    assert result.position == len(expected)
    assert result.last_key is not None and hlc_ms(result.last_key[0]) <= cut


def test_continue_from_an_earlier_result() -> None:
    streams = simulate(8, devices=3, rounds=4, per_round=10)
    full = replay(list(streams.values()))
    half = replay(list(streams.values()), until_position=full.position // 2)
    before = {k: v for k, v in half.ws.blocks.items()}
    rest = replay(list(streams.values()), base=half)
    assert rest.position == full.position and rest.state_hash == full.state_hash
    assert set(before) - set(rest.ws.blocks) <= rest.removed
    assert set(rest.ws.blocks) - set(before) <= rest.touched
    assert rest.state_hash == StateHash.of(rest.ws)


def test_late_events_rewind_to_an_older_checkpoint(tmp_path: Path) -> None:
    """Events pulled later that sort before the tip: the newest checkpoint goes stale, rewind still converges."""
    streams = simulate(9, devices=3, rounds=6, per_round=12)
    late_device = sorted(streams)[1]
    early = {d: ev for d, ev in streams.items() if d != late_device}
    write_logs(tmp_path, early)
    logs = open_logs(tmp_path)
    store = CheckpointStore(tmp_path / "checkpoints.db", keep=4)
    first = replay(logs, until_position=3)
    _save(store, first)
    tip = replay(logs)
    _save(store, tip)
    _close(logs)
    # Now the other device's events arrive; many sort before the tip.
    write_logs(tmp_path, {late_device: streams[late_device]})
    logs = open_logs(tmp_path)
    try:
        with pytest.raises(StaleBase):
            replay(logs, base=store.load(store.list()[0]))
        rebuilt = rewind(logs, store)
        full = replay(logs)
        assert rebuilt.state_hash == full.state_hash and snapshot(rebuilt.ws) == snapshot(full.ws)
        assert rebuilt.position == full.position
        assert rebuilt.checkpoint is None or rebuilt.checkpoint.position <= 3
    finally:
        _close(logs)
        store.close()


def test_stale_base_when_history_changed(tmp_path: Path) -> None:
    a = simulate(10, devices=1, rounds=3, per_round=10)
    b = simulate(11, devices=1, rounds=3, per_round=10)
    base = replay(list(a.values()), until_position=5)
    with pytest.raises(StaleBase):
        replay(list(b.values()), base=base)


def test_progress_is_reported() -> None:
    streams = simulate(12, devices=2, rounds=3, per_round=10)
    seen: list[int] = []
    result = replay(list(streams.values()), progress=seen.append)
    assert seen and seen[-1] == result.position
