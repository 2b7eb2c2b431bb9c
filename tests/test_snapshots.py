"""Remote snapshots: uploaded under ``<cloud>/snapshots/``, started from by a device far behind, checked by it.

Real stores in real data directories, a real folder remote (the S3 and WebDAV
backends go through the same ``Remote`` calls: ``tests/test_remote_sync.py``),
and a real sealed remote for the encrypted case. The crash tests SIGKILL a
real child process (``tests/compaction_child.py``) and print their seed.
"""

from __future__ import annotations

import marshal
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oplog.checkpoint import Snapshot, decode_parts, encode_state
from oplog.clock import FakeClock, RandomIds
from oplog.datadir import collect_stats, replay_data_dir
from oplog.remote import LocalDirRemote, Remote
from oplog.remotesnap import FORMAT, KEEP, SNAPSHOTS, encode_snapshot, newest_first, parse_name
from oplog.snapcheck import check_pending
from oplog.statehash import StateHash
from oplog.store import Store
from oplog.sync import SyncSession, parse_sync_params
from oplog.syncrunner import SyncRunner, run_sync
from oplog.syncstate import load_state
from oplog.verify import verify_data_dir
from oplog.verify_remote import verify_remote
from oplog.wire import request_from_json
from tests.compaction_child import KILL_SEEDS, run_child
from tests.engine_helpers import numbered_doc_body

T0 = 1_721_527_400_000
EVERY = 20


def _open(root: Path, name: str, seed: int, offset_ms: int = 0) -> Store:
    warnings.simplefilter("ignore")
    return Store.open(root / name, clock=FakeClock(T0 + offset_ms + seed, step_ms=11), ids=RandomIds(seed))


def _docs(store: Store, first: int, count: int) -> None:
    for n in range(first, first + count):
        store.apply(request_from_json(numbered_doc_body(n)))


def _sync(store: Store, remote: Remote, logs: list[str] | None = None, **kwargs: object) -> object:
    emit = (
        (lambda cmd, cur, tot, msg: logs.append(msg) if cmd == "syncLog" else None)
        if logs is not None
        else None
    )
    return run_sync(store, remote, store.clock, snapshot_every=EVERY, emit=emit, **kwargs)  # type: ignore[arg-type]


def _snapshots(remote: Remote) -> list[str]:
    return [n.name for n in newest_first(remote.list(f"main/{SNAPSHOTS}"))]


@dataclass
class Pair:
    """A folder remote, device A that wrote 120 documents and synced (snapshots uploaded), a fresh device B."""

    remote: LocalDirRemote
    a: Store
    b: Store


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    remote = LocalDirRemote(tmp_path / "remote")
    made = Pair(remote, _origin(tmp_path, remote), _open(tmp_path, "b", 2, offset_ms=5))
    yield made
    made.a.close()
    made.b.close()  # the one a test reopened, if it did


def _origin(tmp_path: Path, remote: Remote, docs: int = 120, every_docs: int = 15) -> Store:
    """Device A writes ``docs`` documents, syncing every ``every_docs``: snapshots every ``EVERY`` events."""
    a = _open(tmp_path, "a", 1)
    for first in range(0, docs, every_docs):
        _docs(a, first, every_docs)
        _sync(a, remote)
    return a


def test_uploads_at_most_every_n_events_and_keeps_the_newest_few(tmp_path: Path) -> None:
    remote = LocalDirRemote(tmp_path / "remote")
    a = _origin(tmp_path, remote)
    try:
        names = _snapshots(remote)
        assert 1 <= len(names) <= KEEP
        positions = [parse_name(n).position for n in names]  # type: ignore[union-attr]
        assert positions == sorted(positions, reverse=True) and positions[0] == a.state().position
        assert all(p - q >= EVERY for p, q in zip(positions, positions[1:], strict=False))
        assert load_state(a.data_dir).snapshot_position(remote.url, "main") == positions[0]
        # Nothing new: the next sync uploads nothing (and lists nothing).
        _sync(a, remote)
        assert _snapshots(remote) == names
        assert not verify_remote(remote, "main").damaged
    finally:
        a.close()


