"""The daemon's library (oplog/watcher.py, oplog/watchchanges.py) in process: classification, self-write suppression, failures, stop.

The change source is faked (as watchfiles fakes its own core): the test hands the
watcher the batches watchfiles would report — the files a real commit or a real
sync changed, found by diffing the folders before and after — and waits for the
watcher's own report of each batch (``Batch``) and each sync (``SyncEnded``).
So every assertion is about something that happened, in order: no sleeps, no
"nothing happened within N seconds".
"""

from __future__ import annotations

import errno
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from oplog.autosync import Schedule
from oplog.clock import SystemClock
from oplog.errors import (
    DataDirLocked,
    InvalidArgument,
    InvalidSyncArgument,
    OplogError,
    RemoteError,
    TransientRemoteError,
)
from oplog.remote import LocalDirRemote
from oplog.store import Store, StoreOptions
from oplog.syncrunner import run_sync
from oplog.watchchanges import classify, is_remote_news, remote_fingerprint
from oplog.watcher import (
    DAEMON_LOCK_FILE,
    Batch,
    LocalSync,
    Status,
    SyncEnded,
    SyncReport,
    SyncRequest,
    SyncStarted,
    WatchConfig,
    Watcher,
    is_permanent,
)
from oplog.wire import request_from_json
from tests.engine_helpers import numbered_doc_body
from tests.watch_helpers import TIMEOUT_S, Events

#: Generous bound for anything the watcher's threads do (the machine is shared and slow at times).
#: Short timings: the schedule is tested on its own (test_autosync.py); here only the order matters.
FAST = Schedule(debounce_s=0.01, max_delay_s=0.1, interval_s=0, backoff_s=0.02, max_backoff_s=0.05)


# ---- the fakes and probes ----


class FakeChanges:
    """A change source the test drives: ``push`` a batch, the watcher's thread takes it."""

    def __init__(self) -> None:
        self.batches: queue.Queue[set[tuple[Any, str]] | BaseException] = queue.Queue()
        self.paths: list[Path] = []

    def __call__(self, paths: Any, stop: threading.Event, poll: bool) -> Iterator[set[tuple[Any, str]]]:
        self.paths = list(paths)
        yield set()  # watching
        while not stop.is_set():
            try:
                batch = self.batches.get(timeout=0.02)
            except queue.Empty:
                continue
            if isinstance(batch, BaseException):
                raise batch
            yield batch

    def push(self, paths: set[str]) -> None:
        """One batch of changes, as watchfiles reports them (change kind 2: modified)."""
        self.batches.put({(2, p) for p in paths})


class Running:
    """``Watcher.run`` on a thread; ``stop`` asks it to stop and returns what ``run`` returned or raised."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.result: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.watcher.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.result = exc

    def join(self) -> Any:
        self.thread.join(TIMEOUT_S)
        assert not self.thread.is_alive(), "Watcher.run did not return"
        return self.result

    def stop(self) -> Any:
        self.watcher.request_stop()
        return self.join()


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``root``: size, mtime, inode (absolute, resolved paths, as watchfiles reports them)."""
    out: dict[str, tuple[int, int, int]] = {}
    for dirpath, _dirs, files in os.walk(root.resolve()):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            out[path] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def changed(before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]) -> set[str]:
    """Paths added, removed or modified between two snapshots."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def commit(data: Path, i: int) -> None:
    """A real commit by another writer (``oplog apply`` would do the same): open, apply, close."""
    with Store.open(data, options=StoreOptions(lock_timeout_s=30)) as store:
        store.apply(request_from_json(numbered_doc_body(i, req_id=100 + i, app="test")))


def make_watcher(
    tmp_path: Path,
    events: Events,
    changes: FakeChanges,
    *,
    sync: Callable[[SyncRequest], SyncReport] | None = None,
    schedule: Schedule = FAST,
    stop_wait_s: float = 30.0,
    data: Path | None = None,
) -> Watcher:
    data = data or tmp_path / "a"
    remote = tmp_path / "remote"
    config = WatchConfig(
        data=data, remote=remote, cloud_name=None, schedule=schedule, lock_wait_s=0, stop_wait_s=stop_wait_s
    )
    clock = SystemClock()
    return Watcher(
        config,
        sync=sync or LocalSync(data, remote, clock, lock_wait_s=0, app="test"),
        find_server=lambda _data: None,
        monotonic=time.monotonic,
        clock=clock,
        changes=changes,
        observe=events,
    )


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Watchers a test started, stopped at the end if still running."""
    started: list[Running] = []
    yield started
    for r in started:
        if r.thread.is_alive():
            r.stop()


