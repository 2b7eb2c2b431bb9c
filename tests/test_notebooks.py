"""Notebooks as state: the notebook actions and moveDoc — validate, apply, replay, undo, sync, the SQL view rule."""

from __future__ import annotations

import marshal
import os
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oplog import notebooks as nb
from oplog.checkpoint import decode_state, encode_state
from oplog.clock import FakeClock, RandomIds
from oplog.engine import Engine, apply_event
from oplog.errors import BlockNotFound, InvalidArgument, InvalidTransaction, StructureError
from oplog.remote import LocalDirRemote
from oplog.replay import replay
from oplog.statehash import StateHash
from oplog.store import Store
from oplog.syncrunner import run_sync
from oplog.tree import UndoJournal, Workspace, check_invariants, snapshot
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import from_value, operation_to_json
from tests.engine_helpers import BOX, T0, bid, events_of, new_engine
from tests.workload import open_logs

NB1, NB2 = "20240101000000-nbaaaaa", "20240101000000-nbbbbbb"
D1, D2, D3 = bid(101), bid(102), bid(103)


def _apply(engine: Engine, *ops: dict[str, Any]) -> pb.Transaction:
    return engine.apply_request(nb.apply_request(ops, app="t")).transactions[0]


def _ret(tx: pb.Transaction, i: int = 0) -> Any:
    return from_value(tx.do_operations[i].ret_data)


def _doc(box: str, doc_id: str, title: str, parent: str = "", markdown: str = "") -> dict[str, Any]:
    data = {"box": box, "title": title, "markdown": markdown}
    if parent:
        data["parentDoc"] = parent
    return {"action": "createDoc", "id": doc_id, "data": data}


def _undo(engine: Engine, tx: pb.Transaction) -> None:
    ops = [operation_to_json(op) for op in tx.undo_operations]
    engine.apply_request(nb.apply_request(ops, app="t"))


def _replayed(engine_log: list[pb.Event]) -> Workspace:
    ws = Workspace()
    for event in engine_log:
        apply_event(ws, event)
    return ws


class Logged:
    """An engine that keeps the events a store would log, for replay."""

    def __init__(self) -> None:
        self.engine = new_engine()
        self.events: list[pb.Event] = []

    def apply(self, *ops: dict[str, Any]) -> pb.Transaction:
        applied = self.engine.apply_request(nb.apply_request(ops, app="t"))
        self.events.extend(events_of(applied))
        return applied.transactions[0]

    def undo(self, tx: pb.Transaction) -> None:
        self.apply(*(operation_to_json(op) for op in tx.undo_operations))

    @property
    def ws(self) -> Workspace:
        return self.engine.ws


@pytest.fixture
def log() -> Logged:
    return Logged()


# ---------------------------------------------------------------- lifecycle


def test_create_lists_like_ls_notebooks(log: Logged) -> None:
    tx = log.apply(nb.create_notebook_op(" Work\n", notebook_id=NB1), nb.create_notebook_op("Home"))
    op = tx.do_operations[0]
    assert op.id == NB1 and op.text == "Work" and op.resolved
    assert {a.name for a in op.attrs} >= {"name", "closed", "sort", "dailyNoteSavePath"}
    ret = _ret(tx)
    assert ret["id"] == NB1 and ret["name"] == "Work" and ret["closed"] is False and ret["sortMode"] == 15
    home = tx.do_operations[1].id
    listed = nb.list_notebooks(log.ws)
    assert [b["id"] for b in listed] == [NB1, home] and [b["sort"] for b in listed] == [0, 1]
    assert set(listed[0]) == {
        "id", "name", "icon", "sort", "sortMode", "closed", "subFileCount",
        "newFlashcardCount", "dueFlashcardCount", "flashcardCount", "encrypted", "unlocked",
    }  # fmt: skip
    assert nb.get_notebook(log.ws, home)["name"] == "Home"  # type: ignore[index]


def test_rename_close_open_conf(log: Logged) -> None:
    log.apply(nb.create_notebook_op("Work", notebook_id=NB1))
    assert _ret(log.apply(nb.rename_notebook_op(NB1, "Job"))) == {"box": NB1, "name": "Job"}
    log.apply(nb.close_notebook_op(NB1))
    assert nb.get_notebook(log.ws, NB1)["closed"] is True  # type: ignore[index]
    log.apply(nb.open_notebook_op(NB1))
    ret = _ret(
        log.apply(
            nb.set_notebook_conf_op(NB1, {"icon": "1f4d4", "dailyNoteSavePath": "daily / x ", "sort": 7})
        )
    )
    assert ret["icon"] == "1f4d4" and ret["dailyNoteSavePath"] == "/daily/x" and ret["sort"] == 7
    conf = nb.notebook_conf(log.ws, NB1)
    assert conf["box"] == NB1 and conf["name"] == "Job" and conf["conf"]["icon"] == "1f4d4"
    assert conf["conf"]["closed"] is False