def test_a_big_state_waits_for_a_checkpoint_instead_of_capturing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oplog import syncsnap

    monkeypatch.setattr(syncsnap, "CAPTURE_MAX_BLOCKS", 0)  # every state counts as big
    remote = LocalDirRemote(tmp_path / "remote")
    a = _open(tmp_path, "a", 1)
    try:
        _docs(a, 0, 40)
        _sync(a, remote)
        assert _snapshots(remote) == [] and a.newest_checkpoint() is None  # nothing captured on the sync path
        a.checkpoint()  # the store's own (periodic, or at close)
        _docs(a, 40, 2)
        _sync(a, remote)
        assert [parse_name(n).position for n in _snapshots(remote)] == [40]  # type: ignore[union-attr]
    finally:
        a.close()


def test_snapshot_every_zero_uploads_none_and_uses_none(tmp_path: Path) -> None:
    remote = LocalDirRemote(tmp_path / "remote")
    a = _open(tmp_path, "a", 1)
    b = _open(tmp_path, "b", 2)
    try:
        _docs(a, 0, 60)
        run_sync(a, remote, a.clock, snapshot_every=0)
        assert remote.list(f"main/{SNAPSHOTS}") == []
        _sync(a, remote)  # now one is uploaded ...
        assert _snapshots(remote)
        result = run_sync(b, remote, b.clock, snapshot_every=0)  # ... and not used with 0
        assert result.snapshot == "" and b.state().state_hash == a.state().state_hash
    finally:
        a.close()
        b.close()


def test_a_new_device_starts_from_the_newest_snapshot_and_answers_like_the_origin(
    tmp_path: Path, pair: Pair
) -> None:
    remote, a, b = pair.remote, pair.a, pair.b
    logs: list[str] = []
    newest = _snapshots(remote)[0]
    result = _sync(b, remote, logs)
    assert result.snapshot == newest and result.snapshot_check == "verified", logs  # type: ignore[attr-defined]
    assert f"started from remote snapshot {newest}" in " ".join(logs)
    assert b.state().state_hash == a.state().state_hash
    assert load_state(b.data_dir).snapshot_check["status"] == "verified"
    # History is there too: the same answers as on the origin at every point.
    a.close()
    b.close()
    for until in (0, 1, 17, 60, 119, 120):
        want = replay_data_dir(tmp_path / "a", until=until, full=True).state_hash.hexdigest()
        for full in (True, False):
            got = replay_data_dir(tmp_path / "b", until=until, full=full).state_hash.hexdigest()
            assert got == want, (until, full)
    stats = collect_stats(tmp_path / "b", with_hash=False)
    assert stats["snapshot_check"] == f"verified: snapshot {newest} (position 120)"


def test_edits_on_both_sides_after_starting_from_a_snapshot_converge(tmp_path: Path) -> None:
    remote = LocalDirRemote(tmp_path / "remote")
    a = _origin(tmp_path, remote)
    b = _open(
        tmp_path, "b", 2, offset_ms=300_000
    )  # its edits sort after the snapshot (within the future bound)
    try:
        _docs(b, 1000, 3)  # unpushed edits of its own before it ever synced
        result = _sync(b, remote)
        assert result.snapshot  # type: ignore[attr-defined]
        assert {f"20240101000000-{n:07d}" for n in range(1000, 1003)} <= set(b.ws.docs)
        _docs(a, 500, 5)
        _docs(b, 2000, 5)
        for store in (a, b, a):
            _sync(store, remote)
        assert a.state().state_hash == b.state().state_hash
    finally:
        a.close()
        b.close()


def test_a_new_device_is_usable_before_its_older_history_is_stored(pair: Pair) -> None:
    """The first pull folds the snapshot plus the segments after its heads and swaps that in; the older
    segments are downloaded, checked and stored after (watched here at the swap: the logs hold none yet)."""
    remote, a, b = pair.remote, pair.a, pair.b
    seen: list[tuple[int, int]] = []
    swap = b._swap

    def watching(result: object) -> None:
        # The check is owed (durably) before anything can rest on the snapshot.
        assert load_state(b.data_dir).snapshot_check["status"] == "pending"
        swap(result)  # type: ignore[arg-type]
        log = b.device_log(a.device_id)
        seen.append((b.position, log.last_seq if log is not None else 0))

    b._swap = watching  # type: ignore[method-assign]
    logs: list[str] = []
    result = _sync(b, remote, logs)
    assert result.snapshot and result.snapshot_check == "verified", logs  # type: ignore[attr-defined]
    assert seen[0] == (120, 0), seen  # served the whole state while no segment of A was stored
    assert any(line.startswith("usable from remote snapshot") for line in logs)
    assert b.state().state_hash == a.state().state_hash
    log = b.device_log(a.device_id)
    assert log is not None and log.last_seq == 120
    assert not verify_data_dir(b.data_dir).damaged


