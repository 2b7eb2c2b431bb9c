"""A big pull is folded beside the live state: writes go on meanwhile, none is lost, every device agrees.

The fold beside (``oplog.foldbeside``) is wrapped so that requests are applied
from another thread *while it runs* and while the tail is caught up; each such
request must complete (a generous timeout, not a sleep) — with the write lock
held for the fold they would wait for it. Afterwards the state must be exactly
a fresh replay of all the logs, the blocks view exactly a rebuild of the state,
and a second device that pulls must reach the same hash and merged order.
"""

from __future__ import annotations

import sqlite3
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import oplog.store as store_module
from oplog.clock import FakeClock, RandomIds
from oplog.remote import LocalDirRemote
from oplog.replay import replay
from oplog.sqlview import BlocksView
from oplog.store import Store, StoreOptions, open_device_logs
from oplog.syncrunner import run_sync
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import request_from_json
from tests.engine_helpers import numbered_doc_body

T0 = 1_721_527_400_000
WAIT_S = 60.0


def _open(root: Path, name: str, start_ms: int, seed: int) -> Store:
    warnings.simplefilter("ignore")
    return Store.open(root / name, clock=FakeClock(start_ms, step_ms=7), ids=RandomIds(seed))


def _doc(store: Store, n: int) -> pb.ApplyResponse:
    return store.apply(request_from_json(numbered_doc_body(n, req_id=n)))


def _in_thread(fn: Callable[[], Any]) -> None:
    """Run ``fn`` on another thread and require it to finish (a request blocked by the fold would not)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT_S)
    assert not thread.is_alive(), "a request waited for the fold of a pull"
    assert not errors, errors


def _fresh_replay_hash(data_dir: Path) -> tuple[str, list[tuple[int, str, int]]]:
    """The hash of a full replay of the directory's logs (no checkpoint), and the merged order's keys."""
    logs = open_device_logs(data_dir, writable_id=None, options=StoreOptions(readonly=True))
    try:
        keys = sorted((e.hlc, e.device_id, e.device_seq) for log in logs.values() for e in log.read())
        return replay(logs, reader=False).state_hash.hexdigest(), keys
    finally:
        for log in logs.values():
            log.close()


def _view_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in ("blocks", "attributes", "conflicts")
        }
    finally:
        conn.close()


def _assert_view_is_a_rebuild(store: Store, tmp_path: Path) -> None:
    store.query("SELECT 1")  # writes whatever is deferred
    fresh = BlocksView(tmp_path / "fresh.db")
    fresh.rebuild(store.ws, conflicts=store.conflicts())
    fresh.close()
    assert _view_rows(store.data_dir / "blocks.db") == _view_rows(tmp_path / "fresh.db")


@pytest.mark.parametrize("reader", [False, True], ids=["in-process", "reader-process"])
@pytest.mark.parametrize(
    ("b_offset_ms", "pulled"),
    [(0, 400), (60_000, 400), (-60_000, 300)],
    ids=["interleaved", "pulled-after", "pulled-before"],
)
def test_writes_during_a_big_pull_survive_the_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, b_offset_ms: int, pulled: int, reader: bool
) -> None:
    """Requests applied during the fold and the catch-up: lost = 0, replay hash equal, devices agree.

    ``reader-process``: the fold beside reads the logs in a child process (``oplog.replayreader``, as a
    big one does), the local log bounded at the seq it had while the requests keep appending to it."""
    import oplog.replay as replay_module

    remote = LocalDirRemote(tmp_path / "remote")
    a = _open(tmp_path, "a", T0, 1)
    b = _open(tmp_path, "b", T0 + b_offset_ms, 2)
    try:
        for n in range(1, 31):
            _doc(a, n)  # local history the pulled events may sort inside
        for n in range(1001, 1001 + pulled):
            _doc(b, n)
        run_sync(b, remote, b.clock)

        acknowledged: list[pb.ApplyResponse] = []
        folds: list[int] = []
        real_fold, real_tail = store_module.fold_beside, store_module.fold_tail

        def fold_with_writes(*args: Any) -> Any:
            # 100 requests (more than CATCH_UP_MAX: the tail is caught up outside the lock too), one of
            # them creating a document the pull also creates (a conflict only the new state shows).
            _in_thread(lambda: acknowledged.extend(_doc(a, n) for n in [*range(2001, 2100), 1001]))
            folds.append(1)
            return real_fold(*args)

        def tail_with_writes(result: Any, events: Any) -> None:
            if len(folds) == 1:  # more requests during the first catch-up round
                folds.append(2)
                _in_thread(lambda: acknowledged.extend(_doc(a, n) for n in range(3001, 3011)))
            real_tail(result, events)

        monkeypatch.setattr(store_module, "fold_beside", fold_with_writes)
        monkeypatch.setattr(store_module, "fold_tail", tail_with_writes)
        children: list[int] = []
        if reader:
            real_read = replay_module.read_merged
            monkeypatch.setattr(replay_module, "READER_MIN_EVENTS", 1)
            monkeypatch.setattr(
                replay_module, "read_merged", lambda *args: children.append(1) or real_read(*args)
            )
        summary = run_sync(a, remote, a.clock)
        assert summary.pulled_events == pulled
        assert folds == [1, 2], "the pull was not folded beside the state"
        assert bool(children) == reader
        monkeypatch.undo()

        # lost = 0: every acknowledged write is in the log and in the merged order.
        assert len(acknowledged) == 110
        local = {e.device_seq: e for e in a.device_log(a.device_id).read()}  # type: ignore[union-attr]
        for response in acknowledged:
            for position in response.positions:
                assert local[position.device_seq].hlc == position.hlc
        digest, keys = _fresh_replay_hash(a.data_dir)
        assert a.state().state_hash == digest
        assert a.state().position == len(keys) == 30 + pulled + 110
        assert a.state().device_heads == {a.device_id: 140, b.device_id: pulled}
        _assert_view_is_a_rebuild(a, tmp_path)

        # The other device takes the writes and lands in the same state and merged order.
        run_sync(a, remote, a.clock)
        run_sync(b, remote, b.clock)
        assert b.state().state_hash == a.state().state_hash
        assert _fresh_replay_hash(b.data_dir) == (digest, keys)
        # A write after the swap goes on top of the new state.
        _doc(a, 4001)
        assert a.state().state_hash == _fresh_replay_hash(a.data_dir)[0]
    finally:
        a.close()
        b.close()
    # Reopened, the state is the same (checkpoints and view agree with the logs).
    reopened = _open(tmp_path, "a", T0 + 10**7, 3)
    try:
        assert reopened.state().state_hash == _fresh_replay_hash(reopened.data_dir)[0]
    finally:
        reopened.close()


def test_a_small_pull_after_the_state_is_folded_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few events that sort after everything go on top under the lock: no fold beside, same result."""
    remote = LocalDirRemote(tmp_path / "remote")
    a = _open(tmp_path, "a", T0, 1)
    b = _open(tmp_path, "b", T0 + 60_000, 2)
    try:
        _doc(a, 1)
        for n in range(1001, 1011):
            _doc(b, n)
        run_sync(b, remote, b.clock)

        def refuse(*args: Any) -> Any:
            raise AssertionError("a small pull on top was folded beside")

        monkeypatch.setattr(store_module, "fold_beside", refuse)
        run_sync(a, remote, a.clock)
        assert a.state().state_hash == _fresh_replay_hash(a.data_dir)[0]
        assert len(a.ws.docs) == 11
    finally:
        a.close()
        b.close()