# ---- classification and fingerprints (pure) ----


def test_classify_names_local_commits_and_other_devices_news_only(tmp_path: Path) -> None:
    local = tmp_path / "data" / "devices" / "me"
    cloud = tmp_path / "remote" / "main"
    cases = {
        f"{local}/0000000000000001.seg": {"local"},
        f"{local}/sub/anything": {"local"},
        f"{cloud}/devices/other/MANIFEST": {"remote"},
        f"{cloud}/EPOCH": {"remote"},
        f"{cloud}/devices/me/MANIFEST": set(),  # the daemon's own push
        f"{cloud}/devices/other/0000000000000001.seg": set(),  # read only once a manifest names it
        f"{cloud}/devices/other/MANIFEST.tmp-1234": set(),
        f"{tmp_path}/remote/main2/devices/other/MANIFEST": set(),  # a sibling folder, not a child
        f"{tmp_path}/data/devices/other/0000000000000001.seg": set(),  # pulled copies
    }
    for path, sources in cases.items():
        assert classify({(2, path)}, local, cloud, "me") == sources, path
    assert classify({(1, p) for p in cases}, local, cloud, "me") == {"local", "remote"}
    assert is_remote_news(["devices", "other", "MANIFEST"], "me")
    assert not is_remote_news(["devices", "me", "MANIFEST"], "me")


def test_remote_fingerprint_counts_other_devices_and_a_foreign_epoch(tmp_path: Path) -> None:
    cloud = tmp_path / "main"
    (cloud / "devices" / "me").mkdir(parents=True)
    (cloud / "devices" / "me" / "MANIFEST").write_text("mine")
    empty = remote_fingerprint(cloud, "me")
    assert empty == ()
    (cloud / "EPOCH").write_text(json.dumps({"epoch": "e1"}))  # the initial epoch: no writer
    assert remote_fingerprint(cloud, "me") == ()
    (cloud / "EPOCH").write_text(json.dumps({"epoch": "e2", "device_id": "me"}))
    assert remote_fingerprint(cloud, "me") == ()
    (cloud / "devices" / "other").mkdir()
    (cloud / "devices" / "other" / "MANIFEST").write_text("theirs")
    one = remote_fingerprint(cloud, "me")
    assert [entry[0] for entry in one] == ["devices/other/MANIFEST"]
    (cloud / "EPOCH").write_text(json.dumps({"epoch": "e3", "device_id": "other"}))
    assert [entry[0] for entry in remote_fingerprint(cloud, "me")] == ["EPOCH", "devices/other/MANIFEST"]


def test_is_permanent_separates_what_retrying_cannot_fix() -> None:
    def remote_error(code: int) -> RemoteError:
        try:
            raise RemoteError("remote /r: cannot write x") from OSError(code, os.strerror(code))
        except RemoteError as exc:
            return exc

    class Code:
        def __init__(self, name: str) -> None:
            self.name = name

    def with_code(name: str) -> OplogError:
        # server/status.error_from_rpc sets ``code`` (a grpc.StatusCode) on every error it returns.
        error = OplogError(f"server x: {name}: no")
        error.code = Code(name)  # type: ignore[attr-defined]
        return error

    permanent = [
        InvalidArgument("bad"),
        InvalidSyncArgument("bad cloud"),
        with_code("PERMISSION_DENIED"),
        with_code("UNAUTHENTICATED"),
        remote_error(errno.EACCES),
        remote_error(errno.ENOTDIR),
        RemoteError("invalid remote path '../x'"),
    ]
    transient = [
        DataDirLocked("locked"),
        TransientRemoteError("timed out"),
        with_code("UNAVAILABLE"),
        remote_error(errno.ENOSPC),
        RemoteError("sync failed"),
        OSError("boom"),
    ]
    assert [is_permanent(e) for e in permanent] == [True] * len(permanent)
    assert [is_permanent(e) for e in transient] == [False] * len(transient)


