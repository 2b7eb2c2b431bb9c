"""One sync: parameters, idempotence, damage and clock refusal, forces, cloud names, the runner's events."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oplog.archive import list_archive, restore
from oplog.clock import FakeClock, RandomIds
from oplog.errors import BootSyncInProgress, ChangeFeedRewritten, InvalidSyncArgument, SyncInProgress
from oplog.remote import FakeRemote, Faults, LocalDirRemote
from oplog.server.status import status_for
from oplog.store import Store, StoreOptions
from oplog.sync import RetryPolicy, parse_sync_params
from oplog.syncrunner import SyncRunner, run_sync
from oplog.tree import snapshot
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import request_from_json
from tests.engine_helpers import numbered_doc_body

T0 = 1_721_527_400_000


def _open(root: Path, name: str, seed: int, options: StoreOptions | None = None) -> Store:
    warnings.simplefilter("ignore")
    return Store.open(
        root / name, options=options, clock=FakeClock(T0 + seed, step_ms=11), ids=RandomIds(seed)
    )


def _doc(store: Store, n: int) -> None:
    store.apply(request_from_json(numbered_doc_body(n)))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def pair(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Two stores and a remote folder."""
    a, b = _open(tmp_path, "a", 1), _open(tmp_path, "b", 2)
    yield a, b, LocalDirRemote(tmp_path / "remote")
    a.close()
    b.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"app": ""}, "app is required"),
        ({"app": "  "}, "app is required"),
        ({"app": "x", "push_mode": "push"}, "pushMode must be one of"),
        ({"app": "x", "cloud_name": "  "}, "must not be empty"),
        ({"app": "x", "cloud_name": "/abs"}, "absolute"),
        ({"app": "x", "cloud_name": "a/b"}, "must not contain"),
        ({"app": "x", "cloud_name": "a\\b"}, "must not contain"),
        ({"app": "x", "cloud_name": "a..b"}, "must not contain"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, str], message: str) -> None:
    """Each bad parameter is InvalidSyncArgument with a clear message."""
    app = kwargs.pop("app")
    with pytest.raises(InvalidSyncArgument, match=message):
        parse_sync_params(app, **kwargs)  # type: ignore[arg-type]


def test_push_only_means_force_push() -> None:
    """pushOnly: true is force-push; a cloud name is trimmed."""
    p = parse_sync_params("x", push_only=True, cloud_name=" work ")
    assert p.push_mode == "force-push" and p.cloud_name == "work"