def test_remove_takes_its_documents(log: Logged) -> None:
    log.apply(nb.create_notebook_op("Work", notebook_id=NB1))
    log.apply(_doc(NB1, D1, "a", markdown="x"), _doc(NB1, D2, "b", parent=D1))
    assert nb.get_notebook(log.ws, NB1)["subFileCount"] == 1  # type: ignore[index]
    assert sorted(_ret(log.apply(nb.remove_notebook_op(NB1)))) == [D1, D2]
    assert not log.ws.docs and nb.list_notebooks(log.ws) == []
    check_invariants(log.ws)


@pytest.mark.parametrize(
    ("ops", "error", "message"),
    [
        ([nb.rename_notebook_op(NB2, "x")], BlockNotFound, "notebook 20240101000000-nbbbbbb not found"),
        ([nb.close_notebook_op("nope")], InvalidTransaction, "is not a notebook id"),
        (
            [nb.set_notebook_conf_op(NB1, {"colour": "red"})],
            InvalidTransaction,
            "unknown notebook conf field",
        ),
        ([nb.set_notebook_conf_op(NB1, {"closed": "yes"})], InvalidTransaction, "must be true or false"),
        ([nb.set_notebook_conf_op(NB1, {"sort": "1"})], InvalidTransaction, "must be an integer"),
        ([nb.set_notebook_conf_op(NB1, {"dailyNoteSavePath": " / "})], InvalidTransaction, "notebook root"),
        ([nb.set_notebook_conf_op(NB1, {"encrypted": True})], InvalidTransaction, "no encrypted notebooks"),
        ([nb.rename_notebook_op(NB1, "x" * 513)], InvalidTransaction, "at most 512"),
        ([nb.remove_notebook_op(NB2)], BlockNotFound, "not found"),
        ([nb.move_doc_op(D1, box=NB2)], BlockNotFound, "notebook 20240101000000-nbbbbbb not found"),
        ([nb.move_doc_op(D1, parent_doc=D2)], StructureError, "under itself"),
        ([nb.move_doc_op(D1, parent_doc=D1)], StructureError, "under itself"),
        ([nb.move_doc_op(D3)], BlockNotFound, "document"),
    ],
)
def test_refusals_are_atomic(
    log: Logged, ops: list[dict[str, Any]], error: type[Exception], message: str
) -> None:
    log.apply(nb.create_notebook_op("Work", notebook_id=NB1))
    log.apply(_doc(NB1, D1, "a"), _doc(NB1, D2, "b", parent=D1))
    before = snapshot(log.ws)
    # A good operation first: the refusal must take it back too.
    with pytest.raises(error, match=message) as caught:
        log.apply(nb.rename_notebook_op(NB1, "changed"), *ops)
    assert "transactions[0].doOperations[1]" in str(caught.value)
    assert snapshot(log.ws) == before


def test_a_closed_notebook_takes_no_new_documents(log: Logged) -> None:
    log.apply(nb.create_notebook_op("Work", notebook_id=NB1), nb.create_notebook_op("B", notebook_id=NB2))
    log.apply(_doc(NB1, D1, "a"), _doc(NB2, D2, "b"))
    log.apply(nb.close_notebook_op(NB1))
    with pytest.raises(StructureError, match="is closed"):
        log.apply(_doc(NB1, D3, "c"))
    with pytest.raises(StructureError, match="is closed"):
        log.apply(nb.move_doc_op(D2, box=NB1))
    with pytest.raises(StructureError, match="is closed"):
        log.apply(nb.move_doc_op(D1, box=NB2))


# ---------------------------------------------------------------- moveDoc