# ---- the daemon's loop with real syncs ----


def test_own_writes_are_not_news_and_other_writes_are(tmp_path: Path, running: list[Running]) -> None:
    """Feed the watcher exactly what each commit and each sync changed; only others' changes sync."""
    a, b, remote = tmp_path / "a", tmp_path / "b", tmp_path / "remote"
    events, changes = Events(), FakeChanges()
    before = snapshot(tmp_path)
    r = Running(make_watcher(tmp_path, events, changes))
    running.append(r)
    _, first = events.ended()
    assert first.outcome.trigger == "start" and first.outcome.result == "ok"

    def feed(
        since: dict[str, tuple[int, int, int]], start: int
    ) -> tuple[dict[str, tuple[int, int, int]], Batch]:
        now = snapshot(tmp_path)
        paths = changed(since, now)
        assert paths, "nothing changed: the batch would prove nothing"
        changes.push(paths)
        return now, events.batch(start)[1]

    # The start sync's own writes (the data directory, the remote's EPOCH, its own folder): not news.
    mark = len(events)
    state, batch = feed(before, mark)
    assert batch.seen and batch.counted == frozenset()
    # A commit by another writer: news; one sync pushes it.
    commit(a, 1)
    mark = len(events)
    state, batch = feed(state, mark)
    assert batch.counted == {"local"}
    _, ended = events.ended(mark)
    assert ended.outcome.trigger == "local" and ended.outcome.pushed_segments == 1
    assert ended.pending == frozenset()
    # That sync's writes (sealed segment, its push into this device's remote folder): not news.
    mark = len(events)
    state, batch = feed(state, mark)
    assert "local" in batch.seen and batch.counted == frozenset()
    # Another device pushes: news; one sync pulls it.
    commit(b, 2)
    with Store.open(b) as store:
        run_sync(store, LocalDirRemote(remote), SystemClock(), "test")
    mark = len(events)
    state, batch = feed(state, mark)
    assert batch.counted == {"remote"}
    _, ended = events.ended(mark)
    assert ended.outcome.trigger == "remote" and ended.outcome.pulled_segments == 1
    # The pull's writes: not news either.
    mark = len(events)
    state, batch = feed(state, mark)
    assert batch.counted == frozenset()
    # Exactly three syncs, each for its reason: every batch above was handled before this count.
    assert [e.outcome.trigger for e in events.ends()] == ["start", "local", "remote"]
    assert r.stop() == 0


class GatedSync:
    """The real local sync, held at a gate before (``where="before"``) or after it runs."""

    def __init__(self, inner: LocalSync, where: str) -> None:
        self.inner = inner
        self.where = where
        self.armed = False
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: SyncRequest) -> SyncReport:
        hold = self.armed
        if hold and self.where == "before":
            self._hold()
        report = self.inner(request)
        if hold and self.where == "after":
            self._hold()
        return report

    def _hold(self) -> None:
        self.armed = False
        self.reached.set()
        assert self.release.wait(TIMEOUT_S)


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_local_change_during_a_sync_is_decided_when_it_ends(
    tmp_path: Path, running: list[Running], where: str
) -> None:
    """Committed before the sync read the log: no follow-up. Committed after: exactly one follow-up."""
    a, remote = tmp_path / "a", tmp_path / "remote"
    events, changes = Events(), FakeChanges()
    gate = GatedSync(LocalSync(a, remote, SystemClock(), lock_wait_s=30, app="test"), where)
    r = Running(make_watcher(tmp_path, events, changes, sync=gate))
    running.append(r)
    events.ended()
    state = snapshot(tmp_path)
    gate.armed = True
    commit(a, 1)
    mark = len(events)
    now = snapshot(tmp_path)
    changes.push(changed(state, now))
    state = now
    events.wait(lambda e: isinstance(e, SyncStarted), mark)
    assert gate.reached.wait(TIMEOUT_S)
    # While the daemon's sync runs, another commit lands (the gate holds no lock).
    commit(a, 2)
    mark = len(events)
    now = snapshot(tmp_path)
    changes.push(changed(state, now))
    _, batch = events.batch(mark)
    assert batch.deferred and batch.counted == frozenset()
    gate.release.set()
    i, ended = events.ended(mark)
    if where == "before":
        # The sync read the log after the second commit: both went up, nothing left over.
        assert ended.outcome.pushed_segments == 1 and ended.pending == frozenset()
        assert [e.outcome.trigger for e in events.ends()] == ["start", "local"]
    else:
        assert ended.pending == {"local"}
        _, follow = events.ended(i + 1)
        assert follow.outcome.trigger == "local" and follow.outcome.pushed_segments == 1
        assert follow.pending == frozenset()
    assert r.stop() == 0