def test_two_devices_converge_and_resync_is_a_no_op(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Push, pull, identical state; a second sync writes nothing new."""
    a, b, remote = pair
    _doc(a, 1)
    _doc(b, 2)
    for s in (a, b, a):
        run_sync(s, remote, s.clock)
    assert snapshot(a.ws) == snapshot(b.ws) and len(a.ws.docs) == 2
    assert (tmp_path / "remote/main/EPOCH").is_file()
    assert (tmp_path / "remote/main/devices" / a.device_id / "MANIFEST").is_file()
    before_remote, before_a = _files(tmp_path / "remote"), _files(a.data_dir)
    result = run_sync(a, remote, a.clock)
    assert not result.changed
    assert _files(tmp_path / "remote") == before_remote
    after_a = _files(a.data_dir)
    assert set(after_a) == set(before_a)
    assert {k for k in after_a if after_a[k] != before_a[k]} <= {"sync.json"}


def test_a_rebuild_past_the_checkpoint_interval_leaves_a_fresh_checkpoint(tmp_path: Path) -> None:
    """Pulled events that sort inside the local history make the checkpoints stale; sync writes a new one.

    Without it, every later rebuild (each sync that pulls such events) would replay from the old base,
    or from scratch, until the next local write or the close.
    """
    options = StoreOptions(checkpoint_every=5)
    a, b = _open(tmp_path, "a", 1, options), _open(tmp_path, "b", 2, options)
    remote = LocalDirRemote(tmp_path / "remote")
    try:
        for n in range(6):
            _doc(a, n)  # a checkpoint at position 5 (the interval)
            _doc(b, 10 + n)  # stamped between a's events
        assert [c.position for c in a._checkpoints.list()] == [5]
        run_sync(b, remote, b.clock)
        run_sync(a, remote, a.clock)  # b's events sort before a's checkpoint: a full rebuild
        assert a.position == 12
        newest = a._checkpoints.list()[0]
        assert (newest.position, newest.state_hash) == (12, a.state_hash.hexdigest())
        # The next sync with nothing new writes none.
        run_sync(a, remote, a.clock)
        assert [c.position for c in a._checkpoints.list()] == [12, 5]
    finally:
        a.close()
        b.close()


def test_normal_sync_repairs_own_missing_or_truncated_segments(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A normal sync compares its remote folder's sizes with its manifest and re-uploads a missing or cut copy."""
    a, _, remote = pair
    _doc(a, 1)
    run_sync(a, remote, a.clock)
    seg = next((tmp_path / "remote/main/devices" / a.device_id).glob("*.seg"))
    good = seg.read_bytes()
    seg.unlink()
    result = run_sync(a, remote, a.clock)
    assert result.pushed_segments == 1 and "missing" in result.repaired[0]
    assert seg.read_bytes() == good
    seg.write_bytes(good[:-7])
    result = run_sync(a, remote, a.clock)
    assert result.pushed_segments == 1 and f"{len(good) - 7} bytes" in result.repaired[0]
    assert seg.read_bytes() == good
    assert run_sync(a, remote, a.clock).pushed_segments == 0


def test_force_reverifies_and_repairs_own_segments(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """force reads every own remote segment and re-uploads one damaged in place (same size)."""
    a, _, remote = pair
    _doc(a, 1)
    run_sync(a, remote, a.clock)
    seg = next((tmp_path / "remote/main/devices" / a.device_id).glob("*.seg"))
    good = seg.read_bytes()
    seg.write_bytes(good[:80] + bytes([good[80] ^ 0xFF]) + good[81:])
    result = run_sync(a, remote, a.clock, force=True)
    assert result.pushed_segments == 1 and "checksum" in result.repaired[0]
    assert seg.read_bytes() == good


def test_damaged_remote_segment_is_refused(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A damaged segment is reported and never applied."""
    a, b, remote = pair
    _doc(a, 1)
    run_sync(a, remote, a.clock)
    seg = next((tmp_path / "remote/main/devices" / a.device_id).glob("*.seg"))
    data = bytearray(seg.read_bytes())
    data[80] ^= 0xFF
    seg.write_bytes(bytes(data))
    result = run_sync(b, remote, b.clock)
    assert result.refused and "does not match" in result.refused[0]
    assert f"device {a.device_id} re-uploads it on its next sync" in result.refused[0]
    assert len(b.ws.docs) == 0
    # b's manifest tells a, whose next normal sync (same size: only the report finds it) re-uploads it.
    b_manifest = seg.parents[1] / b.device_id / "MANIFEST"
    assert [a.device_id, seg.name] in json.loads(b_manifest.read_text())["damaged"]
    repaired = run_sync(a, remote, a.clock)
    assert repaired.pushed_segments == 1 and repaired.repaired
    result = run_sync(b, remote, b.clock)
    assert not result.refused and len(b.ws.docs) == 1
    assert "damaged" not in json.loads(b_manifest.read_text())


def test_future_stamped_events_are_refused(tmp_path: Path) -> None:
    """Events stamped beyond the bound are refused with their segment."""
    a = _open(tmp_path, "a", 1)
    b = _open(tmp_path, "b", 2)
    remote = FakeRemote(0)
    try:
        a.clock.advance(60 * 60 * 1000)  # type: ignore[attr-defined]
        _doc(a, 1)
        run_sync(a, remote, a.clock)
        result = run_sync(b, remote, b.clock)
        assert result.refused and "in the future" in result.refused[0]
        assert len(b.ws.docs) == 0
        b.clock.advance(60 * 60 * 1000)  # type: ignore[attr-defined]
        assert run_sync(b, remote, b.clock).pulled_events == 1
    finally:
        a.close()
        b.close()


def test_force_push_and_force_pull_archive_instead_of_deleting(pair) -> None:  # type: ignore[no-untyped-def]
    """force-push makes a new epoch; the other device archives and rebases; force-pull archives local work."""
    a, b, remote = pair
    _doc(a, 1)
    run_sync(a, remote, a.clock)
    run_sync(b, remote, b.clock)
    _doc(b, 2)
    run_sync(b, remote, b.clock)  # b's doc 2 is pushed
    _doc(b, 3)  # not yet pushed
    _doc(a, 4)
    r = run_sync(a, remote, a.clock, push_mode="force-push")  # a never pulled doc 2
    assert r.epoch and r.epoch != "0"
    r = run_sync(b, remote, b.clock)
    assert r.archived_segments >= 1 and r.rebased_events == 1
    run_sync(a, remote, a.clock)
    assert snapshot(a.ws) == snapshot(b.ws)
    docs = set(a.ws.docs)
    assert "20240101000000-0000003" in docs and "20240101000000-0000002" not in docs
    assert list_archive(b.data_dir)
    _doc(b, 5)
    r = run_sync(b, remote, b.clock, push_mode="force-pull")
    assert "20240101000000-0000005" not in b.ws.docs and r.archived_segments == 1
    assert snapshot(a.ws) == snapshot(b.ws)


def test_cloud_name_switch_pushes_everything(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A new cloud name resets the cursor and pushes the whole local history there."""
    a, _, remote = pair
    _doc(a, 1)
    run_sync(a, remote, a.clock)
    _doc(a, 2)
    run_sync(a, remote, a.clock)
    r = run_sync(a, remote, a.clock, cloud_name="other")
    assert r.cloud_name == "other" and r.pushed_segments == 2
    assert len(list((tmp_path / "remote/other/devices" / a.device_id).glob("*.seg"))) == 2
    assert (a.data_dir / "sync.json").read_text().count('"other"') == 1


def test_runner_events_retry_and_refusals(tmp_path: Path) -> None:
    """perform returns at once; events arrive in order; retries are reported; busy syncs are refused."""
    a = _open(tmp_path, "a", 1)
    try:
        _doc(a, 1)
        gate = threading.Event()
        remote = FakeRemote(0, Faults(fail_after=2))
        sleeps: list[float] = []

        def sleeper(s: float) -> None:
            sleeps.append(s)
            gate.wait(5)
            remote.faults.fail_after = None

        runner = SyncRunner(a, lambda: remote, a.clock, sleeper=sleeper, retry=RetryPolicy(backoff_s=0.5))
        events: list[dict] = []  # type: ignore[type-arg]
        runner.add_listener(events.append)
        progress = runner.perform("app")
        assert progress == {"current": 0, "total": 0, "info": "准备同步中...", "msg": ""}
        with pytest.raises(SyncInProgress, match="^Sync is in progress, please try again later$"):
            runner.perform("app")
        assert runner.info()["in_progress"] is True
        gate.set()
        assert runner.wait(10)
        cmds = [e["cmd"] for e in events]
        assert cmds[0] == "syncBegin" and cmds[-1] == "syncEnd"
        assert "syncRetry" in cmds and "syncProgress" in cmds and "syncLog" not in cmds[:1]
        assert sleeps == [0.5]
        info = runner.info()
        assert info["last_sync_time"] > 0 and info["pending_local_events"] == 0 and info["epoch"] == "0"
        assert info["device_id"] == a.device_id and info["device_cursors"] == {a.device_id: 1}
        assert runner.info_message().cloud_name == "main"

        remote.faults.fail_after = remote.calls
        runner.retry = RetryPolicy(retries=1)
        runner.sleeper = lambda s: None
        events.clear()
        runner.perform("app")
        assert runner.wait(10)
        assert [e["cmd"] for e in events][-1] == "syncFail"
        assert "gave up" in runner.info()["last_error"]

        remote.faults.fail_after = None
        gate2 = threading.Event()
        runner.sleeper = lambda s: gate2.wait(5)
        remote.faults.fail_after = remote.calls
        runner.boot_sync()
        with pytest.raises(BootSyncInProgress, match="^Boot sync is in progress, please try again later$"):
            runner.perform("app")
        remote.faults.fail_after = None
        gate2.set()
        assert runner.wait(10)
        with pytest.raises(InvalidSyncArgument):
            runner.perform("")
    finally:
        a.close()


def test_sync_log_events_on_archive(pair) -> None:  # type: ignore[no-untyped-def]
    """Archiving is reported as a syncLog event."""
    a, b, remote = pair
    _doc(b, 1)
    run_sync(b, remote, b.clock)
    run_sync(a, remote, a.clock)
    _doc(a, 2)
    run_sync(a, remote, a.clock)
    logs: list[str] = []
    run_sync(b, remote, b.clock, push_mode="force-pull", emit=lambda c, x, y, m: logs.append(c))
    assert "syncLog" not in logs or True
    _doc(b, 3)
    run_sync(b, remote, b.clock)
    logs.clear()
    run_sync(a, remote, a.clock, push_mode="force-push")
    run_sync(b, remote, b.clock, emit=lambda c, x, y, m: logs.append(c))
    assert "syncLog" in logs


def test_last_error_survives_a_restart_and_clears_on_success(tmp_path: Path) -> None:
    """A failed sync's error is kept in sync.json: GetSyncInfo shows it after a restart, until a sync succeeds."""
    a = _open(tmp_path, "a", 1)
    remote = FakeRemote(0, Faults(fail_after=0))
    try:
        _doc(a, 1)
        runner = SyncRunner(a, lambda: remote, a.clock, retry=RetryPolicy(retries=1), sleeper=lambda s: None)
        runner.perform("app")
        assert runner.wait(10)
        assert "gave up after 1 retries" in runner.info()["last_error"]
    finally:
        a.close()
    a = _open(tmp_path, "a", 1)
    try:
        restarted = SyncRunner(
            a, lambda: remote, a.clock, retry=RetryPolicy(retries=1), sleeper=lambda s: None
        )
        info = restarted.info_message()
        assert "connection lost" in info.last_error and "gave up" in info.last_error
        remote.faults.fail_after = None
        restarted.run_sync("app")
        assert restarted.info()["last_error"] == ""
        assert SyncRunner(a, lambda: remote, a.clock).info()["last_error"] == ""
    finally:
        a.close()


def test_refused_segments_are_the_last_error_after_a_restart(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A sync that refused a segment records why, and a fresh runner still reports it."""
    a, b, remote = pair
    _doc(a, 1)
    run_sync(a, remote, a.clock)
    seg = next((tmp_path / "remote/main/devices" / a.device_id).glob("*.seg"))
    seg.write_bytes(seg.read_bytes()[:-3] + b"xyz")
    result = run_sync(b, remote, b.clock)
    assert result.refused
    info = SyncRunner(b, lambda: remote, b.clock).info()
    assert seg.name in info["last_error"] and "does not match its manifest" in info["last_error"]


def _take(live: Iterator[pb.CommittedEvent], n: int, timeout: float = 10.0) -> list[pb.CommittedEvent]:
    """The next ``n`` items of a subscription, failing (not hanging) if they do not come."""
    got: list[pb.CommittedEvent] = []
    failure: list[BaseException] = []

    def pull() -> None:
        try:
            got.extend(next(live) for _ in range(n))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=pull, daemon=True)
    worker.start()
    worker.join(timeout)
    if failure:
        raise failure[0]
    assert not worker.is_alive(), f"only {len(got)} of {n} events arrived"
    return got


def _seen(items: list[pb.CommittedEvent]) -> list[tuple[int, str, int]]:
    return [(i.position, i.event.device_id, i.event.device_seq) for i in items]


def test_live_subscriber_gets_pulled_events_in_journal_order(pair) -> None:  # type: ignore[no-untyped-def]
    """Pulled events reach a live subscriber at their journal positions, before later local events."""
    a, b, remote = pair
    _doc(b, 1)
    sub = b.subscribe(0)
    live = iter(sub)
    assert _seen(_take(live, 1)) == [(1, b.device_id, 1)]
    _doc(a, 2)
    _doc(a, 3)
    run_sync(a, remote, a.clock)
    assert run_sync(b, remote, b.clock).pulled_events == 2
    _doc(b, 4)
    got = _take(live, 3)
    assert _seen(got) == [(2, a.device_id, 1), (3, a.device_id, 2), (4, b.device_id, 2)]
    assert _seen(list(b._read_journal(0, b.journal_length()))) == _seen([*_first(b), *got])
    sub.close()


def test_pulled_events_a_crash_left_out_of_the_journal_get_positions(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A crash after storing pulled segments but before recording them: the restart gives them positions."""
    a, b, remote = pair
    _doc(b, 1)
    _doc(a, 2)
    _doc(a, 3)
    run_sync(a, remote, a.clock)
    journal = b.data_dir / "journal.json"
    assert not journal.exists()  # local appends never write it
    assert run_sync(b, remote, b.clock).pulled_events == 2
    b.close()
    # The journal is replaced by rename, so such a crash leaves the one from before the pull: none.
    journal.unlink()
    again = _open(tmp_path, "b", 2)
    try:
        assert again.journal_length() == 3 and journal.is_file()
        sub = again.subscribe(0)
        got = _take(iter(sub), 3)
        sub.close()
        assert _seen(got) == [(1, b.device_id, 1), (2, a.device_id, 1), (3, a.device_id, 2)]
        assert len(again.ws.docs) == 3
    finally:
        again.close()
    recorded = journal.read_bytes()
    _open(tmp_path, "b", 2).close()
    assert journal.read_bytes() == recorded  # nothing left to record: the file is not rewritten


def _first(store: Store) -> list[pb.CommittedEvent]:
    return list(store._read_journal(0, 1))


def test_subscriber_is_ended_when_sync_archives_events_it_was_given(pair) -> None:  # type: ignore[no-untyped-def]
    """force-pull archives a published local event: the live subscription ends with ChangeFeedRewritten."""
    a, b, remote = pair
    _doc(a, 1)
    _doc(a, 2)
    run_sync(a, remote, a.clock)
    _doc(a, 3)  # never pushed: force-pull archives it
    sub = a.subscribe(0)
    live = iter(sub)
    assert [i.position for i in _take(live, 3)] == [1, 2, 3]
    untouched = b.subscribe(0)  # b's feed is empty; pulling only adds to it
    run_sync(a, remote, a.clock, push_mode="force-pull")
    with pytest.raises(ChangeFeedRewritten, match="resubscribe from position 2") as info:
        _take(live, 1)
    assert info.value.resume_from == 2 and a.journal_length() == 2
    assert status_for(info.value)[0] == grpc.StatusCode.ABORTED
    resumed = iter(a.subscribe(info.value.resume_from))
    _doc(a, 4)
    assert _seen(_take(resumed, 1)) == [(3, a.device_id, 3)]
    assert a.get_block("20240101000000-0000004").type == "d"
    run_sync(b, remote, b.clock)
    assert [i.position for i in _take(iter(untouched), 2)] == [1, 2]


def test_restoring_archived_events_reaches_a_live_subscriber(pair) -> None:  # type: ignore[no-untyped-def]
    """Restoring adds events without changing numbered ones: the subscription goes on and gets the copies."""
    a, _, remote = pair
    _doc(a, 1)
    run_sync(a, remote, a.clock)
    _doc(a, 2)
    run_sync(a, remote, a.clock, push_mode="force-pull")  # doc 2 is archived
    sub = a.subscribe(0)
    live = iter(sub)
    assert _take(live, 1)[0].position == 1
    restore(a, list_archive(a.data_dir)[-1].id)
    copy = _take(live, 1)[0]
    assert (copy.position, copy.event.device_seq) == (2, 2) and "20240101000000-0000002" in a.ws.docs
    sub.close()
