"""Checkpoints: round trip, keep-newest, and every kind of damage falls back to a correct state with a warning."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import pytest

from oplog.checkpoint import (
    CheckpointStore,
    DamagedCheckpoint,
    capture,
    capture_base,
    decode_state,
    encode_state,
)
from oplog.replay import ReplayResult, replay, rewind
from oplog.tree import check_invariants, snapshot
from tests.workload import open_logs, simulate, write_logs


def _save(store: CheckpointStore, r: ReplayResult) -> int:
    return store.save(capture_base(r))


@pytest.fixture
def history(tmp_path: Path):  # type: ignore[no-untyped-def]
    streams = simulate(31, devices=3, rounds=6, per_round=12)
    write_logs(tmp_path, streams)
    logs = open_logs(tmp_path)
    yield tmp_path, logs
    for log in logs.values():
        log.close()


def test_encode_decode_round_trip(history) -> None:  # type: ignore[no-untyped-def]
    _, logs = history
    full = replay(logs)
    ws = decode_state(encode_state(full.ws))
    check_invariants(ws)
    assert snapshot(ws) == snapshot(full.ws)


def test_keeps_the_newest(history) -> None:  # type: ignore[no-untyped-def]
    data, logs = history
    with CheckpointStore(data / "checkpoints.db", keep=2) as store:
        for n in (10, 20, 30, 40):
            _save(store, replay(logs, until_position=n))
        assert [i.position for i in store.list()] == [40, 30]
        loaded = store.load(store.list()[0])
        assert loaded.state_hash == replay(logs, until_position=40).state_hash
    with CheckpointStore(data / "checkpoints.db", readonly=True) as ro:
        assert [i.position for i in ro.list()] == [40, 30]


def _two_checkpoints(data: Path, logs) -> None:  # type: ignore[no-untyped-def]
    with CheckpointStore(data / "checkpoints.db", keep=3) as store:
        _save(store, replay(logs, until_position=20))
        _save(store, replay(logs, until_position=60))


def _check_recovers(data: Path, logs, *, expect_checkpoint: int | None) -> None:  # type: ignore[no-untyped-def]
    full = replay(logs)
    with pytest.warns(UserWarning):
        with CheckpointStore(data / "checkpoints.db") as store:
            result = rewind(logs, store)
    assert result.state_hash == full.state_hash and snapshot(result.ws) == snapshot(full.ws)
    got = result.checkpoint.position if result.checkpoint is not None else None
    assert got == expect_checkpoint


def test_hash_mismatch_falls_back_to_older(history) -> None:  # type: ignore[no-untyped-def]
    data, logs = history
    _two_checkpoints(data, logs)
    conn = sqlite3.connect(data / "checkpoints.db")
    conn.execute("UPDATE checkpoints SET state_hash = ? WHERE position = 60", ("0" * 64,))
    conn.commit()
    conn.close()
    _check_recovers(data, logs, expect_checkpoint=20)


def test_flipped_state_byte_falls_back_to_older(history) -> None:  # type: ignore[no-untyped-def]
    data, logs = history
    _two_checkpoints(data, logs)
    conn = sqlite3.connect(data / "checkpoints.db")
    (ckpt_id,) = conn.execute("SELECT id FROM checkpoints WHERE position = 60").fetchone()
    (blob,) = conn.execute(
        "SELECT data FROM checkpoint_chunks WHERE checkpoint_id = ?", (ckpt_id,)
    ).fetchone()
    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0x40
    conn.execute("UPDATE checkpoint_chunks SET data = ? WHERE checkpoint_id = ?", (bytes(flipped), ckpt_id))
    conn.commit()
    conn.close()
    with pytest.raises(DamagedCheckpoint):
        with CheckpointStore(data / "checkpoints.db") as store:
            store.load(store.list()[0])
    _check_recovers(data, logs, expect_checkpoint=20)


def _checkpoint_file(data: Path) -> Path:
    # Fold the WAL into the main file so damage to the file hits the checkpoints.
    conn = sqlite3.connect(data / "checkpoints.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    return data / "checkpoints.db"


def test_truncated_file_falls_back(history) -> None:  # type: ignore[no-untyped-def]
    data, logs = history
    _two_checkpoints(data, logs)
    path = _checkpoint_file(data)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    full = replay(logs)
    with pytest.warns(UserWarning):
        with CheckpointStore(path) as store:
            result = rewind(logs, store)
    assert result.state_hash == full.state_hash


@pytest.mark.parametrize("where", [0.02, 0.5, 0.9])
def test_flipped_file_byte_falls_back(history, where: float) -> None:  # type: ignore[no-untyped-def]
    data, logs = history
    _two_checkpoints(data, logs)
    path = _checkpoint_file(data)
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * where)] ^= 0xFF
    path.write_bytes(bytes(raw))
    full = replay(logs)
    with warnings.catch_warnings(record=True), CheckpointStore(path) as store:
        result = rewind(logs, store)
    # A flip in unused space is harmless; anywhere else it must be caught (warning) — never a wrong state.
    assert result.state_hash == full.state_hash and snapshot(result.ws) == snapshot(full.ws)


def test_deleted_file_replays_everything_with_a_warning(history) -> None:  # type: ignore[no-untyped-def]
    data, logs = history
    _two_checkpoints(data, logs)
    for suffix in ("", "-wal", "-shm"):
        Path(str(data / "checkpoints.db") + suffix).unlink(missing_ok=True)
    _check_recovers(data, logs, expect_checkpoint=None)


def test_crash_mid_save_keeps_older_checkpoints(history, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    data, logs = history
    _two_checkpoints(data, logs)
    snap = capture(**_capture_args(replay(logs)))
    import oplog.checkpoint as ck

    def boom(chunks):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt("crash")

    with CheckpointStore(data / "checkpoints.db") as store:
        monkeypatch.setattr(ck, "_digest", boom)
        with pytest.raises(KeyboardInterrupt):
            store.save(snap)
        monkeypatch.undo()
        assert [i.position for i in store.list()] == [60, 20]
        assert store.load(store.list()[0]).position == 60


def _capture_args(r: ReplayResult) -> dict:  # type: ignore[type-arg]
    return dict(
        ws=r.ws,
        state_hash=r.state_hash,
        position=r.position,
        heads=r.heads,
        head_hlcs=r.head_hlcs,
        last_key=r.last_key,
        conflicts=r.conflicts,
    )