def test_a_busy_writer_lock_is_retried_until_it_is_free(tmp_path: Path, running: list[Running]) -> None:
    """DataDirLocked is not permanent: back-off, then the retry succeeds once the writer lets go."""
    a = tmp_path / "a"
    commit(a, 1)
    events, changes = Events(), FakeChanges()
    holder = Store.open(a)  # another writer holds the lock: the daemon's syncs (lock_wait 0) fail
    try:
        r = Running(make_watcher(tmp_path, events, changes))
        running.append(r)
        i, failed = events.ended()
        assert failed.outcome.result == "failed" and not failed.outcome.permanent
        assert "locked" in failed.outcome.error and failed.retry_in_s is not None
        events.ended(i + 1)  # a second attempt, backed off, fails too
    finally:
        holder.close()
    _, ok = events.wait(lambda e: isinstance(e, SyncEnded) and e.outcome.ok)
    assert "retry" in ok.outcome.trigger and ok.outcome.pushed_segments == 1
    assert r.stop() == 0


def test_a_permanent_failure_ends_run_after_one_attempt(tmp_path: Path, running: list[Running]) -> None:
    """A sync refused for good (here a cloud name the server would refuse) stops the daemon: no retry."""
    events, changes = Events(), FakeChanges()
    calls: list[SyncRequest] = []

    def refused(request: SyncRequest) -> SyncReport:
        calls.append(request)
        raise InvalidSyncArgument("cloudName: refused by the server")

    r = Running(make_watcher(tmp_path, events, changes, sync=refused))
    running.append(r)
    error = r.join()
    assert isinstance(error, OplogError)
    assert str(error) == "sync failed and will not be retried: cloudName: refused by the server"
    ends = events.ends()
    assert len(ends) == 1 and len(calls) == 1
    assert ends[0].outcome.result == "failed" and ends[0].outcome.permanent and ends[0].retry_in_s is None
    # The daemon lock is released (its file stays: deleting lock files races): a new daemon may start.
    assert (tmp_path / "a" / DAEMON_LOCK_FILE).exists()
    again = Running(make_watcher(tmp_path, Events(), FakeChanges(), sync=refused))
    running.append(again)
    assert isinstance(again.join(), OplogError) and len(calls) == 2


def test_a_second_watcher_on_the_same_data_directory_is_refused(
    tmp_path: Path, running: list[Running]
) -> None:
    events = Events()
    first = Running(make_watcher(tmp_path, events, FakeChanges()))
    running.append(first)
    events.ended()
    second = make_watcher(tmp_path, Events(), FakeChanges())
    with pytest.raises(DataDirLocked, match=r"oplog watch is already running on .* \(process \d+\)"):
        second.run()
    # A daemon on another data directory is fine, on the same remote.
    other_events = Events()
    other = Running(make_watcher(tmp_path, other_events, FakeChanges(), data=tmp_path / "b"))
    running.append(other)
    assert other_events.ended()[1].outcome.ok
    assert other.stop() == 0 and first.stop() == 0


