"""The replay reader process gives exactly the in-process fold: same state, heads, conflicts, errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from oplog.checkpoint import CheckpointStore, capture_base
from oplog.clock import FakeClock, RandomIds
from oplog.errors import CorruptSegment, OplogError
from oplog.replay import StaleBase, replay, rewind
from oplog.replayreader import ReaderOp, op_tuple, reader_op
from oplog.store import Store, StoreOptions
from oplog.tree import snapshot
from oplog.wire import request_from_json
from tests.log_helpers import flip_bit, seg_paths
from tests.workload import open_logs, random_request, simulate, write_logs

#: Seeded multi-device workloads (every action the workload generator knows, conflicts included).
SEEDS = (3, 17, 41)


def _close(logs: dict) -> None:
    for log in logs.values():
        log.close()


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    assert a.state_hash == b.state_hash and snapshot(a.ws) == snapshot(b.ws)
    assert (a.position, a.heads, a.head_hlcs, a.last_key) == (b.position, b.heads, b.head_hlcs, b.last_key)
    assert a.conflicts == b.conflicts


@pytest.mark.parametrize("seed", SEEDS)
def test_reader_process_folds_exactly_like_the_process_itself(tmp_path: Path, seed: int) -> None:
    streams = simulate(seed, devices=3, rounds=6, per_round=12)
    write_logs(tmp_path, streams, segment_bytes=4096)
    logs = open_logs(tmp_path)
    try:
        here = replay(logs, reader=False)
        there = replay(logs, reader=True)
        _same(there, here)
        cut = here.position // 2
        _same(replay(logs, reader=True, until_position=cut), replay(logs, reader=False, until_position=cut))
        # From a checkpoint: the child checks the base against the logs as the parent would.
        store = CheckpointStore(tmp_path / "checkpoints.db")
        store.save(capture_base(replay(logs, until_position=cut, reader=False)))
        base = store.load(store.list()[0])
        _same(replay(logs, base=base, reader=True), here)
        store.close()
    finally:
        _close(logs)


def test_a_stale_base_is_raised_from_the_child(tmp_path: Path) -> None:
    a, b = simulate(10, devices=1, rounds=3, per_round=10), simulate(11, devices=1, rounds=3, per_round=10)
    write_logs(tmp_path / "a", a)
    write_logs(tmp_path / "b", b)
    logs_a, logs_b = open_logs(tmp_path / "a"), open_logs(tmp_path / "b")
    try:
        base = replay(logs_a, until_position=5, reader=False)
        with pytest.raises(StaleBase, match="no longer holds|not the one|sorts before"):
            replay(logs_b, base=base, reader=True)
    finally:
        _close(logs_a)
        _close(logs_b)


def test_damage_is_reported_with_file_and_offset(tmp_path: Path) -> None:
    streams = simulate(5, devices=2, rounds=4, per_round=10)
    write_logs(tmp_path, streams, segment_bytes=4096)
    logs = open_logs(tmp_path)  # opened sound; the damage comes after (a disk going bad)
    sealed = seg_paths(str(tmp_path / "devices" / sorted(streams)[0]))[0]
    flip_bit(sealed, 200)
    try:
        with pytest.raises(CorruptSegment) as here:
            replay(logs, reader=False)
        with pytest.raises(CorruptSegment) as there:
            replay(logs, reader=True)
        assert here.value.path == there.value.path == sealed
        assert isinstance(there.value.offset, int) and str(there.value).endswith(
            f"at offset {there.value.offset}"
        )
    finally:
        _close(logs)


def test_events_still_buffered_in_a_writable_log_are_read(tmp_path: Path) -> None:
    """The store's own log may hold appended batches in memory (interval durability): the child sees them."""
    rng = random.Random(7)
    store = Store.open(
        tmp_path / "data",
        options=StoreOptions(durability="interval", interval_ms=60_000),
        clock=FakeClock(1_721_527_400_000, step_ms=7),
        ids=RandomIds(7),
    )
    try:
        for n in range(40):
            try:
                store.apply(request_from_json(random_request(rng, store.ws, n + 1)))
            except OplogError:
                continue  # the generator also makes requests the engine refuses
        logs = store._logs
        assert replay(logs, reader=True).state_hash == store.state_hash
        assert rewind(logs, None, warn_missing=False).state_hash == store.state_hash
    finally:
        store.close()


def test_reader_ops_carry_every_field_replay_reads() -> None:
    streams = simulate(23, devices=2, rounds=4, per_round=12)
    for events in streams.values():
        for event in events:
            for op in event.transaction.do_operations:
                copy = reader_op(op_tuple(op))
                assert isinstance(copy, ReaderOp)
                for name in ReaderOp.__slots__:
                    if name in ("blocks", "attrs"):
                        continue
                    assert getattr(copy, name) == getattr(op, name)
                assert [(a.name, a.value) for a in copy.attrs] == [(a.name, a.value) for a in op.attrs]
                assert [s.id for s in copy.blocks] == [s.id for s in op.blocks]