def test_an_older_segment_refused_after_the_swap_leaves_the_devices_own_fold(
    tmp_path: Path, pair: Pair
) -> None:
    from oplog.syncformat import Manifest

    remote, a, b = pair.remote, pair.a, pair.b
    raw = remote.read(f"main/devices/{a.device_id}/MANIFEST")
    assert raw is not None
    segments = Manifest.decode(raw).segments
    assert len(segments) >= 2, segments  # an older segment and the one holding the head
    first = tmp_path / "remote" / "main" / "devices" / a.device_id / segments[0].name
    good = first.read_bytes()
    first.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    result = _sync(b, remote)
    assert result.refused  # type: ignore[attr-defined]
    # The state went ahead of the logs at the swap; with the older segment refused it is the
    # device's own fold of what it could store (nothing of A), as any refused pull leaves it.
    assert replay_data_dir(b.data_dir, full=True).state_hash.hexdigest() == b.state().state_hash
    assert not set(a.ws.docs) & set(b.ws.docs)
    first.write_bytes(good)  # repaired on the remote: the next sync takes everything
    _sync(b, remote)
    assert b.state().state_hash == a.state().state_hash


@pytest.fixture(params=[False, True], ids=["in-process", "reader-process"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Folds from logs in this process, or (``reader-process``) every one read by ``oplog.replayreader``
    as a big one is: the check's fold and the device's own refold read the live local log from files."""
    import oplog.replay as replay_module

    if request.param:
        monkeypatch.setattr(replay_module, "READER_MIN_EVENTS", 1)
    return bool(request.param)


def test_writes_during_a_first_pull_from_a_snapshot_survive_and_converge(
    tmp_path: Path, reader: bool
) -> None:
    import threading

    remote = LocalDirRemote(tmp_path / "remote")
    a = _origin(tmp_path, remote, docs=600, every_docs=100)
    b = _open(tmp_path, "b", 2, offset_ms=300_000)  # its writes sort after the snapshot
    acked: list[int] = []
    stop = threading.Event()

    def write() -> None:
        n = 10_000
        while not stop.is_set() or len(acked) < 5:
            b.apply(request_from_json(numbered_doc_body(n)))
            acked.append(n)
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = _sync(b, remote)
        stop.set()
        writer.join(60)
        assert result.snapshot  # type: ignore[attr-defined]
        lost = {f"20240101000000-{n:07d}" for n in acked} - set(b.ws.docs)
        assert not lost, sorted(lost)
        assert replay_data_dir(b.data_dir, full=True).state_hash.hexdigest() == b.state().state_hash
        for store in (b, a, b):
            _sync(store, remote)
        assert a.state().state_hash == b.state().state_hash
    finally:
        stop.set()
        writer.join(60)
        a.close()
        b.close()


def test_a_late_event_that_sorts_inside_the_snapshot_still_lands(tmp_path: Path) -> None:
    """Device C wrote offline with a clock behind A's; it pushes after A's snapshot. A new device cannot
    start from that snapshot (C's events sort inside it): it folds everything, and gets A's hash."""
    remote = LocalDirRemote(tmp_path / "remote")
    c = _open(tmp_path, "c", 3, offset_ms=-300_000)  # its stamps sort before all of A's
    _docs(c, 900, 30)
    a = _origin(tmp_path, remote)
    b = _open(tmp_path, "b", 2, offset_ms=5)
    logs: list[str] = []
    try:
        run_sync(c, remote, c.clock, snapshot_every=0)  # pushes, uploads no snapshot of its own
        assert [parse_name(n).position for n in _snapshots(remote)][0] == 120  # type: ignore[union-attr]
        result = _sync(b, remote, logs)
        assert result.snapshot == "", logs  # type: ignore[attr-defined]
        assert load_state(b.data_dir).snapshot_check == {}  # offered, not started from: no check owed
        for store in (a, c, b):
            _sync(store, remote)
        assert b.state().state_hash == a.state().state_hash == c.state().state_hash
        assert {f"20240101000000-{n:07d}" for n in range(900, 930)} <= set(b.ws.docs)
    finally:
        for store in (a, b, c):
            store.close()


def _forged(a: Store, remote: Remote) -> str:
    """Replace the newest snapshot with one that decodes and hashes right but says a block reads otherwise."""
    snap = a.newest_checkpoint()
    assert snap is not None
    parts = marshal.loads(snap.blob)
    flat = parts[0][0][2]
    flat[3] = "forged title"  # the document block's markdown
    ws, _ = decode_parts(parts)
    state_hash = StateHash.of(ws)
    forged = Snapshot(
        blob=encode_state(ws, state_hash),
        position=snap.position,
        heads=snap.heads,
        head_hlcs=snap.head_hlcs,
        last_key=snap.last_key,
        state_hash=state_hash.hexdigest(),
        block_count=snap.block_count,
        conflicts=snap.conflicts,
    )
    epoch = load_state(a.data_dir).epoch or ""
    data = encode_snapshot(forged, epoch=epoch, device=a.device_id, created_ms=T0)
    for name in _snapshots(remote):
        remote.delete(f"main/{SNAPSHOTS}/{name}")
    name = f"{forged.position:016x}-{forged.state_hash[:16]}.snap"
    assert remote.write_new(f"main/{SNAPSHOTS}/{name}", data)
    return name


def test_a_forged_snapshot_is_caught_reported_and_replaced_by_the_devices_own_fold(
    tmp_path: Path, pair: Pair, reader: bool
) -> None:
    remote, a, b = pair.remote, pair.a, pair.b
    a.checkpoint()
    name = _forged(a, remote)
    # The sync alone (no check yet): the device starts from it, as it would from any usable snapshot.
    SyncSession(b, remote, parse_sync_params("t"), b.clock, snapshot_every=EVERY).run()
    assert b.state().state_hash != a.state().state_hash
    assert load_state(b.data_dir).snapshot_check["status"] == "pending"
    assert any("pending" in f.problem for f in verify_data_dir(b.data_dir).findings)
    # The check: its own fold disagrees; reported, and the device switches to its own fold.
    assert check_pending(b) == "mismatch"
    assert b.state().state_hash == a.state().state_hash
    assert replay_data_dir(b.data_dir, full=True).state_hash.hexdigest() == a.state().state_hash
    line = collect_stats(b.data_dir, with_hash=False)["snapshot_check"]
    assert line.startswith(f"mismatch: snapshot {name}") and "own fold" in line
    assert [f.problem for f in verify_data_dir(b.data_dir).findings if f.area == "snapshot"] == [
        f"remote {line}"
    ]
    runner = SyncRunner(b, lambda: remote, b.clock, snapshot_every=EVERY)
    assert runner.info_message().snapshot_check == line
    # Restarted, it stays on its own fold (the checkpoints built on the snapshot are gone).
    b.close()
    b = pair.b = _open(tmp_path, "b", 2, offset_ms=5)
    assert b.state().state_hash == a.state().state_hash


def test_a_check_cut_short_runs_at_the_next_sync(tmp_path: Path, pair: Pair) -> None:
    remote, a, b = pair.remote, pair.a, pair.b
    SyncSession(b, remote, parse_sync_params("t"), b.clock, snapshot_every=EVERY).run()
    assert load_state(b.data_dir).snapshot_check["status"] == "pending"
    b.close()  # the process stops before its check ran
    b = pair.b = _open(tmp_path, "b", 2, offset_ms=5)
    assert b.state().state_hash == a.state().state_hash
    assert _sync(b, remote).snapshot_check == "verified"  # type: ignore[attr-defined]


@pytest.mark.parametrize("damage", ["flip", "cut", "newer"])
def test_a_damaged_or_newer_snapshot_is_not_used_and_nothing_else_changes(
    tmp_path: Path, pair: Pair, damage: str
) -> None:
    remote, a, b = pair.remote, pair.a, pair.b
    logs: list[str] = []
    for name in _snapshots(remote):
        path = tmp_path / "remote" / "main" / SNAPSHOTS / name
        data = bytearray(path.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0x40
        elif damage == "cut":
            del data[len(data) // 2 :]
        else:
            data[len(b"OPLOGSNAP\n") : len(b"OPLOGSNAP\n") + 2] = (FORMAT + 1).to_bytes(2, "big")
        path.write_bytes(bytes(data))
    found = [f for f in verify_remote(remote, "main").findings if f.area == "remote-snapshot"]
    assert len(found) == len(_snapshots(remote)) and all(f.severity == "warning" for f in found), found
    result = _sync(b, remote, logs)
    assert result.snapshot == ""  # type: ignore[attr-defined]
    assert b.state().state_hash == a.state().state_hash
    said = " ".join(logs)
    assert "not used" in said
    assert ("upgrade oplog" in said) if damage == "newer" else ("digest" in said)


def test_snapshots_on_an_encrypted_remote_are_sealed_and_used(tmp_path: Path) -> None:
    from oplog.cloudkey import KdfParams
    from oplog.sealed import Keyring, SealedRemote

    keyring = Keyring(b"passphrase", random.Random(5).randbytes, KdfParams(n=1 << 10, r=8, p=1))
    plain = LocalDirRemote(tmp_path / "remote")
    remote = SealedRemote(plain, keyring)
    a = _origin(tmp_path, remote)
    b = _open(tmp_path, "b", 2, offset_ms=5)
    try:
        names = plain.list(f"main/{SNAPSHOTS}")
        assert names
        for name in names:
            raw = plain.read(f"main/{SNAPSHOTS}/{name}")
            assert raw is not None and b"20240101000000-" not in raw and b"OPLOGSNAP" not in raw
        result = _sync(b, SealedRemote(LocalDirRemote(tmp_path / "remote"), keyring))
        assert result.snapshot and result.snapshot_check == "verified"  # type: ignore[attr-defined]
        assert b.state().state_hash == a.state().state_hash
    finally:
        a.close()
        b.close()


# ---- SIGKILL during snapshot upload and while starting from one ----


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_sigkill_during_snapshot_upload_loses_nothing(tmp_path: Path, seed: int) -> None:
    """A real child writing and syncing (a snapshot due every 5 events) is SIGKILLed at seeded random
    snapshot writes and deletions: lost = 0, verify clean, a new device converges from what is left."""
    print(f"snapshot upload kill test seed {seed} (rerun with OPLOG_COMPACTION_SEED={seed})")
    rng = random.Random(seed)
    data, remote = tmp_path / "a", tmp_path / "remote"
    acked: list[int] = []
    killed = doc = 0
    for _ in range(5):
        count = rng.randint(10, 20)
        got = run_child(data, remote, doc, count, "snapshot", rng.randint(1, count // 2))
        killed += len(got) < count
        acked.extend(got)
        doc += count
    assert killed, f"seed {seed}: no round was killed; the test would test nothing"
    _check_after_kills(tmp_path, data, remote, acked, seed)


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_sigkill_while_starting_from_a_snapshot_loses_nothing(tmp_path: Path, seed: int) -> None:
    """A new device (a real child) writes and syncs against a remote with snapshots; it is SIGKILLed at
    seeded random renames and removals of any file of its data directory while it pulls, starts from a
    snapshot and checks it: lost = 0, verify clean, its state equals its own fold, convergence."""
    print(f"snapshot load kill test seed {seed} (rerun with OPLOG_COMPACTION_SEED={seed})")
    rng = random.Random(seed)
    remote = LocalDirRemote(tmp_path / "remote")
    _origin(tmp_path, remote, docs=90).close()
    data = tmp_path / "joiner"
    acked: list[int] = []
    killed = 0
    doc = 5000
    for _ in range(4):
        count = rng.randint(3, 6)
        got = run_child(data, tmp_path / "remote", doc, count, "join", rng.randint(1, 12))
        killed += len(got) < count
        acked.extend(got)
        doc += count
    assert killed, f"seed {seed}: no round was killed; the test would test nothing"
    _check_after_kills(tmp_path, data, tmp_path / "remote", acked, seed)


def _check_after_kills(tmp_path: Path, data: Path, remote_dir: Path, acked: list[int], seed: int) -> None:
    from oplog.replay import replay

    remote = LocalDirRemote(remote_dir)
    x = Store.open(data, clock=FakeClock(T0 + 10**9), ids=RandomIds(seed))
    y = Store.open(tmp_path / "fresh", clock=FakeClock(T0 + 10**9 + 1), ids=RandomIds(seed + 1))
    try:
        assert not verify_data_dir(x.data_dir).damaged
        assert replay(x._logs).state_hash.hexdigest() == x.state_hash.hexdigest()
        _sync(x, remote)
        lost = {f"20240101000000-{n:07d}" for n in acked} - set(x.ws.docs)
        assert not lost, f"seed {seed}: lost {sorted(lost)}"
        _sync(y, remote)
        assert y.state_hash.hexdigest() == x.state_hash.hexdigest()
        for store in (x, y):
            assert load_state(store.data_dir).snapshot_check.get("status") in (None, "verified", "superseded")
            assert not verify_data_dir(store.data_dir).damaged
        assert not verify_remote(remote, "main").damaged
    finally:
        x.close()
        y.close()