def test_move_doc_with_its_children_to_another_notebook(log: Logged) -> None:
    log.apply(nb.create_notebook_op("A", notebook_id=NB1), nb.create_notebook_op("B", notebook_id=NB2))
    log.apply(_doc(NB1, D1, "one", markdown="body"), _doc(NB1, D2, "two", parent=D1), _doc(NB2, D3, "three"))
    tx = log.apply(*nb.move_docs_by_id_ops(log.ws, [D1], D3))
    assert _ret(tx) == {"id": D1, "box": NB2, "path": f"/{D3}/{D1}.sy", "parentDoc": D3}
    assert log.ws.docs[D2].box == NB2 and log.ws.docs[D2].path == f"/{D3}/{D1}/{D2}.sy"
    body = log.ws.docs[D1].children[0]
    assert body.root is log.ws.docs[D1] and body.root.box == NB2
    check_invariants(log.ws)
    # moveDocs by path, back to the top of the first notebook.
    log.apply(*nb.move_docs_ops([f"/{D3}/{D1}.sy"], NB1, "/"))
    assert log.ws.docs[D1].path == f"/{D1}.sy" and log.ws.docs[D2].path == f"/{D1}/{D2}.sy"
    assert log.ws.docs[D2].box == NB1
    check_invariants(log.ws)


def test_move_docs_request_builders_refuse_bad_paths(log: Logged) -> None:
    with pytest.raises(InvalidArgument):
        nb.move_docs_ops(["/not-an-id.sy"], NB1, "/")
    with pytest.raises(BlockNotFound):
        nb.move_docs_by_id_ops(log.ws, [D1], NB2)


# ---------------------------------------------------------------- replay and undo


def _lifecycle(log: Logged) -> Iterator[pb.Transaction]:
    """Every notebook action and moveDoc once, yielding each request's transaction as it is applied."""
    yield log.apply(nb.create_notebook_op("A", notebook_id=NB1), nb.create_notebook_op("B", notebook_id=NB2))
    yield log.apply(_doc(NB1, D1, "one", markdown="# H\n\nbody"), _doc(NB1, D2, "two", parent=D1))
    yield log.apply(_doc(NB2, D3, "three", markdown="x"))
    yield log.apply(nb.rename_notebook_op(NB1, "A2"))
    yield log.apply(nb.set_notebook_conf_op(NB1, {"icon": "1f600", "sortMode": 6}))
    yield log.apply(nb.move_doc_op(D1, parent_doc=D3))
    yield log.apply(nb.close_notebook_op(NB2))
    yield log.apply(nb.open_notebook_op(NB2))
    yield log.apply(nb.close_notebook_op(NB2))
    yield log.apply(nb.remove_notebook_op(NB2))


def test_replay_gives_the_same_state_and_hash(log: Logged) -> None:
    list(_lifecycle(log))
    replayed = _replayed(log.events)
    assert snapshot(replayed) == snapshot(log.ws)
    assert StateHash.of(replayed) == StateHash.of(log.ws)
    # The incremental hash (as the store keeps it) agrees with a full one at every step.
    ws, state = Workspace(), StateHash()
    for event in log.events:
        result = apply_event(ws, event)
        state.update(ws, result.touched, result.removed)
        assert state == StateHash.of(ws)


def test_undo_walks_every_step_back(log: Logged) -> None:
    states = [snapshot(log.ws)]
    hashes = [StateHash.of(log.ws)]
    txs = []
    for tx in _lifecycle(log):
        txs.append(tx)
        states.append(snapshot(log.ws))
        hashes.append(StateHash.of(log.ws))
    for i in range(len(txs) - 1, -1, -1):
        log.undo(txs[i])
        assert snapshot(log.ws) == states[i], f"undo of step {i}"
        assert StateHash.of(log.ws) == hashes[i]
        check_invariants(log.ws)
    # The undo requests are ordinary events: replaying everything ends in the empty state too.
    assert snapshot(_replayed(log.events)) == states[0]


def test_notebook_state_changes_the_hash_and_old_states_hash_as_before(log: Logged) -> None:
    log.apply(_doc(BOX, D1, "a"))
    old = StateHash.of(log.ws).hexdigest()
    ws = Workspace()
    for event in log.events:
        apply_event(ws, event)
    assert StateHash.of(ws).hexdigest() == old and ws.notebooks == {}
    log.apply(nb.rename_notebook_op(BOX, "Named"))  # a box that only held documents gets a conf
    assert StateHash.of(log.ws).hexdigest() != old
    assert [b["name"] for b in nb.list_notebooks(log.ws)] == ["Named"]


