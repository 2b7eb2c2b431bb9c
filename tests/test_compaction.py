"""Compaction: sealed segments merged locally and on the remote, taken by other devices without archiving.

Real stores, real files, a real folder remote (and the in-memory ``FakeRemote``);
the crash tests SIGKILL a real child process (``tests/compaction_child.py``) at a
seeded random point and print the seed.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from pathlib import Path

import pytest

from oplog import segment, segmerge
from oplog.clock import FakeClock, RandomIds
from oplog.devicelog import DeviceLog
from oplog.remote import FakeRemote, LocalDirRemote, Remote
from oplog.store import Store
from oplog.syncformat import Manifest
from oplog.syncrunner import run_sync
from oplog.tree import snapshot
from oplog.verify import verify_data_dir
from oplog.verify_remote import verify_remote
from oplog.wire import request_from_json
from tests.compaction_child import KILL_SEEDS, run_child
from tests.engine_helpers import numbered_doc_body

T0 = 1_721_527_400_000


def _open(root: Path, name: str, seed: int) -> Store:
    warnings.simplefilter("ignore")
    return Store.open(root / name, clock=FakeClock(T0 + seed, step_ms=11), ids=RandomIds(seed))


def _doc(store: Store, n: int) -> None:
    store.apply(request_from_json(numbered_doc_body(n)))


def _local_segments(store: Store, device_id: str) -> list[str]:
    return sorted(
        n for n in os.listdir(store.device_dir(device_id)) if segment.parse_segment_name(n) is not None
    )


def _remote_manifest(remote: Remote, device_id: str) -> Manifest:
    data = remote.read(f"main/devices/{device_id}/MANIFEST")
    assert data is not None
    return Manifest.decode(data)


def _events(store: Store, device_id: str) -> list[tuple[int, bytes]]:
    log = store.device_log(device_id)
    assert log is not None
    return list(log.log.read())


# ---- the merge plan ----


def test_plan_keeps_a_base_four_counter() -> None:
    """Single-record segments merge like a base-4 counter: n records keep their base-4 digit sum."""
    lens: list[int] = []
    for n in range(1, 1025):
        lens.append(300)
        while (span := segmerge.plan_merge(lens, 64 << 20)) is not None:
            lens[span[0] : span[1]] = [sum(lens[span[0] : span[1]])]
        digits = sum(int(d) for d in _base4(n))
        assert len(lens) <= max(digits, 1) + 1, (n, lens)
        assert len(lens) <= 16
    # A big segment is a barrier; a bigger newcomer absorbs the smaller one before it.
    assert segmerge.plan_merge([10, 10, 10, 10], 40) is None
    assert segmerge.plan_merge([5, 500], 64 << 20) == (0, 2)


def _base4(n: int) -> str:
    out = ""
    while n:
        out = str(n % 4) + out
        n //= 4
    return out or "0"


def test_merged_segment_is_an_ordinary_segment_with_more_records(tmp_path: Path) -> None:
    """Same records, same order, same bytes per record; header version 2 and a range name."""
    log = DeviceLog.open(tmp_path / "d", "dev")
    for n in range(6):
        log.append_durable([f"r{n}".encode(), f"s{n}".encode()])
        log.seal()
    before = list(log.read())
    assert log.compact() >= 1
    after = list(log.read())
    assert after == before
    names = [s.name for s in log.segments()]
    assert any("-" in n for n in names) and len(names) < 6
    log.close()
    again = DeviceLog.open(tmp_path / "d", "dev")
    assert list(again.read()) == before and again.verify() == 12
    merged = next(n for n in names if "-" in n)
    data = (tmp_path / "d" / merged).read_bytes()
    assert segment.parse_header(data, merged).version == segment.MERGED_FORMAT_VERSION
    assert (
        segment.verify_segment(data, device_id="dev", first_seq=1).count
        == segment.parse_segment_range(merged)[1]
    )  # type: ignore[index]
    again.close()


def test_a_folder_holding_pieces_and_their_merge_reads_either_way(tmp_path: Path) -> None:
    """A crash after the merged segment was written, before the pieces went: same records; open cleans up."""
    folder = tmp_path / "d"
    log = DeviceLog.open(folder, "dev")
    for n in range(4):
        log.append_durable([f"r{n}".encode()])
        log.seal()
    pieces = [s.name for s in log.segments()]
    before = list(log.read())
    log.close()
    name, data = segmerge.merge_files(folder, "dev", pieces)
    segmerge.write_segments(folder, [(name, data)])
    reader = DeviceLog.open(folder, "dev", writable=False)
    assert list(reader.read()) == before and [s.name for s in reader.segments()] == [name]
    reader.close()
    assert set(os.listdir(folder)) >= set(pieces)  # a read-only open changes nothing
    writer = DeviceLog.open(folder, "dev")
    assert sorted(os.listdir(folder)) == [name]
    assert list(writer.read()) == before
    writer.close()


def test_an_older_oplog_refuses_a_merged_segment_by_its_version(tmp_path: Path) -> None:
    """What an oplog reading only version 1 does with a merged segment: a clear refusal."""
    folder = tmp_path / "d"
    log = DeviceLog.open(folder, "dev")
    for n in range(4):
        log.append_durable([f"r{n}".encode()])
        log.seal()
    log.compact()
    merged = next(s.name for s in log.segments() if "-" in s.name)
    log.close()
    data = (folder / merged).read_bytes()
    old = pytest.MonkeyPatch()
    old.setattr(segment, "READABLE_VERSIONS", (segment.FORMAT_VERSION,))
    try:
        with pytest.raises(Exception, match="version 2 is not supported.*upgrade oplog"):
            segment.parse_header(data, merged)
    finally:
        old.undo()


# ---- sync ----


@pytest.mark.parametrize("kind", ["folder", "fake"])
def test_a_thousand_single_event_syncs_keep_few_segments(tmp_path: Path, kind: str) -> None:
    """≤ 16 segments per device locally and remotely after 1,000 syncs of one event each; a second device
    that pulled half-way takes the merged segments, archives nothing, and ends with the same hash."""
    remote: Remote = LocalDirRemote(tmp_path / "remote") if kind == "folder" else FakeRemote()
    a, b = _open(tmp_path, "a", 1), _open(tmp_path, "b", 2)
    try:
        for n in range(1000):
            _doc(a, n)
            run_sync(a, remote, a.clock)
            if n == 499:
                run_sync(b, remote, b.clock)
                held = _events(b, a.device_id)
                assert len(held) == 500
        local = _local_segments(a, a.device_id)
        manifest = _remote_manifest(remote, a.device_id)
        assert len(local) <= 16 and len(manifest.segments) <= 16, (local, manifest.segments)
        assert [e.name for e in manifest.segments] == local
        listed = remote.list(f"main/devices/{a.device_id}")
        assert sorted(n for n in listed if n != "MANIFEST") == local
        seqs = [seq for seq, _ in _events(a, a.device_id)]
        assert seqs == list(range(1, 1001))
        result = run_sync(b, remote, b.clock)
        assert result.archived_segments == 0
        assert result.pulled_events == 500
        assert _events(b, a.device_id)[:500] == held
        assert _events(b, a.device_id) == _events(a, a.device_id)
        assert _local_segments(b, a.device_id) == local
        assert b.state_hash.hexdigest() == a.state_hash.hexdigest()
        assert snapshot(a.ws) == snapshot(b.ws)
        assert not verify_data_dir(b.data_dir).damaged and not verify_data_dir(a.data_dir).damaged
    finally:
        a.close()
        b.close()


def _simulate(tmp_path: Path, seed: int, steps: int) -> None:
    from tests.sync_sim import Simulation

    print(f"compaction simulation seed {seed}")
    sim = Simulation(tmp_path, seed)
    try:
        sim.run(steps=steps)
        sim.settle()
        sim.check()
        merged = [path for remote in sim.remotes for path in remote.files if "-" in path.rsplit("/", 1)[-1]]
        assert merged, f"seed {seed}: no merge happened; the test would test nothing"
    finally:
        sim.close()


@pytest.mark.parametrize("seed", [7, 21, 1234])
def test_multi_device_simulation_with_compaction(tmp_path: Path, seed: int) -> None:
    """The seeded simulation (faults, forces, remote and cloud switches) with merges happening: no loss."""
    _simulate(tmp_path, seed, 200)


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("OPLOG_SOAK"), reason="soak test: set OPLOG_SOAK=1")
def test_multi_device_simulation_with_compaction_soak(tmp_path: Path) -> None:
    """The same, 40 seeds of 600 steps (``OPLOG_SOAK=1``)."""
    for seed in range(40):
        _simulate(tmp_path / str(seed), 50_000 + seed, 600)


# ---- SIGKILL during local and remote compaction ----


@pytest.mark.parametrize("where", ["local", "remote"])
@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_sigkill_during_compaction_loses_nothing(tmp_path: Path, where: str, seed: int) -> None:
    """A real child writing and syncing one document at a time is SIGKILLed at seeded random segment-file
    (local) or remote steps, five times; then: every acknowledged document is there (lost = 0), the data
    directory and the remote verify clean, and a second device converges to the same hash."""
    print(f"compaction kill test seed {seed} where {where} (rerun with OPLOG_COMPACTION_SEED={seed})")
    rng = random.Random(seed)
    data, remote = tmp_path / "a", tmp_path / "remote"
    acked: list[int] = []
    killed = 0
    doc = 0
    for _ in range(5):
        count = rng.randint(10, 30)
        got = run_child(data, remote, doc, count, where, rng.randint(1, 4 * count))
        killed += len(got) < count
        acked.extend(got)
        doc += count
    assert killed, f"seed {seed}: no round was killed; the test would test nothing"
    a = Store.open(data, clock=FakeClock(T0 + 10**9), ids=RandomIds(seed))
    b = Store.open(tmp_path / "b", clock=FakeClock(T0 + 10**9 + 1), ids=RandomIds(seed + 1))
    try:
        assert not verify_data_dir(a.data_dir).damaged
        run_sync(a, LocalDirRemote(remote), a.clock)
        ids = {f"20240101000000-{n:07d}" for n in acked}
        lost = ids - set(a.ws.docs)
        assert not lost, f"seed {seed}: lost {sorted(lost)}"
        run_sync(b, LocalDirRemote(remote), b.clock)
        assert b.state_hash.hexdigest() == a.state_hash.hexdigest()
        assert not verify_data_dir(a.data_dir).damaged and not verify_data_dir(b.data_dir).damaged
        assert not verify_remote(LocalDirRemote(remote), "main").damaged
        assert any("-" in name for name in _local_segments(a, a.device_id))
        assert _local_segments(b, a.device_id) == _local_segments(a, a.device_id)
    finally:
        a.close()
        b.close()


def test_replay_history_and_dump_answer_the_same_after_compaction(tmp_path: Path) -> None:
    """The same data directory before and after its logs were merged: `replay --until`, `history`, `dump`
    print the same (a real `oplog` process each)."""
    import shutil

    from oplog.sync import SyncSession, parse_sync_params
    from tests.cli_helpers import run_cli

    remote = LocalDirRemote(tmp_path / "remote")
    a, b = _open(tmp_path, "a", 1), _open(tmp_path, "b", 2)
    try:
        for n in range(24):
            for store in (a, b):
                _doc(store, n if store is a else 100 + n)
                SyncSession(store, remote, parse_sync_params("t"), store.clock, compact=False).run()
        SyncSession(a, remote, parse_sync_params("t"), a.clock, compact=False).run()
        assert not any("-" in n for n in _local_segments(a, a.device_id))
    finally:
        b.close()
    a.close()
    shutil.copytree(tmp_path / "a", tmp_path / "before")
    a = _open(tmp_path, "a", 1)
    try:
        run_sync(a, remote, a.clock)
        b = _open(tmp_path, "b", 2)
        run_sync(b, remote, b.clock)
        run_sync(a, remote, a.clock)
        b.close()
        for device_id in a.device_ids():
            assert any("-" in n for n in _local_segments(a, device_id)), device_id
    finally:
        a.close()
    commands = [
        ["replay", "--until", "17", "--full"],
        ["replay", "--until", "40"],
        ["replay"],
        ["dump", "--json"],
        ["dump", "--json", "--from", "5", "--to", "30"],
        ["history", "20240101000000-0000005"],
        ["history", "20240101000000-0000107"],
    ]
    for argv in commands:
        before = run_cli(*argv, "--data", str(tmp_path / "before"))
        after = run_cli(*argv, "--data", str(tmp_path / "a"))
        assert before.returncode == after.returncode == 0, (argv, before.stderr, after.stderr)
        # Only the paths and the measured seconds may differ.
        seconds = re.compile(r"\(\d+\.\d+s\)")
        same_before = seconds.sub("", before.stdout.replace(str(tmp_path / "before"), "D"))
        assert same_before == seconds.sub("", after.stdout.replace(str(tmp_path / "a"), "D")), argv
        assert before.stdout.strip()


def test_a_reader_goes_on_across_a_merge(tmp_path: Path) -> None:
    """A read that started before a merge removed the pieces it had still to open yields every record once."""
    log = DeviceLog.open(tmp_path / "d", "dev")
    for n in range(8):
        log.append_durable([f"r{n}".encode()])
        log.seal()
    expected = list(log.read())
    reader = log.read()
    got = [next(reader)]
    assert log.compact() >= 1
    got.extend(reader)
    assert got == expected
    log.close()


def test_a_read_only_reader_goes_on_across_another_writers_merge(tmp_path: Path) -> None:
    """A read-only log (another process's view) whose pieces a writer merged away re-lists its folder."""
    writer = DeviceLog.open(tmp_path / "d", "dev")
    for n in range(8):
        writer.append_durable([f"r{n}".encode()])
        writer.seal()
    expected = list(writer.read())
    reader_log = DeviceLog.open(tmp_path / "d", "dev", writable=False)
    reader = reader_log.read()
    got = [next(reader)]
    assert writer.compact() >= 1
    got.extend(reader)
    assert got == expected
    reader_log.close()
    writer.close()


@pytest.mark.parametrize("compact", [False, True])
def test_force_push_after_a_merge_drops_what_it_dropped_before(tmp_path: Path, compact: bool) -> None:
    """B force-pushes holding A's first pieces while A has merged them with later events: A keeps exactly
    the events it kept without compaction (its first 8), and only its later pushed events leave."""
    from oplog.archive import archived_events, list_archive
    from oplog.sync import SyncSession, parse_sync_params

    remote = LocalDirRemote(tmp_path / "remote")
    a, b = _open(tmp_path, "a", 1), _open(tmp_path, "b", 2)

    def sync(store: Store, mode: str = "") -> None:
        SyncSession(store, remote, parse_sync_params("t", push_mode=mode), store.clock, compact=compact).run()

    try:
        for n in range(8):
            _doc(a, n)
            sync(a)
        sync(b)
        for n in range(8, 16):
            _doc(a, n)
            sync(a)
        assert compact == any("-" in n for n in _remote_manifest_names(remote, a.device_id))
        _doc(b, 100)
        sync(b, "force-push")
        sync(a)
        held = [seq for seq, _ in _events(a, a.device_id)]
        archived = sorted(
            e.device_seq
            for entry in list_archive(a.data_dir)
            for e in archived_events(a.data_dir, entry)
            if e.device_id == a.device_id
        )
        assert held == list(range(1, 9)) and archived == list(range(9, 17)), (held, archived)
        sync(b)
        assert a.state_hash.hexdigest() == b.state_hash.hexdigest()
    finally:
        a.close()
        b.close()


def _remote_manifest_names(remote: Remote, device_id: str) -> list[str]:
    return [e.name for e in _remote_manifest(remote, device_id).segments]