def test_stop_deadline_abandons_a_stuck_sync_without_ending_the_process(
    tmp_path: Path, running: list[Running]
) -> None:
    """The library returns (``abandoned``) and leaves the process to its caller."""
    events, changes = Events(), FakeChanges()
    gate = GatedSync(
        LocalSync(tmp_path / "a", tmp_path / "remote", SystemClock(), lock_wait_s=0, app="t"), "before"
    )
    gate.armed = True
    watcher = make_watcher(tmp_path, events, changes, sync=gate, stop_wait_s=0.0)
    r = Running(watcher)
    running.append(r)
    assert gate.reached.wait(TIMEOUT_S)
    assert r.stop() == 0
    assert watcher.abandoned
    messages = [e.message for e in events.items if isinstance(e, Status)]
    assert any("abandoning" in m for m in messages) and messages[-1] == "stopped on request"
    gate.release.set()


def test_a_change_source_that_fails_ends_run(tmp_path: Path, running: list[Running]) -> None:
    events, changes = Events(), FakeChanges()
    r = Running(make_watcher(tmp_path, events, changes))
    running.append(r)
    events.ended()
    changes.batches.put(OSError("inotify watch limit reached"))
    error = r.join()
    assert isinstance(error, OplogError) and "inotify watch limit reached" in str(error)
    local, cloud = changes.paths
    assert (
        local.parent == (tmp_path / "a" / "devices").resolve()
        and cloud == (tmp_path / "remote" / "main").resolve()
    )


def test_a_remote_that_became_unusable_ends_run(tmp_path: Path, running: list[Running]) -> None:
    """The remote folder replaced by a file under the daemon (ENOTDIR): the next sync's failure is permanent."""
    import shutil

    a, remote = tmp_path / "a", tmp_path / "remote"
    events, changes = Events(), FakeChanges()
    r = Running(make_watcher(tmp_path, events, changes))
    running.append(r)
    events.ended()
    shutil.rmtree(remote)
    remote.write_text("not a folder")
    state = snapshot(a)
    commit(a, 1)
    changes.push(changed(state, snapshot(a)))
    error = r.join()
    assert isinstance(error, OplogError) and "will not be retried" in str(error)
    assert "Not a directory" in str(error)
    last = events.ends()[-1]
    assert last.outcome.trigger == "local" and last.outcome.permanent and len(events.ends()) == 2


def test_a_change_source_failing_during_a_sync_lets_the_sync_end_first(
    tmp_path: Path, running: list[Running]
) -> None:
    """The watch is lost while a sync runs: that sync ends and is logged, then run raises."""
    events, changes = Events(), FakeChanges()
    gate = GatedSync(
        LocalSync(tmp_path / "a", tmp_path / "remote", SystemClock(), lock_wait_s=0, app="t"), "before"
    )
    gate.armed = True
    watcher = make_watcher(tmp_path, events, changes, sync=gate)
    r = Running(watcher)
    running.append(r)
    assert gate.reached.wait(TIMEOUT_S)
    changes.batches.put(OSError("inotify watch limit reached"))
    events.wait(lambda e: isinstance(e, Status) and "stopping once the sync in flight ends" in e.message)
    gate.release.set()
    error = r.join()
    assert (
        isinstance(error, OplogError)
        and str(error) == "watching stopped: OSError: inotify watch limit reached"
    )
    assert [e.outcome.result for e in events.ends()] == ["ok"] and not watcher.abandoned


def test_a_stop_cuts_a_retry_wait_short_and_the_sync_is_abandoned(
    tmp_path: Path, running: list[Running]
) -> None:
    """A sync waiting to retry (``request.sleep``) when the stop comes ends at once, logged as abandoned."""
    events, changes = Events(), FakeChanges()
    waiting = threading.Event()

    def retrying(request: SyncRequest) -> SyncReport:
        waiting.set()
        request.sleep(TIMEOUT_S * 10)  # a back-off wait far longer than the test may take
        raise AssertionError("the wait was not cut short")

    watcher = make_watcher(tmp_path, events, changes, sync=retrying)
    r = Running(watcher)
    running.append(r)
    assert waiting.wait(TIMEOUT_S)
    assert r.stop() == 0
    (ended,) = events.ends()
    assert ended.outcome.result == "abandoned" and ended.outcome.error == "stopped while waiting to retry"
    assert not ended.outcome.permanent and not watcher.abandoned