def test_replay_tolerates_a_notebook_removed_concurrently() -> None:
    a, b = Logged(), Logged()
    for side in (a, b):
        side.apply(nb.create_notebook_op("A", notebook_id=NB1), nb.create_notebook_op("B", notebook_id=NB2))
        side.apply(_doc(NB1, D1, "one"))
    a.apply(nb.remove_notebook_op(NB2))
    b.apply(nb.rename_notebook_op(NB2, "renamed"), nb.move_doc_op(D1, box=NB2))
    # a's view after pulling b's events: the rename and the move find no notebook.
    ws = _replayed(a.events)
    journal = UndoJournal(False)
    for event in b.events[2:]:
        journal = apply_event(ws, event)
    assert {c.reason for c in journal.conflicts} == {
        f"notebook {NB2} not found",
    }
    assert len(journal.conflicts) == 2 and ws.docs[D1].box == NB1
    check_invariants(ws)


# ---------------------------------------------------------------- the store: SQL view, checkpoint, sync


def _open(root: Path, name: str, seed: int) -> Store:
    warnings.simplefilter("ignore")
    return Store.open(root / name, clock=FakeClock(T0 + seed, step_ms=11), ids=RandomIds(seed))


def _count(store: Store, box: str) -> int:
    return int(store.query("SELECT count(*) FROM blocks WHERE box = ?", [box]).rows[0][0])


def test_closed_notebook_leaves_the_sql_view_and_comes_back(tmp_path: Path) -> None:
    store = _open(tmp_path, "a", 1)
    try:
        store.apply(nb.apply_request([nb.create_notebook_op("A", notebook_id=NB1)]))
        store.apply(nb.apply_request([nb.create_notebook_op("B", notebook_id=NB2)]))
        store.apply(
            nb.apply_request([_doc(NB1, D1, "one", markdown="p1\n\n- i1\n- i2"), _doc(NB2, D2, "two")])
        )
        store.apply(nb.apply_request([{"action": "setBlockAttrs", "id": D1, "data": {"custom-x": "1"}}]))
        open_rows = _count(store, NB1)
        assert open_rows == 7 and _count(store, NB2) == 1
        store.apply(nb.apply_request([nb.close_notebook_op(NB1)]))
        assert _count(store, NB1) == 0 and _count(store, NB2) == 1
        attr_rows = "SELECT count(*) FROM attributes WHERE box = ?"
        assert store.query(attr_rows, [NB1]).rows[0][0] == 0
        hash_closed = store.state().state_hash
    finally:
        store.close()
    # Reopened from disk (checkpoint or replay, and a view rebuild): still closed, same hash.
    store = _open(tmp_path, "a", 1)
    try:
        assert store.state().state_hash == hash_closed and _count(store, NB1) == 0
        store.checkpoint()
        store.apply(nb.apply_request([nb.open_notebook_op(NB1)]))
        assert _count(store, NB1) == open_rows
        assert store.query(attr_rows, [NB1]).rows[0][0] == 1
    finally:
        store.close()


def test_notebook_events_sync_between_two_data_directories(tmp_path: Path) -> None:
    a, b = _open(tmp_path, "a", 1), _open(tmp_path, "b", 2)
    remote = LocalDirRemote(tmp_path / "remote")
    try:
        a.apply(nb.apply_request([nb.create_notebook_op("A", notebook_id=NB1), _doc(NB1, D1, "one")]))
        b.apply(nb.apply_request([nb.create_notebook_op("B", notebook_id=NB2), _doc(NB2, D2, "two")]))
        for s in (a, b, a):
            run_sync(s, remote, s._clock)
        a.apply(nb.apply_request([nb.rename_notebook_op(NB2, "B2"), nb.close_notebook_op(NB1)]))
        b.apply(nb.apply_request([nb.move_doc_op(D2, parent_doc=D1)]))
        for s in (a, b, a):
            run_sync(s, remote, s._clock)
        assert snapshot(a.ws) == snapshot(b.ws)
        assert a.state().state_hash == b.state().state_hash
        assert nb.list_notebooks(a.ws) == nb.list_notebooks(b.ws)
        names = {n["id"]: (n["name"], n["closed"]) for n in nb.list_notebooks(b.ws)}
        assert names == {NB1: ("A", True), NB2: ("B2", False)}
        assert b.ws.docs[D2].box == NB1
        # Both views hide the closed notebook — D2 moved into it, so it went too.
        assert _count(a, NB1) == _count(b, NB1) == 0
    finally:
        a.close()
        b.close()