def test_a_failed_fold_beside_falls_back_to_a_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the fold beside fails (a log read error), the store rebuilds under the lock: still exact."""
    remote = LocalDirRemote(tmp_path / "remote")
    a = _open(tmp_path, "a", T0, 1)
    b = _open(tmp_path, "b", T0, 2)
    try:
        for n in range(1, 11):
            _doc(a, n)
        for n in range(1001, 1301):
            _doc(b, n)
        run_sync(b, remote, b.clock)

        def broken(*args: Any) -> Any:
            raise store_module.StorageError("simulated read error")

        monkeypatch.setattr(store_module, "fold_beside", broken)
        run_sync(a, remote, a.clock)
        assert a.state().state_hash == _fresh_replay_hash(a.data_dir)[0]
        assert len(a.ws.docs) == 310
        _assert_view_is_a_rebuild(a, tmp_path)
    finally:
        a.close()
        b.close()


def test_the_view_is_written_in_slices_after_the_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until every slice is written the view does not claim the new state; a query meanwhile sees all of it."""
    monkeypatch.setattr(store_module, "VIEW_SLICE", 4)
    remote = LocalDirRemote(tmp_path / "remote")
    a = _open(tmp_path, "a", T0, 1)
    b = _open(tmp_path, "b", T0 + 60_000, 2)
    try:
        _doc(a, 1)
        for n in range(1001, 1301):
            _doc(b, n)
        run_sync(b, remote, b.clock)
        seen: list[tuple[bool, int]] = []

        def between(self: Store) -> None:
            if self is a and self._backlog_touched and len(seen) < 3:
                current = self._view.is_current(self.position, self.state_hash.hexdigest())
                # A request in the middle of the drain: applied, on disk, and in the view.
                assert _doc(a, 5000 + len(seen)).positions
                seen.append((current, len(a.query("SELECT id FROM blocks WHERE type = 'd'").rows)))

        monkeypatch.setattr(Store, "_between_slices", between)
        run_sync(a, remote, a.clock)
        monkeypatch.undo()
        assert seen and all(not current for current, _ in seen)
        # The query drained the rest first: every document of both devices, and the requests so far.
        assert [count for _, count in seen] == [302, 303, 304][: len(seen)]
        assert a._view.is_current(a.position, a.state_hash.hexdigest())
        assert a.state().state_hash == _fresh_replay_hash(a.data_dir)[0]
        _assert_view_is_a_rebuild(a, tmp_path)
    finally:
        a.close()
        b.close()
