"""The store: apply through the log, reopen by replay, change feed without gap or repeat."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from oplog import wire
from oplog.clock import FakeClock, RandomIds
from oplog.errors import BlockNotFound, DataDirLocked, InvalidTransaction, NotADataDir
from oplog.store import Store, StoreOptions
from oplog.tree import snapshot
from tests import fixtures

DOC = "20240720090000-rootdoc"
BOX = "20240720085959-notebk1"


def _open(path: Path, seed: int = 1) -> Store:
    return Store.open(path, clock=FakeClock(step_ms=1), ids=RandomIds(seed))


def _body(ops: list[dict], req_id: int = 1) -> object:
    return wire.request_from_json(
        {"reqId": req_id, "app": "t", "session": "s", "transactions": [{"doOperations": ops}]}
    )


def _create_doc() -> list[dict]:
    return [{"action": "createDoc", "id": DOC, "data": {"box": BOX, "title": "T"}}]


def _append(text: str) -> dict:
    return {"action": "appendBlock", "parentID": DOC, "dataType": "markdown", "data": text}


def test_examples_survive_reopen(data_dir: Path, examples_dir: Path) -> None:
    with _open(data_dir) as store:
        for path in sorted(examples_dir.glob("0*.json")):
            store.apply(wire.request_from_json(json.loads(path.read_text())))
        live = snapshot(store.ws)
        position = store.position
    with _open(data_dir, seed=2) as again:
        assert snapshot(again.ws) == live
        assert again.position == position
        order = list(again.get_block(fixtures.ROOT).child_ids)
        assert order == [fixtures.A, fixtures.H, fixtures.M, fixtures.L]


def test_a_rejected_request_appends_nothing(data_dir: Path) -> None:
    with _open(data_dir) as store:
        store.apply(_body(_create_doc()))
        before = snapshot(store.ws)
        seq = store.heads[store.device_id]
        with pytest.raises(InvalidTransaction) as info:
            store.apply(_body([_append("fine"), {"action": "noSuchAction", "id": DOC}]))
        assert "transactions[0].doOperations[1]" in str(info.value)
        assert snapshot(store.ws) == before
        assert store.heads[store.device_id] == seq
        assert store.journal_length() == 1


def test_reads(data_dir: Path) -> None:
    with _open(data_dir) as store:
        store.apply(_body([*_create_doc(), _append("**Hello**")]))
        doc = store.get_document(DOC)
        assert doc[0].id == DOC and doc[0].type == "d"
        para = store.get_block(doc[1].id)
        assert para.markdown == "**Hello**" and para.content == "Hello" and para.parent_id == DOC
        with pytest.raises(BlockNotFound):
            store.get_block("20990101000000-zzzzzzz")


def test_second_writer_is_refused(data_dir: Path) -> None:
    with _open(data_dir):
        with pytest.raises(DataDirLocked):
            Store.open(data_dir, options=StoreOptions(lock_timeout_s=0))


def test_open_without_create_needs_a_data_dir(tmp_path: Path) -> None:
    with pytest.raises(NotADataDir):
        Store.open(tmp_path / "nothing", create=False)


def test_subscribe_catch_up_then_live_without_gap_or_repeat(data_dir: Path) -> None:
    with _open(data_dir) as store:
        store.apply(_body(_create_doc()))
        for i in range(5):
            store.apply(_body([_append(f"p{i}")], req_id=10 + i))
        sub = store.subscribe(2)
        seen: list[int] = []

        def reader() -> None:
            for item in sub:
                seen.append(item.position)
                if item.position == 26:
                    return

        thread = threading.Thread(target=reader)
        thread.start()
        writers = [
            threading.Thread(
                target=lambda k=k: [store.apply(_body([_append(f"w{k}-{j}")])) for j in range(5)]
            )
            for k in range(4)
        ]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        thread.join(timeout=30)
        sub.close()
        assert seen == list(range(3, 27))


def test_slow_subscriber_is_ended_and_can_resume(data_dir: Path) -> None:
    from oplog.errors import SubscriberTooSlow

    with _open(data_dir) as store:
        store.apply(_body(_create_doc()))
        sub = store.subscribe(1, buffer=3)
        for i in range(10):
            store.apply(_body([_append(f"p{i}")]))
        with pytest.raises(SubscriberTooSlow):
            list(sub)
        resumed = store.subscribe(sub.position)
        positions = []
        for item in resumed:
            positions.append(item.position)
            if item.position == 11:
                break
        resumed.close()
        assert positions == list(range(sub.position + 1, 12))


def test_live_hash_equals_full_replay_and_view_is_current(data_dir: Path, examples_dir: Path) -> None:
    from oplog.replay import replay

    with _open(data_dir) as store:
        for path in sorted(examples_dir.glob("0*.json")):
            store.apply(wire.request_from_json(json.loads(path.read_text())))
        live = store.state()
        full = replay(store._logs)
        assert full.state_hash.hexdigest() == live.state_hash
        result = store.query("select id from blocks where type = ? order by id", ["h"])
        assert [row[0] for row in result.rows] == [fixtures.H]
    # Reopen from the checkpoint written on close: same hash, no replay needed.
    with _open(data_dir, seed=3) as again:
        assert again.state() == live
        assert again._since_checkpoint == 0
    # Lose the checkpoint: a full replay gives the same state.
    (data_dir / "checkpoints.db").unlink()
    with _open(data_dir, seed=4) as third:
        assert third.state() == live