def test_the_replay_reader_process_folds_notebook_events_alike(tmp_path: Path) -> None:
    """The child-process reader carries only resolved fields: the notebook actions need nothing more."""
    store = _open(tmp_path, "a", 1)
    log = Logged()
    try:
        for tx in _lifecycle(log):
            store.apply(nb.apply_request([operation_to_json(op) for op in tx.do_operations]))
        final = store.state().state_hash
    finally:
        store.close()
    logs = open_logs(tmp_path / "a")
    try:
        here, there = replay(logs, reader=False), replay(logs, reader=True)
        assert here.state_hash.hexdigest() == there.state_hash.hexdigest() == final
        assert snapshot(here.ws) == snapshot(there.ws) and there.ws.notebooks
    finally:
        for device_log in logs.values():
            device_log.close()


# ---------------------------------------------------------------- seeded random sequences

SEED = int(os.environ.get("OPLOG_SEED", "20261207"))
ROUNDS = 400 if os.environ.get("OPLOG_SOAK") == "1" else 60


def _random_op(rng: random.Random, ws: Workspace) -> dict[str, Any]:
    boxes = ws.notebook_ids() + [NB1, NB2]
    docs = sorted(ws.docs) + [D1]
    box, doc = rng.choice(boxes), rng.choice(docs)
    pick = rng.randrange(9)
    if pick == 0:
        return nb.create_notebook_op(rng.choice(["A", "B", " "]), notebook_id=rng.choice([NB1, NB2, ""]))
    if pick == 1:
        return nb.rename_notebook_op(box, rng.choice(["x", "y\nz"]))
    if pick == 2:
        return nb.close_notebook_op(box)
    if pick == 3:
        return nb.open_notebook_op(box)
    if pick == 4:
        return nb.set_notebook_conf_op(box, {"icon": rng.choice(["", "1f4d4"]), "sort": rng.randrange(5)})
    if pick == 5:
        return nb.remove_notebook_op(box)
    if pick == 6:
        parent = rng.choice(docs + [""])
        return nb.move_doc_op(doc, box=box if not parent else "", parent_doc=parent)
    parent = rng.choice(docs + ["", ""])
    new_id = bid(rng.randrange(200, 260))
    return _doc(
        box, new_id, "t", parent=parent if parent in ws.docs else "", markdown=rng.choice(["", "a\n\nb"])
    )


def test_random_notebook_sequences_replay_and_undo() -> None:
    """Random notebook requests (many refused): invariants and the incremental hash hold; replay and undo agree."""
    print(f"seed {SEED} (OPLOG_SEED replays it), {ROUNDS} requests")
    rng = random.Random(SEED)
    log = Logged()
    state = StateHash.of(log.ws)
    accepted: list[tuple[pb.Transaction, tuple[Any, ...]]] = []
    for _ in range(ROUNDS):
        ops = [_random_op(rng, log.ws) for _ in range(rng.randrange(1, 3))]
        before = snapshot(log.ws)
        try:
            applied = log.engine.apply_request(nb.apply_request(ops, app="t"))
        except (InvalidArgument, BlockNotFound, StructureError):
            assert snapshot(log.ws) == before  # a refusal is all or nothing
            continue
        log.events.extend(events_of(applied))
        accepted.append((applied.transactions[0], before))
        state.update(log.ws, applied.touched, applied.removed)
        assert state == StateHash.of(log.ws)
        check_invariants(log.ws)
    assert len(accepted) > ROUNDS // 4, "the generator should mostly make acceptable requests"
    assert snapshot(_replayed(log.events)) == snapshot(log.ws)
    for tx, before in reversed(accepted):
        log.undo(tx)
        assert snapshot(log.ws) == before
    check_invariants(log.ws)


def test_checkpoint_state_keeps_confs_and_older_states_keep_their_bytes(log: Logged) -> None:
    log.apply(_doc(BOX, D1, "a", markdown="x"))
    older = encode_state(log.ws)
    assert len(marshal.loads(older)) == 2  # no notebook confs: the two-part form older code wrote and reads
    log.apply(nb.create_notebook_op("A", notebook_id=NB1), nb.close_notebook_op(NB1))
    blob = encode_state(log.ws, StateHash.of(log.ws))
    back = decode_state(blob)
    assert back.notebooks == log.ws.notebooks and snapshot(back) == snapshot(log.ws)
    assert StateHash.of(back) == StateHash.of(log.ws)
